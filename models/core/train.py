"""One training loop for every family, with progress callbacks, cancel, resume and checkpoints.

    python -m models.train vae --preset book --set dataset=fashion --name vae_fashion

writes ``<out>/<name>.safetensors`` (weights + config) and ``<out>/<name>.json``, the checkpoint's
card: data, steps, wall time, hardware, the command that reproduces it, and held-out metrics
(the family's own, plus classifier scores of its samples for image families). The optimizer state
and the curve history go to ``runs/state/`` so an interrupted run can ``--resume``.

Batches come from a per-epoch permutation seeded by ``seed + epoch``, and the state file keeps the
random-number generator's state too, so a resumed run sees exactly the batches and the training noise
the uninterrupted run would have.

**EMA of weights.** A config with ``ema_decay > 0`` keeps an exponential moving average of the
weights of the family's ``ema_parts`` (the whole model, or a GAN's generator), with torch's own
``AveragedModel`` and ``get_ema_multi_avg_fn`` (buffers such as batch-norm statistics averaged too):

    θ_EMA ← d_n · θ_EMA + (1 − d_n) · θ,   d_n = min(decay, (1 + n) / (10 + n)) after update n,

the warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``, so a few hundred steps
in the page sample from weights that have already forgotten their random start (the fixed decay
is reached after about 9,000 updates at 0.999). The checkpoint everyone loads holds the EMA
weights, so sampling, previews and the card's scores use them; the raw weights the optimizer
steps sit beside the optimizer state in ``runs/state/`` and a resumed run continues both. The
card's ``weights`` says which were scored ("EMA, decay 0.999" or "raw").

**Several processes.** The same command runs under ``torchrun --nproc_per_node=N`` (one machine)
or with torchrun's rendezvous flags (several): :func:`init_distributed` joins the process group
torchrun describes in the environment (NCCL on GPUs, gloo on CPUs) and the loop becomes data
parallel. The global batch stays ``config.batch_size`` (it must divide by N): every rank draws the
same seeded permutation and takes its contiguous share of each batch, so the union of the shares is
the one-process batch and batch order still depends only on seed and epoch. Gradients are averaged
over the ranks by a step pre-hook on every optimizer (:func:`average_gradients_before_step`), not by
wrapping the model in ``DistributedDataParallel``: families with their own optimizers call their
networks directly (``model.G(z)``, ``model.D(x)``, CycleGAN's four) and step them several times per
batch, past any wrapper's forward, while a hook on ``Optimizer.step`` is exact for each of them;
shares being equal, the mean of the ranks' mean losses is the global batch's mean loss. Buffers
(batch-norm statistics) are broadcast from rank 0 after each step, as DDP's ``broadcast_buffers``
does, so EMA updates are identical on every rank; on GPUs batch norm becomes ``SyncBatchNorm``
(statistics of the global batch), on CPUs (gloo) each rank normalises by its own share. Rank 0
alone writes checkpoints, cards and logs. Each rank draws its own training noise (rank 0 exactly
as a one-process run does), so families with training noise match a one-process run in
distribution, not bit for bit. A checkpoint resumes on any number of processes: steps and the
global batch carry over, and each rank's generator state is restored where that rank existed
before. Under ``torchrun --max-restarts=K`` restarted workers resume from the last checkpoint of
the same torchrun run by themselves, losing at most ``checkpoint_every`` steps.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from models.core import ASSETS, RUNS, checkpoint
from models.core.family import Family, default_device, device_of, hardware_name, last, seeded

STATE = RUNS / "state"
SHIPPED = ASSETS / "checkpoints"
PREVIEW_SEED = 1234


@dataclass
class Progress:
    """What a callback sees every ``log_every`` steps."""

    step: int
    total: int
    metrics: dict  # mean of each train_step output since the last report
    elapsed: float  # seconds of training in this process
    images_per_s: float  # training examples per second (the family's unit: images, sequences…)
    preview: object = None  # the family's fixed-seed preview when due: (16, C, H, W) images, or text
    history: list = field(default_factory=list)  # every report so far, for curves
    snapshots: list = field(default_factory=list)  # [(step, preview)] every snapshot_every steps, for a replay


@dataclass
class Result:
    status: str  # "finished", "cancelled" or "diverged"
    step: int
    path: Path | None  # the last good checkpoint (None if there never was one)
    message: str
    card: dict | None = None
    history: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)  # [(step, preview)], oldest first


def paths(name: str, out: Path) -> tuple[Path, Path, Path]:
    return out / f"{name}.safetensors", STATE / f"{name}.optim.safetensors", STATE / f"{name}.history.json"


MAX_SNAPSHOTS = 120  # a longer run keeps every other one (the first and the latest always)


def snapshots_path(name: str) -> Path:
    return STATE / f"{name}.snapshots.json"


def keep_snapshot(snapshots: list, step: int, preview) -> None:
    """Add ``(step, preview)``; past :data:`MAX_SNAPSHOTS` thin the older ones to every other."""
    snapshots.append((step, preview))
    if len(snapshots) > MAX_SNAPSHOTS:
        snapshots[:] = snapshots[:-1][::2] + snapshots[-1:]


def to_json(preview):
    """A preview (image tensor, dict of note arrays, text) as JSON: images as uint8 lists."""
    if torch.is_tensor(preview):
        x = preview.detach().cpu().float()
        if x.is_floating_point() and x.min() >= 0 and x.max() <= 1:
            return {"uint8": (x * 255).round().to(torch.uint8).tolist(), "shape": list(x.shape)}
        return {"values": x.tolist(), "shape": list(x.shape)}
    if isinstance(preview, dict):
        return {"dict": {k: to_json(v) for k, v in preview.items()}}
    if hasattr(preview, "tolist"):
        return {"array": preview.tolist()}
    return preview


def from_json(value):
    """The inverse of :func:`to_json` (images as float tensors in [0, 1], note arrays as numpy)."""
    import numpy as np

    if isinstance(value, dict):
        if "uint8" in value:
            return torch.tensor(value["uint8"], dtype=torch.float32).view(value["shape"]) / 255
        if "values" in value:
            return torch.tensor(value["values"]).view(value["shape"])
        if "dict" in value:
            return {k: from_json(v) for k, v in value["dict"].items()}
        if "array" in value:
            return np.asarray(value["array"])
    return value


def read_snapshots(name: str) -> list:
    """The snapshots a run kept (``[(step, preview)]``), or [] when it kept none."""
    path = snapshots_path(name)
    if not path.exists():
        return []
    return [(s["step"], from_json(s["preview"])) for s in json.loads(path.read_text())]


def _optim_state(opts: dict) -> tuple[dict, dict]:
    """Flatten optimizer state dicts into tensors plus JSON for safetensors (keys ``name:param.key``)."""
    tensors, rest = {}, {}
    for name, opt in opts.items():
        sd = opt.state_dict()
        scalars = {}
        for pid, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"{name}:{pid}.{k}"] = v
                else:
                    scalars[f"{pid}.{k}"] = v
        rest[name] = [sd["param_groups"], scalars]
    return tensors, rest


def _load_optim_state(opts: dict, tensors: dict, meta: dict) -> None:
    if "optimizer" in meta:  # files written before optimizers had names: one Adam
        meta = {"optimizers": {"adam": meta["optimizer"]}}
        tensors = {f"adam:{k}": v for k, v in tensors.items() if k.split(".", 1)[0].isdigit()}
    meta = meta["optimizers"]
    for name, opt in opts.items():
        groups, scalars = meta[name]
        state: dict = {}
        own = {k.split(":", 1)[1]: v for k, v in tensors.items() if k.split(":", 1)[0] == name}
        for key, v in list(own.items()) + list(scalars.items()):
            pid, k = key.split(".", 1)
            state.setdefault(int(pid), {})[k] = v
        opt.load_state_dict({"state": state, "param_groups": groups})


def check_name(name: str) -> None:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"Checkpoint name must be letters, digits, '_' or '-'; got {name!r}.")


def preview(family: Family, model):
    """What training shows from a fixed seed: the family's own preview, or 16 samples drawn the way
    cards are scored (fast settings for slow samplers)."""
    if family.preview is not None:
        return family.preview(model, seeded(PREVIEW_SEED))
    return last(family.sample(model, 16, generator=seeded(PREVIEW_SEED), **family.score_kwargs))


def _optimizers(family: Family, model, config) -> dict:
    """The family's own optimizers, or one Adam on ``"loss"``."""
    if family.optimizers:
        return family.optimizers(model, config)
    return {"adam": torch.optim.Adam(model.parameters(), lr=config.lr)}


# settings of how training proceeds, not of what is trained: a resumed run may change them (add EMA,
# decay the learning rate, reweight the loss, drop the label more often) while the architecture and data stay fixed
RESUMABLE = ("steps", "ema_decay", "lr_decay", "warmup_steps", "min_snr_gamma", "p_uncond")


def lr_factor(config, step: int) -> float:
    """The learning-rate multiplier at ``step``: a linear warm-up over ``warmup_steps`` (Goyal et al.
    2017), then, with ``lr_decay="cosine"``, a half cosine from 1 to 0 at ``steps`` (Loshchilov &
    Hutter 2017). A pure function of the step, so a resumed run continues the same schedule."""
    f = 1.0
    warmup = int(getattr(config, "warmup_steps", 0) or 0)
    if warmup:
        f = min(1.0, (step + 1) / warmup)
    if getattr(config, "lr_decay", "none") == "cosine":
        f *= 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps))
    return f


def _set_lr(opts: dict, base: dict, factor: float) -> None:
    for key, opt in opts.items():
        for group, lr in zip(opt.param_groups, base[key]):
            group["lr"] = lr * factor


def _forward(family: Family, model, batch, config, opts) -> dict:
    """One step's losses; families with their own optimizers also step them here."""
    if family.optimizers:
        return family.train_step(model, batch, config, opts)
    return family.train_step(model, batch, config)


def _backward(opt, loss) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


class EMA:
    """Exponential moving averages of a model's ``parts`` (see the module docstring for the rule)."""

    def __init__(self, model, parts: tuple, decay: float):
        self.decay, self.parts = decay, tuple(parts)
        self.averaged = {part: AveragedModel(model.get_submodule(part), multi_avg_fn=self._average,
                                             use_buffers=True) for part in self.parts}

    def decay_at(self, n: int) -> float:
        """The decay of the update that follows ``n`` earlier ones."""
        return min(self.decay, (1 + n) / (10 + n))

    def _average(self, ema_params, params, n) -> None:
        get_ema_multi_avg_fn(self.decay_at(int(n)))(ema_params, params, n)

    @property
    def updates(self) -> int:
        return int(next(iter(self.averaged.values())).n_averaged)

    def update(self, model) -> None:
        for part, avg in self.averaged.items():
            avg.update_parameters(model.get_submodule(part))

    def model(self, model):
        """A copy of ``model`` with the averaged parts in place of the raw ones (the whole model's
        average is returned as it is)."""
        if self.parts == ("",):
            return self.averaged[""].module
        shown = copy.deepcopy(model)
        for part, avg in self.averaged.items():
            shown.get_submodule(part).load_state_dict(avg.module.state_dict())
        return shown

    def load(self, averaged_model, updates: int) -> None:
        """Continue from the averaged weights of a checkpoint after ``updates`` updates."""
        for part, avg in self.averaged.items():
            avg.module.load_state_dict(averaged_model.get_submodule(part).state_dict())
            avg.n_averaged.fill_(updates)

    def label(self) -> str:
        return f"EMA, decay {self.decay:g}"


def make_ema(family: Family, model, config) -> EMA | None:
    """The run's EMA when its config asks for one (``ema_decay > 0``)."""
    decay = float(getattr(config, "ema_decay", 0.0) or 0.0)
    return EMA(model, family.ema_parts, decay) if decay > 0 else None


# --- several processes (torchrun) ------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    """The processes training together: torchrun's ranks, or this process alone."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_distributed() -> torch.device | None:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, rendezvous):
    NCCL with one GPU per local rank when there are GPUs, gloo on CPUs. Returns this rank's device,
    or None when not started by torchrun with several processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return None
    # torchrun's store outlives a restart: keys of this attempt under their own prefix, or restarted
    # workers can read the dead ones' addresses and wait for them
    store, rank, size = next(dist.rendezvous("env://"))
    store = dist.PrefixStore(f"attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", store=store, rank=rank, world_size=size, device_id=device)
        return device
    dist.init_process_group("gloo", store=store, rank=rank, world_size=size)
    return torch.device("cpu")


def average_gradients_before_step(optimizer, args=(), kwargs=None) -> None:
    """``Optimizer.register_step_pre_hook``: replace each gradient of ``optimizer``'s parameters by its
    mean over the ranks, flattened into one bucket per dtype so there are few collective calls."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    for dtype in sorted({g.dtype for g in grads}, key=str):
        same = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in same])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in same:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def _broadcast(tensors) -> None:
    """Every rank takes rank 0's values of ``tensors``."""
    for t in tensors:
        dist.broadcast(t.data, 0)


def _mean_over_ranks(values: dict, device) -> dict:
    """The ranks' metrics averaged (equal shares: the global batch's mean)."""
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, (t / dist.get_world_size()).tolist()))


def _any_rank(flag: bool, device) -> bool:
    """True when ``flag`` holds on some rank, so every rank stops at the same step."""
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def check_shares(batch_size: int, processes: int) -> None:
    """Every process takes an equal share of the global batch (so the mean of their mean losses is the
    global mean); refuse a batch that does not split."""
    if processes > 1 and batch_size % processes:
        raise ValueError(f"Batch size {batch_size} does not split evenly over {processes} processes: "
                         f"choose a multiple of {processes}, so every process takes an equal share.")


def _shard(idx: torch.Tensor, w: World) -> torch.Tensor:
    """This rank's contiguous share of the global batch ``idx``."""
    share = len(idx) // w.size
    return idx[w.rank * share:(w.rank + 1) * share]


def compile_model(family: Family, model: nn.Module) -> None:
    """``torch.compile`` in place the modules a family's train_step calls: the model itself, or its
    networks for families that step them one by one (they call ``model.G`` directly)."""
    for module in (list(model.children()) if family.optimizers else [model]):
        module.compile()


def time_steps(family: Family, config, steps: int = 3) -> float:
    """Seconds per training step of ``config`` on this machine: a few real steps on real batches after
    one warm-up step, on a throw-away model (the global RNG is restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        model = family.build(config).to(default_device()).train()
        opts = _optimizers(family, model, config)
        tensors, _ = family.examples(config, "train")
        n = len(tensors[0])
        times = []
        for k in range(steps + 1):
            idx = torch.randint(n, (min(config.batch_size, n),), generator=seeded(k))
            batch = tuple(t[idx].to(device_of(model)) for t in tensors)
            t0 = time.perf_counter()
            losses = _forward(family, model, batch, config, opts)
            if not family.optimizers:
                _backward(opts["adam"], losses["loss"])
            times.append(time.perf_counter() - t0)
    return sum(times[1:]) / steps


RAW = "weights:"  # prefix of the raw (un-averaged) weights in the state file, kept when EMA is on
RNG = "rng:"  # prefix of the random-number generator states in the state file
PRECISIONS = {"fp32": "fp32", "bf16": "bf16 autocast"}  # --precision -> what the card says


def _rng_key(kind: str, rank: int) -> str:
    return f"{RNG}{kind}" + (f"@{rank}" if rank else "")


def _rng_state(device, w: World) -> dict:
    """Every rank's generator states (CPU, and the accelerator's), gathered for rank 0 to save."""
    mine = {"cpu": torch.get_rng_state()}
    if device.type != "cpu":
        mine[device.type] = torch.get_device_module(device).get_rng_state(device)
    everyone = [mine]
    if w.size > 1:
        everyone = [None] * w.size
        dist.all_gather_object(everyone, mine)
    return {_rng_key(kind, rank): t for rank, states in enumerate(everyone) for kind, t in states.items()}


def _set_rng_state(tensors: dict, device, rank: int = 0) -> bool:
    """Restore this rank's generator states from a state file; False when it holds none (files from
    older versions, or a rank that did not exist in the run being resumed)."""
    if _rng_key("cpu", rank) not in tensors:
        return False
    torch.set_rng_state(tensors[_rng_key("cpu", rank)].cpu())
    if device.type != "cpu" and _rng_key(device.type, rank) in tensors:
        torch.get_device_module(device).set_rng_state(tensors[_rng_key(device.type, rank)].cpu(), device)
    return True


def _rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The noise seed of rank > 0 (rank 0 keeps the one-process stream)."""
    return seed + 1_000_003 * rank + step


def train(family: Family, config, *, name: str, out: Path = RUNS / "checkpoints", resume: bool = False,
          on_progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
          log_every: int = 50, checkpoint_every: int = 500, preview_every: int | None = None,
          device=None, seed: int = 0, command: str | None = None, score_samples: int = 2000,
          between_steps: Callable[[int], None] | None = None, precision: str = "fp32",
          compile: bool = False, run_id: str | None = None, snapshot_every: int | None = None,
          restarted: bool = False) -> Result:
    """Train ``family`` with ``config`` to ``config.steps`` steps; see the module docstring.

    ``between_steps(step)`` runs before each step: the one moment live setting changes may be applied.
    ``precision="bf16"`` runs the steps under bfloat16 autocast; ``compile`` uses ``torch.compile``;
    ``run_id`` (torchrun's) is kept in the state file so restarted workers know their own run.
    ``snapshot_every``: keep the fixed-seed preview every that many steps (samples, or a piece of music
    for the music families) in ``Progress.snapshots`` and ``runs/state/<name>.snapshots.json``, for a
    replay of training in order; default: every preview shown (``preview_every``). ``restarted``: a
    torchrun restart, which finishes a run already at its last step (writes its card) instead of refusing."""
    check_name(name)
    w = world()
    check_shares(config.batch_size, w.size)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}; got {precision!r}.")
    device = torch.device(device) if device else default_device()
    out = Path(out)
    weights, optim_path, history_path = paths(name, out)
    start, history, wall_before, rng = 0, [], 0.0, {}
    snapshots: list = []
    snapshot_every = snapshot_every or preview_every
    torch.manual_seed(seed)  # initial weights and the families' training noise: same seed, same run
    model = family.build(config).to(device)
    if w.size > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics of the global batch
    opts = _optimizers(family, model, config)
    base_lr = {k: [g["lr"] for g in opt.param_groups] for k, opt in opts.items()}  # before any state loads
    scheduled = lr_factor(config, 0) != 1.0 or getattr(config, "lr_decay", "none") != "none"
    ema = make_ema(family, model, config)
    if resume:
        if not weights.exists():
            raise ValueError(f"Nothing to resume: no checkpoint named {name!r} in {out}.")
        old, old_config, meta = checkpoint.load(weights, {family.name: family}, device=device)
        kept = {k: getattr(config, k) for k in RESUMABLE if hasattr(config, k)}
        if asdict(replace(old_config, **kept)) != asdict(config):
            raise ValueError("Resume needs the same settings as the run it continues (only "
                             f"{', '.join(k for k in RESUMABLE if k in kept)} may change).")
        start, wall_before = meta.get("step", 0), meta.get("wall_time_s", 0.0)
        model.load_state_dict(old.state_dict())  # the checkpoint's weights: the EMA ones when EMA is on
        if ema is not None:
            ema.load(old, meta.get("ema_updates", start))
        if optim_path.exists():
            tensors, ometa = checkpoint.load_tensors(optim_path)
            tensors = {k: v.to(device) for k, v in tensors.items()}
            _load_optim_state(opts, tensors, ometa)
            raw = {k[len(RAW):]: v for k, v in tensors.items() if k.startswith(RAW)}
            if raw and ema is not None:
                model.load_state_dict(raw)
            rng = tensors
        if history_path.exists():
            history = [h for h in json.loads(history_path.read_text()) if h["step"] <= start]
        snapshots = [s for s in read_snapshots(name) if s[0] <= start]
        # a torchrun restart after the last checkpoint (a worker lost while the card was written) only finishes
        if start >= config.steps and not restarted:
            raise ValueError(f"{name} already has {start} steps; raise steps above that to train further.")
    if w.size > 1:
        _broadcast([*model.parameters(), *model.buffers()])  # one start for every rank
        for opt in opts.values():
            opt.register_step_pre_hook(average_gradients_before_step)
    if compile:
        compile_model(family, model)

    tensors, _ = family.examples(config, "train")
    tensors = tuple(t.to(device) for t in tensors)
    n_examples = len(tensors[0])
    per_epoch = max(1, n_examples // config.batch_size)
    extra = {"step": 0, "wall_time_s": 0.0}
    shown = (lambda: ema.model(model)) if ema is not None else (lambda: model)  # what is sampled and saved
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")  # noqa: E731

    def save(step: int, wall: float) -> Path:
        """Every rank calls this (its generator state is gathered); rank 0 writes."""
        extra.update(step=step, wall_time_s=round(wall, 1))
        rng_now = _rng_state(device, w)
        if not w.main:
            return weights
        ema_meta = {"ema_updates": ema.updates} if ema is not None else {}
        checkpoint.save(weights, shown(), family.name, config, step=step, wall_time_s=round(wall, 1), **ema_meta)
        state, rest = _optim_state(opts)
        if ema is not None:
            state.update({RAW + k: v for k, v in model.state_dict().items()})
        state.update(rng_now)
        checkpoint.save_tensors(optim_path, state, optimizers=rest, step=step, processes=w.size, run_id=run_id)
        checkpoint.write_json(history_path, history)
        if snapshots:
            checkpoint.write_json(snapshots_path(name), [{"step": k, "preview": to_json(v)} for k, v in snapshots])
        return weights

    t0 = time.time()
    sums: dict[str, float] = {}
    count, seen = 0, 0
    perm, perm_epoch = None, -1
    last_good = weights if resume else None
    step = start
    # the generator state after everything that may draw from it, as in the uninterrupted run
    if not _set_rng_state(rng, device, w.rank) and w.rank:
        torch.manual_seed(_rank_seed(seed, w.rank, start))
    model.train()
    while step < config.steps:
        stop = cancel is not None and cancel.is_set()
        if stop if w.size == 1 else _any_rank(stop, device):
            path = save(step, wall_before + time.time() - t0)
            return Result("cancelled", step, path, f"Cancelled at step {step}; checkpoint saved.", history=history)
        epoch, i = divmod(step, per_epoch)
        if epoch != perm_epoch:
            perm = torch.randperm(n_examples, generator=seeded(seed + epoch)).to(device)
            perm_epoch = epoch
        if between_steps is not None:
            between_steps(step)
        if scheduled:
            _set_lr(opts, base_lr, lr_factor(config, step))
        idx = perm[i * config.batch_size:(i + 1) * config.batch_size]  # the global batch
        mine = _shard(idx, w) if w.size > 1 else idx
        batch = tuple(t[mine] for t in tensors)
        with autocast():
            losses = _forward(family, model, batch, config, opts)
        values = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in losses.items()}
        if w.size > 1:
            values = _mean_over_ranks(values, device)  # so every rank sees the same non-finite value
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            kept = f"the last good checkpoint (step {extra['step'] or start}) is kept" if last_good else "no checkpoint was written"
            return Result("diverged", step, last_good,
                          f"{bad[0]} became {values[bad[0]]} at step {step + 1}; training stopped and {kept}. "
                          "Try a lower learning rate.", history=history)
        if not family.optimizers:
            _backward(opts["adam"], losses["loss"])
        if w.size > 1:
            _broadcast(model.buffers())  # batch-norm statistics as rank 0 has them, as DDP does
        if ema is not None:
            ema.update(model)
        step += 1
        count += 1
        seen += len(idx)
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        if step % log_every == 0 or step == config.steps:
            elapsed = time.time() - t0
            metrics = {k: v / count for k, v in sums.items()}
            history.append({"step": step, **metrics})
            sample = None
            if w.main and preview_every and (step % preview_every == 0 or step in (log_every, config.steps)):
                sample = preview(family, shown())
                model.train()
            if on_progress and w.main:
                on_progress(Progress(step, config.steps, metrics, wall_before + elapsed,
                                     seen / max(elapsed, 1e-9), sample, history, snapshots))
            sums, count = {}, 0
        if w.main and snapshot_every and (step % snapshot_every == 0 or step == config.steps):
            if not (snapshots and snapshots[-1][0] == step):
                due = sample if sample is not None and step % log_every == 0 else None
                if due is None:
                    due = preview(family, shown())
                    model.train()
                keep_snapshot(snapshots, step, due)
        if step % checkpoint_every == 0:
            last_good = save(step, wall_before + time.time() - t0)

    wall = wall_before + time.time() - t0
    save(step, wall)
    if not w.main:
        return Result("finished", step, weights, f"Finished {step} steps (rank {w.rank}).", None, history)
    result_snapshots = snapshots
    card = make_card(family, shown(), config, name=name, steps=step, wall=wall, device=device,
                     command=command, seed=seed, score_samples=score_samples,
                     weights_label=ema.label() if ema is not None else "raw")
    card.update(precision=PRECISIONS[precision], processes=w.size, compiled=bool(compile))
    if w.size > 1:
        card["hardware"] = f"{w.size} processes × {card['hardware']}"
    checkpoint.write_json(weights.with_suffix(".json"), card)
    return Result("finished", step, weights, f"Finished {step} steps in {wall:.0f} s.", card, history,
                  result_snapshots)


def class_scores(family: Family, model, dataset: str, n: int, seed: int = 0) -> dict:
    """A class-conditional image model asked for every class in turn (0, 1, … 9, 0, …) with the
    settings its page opens with (``family.class_kwargs``): how often each class is drawn as itself,
    the same images' quality scores, and the scorer's figures on real held-out images beside them."""
    from models.core import data, evaluate

    labels = [i % len(data.class_names(dataset)) for i in range(n)]
    kwargs = {**family.score_kwargs, **family.class_kwargs}
    samples = last(family.sample(model, n, generator=seeded(seed), labels=labels, **kwargs))
    return {**evaluate.class_accuracy(samples, labels, dataset), "sampler": kwargs,
            "scores": evaluate.score(samples, dataset), "real": evaluate.real_class_accuracy(dataset, n)}


def opening_scores(family: Family, model, config, n: int, seed: int = 0) -> dict:
    """The scorer on ``n`` samples drawn with the setting the page opens with (``family.opening``)."""
    from models.core import evaluate

    setting, kwargs = family.opening(model, config)
    samples = last(family.sample(model, n, generator=seeded(seed), **family.score_kwargs, **kwargs))
    return {**evaluate.score(samples, config.dataset), "setting": setting}


def sample_metrics(family: Family, model, config, n: int, seed: int = 0) -> dict:
    """An image card's sample scores: ``n`` samples drawn with ``family.score_kwargs`` (unguided), the
    scorer's calibration rows beside them, and, where the family has them, the page's opening setting
    and every class in turn."""
    from models.core import evaluate

    samples = last(family.sample(model, n, generator=seeded(seed), **family.score_kwargs))
    metrics = {"sample_scores": evaluate.score(samples, config.dataset),
               "calibration": evaluate.calibration(config.dataset, len(samples))}
    if family.score_kwargs:
        metrics["sample_scores"]["sampler"] = family.score_kwargs
    if family.opening:
        metrics["opening_scores"] = opening_scores(family, model, config, n, seed)
    if getattr(model, "conditional", False):
        metrics["class_scores"] = class_scores(family, model, config.dataset, n, seed)
    return metrics


def make_card(family: Family, model, config, *, name, steps, wall, device, command, seed, score_samples,
              weights_label: str = "raw") -> dict:
    """Held-out metrics and provenance for a finished checkpoint."""
    model.eval()
    metrics = {}
    train_tensors, info = family.examples(config, "train")
    test_tensors, _ = family.examples(config, "test")
    if family.evaluate:
        metrics.update(family.evaluate(model, *test_tensors))
    if score_samples and family.kind == "image":
        metrics.update(sample_metrics(family, model, config, score_samples, seed))
    n_train = len(train_tensors[0])
    return {
        "name": name,
        "family": family.name,
        "title": family.title,
        "data": {**info, f"train_{family.unit}": n_train, f"test_{family.unit}": len(test_tensors[0])},
        "config": asdict(config),
        "steps": steps,
        "epochs": round(steps * config.batch_size / n_train, 2),
        "wall_time_s": round(wall, 1),
        "hardware": hardware_name(device),
        "metrics": metrics,
        "weights": weights_label,  # which weights were scored and shipped: "raw" or "EMA, decay 0.999"
        "command": command,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _launcher(w: World) -> str:
    """How this process was started, for the card's command."""
    if w.size == 1:
        return "python -m models.train"
    nodes = w.size // int(os.environ.get("LOCAL_WORLD_SIZE", w.size))
    return (f"torchrun --nproc_per_node={os.environ.get('LOCAL_WORLD_SIZE', w.size)}"
            + (f" --nnodes={nodes}" if nodes > 1 else "") + " -m models.train")


def _elastic_restart(optim_path: Path) -> bool:
    """True in a worker torchrun restarted (``--max-restarts``) after its run wrote a checkpoint."""
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0 or not optim_path.exists():
        return False
    try:
        return checkpoint.read_meta(optim_path).get("run_id") == os.environ.get("TORCHELASTIC_RUN_ID")
    except ValueError:
        return False


def main(argv=None) -> None:
    import signal

    from models import FAMILIES

    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description="Train a family and write its checkpoint and card. Runs data "
                                "parallel under torchrun --nproc_per_node=N (same arguments).")
    p.add_argument("family", choices=sorted(FAMILIES))
    p.add_argument("--preset", default="cpu")
    p.add_argument("--config", type=Path, metavar="JSON",
                   help="settings from a JSON file: a checkpoint card (its config) or a config dict")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set latent_dim=16 (JSON values)")
    p.add_argument("--name", help="checkpoint name (default: FAMILY_DATASET)")
    p.add_argument("--out", type=Path, default=SHIPPED)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32",
                   help="bf16: bfloat16 autocast (GPUs; the card records it)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (bench/ddp_scaling.py)")
    p.add_argument("--score-samples", type=int, default=2000, help="samples the card's scores use (image families)")
    p.add_argument("--json-progress", action="store_true", help="one JSON line per report (for the studio)")
    p.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                   help="keep the fixed-seed preview every N steps in runs/state/NAME.snapshots.json (a replay)")
    a = p.parse_args(argv)
    fam = FAMILIES[a.family]
    overrides = {}
    if a.config:
        data = json.loads(a.config.read_text())
        overrides.update(data.get("config", data))
    for item in a.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set needs KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    device = init_distributed()
    w, previous = world(), None
    try:
        config = fam.config(a.preset, **overrides)
        name = a.name or f"{a.family}_{config.dataset}"
        restarted = not a.resume and _elastic_restart(paths(name, a.out)[1])
        resume = a.resume or restarted
        if restarted and w.main:
            step = checkpoint.read_meta(paths(name, a.out)[0]).get("step")
            print(f"torchrun restarted this run: resuming {name} from its checkpoint at step {step}", flush=True)

        def show(pr: Progress):
            if a.json_progress:
                print(json.dumps({"step": pr.step, "total": pr.total, "metrics": pr.metrics,
                                  "elapsed": pr.elapsed, "images_per_s": pr.images_per_s}), flush=True)
                return
            ms = " ".join(f"{k} {v:.3f}" for k, v in pr.metrics.items())
            print(f"step {pr.step}/{pr.total} {ms} ({pr.images_per_s:.0f} {fam.unit}/s, {pr.elapsed:.0f} s)",
                  flush=True)

        cancel = threading.Event()  # SIGTERM (the studio's Cancel, torchrun's shutdown): save and stop
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: cancel.set())
        quiet = {"--resume", "--json-progress"}
        command = _launcher(w) + " " + " ".join(shlex.quote(s) for s in argv if s not in quiet)
        result = train(fam, config, name=name, out=a.out, resume=resume, on_progress=show, cancel=cancel,
                       log_every=a.log_every, checkpoint_every=a.checkpoint_every, seed=a.seed, command=command,
                       score_samples=a.score_samples, device=device, precision=a.precision, compile=a.compile,
                       run_id=os.environ.get("TORCHELASTIC_RUN_ID"), snapshot_every=a.snapshot_every or None,
                       restarted=restarted)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if device is not None:
            dist.destroy_process_group()
    if w.main:
        print(result.message, flush=True)
        if result.card:
            print(json.dumps(result.card["metrics"], indent=2), flush=True)
    if result.status != "finished":
        sys.exit(1)


if __name__ == "__main__":
    main()
