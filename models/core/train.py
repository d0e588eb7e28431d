"""One training loop for every family, with progress callbacks, cancel, resume and checkpoints.

    python -m models.train vae --preset book --set dataset=fashion --name vae_fashion

writes ``<out>/<name>.safetensors`` (weights + config) and ``<out>/<name>.json``, the checkpoint's
card: data, steps, wall time, hardware, the command that reproduces it, and held-out metrics
(the family's own, plus classifier scores of its samples for image families). The optimizer state
and the curve history go to ``runs/state/`` so an interrupted run can ``--resume``.

Batches come from a per-epoch permutation seeded by ``seed + epoch``, so a resumed run sees
exactly the batches the uninterrupted run would have.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

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


@dataclass
class Result:
    status: str  # "finished", "cancelled" or "diverged"
    step: int
    path: Path | None  # the last good checkpoint (None if there never was one)
    message: str
    card: dict | None = None
    history: list = field(default_factory=list)


def paths(name: str, out: Path) -> tuple[Path, Path, Path]:
    return out / f"{name}.safetensors", STATE / f"{name}.optim.safetensors", STATE / f"{name}.history.json"


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
        tensors = {f"adam:{k}": v for k, v in tensors.items()}
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


def _forward(family: Family, model, batch, config, opts) -> dict:
    """One step's losses; families with their own optimizers also step them here."""
    if family.optimizers:
        return family.train_step(model, batch, config, opts)
    return family.train_step(model, batch, config)


def _backward(opt, loss) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


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


def train(family: Family, config, *, name: str, out: Path = RUNS / "checkpoints", resume: bool = False,
          on_progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
          log_every: int = 50, checkpoint_every: int = 500, preview_every: int | None = None,
          device=None, seed: int = 0, command: str | None = None, score_samples: int = 2000,
          between_steps: Callable[[int], None] | None = None) -> Result:
    """Train ``family`` with ``config`` to ``config.steps`` steps; see the module docstring.

    ``between_steps(step)`` runs before each step: the one moment live setting changes may be applied."""
    check_name(name)
    device = torch.device(device) if device else default_device()
    out = Path(out)
    weights, optim_path, history_path = paths(name, out)
    start, history, wall_before = 0, [], 0.0
    torch.manual_seed(seed)  # initial weights and the families' training noise: same seed, same run
    model = family.build(config).to(device)
    opts = _optimizers(family, model, config)
    if resume:
        if not weights.exists():
            raise ValueError(f"Nothing to resume: no checkpoint named {name!r} in {out}.")
        old, old_config, meta = checkpoint.load(weights, {family.name: family}, device=device)
        if asdict(replace(old_config, steps=config.steps)) != asdict(config):
            raise ValueError("Resume needs the same settings as the run it continues (only steps may change).")
        model.load_state_dict(old.state_dict())
        start, wall_before = meta.get("step", 0), meta.get("wall_time_s", 0.0)
        if optim_path.exists():
            tensors, ometa = checkpoint.load_tensors(optim_path)
            _load_optim_state(opts, {k: v.to(device) for k, v in tensors.items()}, ometa)
        if history_path.exists():
            history = [h for h in json.loads(history_path.read_text()) if h["step"] <= start]
        if start >= config.steps:
            raise ValueError(f"{name} already has {start} steps; raise steps above that to train further.")

    tensors, _ = family.examples(config, "train")
    tensors = tuple(t.to(device) for t in tensors)
    n_examples = len(tensors[0])
    per_epoch = max(1, n_examples // config.batch_size)
    extra = {"step": 0, "wall_time_s": 0.0}

    def save(step: int, wall: float) -> Path:
        extra.update(step=step, wall_time_s=round(wall, 1))
        checkpoint.save(weights, model, family.name, config, step=step, wall_time_s=round(wall, 1))
        state, rest = _optim_state(opts)
        checkpoint.save_tensors(optim_path, state, optimizers=rest)
        checkpoint.write_json(history_path, history)
        return weights

    t0 = time.time()
    sums: dict[str, float] = {}
    count, seen = 0, 0
    perm, perm_epoch = None, -1
    last_good = weights if resume else None
    step = start
    model.train()
    while step < config.steps:
        if cancel is not None and cancel.is_set():
            path = save(step, wall_before + time.time() - t0)
            return Result("cancelled", step, path, f"Cancelled at step {step}; checkpoint saved.", history=history)
        epoch, i = divmod(step, per_epoch)
        if epoch != perm_epoch:
            perm = torch.randperm(n_examples, generator=seeded(seed + epoch)).to(device)
            perm_epoch = epoch
        if between_steps is not None:
            between_steps(step)
        idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
        batch = tuple(t[idx] for t in tensors)
        losses = _forward(family, model, batch, config, opts)
        values = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in losses.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            kept = f"the last good checkpoint (step {extra['step'] or start}) is kept" if last_good else "no checkpoint was written"
            return Result("diverged", step, last_good,
                          f"{bad[0]} became {values[bad[0]]} at step {step + 1}; training stopped and {kept}. "
                          "Try a lower learning rate.", history=history)
        if not family.optimizers:
            _backward(opts["adam"], losses["loss"])
        step += 1
        count += 1
        seen += len(idx)
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        if step % log_every == 0 or step == config.steps:
            elapsed = time.time() - t0
            metrics = {k: v / count for k, v in sums.items()}
            history.append({"step": step, **metrics})
            shown = None
            if preview_every and (step % preview_every == 0 or step in (log_every, config.steps)):
                shown = preview(family, model)
                model.train()
            if on_progress:
                on_progress(Progress(step, config.steps, metrics, wall_before + elapsed,
                                     seen / max(elapsed, 1e-9), shown, history))
            sums, count = {}, 0
        if step % checkpoint_every == 0:
            last_good = save(step, wall_before + time.time() - t0)

    wall = wall_before + time.time() - t0
    save(step, wall)
    card = make_card(family, model, config, name=name, steps=step, wall=wall, device=device,
                     command=command, seed=seed, score_samples=score_samples)
    checkpoint.write_json(weights.with_suffix(".json"), card)
    return Result("finished", step, weights, f"Finished {step} steps in {wall:.0f} s.", card, history)


def make_card(family: Family, model, config, *, name, steps, wall, device, command, seed, score_samples) -> dict:
    """Held-out metrics and provenance for a finished checkpoint."""
    model.eval()
    metrics = {}
    train_tensors, info = family.examples(config, "train")
    test_tensors, _ = family.examples(config, "test")
    if family.evaluate:
        metrics.update(family.evaluate(model, *test_tensors))
    if score_samples and family.kind == "image":
        from models.core import evaluate

        samples = last(family.sample(model, score_samples, generator=seeded(seed), **family.score_kwargs))
        metrics["sample_scores"] = evaluate.score(samples, config.dataset)
        if family.score_kwargs:
            metrics["sample_scores"]["sampler"] = family.score_kwargs
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
        "command": command,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> None:
    from models import FAMILIES

    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description="Train a family and write its checkpoint and card.")
    p.add_argument("family", choices=sorted(FAMILIES))
    p.add_argument("--preset", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set latent_dim=16 (JSON values)")
    p.add_argument("--name", help="checkpoint name (default: FAMILY_DATASET)")
    p.add_argument("--out", type=Path, default=SHIPPED)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--score-samples", type=int, default=2000,
                   help="samples the classifier scores for the card (fewer for slow samplers)")
    a = p.parse_args(argv)
    fam = FAMILIES[a.family]
    overrides = {}
    for item in a.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set needs KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    config = fam.config(a.preset, **overrides)
    name = a.name or f"{a.family}_{config.dataset}"

    def show(pr: Progress):
        ms = " ".join(f"{k} {v:.3f}" for k, v in pr.metrics.items())
        print(f"step {pr.step}/{pr.total} {ms} ({pr.images_per_s:.0f} {fam.unit}/s, {pr.elapsed:.0f} s)", flush=True)

    command = "python -m models.train " + " ".join(shlex.quote(s) for s in argv if s != "--resume")
    result = train(fam, config, name=name, out=a.out, resume=a.resume, on_progress=show,
                   log_every=200, checkpoint_every=1000, seed=a.seed, command=command,
                   score_samples=a.score_samples)
    print(result.message)
    if result.card:
        print(json.dumps(result.card["metrics"], indent=2))
    if result.status != "finished":
        sys.exit(1)


if __name__ == "__main__":
    main()
