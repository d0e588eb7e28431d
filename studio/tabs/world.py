"""The World Models tab (Foster 1st ed. ch. 8; Ha & Schmidhuber 2018) on CarRacing-v3: watch the
controller drive with what V and M make of each frame; drive yourself; explore V's 32-d code; let M
dream from a real frame, beside what really happens under the same actions; train V, M and C here.

gymnasium, box2d and pygame are optional: without them the tab says how to install them, the V
explorer and the dream still work from the shipped start frames, and the rest of the studio is
untouched. A visitor's episode (its environment and M's state) lives in their gr.State.
"""
from __future__ import annotations

import functools
import math
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from models.core import ASSETS, RUNS, checkpoint
from models.core.family import built, check_range, seeded
from models.world import SHIPPED, load
from models.world import env as E
from models.world import memory as M
from models.world import vision as V
from studio import jobs, parts, widgets
from studio.widgets import friendly, number, whole

TITLE = "World Models"
PARTS = ("vision", "memory", "controller")
USER = RUNS / "world" / "checkpoints"
START_FRAMES = ASSETS / "world" / "start_frames.npz"
Z_MAX = 3.0  # the z bars and sliders span ±3 (V's prior is N(0, I))
SHOW = 256  # frames are drawn this many pixels square
MAX_DRIVE = 1000
MAX_DREAM = 200
_SLOT = threading.Lock()  # one training run of this tab at a time (the machine has two cores)


# --- checkpoints ---

def choices(part: str) -> list[tuple[str, str]]:
    """(label, name) of every checkpoint of ``part``: shipped, then the visitor's runs."""
    out = []
    for folder, where in ((SHIPPED, "shipped"), (USER, "yours")):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.safetensors")):
            try:
                if checkpoint.read_meta(path).get("family") == f"world_{part}":
                    out.append((f"{path.stem} ({where})", path.stem))
            except ValueError:
                continue
    return out


def default(part: str) -> str | None:
    names = [n for _, n in choices(part)]
    return f"world_{part}" if f"world_{part}" in names else (names[0] if names else None)


def path_of(part: str, name) -> Path:
    if not name:
        raise ValueError(f"Choose a {part} checkpoint first (none is shipped or trained yet).")
    for folder in (SHIPPED, USER):
        p = folder / f"{name}.safetensors"
        if p.exists():
            return p
    raise ValueError(f"No {part} checkpoint named {name!r}.")


@functools.lru_cache(maxsize=12)
def _cached(path: str, mtime: float, part: str):
    return load(path, part)


def model_of(part: str, name):
    p = path_of(part, name)
    return _cached(str(p), p.stat().st_mtime, part)[0]


def card_text(part: str, name) -> str:
    if not name:
        return f"No {part} checkpoint yet: train one below (or run `python -m models.world.pipeline all`)."
    card_path = path_of(part, name).with_suffix(".json")
    if not card_path.exists():
        return f"**{name}**: no card (a run trained in the page, or interrupted)."
    card = widgets.read_card(path_of(part, name))
    m = card.get("metrics", {})
    head = f"**{name}**: {card.get('title', '')}, {card.get('wall_time_s', 0):.0f} s on {card.get('hardware', '?')}"
    if part == "vision" and "mse" in m:
        line = (f"held-out −ELBO {m['neg_elbo_nats']:.0f} nats per frame (reconstruction {m['reconstruction_bce']:.0f}, "
                f"KL {m['kl']:.1f}); reconstruction error {m['mse']:.4f} per pixel (intensities 0-1), "
                f"{m.get('held_out_frames')} held-out frames")
    elif part == "memory" and "nll" in m:
        line = (f"held-out NLL of the next code **{m['nll']:.3f} nats** per dimension vs one Gaussian per dimension "
                f"{m['gaussian_nll']:.3f} and \"next = this + Gaussian noise\" {m['persistence_nll']:.3f} (lower is better)")
    elif part == "controller" and "mean_score" in m:
        line = (f"mean score **{m['mean_score']:.0f}** ± {m['std']:.0f} over {len(m['tracks'])} fixed tracks "
                f"(seeds {m['tracks'][0]}-{m['tracks'][-1]}, full {m['episode_steps']}-frame episodes) vs a random "
                f"policy {m['random_mean']:.0f} and full gas, no steering {m['full_gas_mean']:.0f}")
    else:
        line = "no held-out figures recorded"
    return head + "  \n" + line + (f"  \n{card['note']}" if card.get("note") else "")


def cards(vision, memory, controller) -> str:
    return "\n\n".join(card_text(p, n) for p, n in zip(PARTS, (vision, memory, controller)))


# --- drawing ---

def big(frame: np.ndarray, size: int = SHOW) -> np.ndarray:
    return np.asarray(Image.fromarray(np.asarray(frame, np.uint8)).resize((size, size), Image.NEAREST))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, 64, 64) in [0, 1] -> (64, 64, 3) uint8."""
    return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def z_bars(z, height: int = SHOW, width: int = 160) -> np.ndarray:
    """One horizontal bar per dimension of z, from the centre line, ±3 at the edges."""
    z = np.asarray(z, np.float32).reshape(-1)
    img = np.full((height, width, 3), 255, np.uint8)
    row = height / len(z)
    mid = width // 2
    img[:, mid] = 120
    for i, v in enumerate(z):
        top, bottom = int(i * row + 1), max(int(i * row + 1) + 1, int((i + 1) * row - 1))
        end = int(mid + np.clip(v / Z_MAX, -1, 1) * (mid - 2))
        lo, hi = sorted((mid, end))
        img[top:bottom, lo:hi + 1] = (200, 60, 40) if v > 0 else (40, 90, 200)
    return img


def h_map(h, size: int = SHOW) -> np.ndarray:
    """M's hidden state as a 16×16 picture (blue negative, red positive, white 0)."""
    h = np.asarray(h, np.float32).reshape(-1)
    if h.size == 0:
        return np.full((size, size, 3), 235, np.uint8)
    side = math.ceil(math.sqrt(h.size))
    grid = np.zeros(side * side, np.float32)
    grid[:h.size] = np.clip(h, -1, 1)
    g = grid.reshape(side, side)[..., None]
    rgb = np.where(g > 0, 1 - g * np.array([0.2, 0.8, 0.8]), 1 + g * np.array([0.8, 0.8, 0.2]))
    return big((rgb * 255).astype(np.uint8), size)


def gap(height: int, width: int = 8) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def dashboard(rec, vision) -> np.ndarray:
    """Frame | V's reconstruction | z bars | h."""
    recon = to_uint8(V.decode(vision, rec.z[None])[0])
    return np.concatenate([big(rec.frame), gap(SHOW), big(recon), gap(SHOW), z_bars(rec.z), gap(SHOW),
                           h_map(rec.h)], 1)


def status(rec) -> str:
    a = rec.action
    act = "none yet" if a is None else f"steer {a[0]:+.2f}, gas {a[1]:.2f}, brake {a[2]:.2f}"
    return (f"Frame **{rec.t}**, running reward **{rec.reward:.1f}**; last action: {act}"
            + (" — **episode over**" if rec.done else "") +
            ".  \nLeft to right: the frame, V's reconstruction of it (64×64), z (32 bars, ±3), M's hidden state h (256).")


# --- driving ---

def new_episode(seed, vision, memory, controller):
    from models.world.episode import Episode

    c = model_of("controller", controller) if controller else None
    m = model_of("memory", memory) if memory else None
    return Episode(widgets.seed_of(seed) % 2**31, model_of("vision", vision), m, c)


def _episode(state, seed, vision, memory, controller):
    E.check_available()
    state = state if isinstance(state, dict) else {}
    ep = state.get("episode")
    key = (widgets.seed_of(seed), vision, memory, controller)
    if ep is None or ep.done or state.get("key") != key:
        if ep is not None:
            ep.close()
        ep = new_episode(seed, vision, memory, controller)
        state = {"episode": ep, "key": key}
    return state, ep


@friendly
def drive(state, seed, frames, every, vision, memory, controller):
    """Let the controller drive ``frames`` frames of the visitor's episode, streaming the dashboard."""
    E.check_available()
    n, k = whole(frames, "Frames"), whole(every, "Show every")
    check_range("Frames", n, 1, MAX_DRIVE)
    check_range("Show every", k, 1, 50)
    if not controller:
        raise ValueError("Choose a controller checkpoint first (none is shipped or trained yet).")
    state, ep = _episode(state, seed, vision, memory, controller)
    vis = model_of("vision", vision)
    rec = ep.record()
    yield dashboard(rec, vis), status(rec), state
    for i in range(n):
        if ep.done:
            break
        rec = ep.step()
        if (i + 1) % k == 0 or ep.done or i == n - 1:
            yield dashboard(rec, vis), status(rec), state


@friendly
def step_once(state, seed, vision, memory, controller):
    """One frame of the controller (the Step button)."""
    E.check_available()
    if not controller:
        raise ValueError("Choose a controller checkpoint first (none is shipped or trained yet).")
    state, ep = _episode(state, seed, vision, memory, controller)
    rec = ep.step()
    return dashboard(rec, model_of("vision", vision)), status(rec), state


@friendly
def manual(state, seed, steer, gas, brake, frames, vision, memory, controller):
    """Drive ``frames`` frames with the sliders' action."""
    n = whole(frames, "Frames")
    check_range("Frames", n, 1, 100)
    a = E.check_action([number(steer, "Steer"), number(gas, "Gas"), number(brake, "Brake")])
    state, ep = _episode(state, seed, vision, memory, controller)
    rec = ep.record()
    for _ in range(n):
        if ep.done:
            break
        rec = ep.step(a)
    return dashboard(rec, model_of("vision", vision)), status(rec), state


@friendly
def new_track(state, seed, vision, memory, controller):
    E.check_available()
    state = state if isinstance(state, dict) else {}
    if state.get("episode") is not None:
        state["episode"].close()
    ep = new_episode(seed, vision, memory, controller)
    state = {"episode": ep, "key": (widgets.seed_of(seed), vision, memory, controller)}
    rec = ep.record()
    return dashboard(rec, model_of("vision", vision)), status(rec), state


# --- V explorer ---

def start_frames() -> np.ndarray:
    """The shipped 64×64 start frames (N, 64, 64, 3), for the explorer and dreams without gymnasium."""
    if not START_FRAMES.exists():
        raise ValueError("No shipped start frames (assets/world/start_frames.npz).")
    with np.load(START_FRAMES) as f:
        return f["frames"]


def current_frame(state, shipped_index) -> tuple[np.ndarray, str]:
    ep = state.get("episode") if isinstance(state, dict) else None
    if ep is not None:
        return ep.frame64, f"frame {ep.t} of your episode (track seed {ep.seed})"
    frames = start_frames()
    i = whole(shipped_index, "Shipped frame")
    check_range("Shipped frame", i, 0, len(frames) - 1)
    return frames[i], f"shipped frame {i}"


@friendly
def encode_frame(state, shipped_index, vision):
    frame, where = current_frame(state, shipped_index)
    vis = model_of("vision", vision)
    mu = V.encode(vis, E.to_tensor(frame)[None])[0][0]
    recon = to_uint8(V.decode(vis, mu[None])[0])
    shown = np.concatenate([big(frame), gap(SHOW), big(recon)], 1)
    values = [float(np.clip(round(v, 2), -Z_MAX, Z_MAX)) for v in mu.tolist()]
    return [shown, f"Encoded {where}: left the frame, right V's decoding of its μ. Move the sliders.", *values]


def _z(values) -> torch.Tensor:
    z = [number(v, f"z{i}") for i, v in enumerate(values)]
    for i, v in enumerate(z):
        check_range(f"z{i}", v, -10.0, 10.0)
    return torch.tensor(z, dtype=torch.float32)


@friendly
def decode_sliders(vision, *values):
    vis = model_of("vision", vision)
    z = _z(values)
    if len(z) != vis.latent_dim:
        raise ValueError(f"This V reads {vis.latent_dim} numbers; got {len(z)}.")
    return big(to_uint8(V.decode(vis, z[None])[0]))


@friendly
def traverse(vision, dim, extent, *values):
    vis = model_of("vision", vision)
    z = _z(values)
    d = whole(dim, "Dimension")
    check_range("Dimension", d, 0, vis.latent_dim - 1)
    zs = V.traverse(z, d, number(extent, "Range"), 9)
    frames = V.decode(vis, zs)
    strip = np.concatenate([np.pad(to_uint8(f), ((0, 0), (0, 2), (0, 0)), constant_values=255) for f in frames], 1)
    return np.asarray(Image.fromarray(strip).resize((strip.shape[1] * 2, 128), Image.NEAREST))


# --- dream ---

ACTIONS = ["controller", "straight, gas 0.3", "left, gas 0.2", "right, gas 0.2", "random (seeded)"]


def action_plan(source: str, steps: int, generator: torch.Generator) -> np.ndarray | None:
    """The dream's actions (steps, 3), or None for "the controller decides" (in the dream)."""
    fixed = {"straight, gas 0.3": [0, 0.3, 0], "left, gas 0.2": [-0.6, 0.2, 0], "right, gas 0.2": [0.6, 0.2, 0]}
    if source in fixed:
        return np.tile(np.array(fixed[source], np.float32), (steps, 1))
    if source == "random (seeded)":
        u = torch.rand(steps, 3, generator=generator).numpy()
        return np.stack([2 * u[:, 0] - 1, u[:, 1], 0.2 * u[:, 2]], 1).astype(np.float32)
    if source == "controller":
        return None
    raise ValueError(f"Actions must be one of {ACTIONS}; got {source!r}.")


def dream_rollout(vision, memory, controller, z0, h_state, actions, steps, temperature, generator):
    """Decoded dream frames (steps, 64, 64, 3) and the actions used (steps, 3)."""
    policy = None
    if actions is None:
        if controller is None:
            raise ValueError("Choose a controller checkpoint for controller actions in the dream.")
        policy = lambda z, h: controller(z, h if controller.use_h else None)
    zs, used = [], []
    for s in M.dream(memory, z0, actions, temperature, generator, policy=policy, steps=steps, state=h_state):
        zs.append(s.z), used.append(s.action.numpy())
    return V.decode(vision, torch.stack(zs)), np.stack(used)


def strip_of(frames, every: int) -> np.ndarray:
    pics = [np.pad(f, ((0, 0), (0, 2), (0, 0)), constant_values=255) for f in frames[::every]]
    strip = np.concatenate(pics, 1)
    return np.asarray(Image.fromarray(strip).resize((strip.shape[1] * 2, 128), Image.NEAREST))


@friendly
def dream(seed, warmup, steps, temperature, dream_seed, source, shipped_index, vision, memory, controller):
    """From a real frame (frame ``warmup`` of the track, driven there by the controller or standing
    still), roll M forward ``steps`` steps; then the same actions in the real environment."""
    n = whole(steps, "Dream steps")
    check_range("Dream steps", n, 1, MAX_DREAM)
    w = whole(warmup, "Start frame")
    check_range("Start frame", w, 0, 300)
    tau = number(temperature, "Temperature")
    check_range("Temperature", tau, 0.01, 5.0)
    g = seeded(widgets.seed_of(dream_seed))
    vis, mem = model_of("vision", vision), model_of("memory", memory)
    ctl = model_of("controller", controller) if controller else None
    actions = action_plan(str(source), n, g)
    real_available = not E.missing()
    if real_available:
        from models.world.episode import Episode

        ep = Episode(widgets.seed_of(seed) % 2**31, vis, mem, ctl)
        for _ in range(w):  # get to the start frame the way the controller would (or rolling with no input)
            ep.step(None if ctl is not None else np.zeros(3, np.float32))
        z0, start, h_state = ep.z, ep.frame64, ep.tracker.state
        where = f"frame {w} of track {ep.seed}"
    else:
        start = start_frames()[min(max(whole(shipped_index, "Shipped frame"), 0), len(start_frames()) - 1)]
        z0, h_state, ep = V.encode(vis, E.to_tensor(start)[None])[0][0], None, None
        where = "a shipped frame (gymnasium is not installed, so no real side)"
    dreamt, used = dream_rollout(vis, mem, ctl, z0, h_state, actions, n, tau, g)
    dream_frames = [to_uint8(f) for f in dreamt]
    real_frames, real_score = [], None
    if ep is not None:
        t0 = ep.total
        for a in used:
            if ep.done:
                break
            real_frames.append(ep.step(a).frame64)
        real_score = ep.total - t0
        ep.close()
    every = max(1, n // 10)
    dream_strip = strip_of([start] + dream_frames, every)
    real_strip = strip_of([start] + real_frames, every) if real_frames else np.full((128, 128, 3), 235, np.uint8)
    record = parts.provenance("world_memory", memory, widgets.seed_of(dream_seed), track=widgets.seed_of(seed),
                              start_frame=w, steps=n, temperature=tau, actions=str(source), vision=vision,
                              controller=controller)
    pairs = [np.concatenate([big(d, 192), gap(192), big(r, 192)], 1) for d, r in
             zip(dream_frames, real_frames or dream_frames)]
    gif = widgets.save_gif(pairs, f"dream_seed{widgets.seed_of(dream_seed)}_t{tau:g}.gif", ms=80,
                           comment=str(record))
    caption = (f"Dream from {where}: {n} steps of M at temperature {tau:g} (dream seed {widgets.seed_of(dream_seed)}), "
               f"actions: {source}; every {every}th frame shown, the start frame first. "
               + (f"The real environment under the same actions collected {real_score:.1f} reward." if real_score is not None
                  else "") + " The GIF puts dream (left) and reality (right) side by side.")
    return dream_strip, real_strip, gif, caption, record


# --- training ---

def run_path(name: str, part: str) -> Path:
    from models.core.train import check_name

    name = (name or "").strip()
    check_name(name)
    return USER / f"{name}_{part}.safetensors"


def rollouts_path(name: str) -> Path:
    return RUNS / "world" / "user" / f"{(name or '').strip()}_rollouts.npz"


def _claim_slot():
    job = jobs.JOBS.current
    if job is not None and job.running:
        raise ValueError(job.busy_message())
    if not _SLOT.acquire(blocking=False):
        raise ValueError("The training slot is busy: another World Models run is in progress. Wait for it to finish.")


def curve_plot(history, keys):
    return widgets.curves_figure(history, keys)


@friendly
def collect_rollouts(name, episodes, steps, seed):
    """Random and lane-keeping rollouts for V and M: frames and actions, saved under your run name."""
    n, t = whole(episodes, "Episodes"), whole(steps, "Frames per episode")
    check_range("Episodes", n, 1, 50)
    check_range("Frames per episode", t, 10, E.MAX_STEPS)
    s = widgets.seed_of(seed)
    run_path(name, "vision")  # checks the name
    E.check_available()
    _claim_slot()
    try:
        yield f"Collecting {n} episodes of {t} frames…", None
        rng = np.random.default_rng(s)
        env = E.make()
        frames, actions, episodes_ = [], [], []
        try:
            for i in range(n):
                policy = E.RandomPolicy(rng) if i % 2 == 0 else E.LaneKeeper(noise=0.25, rng=rng)
                r = E.rollout(policy, s % 2**31 + i, t, env=env)
                frames.append(r.frames), actions.append(r.actions), episodes_.append(np.full(len(r.actions), i))
                yield f"Episode {i + 1}/{n} ({'random' if i % 2 == 0 else 'lane keeper'}): {len(r.actions)} frames, score {r.score:.1f}", None
        finally:
            env.close()
        out = rollouts_path(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, frames=np.concatenate(frames), actions=np.concatenate(actions),
                 episodes=np.concatenate(episodes_))
        yield (f"Saved {sum(len(f) for f in frames)} frames as rollouts **{name}**: frames "
               f"{np.concatenate(frames).shape} uint8, actions {np.concatenate(actions).shape}."), None
    finally:
        _SLOT.release()


def _rollouts(name: str):
    p = rollouts_path(name)
    if not p.exists():
        shared = RUNS / "world" / "rollouts.npz"
        if not shared.exists():
            raise ValueError(f"No rollouts named {name!r}: collect some first (Collect rollouts).")
        p = shared
    with np.load(p) as f:
        return f["frames"], f["actions"], f["episodes"]


def left(t0: float, done: int, total: int) -> str:
    """", about 2 min 10 s left" at the speed so far (the World runs stream their own status)."""
    return f", about {jobs.clock((time.time() - t0) / done * (total - done))} left" if 0 < done < total else ""


def _save_user(path: Path, part: str, model, config, history, **extra):
    from models.world import save

    save(path, part, model, config, history=history[-500:], **extra)


@friendly
def train_vision(name, steps, lr, resume, seed):
    """Train V on your rollouts (or the pipeline's), streaming the loss; Cancel keeps the checkpoint."""
    n = whole(steps, "Steps")
    check_range("Steps", n, 1, 20_000)
    rate = number(lr, "Learning rate")
    path = run_path(name, "vision")
    frames, _, _ = _rollouts(name)
    _claim_slot()
    try:
        g = seeded(widgets.seed_of(seed))
        if resume and path.exists():
            model, cfg, meta = load(path, "vision")
            history = meta.get("history", [])
        elif resume:
            raise ValueError(f"No V run of yours named {name!r} to resume.")
        else:
            cfg = V.VisionConfig(channels=(16, 32, 64, 128), lr=rate)
            cfg.validate()
            model = built(V.build, cfg, seed=widgets.seed_of(seed))
            history = []
        cfg.lr = rate
        cfg.validate()
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)
        opt = torch.optim.Adam(model.parameters(), lr=rate)
        start = history[-1]["step"] if history else 0
        yield f"Training V from step {start} on {len(x)} frames…", None
        model.train()
        t0 = time.time()
        try:
            for i in range(n):
                idx = torch.randint(len(x), (cfg.batch_size,), generator=g)
                m = V.loss(model, x[idx].float() / 255, generator=g)
                opt.zero_grad()
                m["loss"].backward()
                opt.step()
                history.append({"step": start + i + 1, **{k: v.item() for k, v in m.items()}})
                if (i + 1) % 5 == 0 or i == n - 1:
                    yield (f"V step {start + i + 1} ({i + 1}/{n}), loss {m['loss'].item():.1f}, "
                           f"{(i + 1) * cfg.batch_size / (time.time() - t0):.0f} frames/s{left(t0, i + 1, n)}",
                           curve_plot(history, ["loss", "kl"]))
        finally:
            model.eval()
            _save_user(path, "vision", model, cfg, history)
        yield f"Saved **{path.stem}** at step {history[-1]['step']}: pick it in the V checkpoint list.", curve_plot(history, ["loss", "kl"])
    finally:
        _SLOT.release()


@friendly
def train_memory(name, steps, lr, resume, seed, vision):
    """Train M on your rollouts encoded by the chosen V, streaming the NLL."""
    n = whole(steps, "Steps")
    check_range("Steps", n, 1, 20_000)
    rate = number(lr, "Learning rate")
    path = run_path(name, "memory")
    frames, actions, episodes = _rollouts(name)
    vis = model_of("vision", vision)
    _claim_slot()
    try:
        g = seeded(widgets.seed_of(seed))
        if resume and path.exists():
            model, cfg, meta = load(path, "memory")
            history = meta.get("history", [])
        elif resume:
            raise ValueError(f"No M run of yours named {name!r} to resume.")
        else:
            cfg = M.MemoryConfig(latent_dim=vis.latent_dim, lr=rate)
            model = built(M.build, cfg, seed=widgets.seed_of(seed))
            history = []
        if cfg.latent_dim != vis.latent_dim:
            raise ValueError(f"This M reads {cfg.latent_dim}-d codes but V makes {vis.latent_dim}-d ones.")
        cfg.lr = rate
        cfg.validate()
        yield "Encoding the rollouts with V…", None
        mus, sigmas = [], []
        for i in range(0, len(frames), 256):
            mu, sigma = V.encode(vis, E.to_tensor(frames[i:i + 256]))
            mus.append(mu), sigmas.append(sigma)
        mu, sigma = torch.cat(mus), torch.cat(sigmas)
        starts = M.window_starts(torch.from_numpy(episodes), cfg.seq_len)
        if len(starts) == 0:
            raise ValueError(f"No episode of these rollouts is {cfg.seq_len} frames long: collect longer episodes.")
        opt = torch.optim.Adam(model.parameters(), lr=rate)
        a = torch.from_numpy(actions).float()
        start = history[-1]["step"] if history else 0
        model.train()
        t0 = time.time()
        try:
            for i in range(n):
                pick = starts[torch.randint(len(starts), (cfg.batch_size,), generator=g)]
                z, acts = M.windows(mu, sigma, a, pick, cfg.seq_len, g)
                m = M.loss(model, z, acts)
                opt.zero_grad()
                m["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                history.append({"step": start + i + 1, "nll": m["loss"].item()})
                if (i + 1) % 2 == 0 or i == n - 1:
                    yield (f"M step {start + i + 1} ({i + 1}/{n}), NLL {m['loss'].item():.3f} nats per dimension"
                           f"{left(t0, i + 1, n)}", curve_plot(history, ["nll"]))
        finally:
            model.eval()
            _save_user(path, "memory", model, cfg, history)
        yield f"Saved **{path.stem}** at step {history[-1]['step']}: pick it in the M checkpoint list.", curve_plot(history, ["nll"])
    finally:
        _SLOT.release()


@friendly
def train_controller(name, population, generations, rollouts, episode_steps, use_h, resume, seed, vision, memory):
    """CMA-ES for C in the real environment, streaming the score per generation; the global torch and
    numpy RNGs (which cma and the environment touch) are given back when the run ends."""
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    try:
        yield from _train_controller(name, population, generations, rollouts, episode_steps, use_h, resume, seed,
                                     vision, memory)
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)


def _train_controller(name, population, generations, rollouts, episode_steps, use_h, resume, seed, vision, memory):
    from models.world import controller as C

    cfg = C.ControllerConfig(use_h=bool(use_h), population=whole(population, "Population"),
                             generations=whole(generations, "Generations"), rollouts=whole(rollouts, "Rollouts"),
                             steps=whole(episode_steps, "Episode frames"))
    cfg.validate()
    path = run_path(name, "controller")
    vis = model_of("vision", vision)
    mem = model_of("memory", memory) if memory else None
    if cfg.use_h and mem is None:
        raise ValueError("A controller that reads h needs an M checkpoint: choose one, or untick 'reads h'.")
    cfg.latent_dim, cfg.hidden = vis.latent_dim, (mem.hidden if mem is not None else cfg.hidden)
    E.check_available()
    _claim_slot()
    try:
        if resume and path.exists():
            model, old, meta = load(path, "controller")
            if (old.use_h, old.latent_dim) != (cfg.use_h, cfg.latent_dim):
                raise ValueError("Your run reads other inputs than these settings: resume it with its own 'reads h'.")
            history = meta.get("history", [])
        elif resume:
            raise ValueError(f"No C run of yours named {name!r} to resume.")
        else:
            model, history = C.build(cfg), []
        start = history[-1]["generation"] if history else 0
        yield f"CMA-ES from generation {start}: {cfg.population} candidates × {cfg.rollouts} tracks per generation…", None
        t0 = time.time()
        try:
            for gen in C.cma_search(model, vis, mem, cfg, seed=widgets.seed_of(seed) % 1000, start_generation=start):
                history.append({"step": gen.generation, "generation": gen.generation, "best": gen.best, "mean": gen.mean})
                _save_user(path, "controller", model, cfg, history)
                yield (f"Generation {gen.generation}: best {gen.best:.1f}, mean {gen.mean:.1f} ({gen.seconds:.0f} s"
                       f"{left(t0, gen.generation - start, cfg.generations)})",
                       curve_plot(history, ["best", "mean"]))
        finally:
            _save_user(path, "controller", model, cfg, history)
        yield f"Saved **{path.stem}** after generation {start + cfg.generations}: pick it in the C list.", curve_plot(history, ["best", "mean"])
    finally:
        _SLOT.release()


# --- layout ---

def build(page: parts.Page) -> None:
    hint = E.install_hint()
    gr.Markdown("## World Models: a car that learns to drive from what it sees\n"
                "V (a conv VAE) squeezes each 64×64 frame of CarRacing into a 32-d code z; M (an MDN-RNN, LSTM "
                "256, 5 Gaussians per dimension) predicts the next z from z and the action and can dream; C (one "
                "linear layer, trained by CMA-ES) drives from z (and M's h). Foster 1st ed. ch. 8.")
    if hint:
        gr.Markdown(f"**{hint}** Until then the V explorer and the dream work from shipped frames.",
                    label="Install note")
    state = parts.visitor_state({})
    with gr.Row():
        vision = gr.Dropdown(choices("vision"), value=default("vision"), label="V (vision)")
        memory = gr.Dropdown(choices("memory"), value=default("memory"), label="M (memory)")
        controller = gr.Dropdown(choices("controller"), value=default("controller"), label="C (controller)")
        refresh = gr.Button("Refresh lists", scale=0)
    card = gr.Markdown(cards(default("vision"), default("memory"), default("controller")), label="Cards")
    models_ = [vision, memory, controller]

    with gr.Accordion("Drive it: the controller drives a real episode", open=True):
        with gr.Row():
            seed = gr.Number(value=1000, precision=None, label="Track seed")
            frames = gr.Slider(1, MAX_DRIVE, value=200, step=1, label="Frames")
            every = gr.Slider(1, 50, value=4, step=1, label="Show every")
        with gr.Row():
            go = gr.Button("Drive", variant="primary")
            pause = gr.Button("Pause")
            step_b = gr.Button("Step")
            reset = gr.Button("New episode")
        board = gr.Image(label="Frame | reconstruction | z | h", format="png", interactive=False)
        info = gr.Markdown(label="Episode")
        with gr.Row():
            steer = gr.Slider(-1, 1, value=0, step=0.05, label="Steer")
            gas = gr.Slider(0, 1, value=0.3, step=0.05, label="Gas")
            brake = gr.Slider(0, 1, value=0, step=0.05, label="Brake")
            manual_frames = gr.Slider(1, 100, value=10, step=1, label="Frames per press")
            manual_b = gr.Button("Drive with the sliders")

    with gr.Accordion("V explorer: a frame's code, by hand", open=False):
        with gr.Row():
            shipped = gr.Slider(0, 7, value=0, step=1, label="Shipped frame (when you have no episode)")
            encode_b = gr.Button("Encode the current frame", variant="primary")
        encoded = gr.Image(label="Frame and V's decoding", format="png", interactive=False)
        encoded_note = gr.Markdown(label="Encoded")
        sliders = []
        for r in range(4):
            with gr.Row():
                for c in range(8):
                    sliders.append(gr.Slider(-Z_MAX, Z_MAX, value=0, step=0.05, label=f"z{r * 8 + c}", min_width=90))
        decoded = gr.Image(label="Decoded from the sliders", format="png", interactive=False)
        with gr.Row():
            dim = gr.Slider(0, 31, value=0, step=1, label="Traverse dimension")
            extent = gr.Slider(0.5, 6, value=3, step=0.5, label="Range (±)")
            trav_b = gr.Button("Traverse")
        trav = gr.Image(label="Traversal: the dimension from −range to +range", format="png", interactive=False)

    with gr.Accordion("Dream: M rolls the world forward from a real frame", open=False):
        with gr.Row():
            d_seed = gr.Number(value=1000, precision=None, label="Track seed (real start)")
            warm = gr.Slider(0, 300, value=60, step=1, label="Start frame")
            d_steps = gr.Slider(1, MAX_DREAM, value=40, step=1, label="Dream steps")
            tau = gr.Slider(0.1, 3.0, value=1.0, step=0.05, label="Temperature")
            d_noise = gr.Number(value=0, precision=None, label="Dream seed")
            source = gr.Dropdown(ACTIONS, value="controller", label="Actions")
        dream_b = gr.Button("Dream", variant="primary")
        dream_strip = gr.Image(label="Dream (decoded z from M)", format="png", interactive=False)
        real_strip = gr.Image(label="Reality (same actions in the environment)", format="png", interactive=False)
        with gr.Row():
            gif = gr.File(label="Dream | reality GIF", interactive=False)
            dream_note = gr.Markdown(label="Dream caption")
        record = gr.JSON(label="Provenance")

    with gr.Accordion("Train V, M and C here", open=False):
        gr.Markdown("One run at a time. Collect rollouts, then train V on their frames, M on V's codes, and C by "
                    "CMA-ES in the real environment. Cancel keeps the checkpoint at the current step; tick "
                    "*Resume* to continue a run of the same name.")
        with gr.Row():
            run_name = gr.Textbox(value="my_world", label="Run name")
            t_seed = gr.Number(value=0, precision=None, label="Training seed")
            resume = gr.Checkbox(value=False, label="Resume my run of this name")
            cancel = gr.Button("Cancel", variant="stop")
        with gr.Row():
            n_eps = gr.Slider(1, 50, value=6, step=1, label="Episodes")
            n_frames = gr.Slider(10, E.MAX_STEPS, value=300, step=10, label="Frames per episode")
            collect_b = gr.Button("Collect rollouts")
        with gr.Row():
            v_steps = gr.Slider(1, 20_000, value=300, step=1, label="V steps")
            v_lr = gr.Number(value=1e-3, label="V learning rate")
            v_b = gr.Button("Train V")
            m_steps = gr.Slider(1, 20_000, value=300, step=1, label="M steps")
            m_lr = gr.Number(value=1e-3, label="M learning rate")
            m_b = gr.Button("Train M")
        with gr.Row():
            pop = gr.Slider(2, 64, value=8, step=1, label="Population")
            gens = gr.Slider(1, 500, value=10, step=1, label="Generations")
            rolls = gr.Slider(1, 16, value=1, step=1, label="Rollouts")
            ep_steps = gr.Slider(10, E.MAX_STEPS, value=250, step=10, label="Episode frames")
            reads_h = gr.Checkbox(value=False, label="C reads h (M's state)")
            c_b = gr.Button("Train C")
        t_status = gr.Markdown(label="Training status")
        t_curves = gr.Plot(label="Training curves", show_label=False)

    refresh.click(lambda v, m, c: [gr.update(choices=choices(p), value=x) for p, x in zip(PARTS, (v, m, c))],
                  models_, models_, api_name=False)
    for dd in models_:
        dd.change(friendly(cards), models_, card, api_name=False)
    ep_out = [board, info, state]
    ev = page.action(go.click, drive, [state, seed, frames, every, *models_], ep_out, api_name="world_drive",
                     names=["state", "track_seed", "frames", "show_every", "vision", "memory", "controller"],
                     show_progress_on=[info])
    pause.click(None, None, None, cancels=[ev], api_name=False)
    page.action(step_b.click, step_once, [state, seed, *models_], ep_out, api_name="world_step",
                names=["state", "track_seed", "vision", "memory", "controller"])
    page.action(reset.click, new_track, [state, seed, *models_], ep_out, api_name="world_new_episode",
                names=["state", "track_seed", "vision", "memory", "controller"])
    page.action(manual_b.click, manual, [state, seed, steer, gas, brake, manual_frames, *models_], ep_out,
                api_name="world_manual", names=["state", "track_seed", "steer", "gas", "brake", "frames", "vision",
                                                "memory", "controller"])
    page.action(encode_b.click, encode_frame, [state, shipped, vision], [encoded, encoded_note, *sliders],
                api_name="world_encode", names=["state", "shipped_frame", "vision"])
    z_names = [f"z{i}" for i in range(32)]
    page.action(functools.partial(gr.on, [s.release for s in sliders]), decode_sliders, [vision, *sliders], decoded, api_name="world_decode",
                names=["vision", *z_names])
    page.action(trav_b.click, traverse, [vision, dim, extent, *sliders], trav, api_name="world_traverse",
                names=["vision", "dimension", "range", *z_names])
    page.action(dream_b.click, dream, [d_seed, warm, d_steps, tau, d_noise, source, shipped, *models_],
                [dream_strip, real_strip, gif, dream_note, record], api_name="world_dream",
                names=["track_seed", "start_frame", "dream_steps", "temperature", "dream_seed", "actions",
                       "shipped_frame", "vision", "memory", "controller"], heavy=True)
    t_out = [t_status, t_curves]
    runs = [page.action(collect_b.click, collect_rollouts, [run_name, n_eps, n_frames, t_seed], t_out,
                        api_name="world_collect_train", names=["run_name", "episodes", "frames", "seed"],
                        show_progress_on=[t_status]),
            page.action(v_b.click, train_vision, [run_name, v_steps, v_lr, resume, t_seed], t_out,
                        api_name="world_vision_train", names=["run_name", "steps", "lr", "resume", "seed"],
                        show_progress_on=[t_status]),
            page.action(m_b.click, train_memory, [run_name, m_steps, m_lr, resume, t_seed, vision], t_out,
                        api_name="world_memory_train", names=["run_name", "steps", "lr", "resume", "seed", "vision"],
                        show_progress_on=[t_status]),
            page.action(c_b.click, train_controller, [run_name, pop, gens, rolls, ep_steps, reads_h, resume, t_seed,
                                                      vision, memory], t_out,
                        api_name="world_controller_train",
                        names=["run_name", "population", "generations", "rollouts", "episode_frames", "reads_h",
                               "resume", "seed", "vision", "memory"], show_progress_on=[t_status])]
    cancel.click(lambda: "Cancelled: the checkpoint at the current step is kept.", None, t_status, cancels=runs,
                 api_name=False)
