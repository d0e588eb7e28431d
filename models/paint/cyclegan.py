"""CycleGAN (Zhu et al. 2017, https://arxiv.org/abs/1703.10593), as in Foster ch. 5.

Two generators translate between unpaired domains, ``G_AB: A -> B`` and ``G_BA: B -> A``, and two
PatchGAN discriminators ``D_A`` and ``D_B`` judge each domain patch by patch. Nothing pairs an image
of A with its counterpart in B; three losses, weighted as in the book, make the translation faithful:

* **validation** (adversarial, least squares as in the book): ``(D_B(G_AB(a)) - 1)² + (D_A(G_BA(b)) - 1)²``,
  the translations must look like the other domain;
* **reconstruction** (cycle consistency): ``|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|``, a round
  trip gives the original back, so the translation keeps the content;
* **identity**: ``|G_BA(a) - a| + |G_AB(b) - b|``, an image already in the target domain is left
  alone, which keeps colours and backgrounds from drifting (the ``identity_off`` preset removes it).

The discriminators learn ``D(real) -> 1`` and ``D(fake) -> 0``; each output cell judges one patch of
the input (7×7 cells over a 28×28 image), which the studio shows over the image.

The domains are built offline: **A** is MNIST (light digits on black) and **B** is MNIST-M in
grayscale (Ganin & Lempitsky 2015): other digits blended onto texture patches cut from the bundled
photos in ``assets/images`` with ``|patch - digit|``. Both are ``(N, 1, 28, 28)`` in [0, 1]; A and B
never share a digit image, so the data is unpaired. Sampling translates held-out images:
``sample(..., direction="b_to_a")`` (the default, the one cards score with the MNIST classifier)
yields clean digits recovered from textured ones, ``"a_to_b"`` textured digits.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.core import ASSETS
from models.core.family import Family, check_lr_decay, check_range, device_of

PHOTOS = ASSETS / "images"
DIRECTIONS = ("a_to_b", "b_to_a")
MAX_SAMPLES = 10_000


@dataclass
class CycleGANConfig:
    dataset: str = "mnist"  # domain A; domain B is the same kind of image blended onto photo patches
    filters: int = 32  # generator width at full resolution (doubled after the one downsampling)
    res_blocks: int = 6  # residual blocks at half resolution (the book's ResNet generator has 9 at 128 px)
    d_filters: int = 32  # discriminator width of the first layer
    lambda_validation: float = 1.0  # weights of the three generator losses: the book's values
    lambda_reconstr: float = 10.0
    lambda_id: float = 2.0
    lr: float = 2e-4  # Adam with beta1 = 0.5 for all four networks, as in the paper
    n_train: int = 30_000  # images per domain (A and B use disjoint halves of the training digits)
    batch_size: int = 1  # the book trains one image at a time
    steps: int = 30_000
    ema_decay: float = 0.0  # EMA of the two generators' weights, sampled from (0 = off; checkpoints written before EMA)
    lr_decay: str = "none"  # "none" (the book's fixed rate) or "cosine" (to 0 at the last step)

    def validate(self):
        from models.core.data import check_dataset

        check_dataset(self.dataset)
        check_range("filters", self.filters, 1, 256)
        check_range("res_blocks", self.res_blocks, 0, 16)
        check_range("d_filters", self.d_filters, 1, 256)
        check_range("validation weight", self.lambda_validation, 0.0, 100.0)
        check_range("reconstruction weight", self.lambda_reconstr, 0.0, 100.0)
        check_range("identity weight", self.lambda_id, 0.0, 100.0)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("n_train (images per domain)", self.n_train, 8, 30_000)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10**7)
        check_range("EMA decay", self.ema_decay, 0.0, 0.9999)
        check_lr_decay(self.lr_decay)


PRESETS = {
    "book": {},
    # about 20 minutes on one CPU thread
    "cpu": {"filters": 16, "res_blocks": 3, "d_filters": 16, "batch_size": 16, "steps": 1800, "n_train": 20_000,
            "ema_decay": 0.999},  # the book has no EMA; averaged generators translate more steadily
    # the book's ablation: without the identity loss, backgrounds and brightness are free to drift
    "identity_off": {"filters": 16, "res_blocks": 3, "d_filters": 16, "batch_size": 16, "steps": 1800,
                     "n_train": 20_000, "lambda_id": 0.0, "ema_decay": 0.999},
    "tiny": {"filters": 4, "res_blocks": 1, "d_filters": 4, "batch_size": 8, "steps": 2, "n_train": 64},
}


# --- the domains ---

@functools.lru_cache(maxsize=2)
def _textures() -> tuple[np.ndarray, ...]:
    """The bundled photos as grayscale float arrays in [0, 1]."""
    from PIL import Image

    files = sorted(PHOTOS.glob("*.jpg"))
    if not files:
        raise ValueError(f"No photos in {PHOTOS} to cut texture patches from.")
    return tuple(np.asarray(Image.open(f).convert("L"), np.float32) / 255 for f in files)


def blend_onto_patches(digits: torch.Tensor, seed: int) -> torch.Tensor:
    """MNIST-M style: each (N, 1, 28, 28) digit blended onto a random photo patch as |patch - digit|.

    Patches are cut at a random scale (28 to 84 pixels, resized to 28) so textures vary in grain."""
    rng = np.random.default_rng(seed)
    photos = _textures()
    n = len(digits)
    out = np.empty((n, 28, 28), np.float32)
    for i in range(n):
        img = photos[rng.integers(len(photos))]
        size = int(rng.integers(28, 85))
        y, x = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        patch = img[y:y + size, x:x + size]
        idx = (np.arange(28) * size / 28).astype(int)  # nearest-neighbour resize, fast and exact
        out[i] = patch[np.ix_(idx, idx)]
    return (torch.from_numpy(out).unsqueeze(1) - digits).abs()


@functools.lru_cache(maxsize=4)
def domains(dataset: str, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unpaired domains: A (n, 1, 28, 28) plain images, B (n, 1, 28, 28) other images on patches, and
    B's labels (for scoring only; training never sees them)."""
    from models.core import data

    x, y = data.images(dataset, split)
    n = min(n, len(x) // 2)
    a = x[:n]
    b = blend_onto_patches(x[n:2 * n], seed={"train": 0, "test": 1}[split])
    return a, b, y[n:2 * n]


def cycle_data(config: CycleGANConfig, split: str) -> tuple[tuple, dict]:
    n = config.n_train if split == "train" else 2_000
    a, b, yb = domains(config.dataset, split, n)
    from models.core import data

    title = data.DATASETS[config.dataset]["title"]
    return (a, b, yb), {"title": f"{title} (A) ↔ {title} on photo patches (B), unpaired",
                        "dataset": config.dataset, "texture_photos": sorted(p.name for p in PHOTOS.glob("*.jpg"))}


# --- networks ---

def _conv_norm_relu(c_in, c_out, k, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, padding_mode="reflect"),
                         nn.InstanceNorm2d(c_out, affine=True), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(_conv_norm_relu(c, c, 3), nn.Conv2d(c, c, 3, 1, 1, padding_mode="reflect"),
                                  nn.InstanceNorm2d(c, affine=True))

    def forward(self, x):
        return x + self.body(x)


class Generator(nn.Module):
    """The book's ResNet generator, scaled to 28 px: 7×7 conv, one stride-2 downsampling, residual
    blocks at 14×14, one upsampling, 7×7 conv to one channel with a sigmoid (pixels in [0, 1])."""

    def __init__(self, f: int, blocks: int):
        super().__init__()
        self.net = nn.Sequential(
            _conv_norm_relu(1, f, 7),  # (B, f, 28, 28)
            _conv_norm_relu(f, 2 * f, 3, stride=2),  # (B, 2f, 14, 14)
            *[ResBlock(2 * f) for _ in range(blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"), _conv_norm_relu(2 * f, f, 3),  # (B, f, 28, 28)
            nn.Conv2d(f, 1, 7, 1, 3, padding_mode="reflect"), nn.Sigmoid())

    def forward(self, x):
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: (B, 1, 28, 28) -> (B, 1, 7, 7) real/fake scores, one per overlapping 18×18-pixel patch
    (the receptive field of each output cell)."""

    def __init__(self, f: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, f, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),  # (B, f, 14, 14)
            nn.Conv2d(f, 2 * f, 4, 2, 1), nn.InstanceNorm2d(2 * f, affine=True), nn.LeakyReLU(0.2, inplace=True),  # 7×7
            nn.Conv2d(2 * f, 1, 3, 1, 1))  # (B, 1, 7, 7), unbounded: least-squares targets 1 (real) and 0 (fake)

    def forward(self, x):
        return self.net(x)


class CycleGAN(nn.Module):
    def __init__(self, config: CycleGANConfig):
        super().__init__()
        self.config = config
        self.g_ab = Generator(config.filters, config.res_blocks)
        self.g_ba = Generator(config.filters, config.res_blocks)
        self.d_a = PatchDiscriminator(config.d_filters)
        self.d_b = PatchDiscriminator(config.d_filters)

    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        return (self.g_ab if check_direction(direction) == "a_to_b" else self.g_ba)(x)


def build(config: CycleGANConfig) -> CycleGAN:
    return CycleGAN(config)


def optimizers(model: CycleGAN, config: CycleGANConfig) -> dict:
    betas = (0.5, 0.999)
    return {"g": torch.optim.Adam([*model.g_ab.parameters(), *model.g_ba.parameters()], lr=config.lr, betas=betas),
            "d": torch.optim.Adam([*model.d_a.parameters(), *model.d_b.parameters()], lr=config.lr, betas=betas)}


def generator_losses(model: CycleGAN, a, b, config: CycleGANConfig) -> dict:
    """The three generator losses and the translations they were computed from."""
    fake_b, fake_a = model.g_ab(a), model.g_ba(b)
    p_b, p_a = model.d_b(fake_b), model.d_a(fake_a)
    validation = F.mse_loss(p_b, torch.ones_like(p_b)) + F.mse_loss(p_a, torch.ones_like(p_a))
    reconstr = F.l1_loss(model.g_ba(fake_b), a) + F.l1_loss(model.g_ab(fake_a), b)
    if config.lambda_id > 0:
        identity = F.l1_loss(model.g_ba(a), a) + F.l1_loss(model.g_ab(b), b)
    else:  # the ablation: skip two generator passes instead of multiplying them by zero
        identity = torch.zeros((), device=a.device)
    total = config.lambda_validation * validation + config.lambda_reconstr * reconstr + config.lambda_id * identity
    return {"g_loss": total, "validation": validation, "reconstruction": reconstr, "identity": identity,
            "fake_a": fake_a, "fake_b": fake_b}


def discriminator_loss(d: nn.Module, real, fake) -> torch.Tensor:
    p_real, p_fake = d(real), d(fake.detach())
    return 0.5 * (F.mse_loss(p_real, torch.ones_like(p_real)) + F.mse_loss(p_fake, torch.zeros_like(p_fake)))


def train_step(model: CycleGAN, batch, config: CycleGANConfig, opts: dict) -> dict:
    """One generator step (both G's) then one discriminator step (both D's); detached metrics."""
    a, b = batch[0], batch[1]
    g = generator_losses(model, a, b, config)
    opts["g"].zero_grad(set_to_none=True)
    g["g_loss"].backward()
    opts["g"].step()
    d_a = discriminator_loss(model.d_a, a, g["fake_a"])
    d_b = discriminator_loss(model.d_b, b, g["fake_b"])
    opts["d"].zero_grad(set_to_none=True)
    (d_a + d_b).backward()
    opts["d"].step()
    return {"loss": g["g_loss"].detach(), "validation": g["validation"].detach(),
            "reconstruction": g["reconstruction"].detach(), "identity": g["identity"].detach(),
            "d_a": d_a.detach(), "d_b": d_b.detach()}


# --- using a trained model ---

def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"Unknown direction {direction!r}; choose 'a_to_b' or 'b_to_a'.")
    return direction


def check_images(x) -> torch.Tensor:
    """User images must be (N, 1, 28, 28) floats in [0, 1]."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"CycleGAN translates (N, 1, 28, 28) grayscale images; got {tuple(x.shape)}.")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("Image pixels must be finite numbers between 0 and 1.")
    return x


@torch.no_grad()
def six_panel(model: CycleGAN, a, b) -> dict:
    """The book's view for images of A and of B: original, translated, reconstructed (round trip)
    and identity (the image fed to the generator that targets its own domain), each (N, 1, 28, 28)."""
    model.eval()
    dev = device_of(model)
    a, b = check_images(a).to(dev), check_images(b).to(dev)
    fake_b, fake_a = model.g_ab(a), model.g_ba(b)
    return {"a": a, "a_to_b": fake_b, "a_reconstructed": model.g_ba(fake_b), "a_identity": model.g_ba(a),
            "b": b, "b_to_a": fake_a, "b_reconstructed": model.g_ab(fake_a), "b_identity": model.g_ab(b)}


@torch.no_grad()
def patch_map(model: CycleGAN, x, domain: str) -> torch.Tensor:
    """The PatchGAN's verdict on each 7×7 cell of (N, 1, 28, 28) images judged as members of ``domain``
    ("a" or "b"): (N, 7, 7), about 1 where a patch looks real, about 0 where it looks fake."""
    if domain not in ("a", "b"):
        raise ValueError(f"Unknown domain {domain!r}; choose 'a' or 'b'.")
    model.eval()
    d = model.d_a if domain == "a" else model.d_b
    return d(check_images(x).to(device_of(model)))[:, 0]


@torch.no_grad()
def sample(model: CycleGAN, n: int, generator: torch.Generator | None = None, direction: str = "b_to_a"):
    """Translate ``n`` held-out images of the source domain, drawn at random with ``generator``.
    Yields once: (n, 1, 28, 28) pixels in [0, 1]."""
    check_range("n", n, 1, MAX_SAMPLES)
    check_direction(direction)
    model.eval()
    a, b, _ = domains(model.config.dataset, "test", 2_000)
    source = a if direction == "a_to_b" else b
    idx = torch.randint(len(source), (n,), generator=generator)
    yield model.translate(source[idx].to(device_of(model)), direction).clamp(0, 1).cpu()


def test_images(dataset: str, domain: str, index) -> torch.Tensor:
    """Held-out images of domain "a" or "b" by number: (len(index), 1, 28, 28)."""
    a, b, _ = domains(dataset, "test", 2_000)
    x = {"a": a, "b": b}.get(domain)
    if x is None:
        raise ValueError(f"Unknown domain {domain!r}; choose 'a' or 'b'.")
    index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
    if len(index) == 0 or index.min() < 0 or index.max() >= len(x):
        raise ValueError(f"Test image numbers must be from 0 to {len(x) - 1}.")
    return x[index]


def preview(model: CycleGAN, generator: torch.Generator) -> torch.Tensor:
    """The six-panel view for 4 held-out images of each domain, one row per image:
    original, translated, reconstructed, identity; A's four rows then B's. (32, 1, 28, 28)."""
    idx = torch.randint(2_000, (4,), generator=generator)
    p = six_panel(model, test_images(model.config.dataset, "a", idx), test_images(model.config.dataset, "b", idx))
    rows = [torch.stack([p[d], p[f"{d}_to_{o}"], p[f"{d}_reconstructed"], p[f"{d}_identity"]], 1)
            for d, o in (("a", "b"), ("b", "a"))]
    return torch.cat(rows).reshape(-1, 1, 28, 28).cpu()


@torch.no_grad()
def evaluate(model: CycleGAN, a, b, yb) -> dict:
    """Held-out cycle and identity errors (mean absolute pixel error), and whether B→A keeps the digit:
    the MNIST classifier's accuracy on translated images, next to its accuracy on the textured inputs."""
    from models.core import evaluate as scoring

    model.eval()
    out = {"reconstruction_a": 0.0, "reconstruction_b": 0.0, "identity_a": 0.0, "identity_b": 0.0}
    fakes = []
    for i in range(0, len(a), 500):
        p = six_panel(model, a[i:i + 500], b[i:i + 500])
        k = len(p["a"])
        out["reconstruction_a"] += float((p["a_reconstructed"] - p["a"]).abs().mean()) * k
        out["reconstruction_b"] += float((p["b_reconstructed"] - p["b"]).abs().mean()) * k
        out["identity_a"] += float((p["a_identity"] - p["a"]).abs().mean()) * k
        out["identity_b"] += float((p["b_identity"] - p["b"]).abs().mean()) * k
        fakes.append(p["b_to_a"].cpu())
    out = {k: round(v / len(a), 4) for k, v in out.items()}
    clf = scoring.load_classifier(model.config.dataset)
    _, probs = scoring.features_and_probs(clf, torch.cat(fakes))
    _, probs_in = scoring.features_and_probs(clf, b)
    out["b_to_a_digit_accuracy"] = round(float((probs.argmax(1) == yb).float().mean()), 4)
    out["textured_input_accuracy"] = round(float((probs_in.argmax(1) == yb).float().mean()), 4)
    return out


def describe(cfg: dict) -> str:
    """The three loss weights, which tell this family's checkpoints apart (identity 0 = the ablation)."""
    return (f"loss weights: validation {cfg['lambda_validation']:g}, reconstruction {cfg['lambda_reconstr']:g}, "
            f"identity {cfg['lambda_id']:g}")


def card_lines(m: dict) -> list[str]:
    """The card's held-out line: cycle and identity errors, and whether B→A keeps the digit."""
    return [f"Test set: cycle error (mean |x − x̂|) A {m['reconstruction_a']:.3f}, B {m['reconstruction_b']:.3f}; "
            f"identity error A {m['identity_a']:.3f}, B {m['identity_b']:.3f}; the MNIST classifier reads "
            f"**{m['b_to_a_digit_accuracy']:.0%}** of B→A translations right "
            f"({m['textured_input_accuracy']:.0%} of the textured inputs)."]


FAMILY = Family(
    name="cyclegan",
    title="CycleGAN",
    config_cls=CycleGANConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    describe=describe,
    card_lines=card_lines,
    presets=PRESETS,
    data=cycle_data,
    optimizers=optimizers,
    preview=preview,
    ema_parts=("g_ab", "g_ba"),  # the averaged generators translate; the discriminators stay raw
)
