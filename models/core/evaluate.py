"""Scoring generated images with a small classifier, the way FID and Inception Score use Inception.

No Inception network ships offline and its 299×299 ImageNet features are a poor fit for 28×28
digits anyway, so each dataset gets a small CNN trained here (about 99% test accuracy on MNIST)
and every image family is scored in *its* eyes:

* **confidence**: mean of max_y p(y|x). A recognisable sample is classified with conviction,
  blurry in-between shapes are not. Like Inception's, it can be fooled: uniform noise lies far
  from the training data and gets confident (wrong) answers, so read it with the next two.
* **class coverage**: the fraction of classes that receive at least half their fair share of the
  argmax predictions. A generator that collapsed onto a few modes scores low.
* **inception score**: exp E_x KL(p(y|x) || p(y)) (Salimans et al. 2016), 1 (useless) to 10.
* **Fréchet distance** between Gaussians fitted to penultimate-layer features of the samples and
  of the test set (Heusel et al. 2017):
  ``|mu1 - mu2|² + tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½)``. Lower is better; the test set's own
  training images score near 0. Numbers are comparable only within one dataset's classifier.

Every score is printed beside the same scorer's figures for three references (:func:`calibration`):
real held-out images, the same images blurred (Gaussian, σ = 0.7 px: strokes visibly soft, every
digit still legible) and uniform noise, each at the same sample count, since the Fréchet distance
is biased upwards for small samples. A model is good when it sits near the first row, and a model
worse than blurred real data is not good, whatever its number looks like on its own.

Train and ship a classifier with ``python -m models.core.evaluate mnist`` (writes
``assets/checkpoints/classifier_<dataset>.safetensors`` and its card). The test-set feature
statistics are stored in the same file as buffers.
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.core import ASSETS, checkpoint, data
from models.core.family import default_device, device_of, hardware_name

CHECKPOINTS = ASSETS / "checkpoints"
FEATURES = 128


@dataclass
class ClassifierConfig:
    dataset: str = "mnist"
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3


class Classifier(nn.Module):
    """Conv 32-64 (k3, BN, ReLU, max-pool) -> dense 128 features -> 10 logits."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # 14
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # 7
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, FEATURES), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(FEATURES, classes))
        # Gaussian fit of the test set's features, the reference for the Fréchet distance.
        self.register_buffer("ref_mu", torch.zeros(FEATURES))
        self.register_buffer("ref_cov", torch.eye(FEATURES))

    def forward(self, x):
        return self.head(self.features(x))


@torch.no_grad()
def features_and_probs(model: Classifier, x, batch_size: int = 1000):
    model.eval()
    device = device_of(model)
    feats, probs = [], []
    for i in range(0, len(x), batch_size):
        f = model.features(x[i:i + batch_size].to(device))
        feats.append(f.cpu())
        probs.append(F.softmax(model.head(f), dim=1).cpu())
    return torch.cat(feats).double(), torch.cat(probs).double()


def gaussian(feats):
    mu = feats.mean(0)
    cov = torch.cov(feats.T)
    return mu, cov


def _sqrtm_psd(m):
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Fréchet (2-Wasserstein) distance between two Gaussians; symmetric matrix square roots via
    eigendecomposition, so no SciPy is needed."""
    s1 = _sqrtm_psd(cov1)
    cross = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * cross)


def score(images, dataset: str, model: Classifier | None = None) -> dict:
    """Quality scores for ``images`` (N, 1, 28, 28) in [0, 1] against ``dataset``'s test set.

    The Fréchet distance needs a few hundred images to be meaningful (the covariance is 128×128);
    with fewer it is left out.
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"Images to score must be (N, 1, 28, 28); got {tuple(images.shape)}.")
    if len(images) < 2:
        raise ValueError("Scoring needs at least 2 images.")
    model = model or load_classifier(dataset)
    feats, probs = features_and_probs(model, images)
    classes = probs.shape[1]
    counts = torch.bincount(probs.argmax(1), minlength=classes).double()
    p_y = probs.mean(0)
    kl = (probs * (probs.clamp_min(1e-12).log() - p_y.clamp_min(1e-12).log())).sum(1).mean()
    out = {
        "confidence": float(probs.max(1).values.mean()),
        "class_coverage": float((counts >= 0.5 * len(images) / classes).double().mean()),
        "inception_score": float(kl.exp()),
        "n": len(images),
    }
    if len(images) >= 500:
        mu, cov = gaussian(feats)
        out["frechet_distance"] = frechet_distance(mu, cov, model.ref_mu.double().cpu(), model.ref_cov.double().cpu())
    return out


def held_out(dataset: str, n: int, seed: int = 0):
    """``n`` test images and their labels in a seeded random order, and the generator that drew
    them (the calibration rows draw their noise from it next): the real row every score is read against."""
    x, y = data.images(dataset, "test")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)[:n]
    return x[idx], y[idx], g


def class_accuracy(images, labels, dataset: str, model: Classifier | None = None) -> dict:
    """How often an image asked for class k is classified as k: overall, for each class by name, and
    the worst class (a conditional generator is only as good as its weakest class)."""
    model = model or load_classifier(dataset)
    _, probs = features_and_probs(model, torch.as_tensor(images, dtype=torch.float32))
    labels = torch.as_tensor(labels).long()
    hit = probs.argmax(1) == labels
    names = data.class_names(dataset)
    per = {names[k]: float(hit[labels == k].double().mean()) for k in range(len(names)) if (labels == k).any()}
    worst = min(per, key=per.get)
    return {"accuracy": float(hit.double().mean()), "worst_class": worst, "worst": per[worst],
            "per_class": per, "n": len(labels)}


@functools.lru_cache(maxsize=8)
def real_class_accuracy(dataset: str, n: int, seed: int = 0) -> dict:
    """:func:`class_accuracy` of ``n`` real held-out images and their true labels: the scorer's own
    ceiling, the row a conditional generator's figures are read against."""
    x, y, _ = held_out(dataset, n, seed)
    return class_accuracy(x, y, dataset)


BLUR_SIGMA = 0.7


def blur(images: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """A separable Gaussian blur of (N, 1, H, W) images (reflecting at the borders)."""
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=images.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = F.conv2d(F.pad(images, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


@functools.lru_cache(maxsize=32)
def calibration(dataset: str, n: int, seed: int = 0) -> dict:
    """The scorer's figures for ``n`` real held-out images, the same images blurred, and ``n`` uniform
    noise images: the rows that say what a score means. Deterministic for a given ``seed``."""
    if n < 2:
        raise ValueError("Calibration needs at least 2 images.")
    real, _, g = held_out(dataset, n, seed)
    return {
        "real held-out": score(real, dataset),
        f"blurred real (σ {BLUR_SIGMA:g} px)": score(blur(real), dataset),
        "uniform noise": score(torch.rand(real.shape, generator=g), dataset),
    }


def classifier_path(dataset: str) -> Path:
    data.check_dataset(dataset)
    return CHECKPOINTS / f"classifier_{dataset}.safetensors"


@functools.lru_cache(maxsize=None)
def load_classifier(dataset: str) -> Classifier:
    tensors, meta = checkpoint.load_tensors(classifier_path(dataset))
    if meta.get("family") != "classifier":
        raise ValueError(f"{classifier_path(dataset).name} is not a classifier checkpoint.")
    model = Classifier()
    model.load_state_dict(tensors)
    return model.eval()


def train_classifier(config: ClassifierConfig, device=None, log=print) -> tuple[Classifier, dict]:
    device = device or default_device()
    torch.manual_seed(0)
    x, y = data.images(config.dataset, "train")
    xt, yt = data.images(config.dataset, "test")
    model = Classifier().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * (len(x) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr * 3, total_steps=steps)
    x, y = x.to(device), y.to(device)
    t0 = time.time()
    step = 0
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x) - config.batch_size + 1, config.batch_size):
            idx = perm[i:i + config.batch_size]
            xb = x[idx]
            # small random shifts make the features robust to the off-centre strokes generators draw
            dx, dy = torch.randint(-2, 3, (2,)).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        log(f"epoch {epoch + 1}/{config.epochs} loss {loss.item():.4f}")
    feats, probs = features_and_probs(model, xt)
    mu, cov = gaussian(feats)
    model.ref_mu.copy_(mu.float())
    model.ref_cov.copy_(cov.float())
    accuracy = float((probs.argmax(1) == yt).double().mean())
    wall = time.time() - t0
    return model.cpu().eval(), {"test_accuracy": accuracy, "wall_time_s": round(wall, 1), "steps": step}


def calibrate_cards(folder: Path = CHECKPOINTS) -> list[str]:
    """Add the calibration rows, at each card's own sample count, to every card with sample scores
    (cards written before the rows existed); returns the names of the cards changed."""
    changed = []
    for path in sorted(folder.glob("*.json")):
        card = json.loads(path.read_text())
        m = card.get("metrics", {})
        s = m.get("sample_scores")
        dataset = card.get("config", {}).get("dataset")
        if not s or dataset not in data.DATASETS or "calibration" in m:
            continue
        m["calibration"] = calibration(dataset, s["n"])
        checkpoint.write_json(path, card)
        changed.append(path.stem)
    return changed


def rescore(name: str, what: str, n: int = 2000, folder: Path = CHECKPOINTS) -> dict:
    """Add (or refresh) the ``"classes"`` scores (a class-conditional checkpoint's every class in turn),
    the ``"opening"`` scores (the page's opening setting), or, with ``"all"``, every sample score on a
    shipped image checkpoint's card (after its family's sampler settings changed)."""
    from models import FAMILIES
    from models.core.train import class_scores, opening_scores, sample_metrics

    path = folder / f"{name}.safetensors"
    model, config, _ = checkpoint.load(path, FAMILIES)
    family = FAMILIES[checkpoint.read_meta(path)["family"]]
    card = json.loads(path.with_suffix(".json").read_text())
    if what == "all":
        scores = changed = sample_metrics(family, model.eval(), config, n)
    else:
        key, scores = (("class_scores", class_scores(family, model.eval(), config.dataset, n)) if what == "classes"
                       else ("opening_scores", opening_scores(family, model.eval(), config, n)))
        changed = {key: scores}
    card.setdefault("metrics", {}).update(changed)
    checkpoint.write_json(path.with_suffix(".json"), card)
    return scores


def main(argv=None) -> None:
    import sys
    from dataclasses import asdict

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["classes"], ["opening"], ["all"]):
        p = argparse.ArgumentParser(description="Score shipped checkpoints and write it on their cards: "
                                                "`classes`, how often each class is drawn as itself; `opening`, "
                                                "the setting the page opens with; `all`, every sample score "
                                                "(after a sampler change).")
        p.add_argument("names", nargs="+")
        p.add_argument("--n", type=int, default=2000)
        a = p.parse_args(argv[1:])
        for name in a.names:
            c = rescore(name, argv[0], a.n)
            print(name, c)
        return

    p = argparse.ArgumentParser(description="Train and ship the scoring classifier for a dataset, or add "
                                            "calibration rows to the shipped cards (`calibrate`).")
    p.add_argument("dataset", choices=sorted(data.DATASETS) + ["calibrate"])
    p.add_argument("--epochs", type=int, default=ClassifierConfig.epochs)
    a = p.parse_args(argv)
    if a.dataset == "calibrate":
        print("calibrated:", ", ".join(calibrate_cards()) or "nothing to do")
        return
    config = ClassifierConfig(dataset=a.dataset, epochs=a.epochs)
    model, metrics = train_classifier(config)
    path = classifier_path(a.dataset)
    checkpoint.save_tensors(path, model.state_dict(), family="classifier", config=asdict(config))
    # Reference point for the cards: 5,000 real training images scored like samples would be.
    real = score(data.images(a.dataset, "train")[0][:5000], a.dataset, model)
    card = {
        "name": path.stem, "family": "classifier", "dataset": a.dataset, "config": asdict(config),
        "metrics": {**metrics, "real_train_images_scores": real},
        "command": f"python -m models.core.evaluate {a.dataset} --epochs {a.epochs}",
        "hardware": hardware_name(default_device()),
    }
    checkpoint.write_json(path.with_suffix(".json"), card)
    print(card)


if __name__ == "__main__":
    main()
