"""The arena: every family with an MNIST checkpoint, scored side by side on the same held-out images.

    python -m models.core.arena [--samples 500] [--nll-images 500] [--seed 0] [--out assets/arena]

For each registered image family (found in :data:`models.FAMILIES`, nothing listed here) it takes the
first shipped checkpoint trained on MNIST and reports, in one table:

* the project's classifier scores of ``--samples`` samples drawn from ``--seed`` with the family's own
  ``score_kwargs`` (the settings its card is scored with): confidence, class coverage and the Fréchet
  distance to the test set's features (:mod:`models.core.evaluate`);
* the negative log-likelihood of the first ``--nll-images`` test images, in nats per image, when the family
  has a ``log_likelihood`` hook: exact, or a bound (an ELBO's NLL is an upper bound), in the family's own
  preprocessing (binarised or dequantised pixels), so only rows with the same preprocessing compare;
* the nearest-training-image check (Goodfellow et al., *Deep Learning* §20.14: looking at samples cannot
  tell a model that copies its training set): the median pixel distance from each sample to its nearest
  training image, beside the same figure for held-out test images. A ratio well below 1 means samples sit
  closer to training images than real unseen digits do — memorisation;
* training time (from the card) and sampling time per image (measured here, so it varies by machine).

It writes ``arena.json`` (everything), ``arena.md`` (the table the Workshop tab shows) and
``arena_grid.png`` (8 samples per family above their nearest training images). Every figure except the
sampling time is the same for the same seed.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.core import ASSETS, checkpoint, data, evaluate
from models.core.family import last, seeded

OUT = ASSETS / "arena"
SHOWN = 8  # samples per family in the grid
KINDS = {"bound": "≤, bound", "estimate": "≈, AIS estimate"}  # how a likelihood row is marked


def mnist_checkpoints(names: list[str] | None = None) -> dict[str, Path]:
    """family -> its first shipped MNIST checkpoint, for every registered image family that has one."""
    from models import FAMILIES

    shipped = ASSETS / "checkpoints"
    found = {}
    for family, fam in FAMILIES.items():
        if fam.kind != "image" or (names and family not in names):
            continue
        for path in sorted(shipped.glob("*.safetensors")):
            card = path.with_suffix(".json")
            if not card.exists():
                continue
            info = json.loads(card.read_text())
            if info.get("family") == family and info.get("config", {}).get("dataset") == "mnist":
                found[family] = path
                break
    if names:
        missing = sorted(set(names) - set(found))
        if missing:
            raise ValueError(f"No shipped MNIST checkpoint for {', '.join(missing)}; families with one: "
                             f"{', '.join(sorted(mnist_checkpoints()))}.")
    return found


def nearest(x: torch.Tensor, train: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image in ``x`` (N, 784): the L2 distance to its nearest training image and that image's index."""
    dists, idx = [], []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i:i + chunk].double(), train.double())
        m = d.min(1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists).float(), torch.cat(idx)


def run(samples: int = 500, nll_images: int = 500, seed: int = 0, families: list[str] | None = None,
        log=print) -> dict:
    """Score every MNIST family; see the module docstring. Deterministic given ``seed`` (except timings)."""
    from models import FAMILIES

    if samples < 2:
        raise ValueError(f"Samples must be at least 2; got {samples}.")
    train_x = data.images("mnist", "train")[0].flatten(1)
    test_x = data.images("mnist", "test")[0]
    classifier = evaluate.load_classifier("mnist")
    real_nn, _ = nearest(test_x[:max(samples, 2)].flatten(1), train_x)
    real_median = float(real_nn.median())
    rows, shown = [], {}
    for family, path in mnist_checkpoints(families).items():
        fam = FAMILIES[family]
        model, config, meta = checkpoint.load(path, {family: fam})
        model.eval()
        card = json.loads(path.with_suffix(".json").read_text())
        log(f"{family}: sampling {samples} from {path.stem}…")
        with torch.no_grad():
            t0 = time.perf_counter()
            x = last(fam.sample(model, samples, generator=seeded(seed), **fam.score_kwargs)).float().clamp(0, 1)
            per_image = (time.perf_counter() - t0) / samples
        scores = evaluate.score(x, "mnist", classifier)
        nn_d, nn_i = nearest(x.flatten(1), train_x)
        row = {"family": family, "title": fam.title, "checkpoint": path.stem,
               "confidence": round(scores["confidence"], 4), "class_coverage": round(scores["class_coverage"], 4),
               "frechet_distance": (round(scores["frechet_distance"], 2) if "frechet_distance" in scores else None),
               "nearest_train_median": round(float(nn_d.median()), 3),
               "nearest_train_ratio": round(float(nn_d.median()) / real_median, 3),
               "train_time_s": card.get("wall_time_s"), "train_steps": card.get("steps"),
               "train_hardware": card.get("hardware"), "sampler": fam.score_kwargs or None,
               "sampling_s_per_image": round(per_image, 5), "nll_nats": None, "likelihood": None,
               "preprocessing": None}
        if fam.log_likelihood is not None and nll_images:
            test_tensors, info = fam.examples(config, "test")
            with torch.no_grad():
                ll = torch.cat([fam.log_likelihood(model, b) for b in test_tensors[0][:nll_images].split(100)])
            row.update(nll_nats=round(float(-ll.mean()), 2), likelihood=fam.likelihood,
                       preprocessing=info.get("preprocessing"))
        rows.append(row)
        shown[family] = (x[:SHOWN, 0].numpy(), train_x[nn_i[:SHOWN]].view(-1, 28, 28).numpy(),
                         nn_d[:SHOWN].numpy())
    return {"seed": seed, "samples": samples, "nll_images": nll_images,
            "held_out_nearest_train_median": round(real_median, 3), "rows": rows, "_shown": shown}


def short(preprocessing: str | None) -> str:
    """A few words for a preprocessing description: 'binarised' or 'dequantised' when it says so."""
    text = (preprocessing or "").lower()
    for word in ("binarised", "binarized", "dequantis", "dequantiz"):
        if word in text:
            return "binarised" if word.startswith("binar") else "dequantised"
    return text.split(",")[0][:24]


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.2g} ms"


def table(result: dict) -> str:
    """The arena as one markdown table (the Workshop shows it)."""
    def f(v, fmt="{:.3g}"):
        return "—" if v is None else fmt.format(v)

    lines = [f"**Arena**: {result['samples']} samples per family from seed {result['seed']}, scored by the project's "
             f"MNIST classifier; NLL on the first {result['nll_images']} test images. Nearest-training-image "
             f"ratio: median distance of samples to their nearest training image ÷ the same for held-out test "
             f"images ({result['held_out_nearest_train_median']:.2f}); well below 1 would mean copying.", "",
             "| Family | Checkpoint | Confidence | Coverage | Fréchet ↓ | NLL (nats/image) | Nearest-train ratio | "
             "Training | Sampling / image |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        nll = "—" if r["nll_nats"] is None else (f"{r['nll_nats']:.1f} ({KINDS.get(r['likelihood'], 'exact')}"
                                                 f"{', ' + short(r['preprocessing']) if r['preprocessing'] else ''})")
        train = "—" if r["train_time_s"] is None else f"{r['train_time_s'] / 60:.0f} min, {r['train_steps']:,} steps"
        lines.append(f"| {r['title']} | {r['checkpoint']} | {r['confidence']:.3f} | {r['class_coverage']:.0%} | "
                     f"{f(r['frechet_distance'], '{:.1f}')} | {nll} | {r['nearest_train_ratio']:.2f} | {train} | "
                     f"{_ms(r['sampling_s_per_image'])} |")
    lines += ["", "Likelihoods compare only within one preprocessing (binarised and dequantised pixels are different "
              "data). Sampling time is measured on the machine that ran the arena; everything else is the same "
              "for the same seed."]
    return "\n".join(lines)


def grid(result: dict) -> np.ndarray:
    """Per family: a row of samples and, under it, each one's nearest training image."""
    from PIL import Image, ImageDraw

    shown = result["_shown"]
    scale, pad, left = 3, 4, 150
    cell = 28 * scale + pad
    canvas = Image.new("L", (left + SHOWN * cell + pad, max(1, len(shown)) * (2 * cell + 16) + 8), 255)
    draw = ImageDraw.Draw(canvas)
    for r, (family, (xs, nns, ds)) in enumerate(shown.items()):
        y0 = 8 + r * (2 * cell + 16)
        draw.text((4, y0 + 20), family, fill=0)
        draw.text((4, y0 + cell + 20), "nearest train", fill=90)
        for i in range(len(xs)):
            for k, img in enumerate((xs[i], nns[i])):
                im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).resize((28 * scale, 28 * scale),
                                                                                         Image.NEAREST)
                canvas.paste(im, (left + i * cell, y0 + k * cell))
            draw.text((left + i * cell, y0 + 2 * cell - 2), f"d={ds[i]:.1f}", fill=60)
    return np.asarray(canvas)


def write(result: dict, out: Path = OUT) -> dict[str, Path]:
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "arena.json", "md": out / "arena.md", "png": out / "arena_grid.png"}
    clean = {k: v for k, v in result.items() if not k.startswith("_")}
    paths["json"].write_text(json.dumps(clean, indent=1))
    paths["md"].write_text(table(result) + "\n")
    Image.fromarray(grid(result)).save(paths["png"])
    return paths


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Score every MNIST family side by side on the same held-out images.")
    p.add_argument("--samples", type=int, default=500, help="samples per family (the Fréchet distance needs 500)")
    p.add_argument("--nll-images", type=int, default=500, help="held-out images for the NLL (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", default="", help="comma-separated families (default: every MNIST family)")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    t0 = time.time()
    result = run(a.samples, a.nll_images, a.seed, [f for f in a.families.split(",") if f] or None)
    paths = write(result, a.out)
    print(table(result))
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
