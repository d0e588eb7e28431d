"""The World Models pipeline on one CPU thread, each stage resumable:

    python -m models.world.pipeline collect | vision | memory | controller | refine | all [--deadline HH:MM]

collect: random and lane-keeping rollouts -> runs/world/rollouts.npz; vision: V on their frames;
memory: encode every frame with V, then M on the codes; controller: C fitted to the lane keeper's
actions, then CMA-ES in the real environment until the deadline, then scored on full episodes of
the 10 fixed tracks beside a random policy and full gas; refine: CMA-ES continued from the shipped C on
full episodes, choosing by validation tracks (see :func:`refine_controller`). Shipped checkpoints and cards go to
assets/checkpoints/world_*.{safetensors,json}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.core import RUNS, checkpoint
from models.world import NAMES, SHIPPED, load, save
from models.world import controller as C
from models.world import env as E
from models.world import memory as M
from models.world import vision as V

WORK = RUNS / "world"
HELD_OUT = 3  # the last episodes of each kind are held out for V's and M's cards
VALID_SEEDS = tuple(range(2000, 2006))  # tracks that choose among search means (never the card's EVAL_SEEDS)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def hardware() -> str:
    return "CPU, 1 thread of a shared 2-core machine"


def collect(random_episodes=4, random_steps=250, teacher_episodes=10, teacher_steps=500, seed=0) -> Path:
    """Frames, applied actions, the lane keeper's own (noise-free) action and episode ids."""
    out = WORK / "rollouts.npz"
    if out.exists():
        return out
    env = E.make()
    frames, actions, labels, episodes, kinds, t0 = [], [], [], [], [], time.time()
    rng = np.random.default_rng(seed)
    plan = [("random", random_steps)] * random_episodes + [("teacher", teacher_steps)] * teacher_episodes
    for i, (kind, steps) in enumerate(plan):
        if kind == "random":
            policy, label = E.RandomPolicy(rng), None
        else:
            teacher = E.LaneKeeper(noise=0.0)
            noise = 0.25

            def policy(f, teacher=teacher, noise=noise):
                clean = teacher(f)
                policy.clean.append(clean)
                a = clean.copy()
                a[0] = np.clip(a[0] + rng.normal(0, noise), -1, 1)
                return a
            policy.clean = []
        r = E.rollout(policy, seed * 1000 + i, steps, env=env)
        frames.append(r.frames), actions.append(r.actions), episodes.append(np.full(len(r.actions), i))
        kinds.append(np.full(len(r.actions), kind == "teacher"))
        labels.append(np.stack(policy.clean) if kind == "teacher" else np.full_like(r.actions, np.nan))
        log(f"rollout {i + 1}/{len(plan)} {kind}: {len(r.actions)} frames, score {r.score:.1f}")
    env.close()
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(out, frames=np.concatenate(frames), actions=np.concatenate(actions), labels=np.concatenate(labels),
             episodes=np.concatenate(episodes), teacher=np.concatenate(kinds), seconds=time.time() - t0)
    log(f"collected {sum(len(f) for f in frames)} frames in {time.time() - t0:.0f} s")
    return out


def split(data) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, held-out): the last episode of each kind is held out."""
    ep, teach = data["episodes"], data["teacher"]
    held = np.zeros(len(ep), bool)
    for kind in (False, True):
        eps = np.unique(ep[teach == kind])
        for e in eps[-(1 if kind is False else 2):]:
            held |= ep == e
    return ~held, held


def write_card(name: str, card: dict) -> None:
    checkpoint.write_json(SHIPPED / f"{name}.json", {"name": name, **card})


def train_vision(preset="cpu", seed=0) -> Path:
    path = SHIPPED / f"{NAMES['vision']}.safetensors"
    if path.exists():
        return path
    data = np.load(WORK / "rollouts.npz")
    train, held = split(data)
    frames = torch.from_numpy(data["frames"]).permute(0, 3, 1, 2).contiguous()  # (N, 3, 64, 64) uint8
    config = {"cpu": dict(channels=(16, 32, 64, 128), epochs=8)}[preset]
    cfg = V.VisionConfig(**config)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = V.build(cfg)
    t0 = time.time()
    curve = V.train(model, frames[torch.from_numpy(train)], cfg, g,
                    on_step=lambda s, n, m: s % 20 == 0 and log(f"V step {s}/{n} loss {m['loss']:.1f} "
                                                                    f"kl {m['kl']:.1f}"))
    wall = time.time() - t0
    metrics = V.evaluate(model, frames[torch.from_numpy(held)].float() / 255)
    metrics["held_out_frames"] = int(held.sum())
    log("V held-out", metrics)
    save(path, "vision", model, cfg, curve=curve[::5])
    write_card(NAMES["vision"], {
        "family": "world_vision", "title": "World Models V (convolutional VAE)",
        "data": {"title": "CarRacing-v3 frames, 64×64 (dashboard cropped)", "train_frames": int(train.sum()),
                 "held_out_frames": int(held.sum()),
                 "rollouts": "random-action episodes and noisy lane-keeping episodes (seeds 0-13)"},
        "config": {**cfg.__dict__, "channels": list(cfg.channels)}, "steps": len(curve), "wall_time_s": round(wall, 1),
        "hardware": hardware(), "metrics": metrics, "seed": seed,
        "command": "OMP_NUM_THREADS=1 python -m models.world.pipeline vision",
        "note": "half the paper's conv widths (16-128 instead of 32-256) for CPU; cross-entropy instead of squared error"})
    return path


def encode_all(vision) -> dict:
    out = WORK / "codes.safetensors"
    if out.exists():
        t, _ = checkpoint.load_tensors(out)
        return t
    data = np.load(WORK / "rollouts.npz")
    mus, sigmas = [], []
    for i in range(0, len(data["frames"]), 256):
        mu, sigma = V.encode(vision, E.to_tensor(data["frames"][i:i + 256]))
        mus.append(mu), sigmas.append(sigma)
    t = {"mu": torch.cat(mus), "sigma": torch.cat(sigmas)}
    checkpoint.save_tensors(out, t)
    return t


def train_memory(seed=0) -> Path:
    path = SHIPPED / f"{NAMES['memory']}.safetensors"
    if path.exists():
        return path
    vision, _, _ = load(SHIPPED / f"{NAMES['vision']}.safetensors", "vision")
    codes = encode_all(vision)
    data = np.load(WORK / "rollouts.npz")
    train, held = split(data)
    actions = torch.from_numpy(data["actions"]).float()
    episodes = torch.from_numpy(data["episodes"])
    tr, he = torch.from_numpy(train), torch.from_numpy(held)
    cfg = M.MemoryConfig(epochs=25)
    torch.manual_seed(seed)
    model = M.build(cfg)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    curve = M.train(model, codes["mu"][tr], codes["sigma"][tr], actions[tr], episodes[tr], cfg, g,
                    on_step=lambda s, n, m: s % 20 == 0 and log(f"M step {s}/{n} nll {m['loss']:.3f}"))
    wall = time.time() - t0
    metrics = M.evaluate(model, codes["mu"][he], actions[he], episodes[he], train_mu=codes["mu"][tr])
    log("M held-out", metrics)
    save(path, "memory", model, cfg, curve=curve[::5])
    write_card(NAMES["memory"], {
        "family": "world_memory", "title": "World Models M (MDN-RNN)",
        "data": {"title": "V's codes of the CarRacing rollouts", "train_steps": int(train.sum()),
                 "held_out_steps": int(held.sum())},
        "config": cfg.__dict__, "steps": len(curve), "wall_time_s": round(wall, 1), "hardware": hardware(),
        "metrics": metrics, "seed": seed, "command": "OMP_NUM_THREADS=1 python -m models.world.pipeline memory",
        "note": "the paper's sizes (LSTM 256, 5 Gaussians per dimension); no reward or done head"})
    return path


def deadline_passed(deadline: str | None) -> bool:
    if not deadline:
        return False
    now = dt.datetime.now(dt.timezone.utc)
    h, m = map(int, deadline.split(":"))
    return (now.hour, now.minute) >= (h, m)


def train_controller(deadline: str | None, seed=0, generations=200) -> Path:
    path = SHIPPED / f"{NAMES['controller']}.safetensors"
    if path.exists():
        return path
    vision, _, _ = load(SHIPPED / f"{NAMES['vision']}.safetensors", "vision")
    memory, _, _ = load(SHIPPED / f"{NAMES['memory']}.safetensors", "memory")
    cfg = C.ControllerConfig(use_h=False, population=8, generations=generations, steps=250, sigma=0.05, patience=50)
    model = C.build(cfg)
    search = WORK / "controller_search.safetensors"
    history, start, t_search = [], 0, 0.0
    if search.exists():
        t, meta = checkpoint.load_tensors(search)
        C.set_vector(model, t["x"].numpy())
        history, start, t_search = meta["history"], meta["generation"], meta["seconds"]
        log(f"resuming the search at generation {start}")
    else:
        codes = encode_all(vision)
        data = np.load(WORK / "rollouts.npz")
        teach = data["teacher"]
        C.fit_actions(model, codes["mu"][torch.from_numpy(teach)].numpy(), data["labels"][teach])
        checkpoint.save_tensors(WORK / "controller_start.safetensors", {"x": torch.from_numpy(C.get_vector(model))})
        checkpoint.save_tensors(search, {"x": torch.from_numpy(C.get_vector(model))}, history=[], generation=0, seconds=0.0)
    env = E.make()
    for gen in C.cma_search(model, vision, memory, cfg, seed=seed, env=env, start_generation=start,
                            should_stop=lambda: deadline_passed(deadline)):
        t_search += gen.seconds
        history.append({"generation": gen.generation, "best": gen.best, "mean": gen.mean, "seconds": round(gen.seconds, 1)})
        checkpoint.save_tensors(search, {"x": torch.from_numpy(C.get_vector(model))}, history=history,
                                generation=gen.generation, seconds=t_search)
        log(f"C generation {gen.generation}: best {gen.best:.1f} mean {gen.mean:.1f} ({gen.seconds:.0f} s)")
    metrics = score_card(model, vision, memory, env)
    env.close()
    save(path, "controller", model, cfg, history=history)
    write_card(NAMES["controller"], {
        "family": "world_controller", "title": "World Models C (linear controller, CMA-ES)",
        "data": {"title": "CarRacing-v3, real environment", "search_tracks": "seeds 0, 1, 2, ... (one per generation)",
                 "score_tracks": list(E.EVAL_SEEDS)},
        "config": cfg.__dict__, "steps": len(history), "generations": len(history), "wall_time_s": round(t_search, 1),
        "hardware": hardware(), "metrics": metrics, "seed": seed,
        "command": "OMP_NUM_THREADS=1 python -m models.world.pipeline controller --deadline HH:MM",
        "note": ("reads z alone (the paper's 'V only' variant); starts from a least-squares fit to a lane-keeping "
                 "driver's actions; search episodes of 250 frames stopped after 50 frames without a new tile; "
                 "population 8, one track per generation")})
    return path


def score_card(model, vision, memory, env) -> dict:
    """C's card metrics: its scores on the fixed tracks beside the random and full-gas baselines."""
    log("scoring C on the fixed tracks")
    t0 = time.time()
    driven = E.scores(lambda s: C.Driver(model, vision, memory), env=env)
    eval_s = time.time() - t0
    base_path = WORK / "baselines.json"
    base = json.loads(base_path.read_text()) if base_path.exists() else E.baselines()
    metrics = {"mean_score": float(np.mean(driven)), "scores": driven, "std": float(np.std(driven)),
               "random_mean": base["random_mean"], "random_scores": base["random"],
               "full_gas_mean": base["full_gas_mean"], "full_gas_scores": base["full_gas"],
               "tracks": list(E.EVAL_SEEDS), "episode_steps": E.MAX_STEPS, "eval_seconds": round(eval_s, 1)}
    log("C", metrics)
    return metrics


REFINED = "; then refined"  # where a refined card's note continues: a second refine replaces that part


def refine_controller(deadline: str | None, seed=1, population=12, rollouts=2, sigma=0.03, check_every=3) -> Path:
    """CMA-ES continued from the shipped C on full 1,000-frame episodes (the first search's 250-frame
    ones reward a fast start more than finishing the lap). Every ``check_every`` generations the search
    mean drives :data:`VALID_SEEDS`; the best mean on them is kept, so the card's tracks are scored once,
    at the end. Resumable from runs/world/controller_refine.safetensors."""
    path = SHIPPED / f"{NAMES['controller']}.safetensors"
    vision, _, _ = load(SHIPPED / f"{NAMES['vision']}.safetensors", "vision")
    memory, _, _ = load(SHIPPED / f"{NAMES['memory']}.safetensors", "memory")
    model, old_cfg, old_meta = load(path, "controller")
    cfg = C.ControllerConfig(**{**old_cfg.__dict__, "population": population, "rollouts": rollouts,
                                "steps": E.MAX_STEPS, "sigma": sigma, "generations": 10_000})
    work = WORK / "controller_refine.safetensors"
    env = E.make()
    valid = lambda m: float(np.mean(E.scores(lambda s: C.Driver(m, vision, memory), seeds=VALID_SEEDS, env=env)))
    if work.exists():
        t, meta = checkpoint.load_tensors(work)
        C.set_vector(model, t["x"].numpy())
        best_x, best, start, t_search, history = t["best"].numpy(), meta["best"], meta["generation"], meta["seconds"], meta["history"]
        kept = meta.get("kept", start)
        log(f"resuming the refinement at generation {start} (best on the validation tracks {best:.1f})")
    else:
        history, start, t_search = list(old_meta.get("history", [])), len(old_meta.get("history", [])), 0.0
        best_x, best, kept = C.get_vector(model), valid(model), start
        log(f"shipped C on the validation tracks: {best:.1f}")
    first = start
    for gen in C.cma_search(model, vision, memory, cfg, seed=seed, env=env, start_generation=start,
                            should_stop=lambda: deadline_passed(deadline)):
        t_search += gen.seconds
        entry = {"generation": gen.generation, "best": gen.best, "mean": gen.mean, "seconds": round(gen.seconds, 1)}
        if (gen.generation - first) % check_every == 0:
            entry["valid"] = v = valid(model)
            if v > best:
                best_x, best, kept = C.get_vector(model), v, gen.generation
        history.append(entry)
        checkpoint.save_tensors(work, {"x": torch.from_numpy(C.get_vector(model)), "best": torch.from_numpy(best_x)},
                                history=history, generation=gen.generation, seconds=t_search, best=best, kept=kept)
        log(f"C generation {gen.generation}: best {gen.best:.1f} mean {gen.mean:.1f} "
            f"valid {entry.get('valid', float('nan')):.1f} (kept {best:.1f}) ({gen.seconds:.0f} s)")
    C.set_vector(model, best_x)
    history = history[:kept]  # the shipped C is the search mean after generation ``kept``
    cfg.generations = kept - len(old_meta.get("history", []))
    metrics = score_card(model, vision, memory, env)
    env.close()
    old_card = json.loads((SHIPPED / f"{NAMES['controller']}.json").read_text())
    if metrics["mean_score"] <= old_card["metrics"]["mean_score"]:
        log(f"kept the shipped C: {metrics['mean_score']:.1f} is not above {old_card['metrics']['mean_score']:.1f}")
        return path
    save(path, "controller", model, cfg, history=history)
    write_card(NAMES["controller"], {
        **{k: old_card[k] for k in ("family", "title", "seed")},
        "data": {**old_card["data"], "refine_tracks": f"seeds {seed * 100_000}, ... ({rollouts} per generation)",
                 "valid_tracks": list(VALID_SEEDS)},
        "config": cfg.__dict__, "steps": len(history), "generations": len(history),
        "wall_time_s": round(old_card["wall_time_s"] + t_search, 1), "hardware": hardware(), "metrics": metrics,
        "valid_mean": best,
        "command": old_card["command"].split(" && ")[0] + " && OMP_NUM_THREADS=1 python -m models.world.pipeline refine --deadline HH:MM",
        "note": old_card["note"].split(REFINED)[0] + (f"{REFINED} by CMA-ES on full 1,000-frame episodes (population {population}, "
                                    f"{rollouts} tracks per generation), keeping the search mean (after generation "
                                    f"{kept}, checked every {check_every}) that drove the "
                                    f"validation tracks {VALID_SEEDS[0]}–{VALID_SEEDS[-1]} best")})
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("stage", choices=["collect", "vision", "memory", "controller", "refine", "all"])
    p.add_argument("--deadline", default=None, help="UTC HH:MM at which the CMA-ES search stops")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    WORK.mkdir(parents=True, exist_ok=True)
    stages = ["collect", "vision", "memory", "controller"] if a.stage == "all" else [a.stage]
    for s in stages:
        log("stage", s)
        {"collect": collect, "vision": train_vision, "memory": train_memory,
         "controller": lambda: train_controller(a.deadline), "refine": lambda: refine_controller(a.deadline)}[s]()
    log("done")



if __name__ == "__main__":
    main(sys.argv[1:])
