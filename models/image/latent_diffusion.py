"""A miniature Stable Diffusion: text-to-image diffusion in the latent space of an autoencoder
(Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"; Foster ch. 13,
Chollet ch. 12).

Three networks, trained here:

1. An **autoencoder** squeezes a 28×28 image into a latent ``z`` of 4×7×7 (4× fewer numbers) and
   back. It is trained first (``ae_steps``), then frozen. Latents are divided by their measured
   standard deviation so the noise schedule sees unit variance (Stable Diffusion's 0.18215).
2. A **text encoder**, a small transformer over the prompt's words, gives one context vector per
   token.
3. A **denoiser** ``ε_θ(z_t, t, context)`` works at 7×7: residual conv blocks with the time added,
   self-attention, and **cross-attention**, whose queries are the 49 latent positions and whose
   keys and values are the prompt's tokens. Row p of ``softmax(QKᵀ/√d)`` says which words position
   p listens to; column w, laid out as 7×7, is word w's attention map over the image.

Diffusion itself is :mod:`models.image.diffusion`'s (the same ᾱ_t, q_sample and DDIM reverse process),
only on ``z`` instead of pixels; the sample is decoded at the end. Prompts are captions made from
each image's label and attributes measured on it: ink (thick/thin digits, dark/bright clothes),
slant (slanted/upright) or width (wide/narrow), each relative to its class. In training every
attribute is dropped at random, so "a seven" and "a thick slanted seven" are both prompts it knows,
and the whole prompt is dropped 10% of the time to learn the unconditional model that
classifier-free guidance needs: ``ε = ε(∅) + w (ε(prompt) − ε(∅))``.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.image.diffusion import alpha_bars, guided, min_snr_weights, q_sample, reverse, time_embedding, timesteps
from models.core.family import Family, check_lr_decay, check_range, device_of

# --- prompts ---------------------------------------------------------------------------------------

PAD, EMPTY = "<pad>", "<empty>"  # padding (masked out) and the empty prompt of the unconditional model
MAX_TOKENS = 6
# Per dataset: the two measured attributes (word for the top third of the class, word for the bottom
# third) and the nouns of each class (the first is the class's own; the rest are broader words).
VOCABULARY = {
    "mnist": {
        "attributes": [("thick", "thin"), ("slanted", "upright")],
        "nouns": [["zero"], ["one"], ["two"], ["three"], ["four"], ["five"], ["six"], ["seven"],
                  ["eight"], ["nine"]],
    },
    "fashion": {
        "attributes": [("dark", "bright"), ("wide", "narrow")],
        "nouns": [["tshirt", "top"], ["trousers"], ["pullover", "top"], ["dress"], ["coat", "top"],
                  ["sandal", "shoe"], ["shirt", "top"], ["sneaker", "shoe"], ["bag"], ["boot", "shoe"]],
    },
}
ALIASES = {"an": "a", "the": "a", "bold": "thick", "fat": "thick", "skinny": "thin", "slim": "thin",
           "italic": "slanted", "tilted": "slanted", "leaning": "slanted", "straight": "upright",
           "light": "bright", "pale": "bright", "broad": "wide", "t-shirt": "tshirt", "tee": "tshirt",
           "trouser": "trousers", "pants": "trousers", "sweater": "pullover", "jumper": "pullover",
           "trainer": "sneaker", "shoes": "shoe", "boots": "boot",
           **{str(d): w for d, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven",
                                               "eight", "nine"])}}


@functools.lru_cache(maxsize=None)
def vocabulary(dataset: str) -> list[str]:
    """Every word a checkpoint trained on ``dataset`` knows, in token-id order."""
    v = VOCABULARY[dataset]
    words = [PAD, EMPTY, "a"] + [w for pair in v["attributes"] for w in pair]
    for nouns in v["nouns"]:
        words += [n for n in nouns if n not in words]
    return words


SEPARATORS = r"[\s!\"#$%&'()*+,./:;<=>?@\[\\\]^_`{|}~]+"  # white space and ASCII punctuation but '-'


def words_of(prompt: str) -> list[str]:
    """The prompt's words, lower-cased and with aliases resolved ("An italic 7!" -> a, slanted,
    seven). Only white space and ASCII punctuation separate words: any other character stays in its
    word (so "七" or "séven" is a word the vocabulary does not know, never silently dropped)."""
    pieces = (w.strip("-") for w in re.split(SEPARATORS, prompt.lower()))
    return [ALIASES.get(w, w) for w in pieces if w]


def tokenize(prompt: str, dataset: str) -> list[int]:
    """Token ids of a prompt, e.g. "A thick 7" -> ids of [a, thick, seven]; unknown words (a
    misspelling, a character of another script) and empty prompts are refused with the vocabulary
    in the message."""
    vocab = vocabulary(dataset)
    words = words_of(prompt or "")
    if not words:
        raise ValueError("Write a prompt, e.g. 'a thick seven'" if dataset == "mnist"
                         else "Write a prompt, e.g. 'a dark shoe'.")
    unknown = list(dict.fromkeys(w for w in words if w not in vocab))
    if unknown:
        raise ValueError(f"Unknown word(s) {', '.join(repr(w) for w in unknown)} for a {dataset} checkpoint; "
                         f"it knows: {', '.join(vocab[2:])} (and digits, 'an', 'the').")
    if len(words) > MAX_TOKENS:
        raise ValueError(f"Prompts are at most {MAX_TOKENS} words (it was trained on short captions); "
                         f"got {len(words)}.")
    return [vocab.index(w) for w in words]


def batch_tokens(ids: list[list[int]], device=None) -> torch.Tensor:
    """Pad token-id lists to (B, MAX_TOKENS) with the padding id 0."""
    out = torch.zeros(len(ids), MAX_TOKENS, dtype=torch.long)
    for i, row in enumerate(ids):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out.to(device)


def attribute_measures(x: np.ndarray, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The two measures the attribute words are cut from, per image: ink and shear (MNIST), or
    darkness and width in pixels (Fashion)."""
    x = x.astype(np.float32).reshape(len(x), 28, 28)
    i = np.arange(28, dtype=np.float32)  # row (y, downwards) and column (x) coordinates
    mass = x.sum((1, 2)) + 1e-6
    if dataset == "mnist":
        a = mass  # ink
        my, mx = np.einsum("nij,i->n", x, i) / mass, np.einsum("nij,j->n", x, i) / mass
        mu11 = np.einsum("nij,i,j->n", x, i, i) / mass - mx * my  # central moments of the ink
        mu02 = np.einsum("nij,i->n", x, i * i) / mass - my * my
        b = np.abs(mu11 / (mu02 + 1e-6))  # shear: how far the ink moves sideways per row
    else:
        ink = x > 0.1
        a = -(x * ink).sum((1, 2)) / (ink.sum((1, 2)) + 1e-6)  # dark = low mean intensity
        b = ink.any(1).sum(1).astype(np.float32)  # width in pixels
    return a, b


def attributes(x: np.ndarray, y: np.ndarray, dataset: str) -> np.ndarray:
    """(N, 2) attribute codes per image, each relative to the image's class: 1 for the top third
    (thick / slanted, or dark / wide), 2 for the bottom third (thin / upright, or bright / narrow),
    0 in between (no word)."""
    codes = np.zeros((len(x), 2), dtype=np.int64)
    for k, v in enumerate(attribute_measures(x, dataset)):
        for c in np.unique(y):
            m = y == c
            lo, hi = np.quantile(v[m], [1 / 3, 2 / 3])
            codes[m & (v >= hi), k] = 1
            codes[m & (v <= lo), k] = 2
    return codes


def captions(labels: torch.Tensor, attrs: torch.Tensor, dataset: str, p_attribute: float,
             p_uncond: float, generator=None) -> torch.Tensor:
    """Random training captions (B, MAX_TOKENS): "a", each known attribute kept with probability
    p_attribute (in random order), a noun of the class (its own 70% of the time); the empty prompt
    with probability p_uncond."""
    v, vocab = VOCABULARY[dataset], vocabulary(dataset)
    r = torch.rand(len(labels), 5, generator=generator).tolist()
    ids = []
    for (cls, a1, a2), (u, k1, k2, order, noun) in zip(torch.cat([labels[:, None], attrs], 1).tolist(), r):
        if u < p_uncond:
            ids.append([vocab.index(EMPTY)])
            continue
        adjectives = [v["attributes"][k][code - 1] for k, (code, keep) in enumerate(((a1, k1), (a2, k2)))
                      if code and keep < p_attribute]
        if order < 0.5:
            adjectives.reverse()
        nouns = v["nouns"][cls]
        word = nouns[0] if noun < 0.7 or len(nouns) == 1 else nouns[1]
        ids.append([vocab.index(w) for w in ["a", *adjectives, word]])
    return batch_tokens(ids, labels.device)


def random_prompts(n: int, dataset: str, generator=None) -> list[str]:
    """Prompts for unprompted sampling: a random class with random attributes each."""
    v = VOCABULARY[dataset]
    r = torch.rand(n, 3, generator=generator).tolist()
    out = []
    for i, (a, b, c) in enumerate(r):
        words = ["a"]
        for k, u in enumerate((a, b)):
            if u < 2 / 3:
                words.append(v["attributes"][k][int(u * 3)])
        out.append(" ".join(words + [v["nouns"][int(c * 10)][0]]))
    return out


# --- config and networks ---------------------------------------------------------------------------

@dataclass
class LatentDiffusionConfig:
    dataset: str = "mnist"
    latent_channels: int = 4  # z is (latent_channels, 7, 7)
    ae_width: int = 64  # autoencoder channels (half of it at 28×28)
    width: int = 128  # denoiser channels at 7×7
    blocks: int = 3  # residual + self-attention + cross-attention blocks
    heads: int = 4
    text_dim: int = 64  # text encoder width
    text_layers: int = 2
    T: int = 1000
    schedule: str = "linear"
    p_attribute: float = 0.5  # how often each known attribute appears in a training caption
    p_uncond: float = 0.1  # how often the prompt is dropped (for guidance)
    ae_steps: int = 1500  # stage 1: autoencoder only; then it is frozen and the diffusion trains
    lr: float = 5e-4
    batch_size: int = 128
    steps: int = 12000
    ema_decay: float = 0.0  # EMA of the text encoder's and denoiser's weights, sampled from (0 = off; checkpoints written before EMA)
    lr_decay: str = "none"  # "none" or "cosine" (to 0 at the last step)
    min_snr_gamma: float = 0.0  # min-SNR-γ loss weights, as in the pixel model (0 = the plain loss)

    def validate(self):
        if self.dataset not in VOCABULARY:
            raise ValueError(f"Unknown dataset {self.dataset!r}; choose from {sorted(VOCABULARY)}.")
        for name, value, low, high in [("latent channels", self.latent_channels, 1, 64),
                                       ("autoencoder width", self.ae_width, 2, 1024),
                                       ("denoiser width", self.width, 8, 2048), ("blocks", self.blocks, 1, 32),
                                       ("text width", self.text_dim, 8, 1024),
                                       ("text layers", self.text_layers, 1, 16),
                                       ("T (noising steps)", self.T, 2, 10_000),
                                       ("attribute rate", self.p_attribute, 0.0, 1.0),
                                       ("prompt dropout", self.p_uncond, 0.0, 1.0),
                                       ("learning rate", self.lr, 1e-7, 1.0), ("batch size", self.batch_size, 1, 4096),
                                       ("steps", self.steps, 1, 10_000_000), ("EMA decay", self.ema_decay, 0.0, 0.9999),
                                       ("autoencoder steps", self.ae_steps, 0, self.steps - 1),
                                       ("min-SNR γ", self.min_snr_gamma, 0.0, 1000.0)]:
            check_range(name, value, low, high)
        check_lr_decay(self.lr_decay)
        if self.width % self.heads or self.text_dim % self.heads or self.width % 8:
            raise ValueError("width must be a multiple of 8 and of heads, and text width a multiple of heads.")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine'; got {self.schedule!r}.")


PRESETS = {
    "book": {"ema_decay": 0.999},  # no book; Stable Diffusion samples from an EMA of the weights too
    "cpu": {"width": 96, "blocks": 2, "ae_steps": 1000, "steps": 5000, "batch_size": 96, "ema_decay": 0.999},
    "tiny": {"latent_channels": 2, "ae_width": 4, "width": 8, "blocks": 1, "heads": 2, "text_dim": 8,
             "text_layers": 1, "T": 50, "ae_steps": 1, "batch_size": 8, "steps": 4},
}


class Autoencoder(nn.Module):
    """28×28 pixels <-> a (C, 7, 7) latent, by two stride-2 stages each way."""

    def __init__(self, c: LatentDiffusionConfig):
        super().__init__()
        w, h = c.ae_width, max(c.ae_width // 2, 1)
        act = nn.SiLU
        self.encoder = nn.Sequential(
            nn.Conv2d(1, h, 3, padding=1), act(), nn.Conv2d(h, h, 4, 2, 1), act(),  # 14×14
            nn.Conv2d(h, w, 3, padding=1), act(), nn.Conv2d(w, w, 4, 2, 1), act(),  # 7×7
            nn.Conv2d(w, c.latent_channels, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Conv2d(c.latent_channels, w, 3, padding=1), act(), nn.ConvTranspose2d(w, w, 4, 2, 1), act(),
            nn.Conv2d(w, h, 3, padding=1), act(), nn.ConvTranspose2d(h, h, 4, 2, 1), act(),
            nn.Conv2d(h, 1, 3, padding=1))  # logits

    def forward(self, x):
        return self.decoder(self.encoder(x))


class TextEncoder(nn.Module):
    """Prompt token ids (B, L) -> one context vector per token (B, L, d), padding masked."""

    def __init__(self, vocab: int, c: LatentDiffusionConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab, c.text_dim)
        self.position = nn.Parameter(torch.zeros(MAX_TOKENS, c.text_dim))
        layer = nn.TransformerEncoderLayer(c.text_dim, c.heads, 2 * c.text_dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, c.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.text_dim)

    def forward(self, ids):
        h = self.embed(ids) + self.position[:ids.shape[1]]
        return self.norm(self.layers(h, src_key_padding_mask=ids == 0))


class Block(nn.Module):
    """Residual conv block (time added), then self-attention over the 49 positions, then
    cross-attention from positions to prompt tokens, each with a residual connection."""

    def __init__(self, c: LatentDiffusionConfig):
        super().__init__()
        w = c.width
        self.norm1, self.conv1 = nn.GroupNorm(8, w), nn.Conv2d(w, w, 3, padding=1)
        self.time = nn.Linear(w, w)
        self.norm2, self.conv2 = nn.GroupNorm(8, w), nn.Conv2d(w, w, 3, padding=1)
        self.norm_self = nn.LayerNorm(w)
        self.self_attn = nn.MultiheadAttention(w, c.heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(w)
        self.cross_attn = nn.MultiheadAttention(w, c.heads, kdim=c.text_dim, vdim=c.text_dim, batch_first=True)
        self.attention = None  # (B, heads, 49, L) cross-attention of the last call, when kept

    def forward(self, h, v, context, pad, keep: bool = False):
        r = self.conv1(F.silu(self.norm1(h))) + self.time(v)[:, :, None, None]
        h = h + self.conv2(F.silu(self.norm2(r)))
        b, w, height, width = h.shape
        s = h.flatten(2).transpose(1, 2)  # (B, 49, w)
        q = self.norm_self(s)
        s = s + self.self_attn(q, q, q, need_weights=False)[0]
        out, att = self.cross_attn(self.norm_cross(s), context, context, key_padding_mask=pad,
                                   need_weights=keep, average_attn_weights=False)
        self.attention = att if keep else None
        return (s + out).transpose(1, 2).reshape(b, w, height, width)


class Denoiser(nn.Module):
    """ε_θ(z_t, t, context) at 7×7."""

    def __init__(self, c: LatentDiffusionConfig):
        super().__init__()
        w = c.width
        self.inp = nn.Conv2d(c.latent_channels, w, 3, padding=1)
        self.time = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.blocks))
        self.out = nn.Sequential(nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, c.latent_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, z, t, context, pad, keep=False):
        v = self.time(time_embedding(t, self.inp.out_channels))
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, v, context, pad, keep)
        return self.out(h)


class LatentDiffusion(nn.Module):
    def __init__(self, c: LatentDiffusionConfig):
        super().__init__()
        self.dataset, self.T, self.latent_channels = c.dataset, c.T, c.latent_channels
        self.ae = Autoencoder(c)
        self.text = TextEncoder(len(vocabulary(c.dataset)), c)
        self.denoiser = Denoiser(c)
        self.register_buffer("alpha_bar", alpha_bars(c.schedule, c.T), persistent=False)
        self.register_buffer("latent_std", torch.ones(()))  # measured while the autoencoder trains
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))  # which stage training is in

    def encode(self, x):
        """Images in [0, 1] -> scaled latents (B, C, 7, 7)."""
        return self.ae.encoder(x * 2 - 1) / self.latent_std

    def decode(self, z):
        """Scaled latents -> images in [0, 1]."""
        return torch.sigmoid(self.ae.decoder(z * self.latent_std))

    def context(self, ids):
        return self.text(ids), ids == 0

    def eps(self, z, t, ids, keep=False):
        context, pad = self.context(ids)
        return self.denoiser(z, t, context, pad, keep)


def build(config: LatentDiffusionConfig) -> LatentDiffusion:
    return LatentDiffusion(config)


# --- training --------------------------------------------------------------------------------------

def data(config: LatentDiffusionConfig, split: str):
    """Images, labels and the two attribute codes measured on each image."""
    from models.core import data as datasets

    x, y = datasets.images(config.dataset, split)
    return (x, y, _attribute_codes(config.dataset, split)), {
        "title": f"{datasets.DATASETS[config.dataset]['title']} with generated captions",
        "dataset": config.dataset, "captions": "a [" + " | ".join(
            "/".join(p) for p in VOCABULARY[config.dataset]["attributes"]) + "] <class noun>"}


@functools.lru_cache(maxsize=None)
def _attribute_codes(dataset: str, split: str) -> torch.Tensor:
    from models.core import data as datasets

    x, y = datasets.load_uint8(dataset, split)
    return torch.from_numpy(attributes(x / 255.0, y, dataset))


def _diffusion_loss(model, x, y, attrs, config, generator=None):
    with torch.no_grad():
        z0 = model.encode(x)
    ids = captions(y.cpu(), attrs.cpu(), model.dataset, config.p_attribute, config.p_uncond, generator).to(x.device)
    t = torch.randint(0, model.T, (len(x),), generator=generator).to(x.device)
    noise = torch.randn(z0.shape, generator=generator).to(x.device)
    err = (model.eps(q_sample(model.alpha_bar, z0, t, noise), t, ids) - noise).pow(2).mean((1, 2, 3))
    if config.min_snr_gamma:
        err = err * min_snr_weights(model.alpha_bar, t, config.min_snr_gamma)
    return err.mean()


def train_step(model: LatentDiffusion, batch, config: LatentDiffusionConfig) -> dict:
    """Stage 1 (the first ``ae_steps``): reconstruct images through the latent. Stage 2: predict the
    noise added to frozen latents, given the caption."""
    x, y, attrs = batch
    model.steps_done += 1
    if model.steps_done <= config.ae_steps:
        z = model.ae.encoder(x * 2 - 1)
        recon = F.binary_cross_entropy_with_logits(model.ae.decoder(z), x)
        with torch.no_grad():  # running estimate of the latents' spread, used to scale them
            model.latent_std.lerp_(z.std(), 0.05 if model.steps_done > 1 else 1.0)
        return {"loss": recon + 1e-4 * z.pow(2).mean(), "reconstruction": recon.detach()}
    return {"loss": _diffusion_loss(model, x, y, attrs, config)}


def reconstruction_bce(x_hat, x) -> torch.Tensor:
    """Binary cross-entropy per pixel of images ``x`` against their reconstruction ``x_hat`` (both in
    [0, 1]), the autoencoder's held-out measure; x̂ is kept off 0 and 1 so a saturated pixel costs a
    finite amount."""
    return F.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x)


@torch.no_grad()
def autoencode(model: LatentDiffusion, x) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Images (B, 1, 28, 28) in [0, 1] -> their scaled latents (B, C, 7, 7), the decoder's
    reconstruction (B, 1, 28, 28) and its BCE per pixel."""
    device = device_of(model)
    z = model.encode(x.to(device))
    x_hat = model.decode(z)
    return z.cpu(), x_hat.cpu(), reconstruction_bce(x_hat, x.to(device)).item()


@torch.no_grad()
def evaluate(model: LatentDiffusion, x, y, attrs, batch_size: int = 1000) -> dict:
    """Held-out autoencoder reconstruction (BCE per pixel), latent noise-prediction MSE at seeded
    timesteps, and how well prompts are followed: the project's classifier's accuracy on "a <class>"
    samples, and the ink ratio of "a thick …" to "a thin …" samples (MNIST) or dark to bright (Fashion)."""
    from models.core import evaluate as classifier
    from models.core.family import last, seeded

    model.eval()
    device = device_of(model)
    config = LatentDiffusionConfig(dataset=model.dataset, p_uncond=0.0, p_attribute=1.0)
    g = torch.Generator().manual_seed(0)
    recon = mse = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb, ab = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device), attrs[i:i + batch_size]
        recon += reconstruction_bce(model.decode(model.encode(xb)), xb).item() * len(xb)
        mse += _diffusion_loss(model, xb, yb, ab, config, g).item() * len(xb)
    nouns = [n[0] for n in VOCABULARY[model.dataset]["nouns"]]
    per = 100  # samples per class: reads a 95 % bar to about ±2 %
    prompts = [f"a {noun}" for noun in nouns for _ in range(per)]
    samples = last(sample(model, len(prompts), seeded(0), prompt=prompts, steps=30))
    labels = torch.arange(10).repeat_interleave(per)
    by_class = classifier.class_accuracy(samples, labels, model.dataset)
    (strong, weak), (strong2, weak2) = VOCABULARY[model.dataset]["attributes"]
    ink = {w: last(sample(model, 100, seeded(1), prompt=[f"a {w} {nouns[i % 10]}" for i in range(100)],
                          steps=30)).mean().item() for w in (strong, weak)}
    # combined prompts: both attributes at once, at either end ("a thick slanted seven", "a thin upright seven")
    combined, measures, pair_labels = [], {}, torch.arange(10).repeat_interleave(20)
    for words in ((strong, strong2), (weak, weak2)):
        images = last(sample(model, 200, seeded(2), prompt=[f"a {' '.join(words)} {nouns[i // 20]}"
                                                             for i in range(200)], steps=30))
        combined.append(classifier.class_accuracy(images, pair_labels, model.dataset)["accuracy"])
        a, b = attribute_measures(images.numpy(), model.dataset)
        measures.update({words[0]: float(np.mean(a)), words[1]: float(np.mean(b))})
    return {"test_reconstruction_bce": recon / len(x), "test_latent_mse": mse / len(x),
            "prompt_class_accuracy": by_class["accuracy"], "prompt_class_worst": [by_class["worst_class"], by_class["worst"]],
            "prompt_class_per_class": by_class["per_class"], f"ink_ratio_{strong}_to_{weak}": ink[strong] / ink[weak],
            "combined_prompt_class_accuracy": float(np.mean(combined)), "combined_prompt_measures": measures}


# --- sampling --------------------------------------------------------------------------------------

@dataclass
class Frame:
    """One step of a text-to-image run."""

    step: int  # 1..steps
    t: int  # the noise level just removed
    z: torch.Tensor  # (n, C, 7, 7) the current latents z_t
    z0: torch.Tensor  # (n, C, 7, 7) the model's guess of the clean latents
    attention: torch.Tensor | None  # (n, L, 7, 7) cross-attention per prompt token, mean over heads,
    #                                 blocks and the steps so far (the conditional pass), when kept


def word_attention(attention: torch.Tensor, n_words: int, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's cross-attention (L, 7, 7) -> each of its first ``n_words`` words' map over the
    image, upsampled to (n_words, size, size), and each word's share of all attention (n_words,),
    which sums to 1 over the prompt's words (padding gets none)."""
    check_range("number of words", n_words, 1, attention.shape[0])
    att = attention[:n_words].float()
    maps = F.interpolate(att[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return maps, att.mean((1, 2))


def prompt_ids(model: LatentDiffusion, prompt, n: int, generator=None) -> tuple[torch.Tensor, list[str]]:
    """(n, MAX_TOKENS) ids and the n prompts: one prompt for all, a list of n, or None for random ones."""
    if prompt is None:
        prompts = random_prompts(n, model.dataset, generator)
    elif isinstance(prompt, str):
        prompts = [prompt] * n
    else:
        prompts = list(prompt)
        if len(prompts) != n:
            raise ValueError(f"Give one prompt, or one per sample ({n}); got {len(prompts)}.")
    return batch_tokens([tokenize(p, model.dataset) for p in prompts], device_of(model)), prompts


@torch.no_grad()
def generate(model: LatentDiffusion, n: int, generator=None, prompt=None, steps: int = 50, eta: float = 0.0,
             guidance: float = 3.0, keep_attention: bool = False):
    """The reverse process in latent space, one :class:`Frame` per DDIM step."""
    check_range("number of samples", n, 1, 10_000)
    check_range("guidance scale", guidance, 0.0, 50.0)
    ts = timesteps(model.T, int(steps))
    model.eval()
    device = device_of(model)
    ids, _ = prompt_ids(model, prompt, n, generator)
    empty = batch_tokens([[vocabulary(model.dataset).index(EMPTY)]] * n, device)
    context, pad = model.context(torch.cat([ids, empty]) if guidance != 1.0 else ids)
    attn_sum, seen = None, 0

    def eps_fn(z, t):
        nonlocal attn_sum, seen
        if guidance != 1.0:
            e = model.denoiser(torch.cat([z, z]), torch.cat([t, t]), context, pad, keep_attention)
            e_c, e_u = e.chunk(2)
            e = guided(e_c, e_u, guidance)
        else:
            e = model.denoiser(z, t, context, pad, keep_attention)
        if keep_attention:  # the conditional half: which word each latent position listened to
            a = torch.stack([b.attention[:n] for b in model.denoiser.blocks]).mean((0, 2))  # (n, 49, L)
            attn_sum = a if attn_sum is None else attn_sum + a
            seen += 1
        return e

    shape = (n, model.latent_channels, 7, 7)
    z_T = torch.randn(shape, generator=generator, device=generator.device if generator else "cpu").to(device)
    for i, (t, z, z0) in enumerate(reverse(eps_fn, model.alpha_bar, z_T, ts, generator, eta, clip=None)):
        attention = None
        if keep_attention:
            attention = (attn_sum / seen).transpose(1, 2).reshape(n, MAX_TOKENS, 7, 7).cpu()
        yield Frame(i + 1, t, z, z0, attention)


@torch.no_grad()
def sample(model: LatentDiffusion, n: int, generator=None, prompt=None, steps: int = 50, eta: float = 0.0,
           guidance: float = 3.0, preview_every: int = 10):
    """Images (n, 1, 28, 28) in [0, 1] for a prompt (one for all, a list, or None for random prompts).
    Yields the decoded x̂_0 every ``preview_every`` steps and the final images last."""
    check_range("preview interval", preview_every, 1, 10_000)
    total = len(timesteps(model.T, int(steps)))
    for f in generate(model, n, generator, prompt, steps, eta, guidance):
        if f.step == total:
            yield model.decode(f.z).cpu()
        elif f.step % preview_every == 0:
            yield model.decode(f.z0).cpu()


def describe(cfg: dict) -> str:
    return f"latent {cfg['latent_channels']}×7×7, denoiser width {cfg['width']}, {cfg['blocks']} blocks"


def card_lines(m: dict) -> list[str]:
    """The card's held-out lines: the autoencoder, the denoiser, and how well prompts are followed."""
    lines = []
    if "test_reconstruction_bce" in m:
        lines.append(f"Test set: autoencoder reconstruction BCE **{m['test_reconstruction_bce']:.4f}** per pixel, "
                     f"latent noise-prediction MSE **{m['test_latent_mse']:.4f}**")
    if "prompt_class_accuracy" in m:
        line = (f"Follows prompts: the classifier reads the asked-for class in "
                f"**{m['prompt_class_accuracy']:.0%}** of 'a <class>' samples (chance 10%)")
        for key, ratio in m.items():  # ink_ratio_thick_to_thin (digits) or ink_ratio_dark_to_bright
            if key.startswith("ink_ratio_"):
                strong, weak = key.removeprefix("ink_ratio_").split("_to_")
                line += f"; '{strong}' samples carry **{ratio:.2f}×** the ink of '{weak}' ones"
        if "prompt_class_worst" in m:
            line += f"; worst class {m['prompt_class_worst'][0]} {m['prompt_class_worst'][1]:.0%}"
        lines.append(line)
    if "combined_prompt_class_accuracy" in m:
        v = m["combined_prompt_measures"]
        s1, s2, w1, w2 = v  # the strong words, then the weak ones
        lines.append(f"Combined prompts ('a {s1} {s2} <class>', 'a {w1} {w2} <class>'): class read right in "
                     f"**{m['combined_prompt_class_accuracy']:.0%}**; {s1} {v[s1]:.3g} against {w1} {v[w1]:.3g}, "
                     f"{s2} {v[s2]:.3g} against {w2} {v[w2]:.3g} (the measures the words were cut from)")
    return lines


FAMILY = Family(
    name="ldm",
    title="Latent diffusion (text to image)",
    config_cls=LatentDiffusionConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    presets=PRESETS,
    score_kwargs={"steps": 50},
    data=data,
    describe=describe,
    card_lines=card_lines,
    ema_parts=("text", "denoiser"),  # the autoencoder is trained first, then frozen: its raw weights are kept
)
