"""M, the memory: an MDN-RNN that predicts the next code z from the current code and action.

An LSTM with 256 hidden units reads ``[z_t, a_t]`` and its output parametrises, for each of the 32
dimensions of z separately, a mixture of 5 Gaussians over ``z_{t+1}`` (a mixture density network,
Bishop 1994; Graves 2013; Ha & Schmidhuber 2018):

    p(z_{t+1} | z_≤t, a_≤t) = Π_d Σ_k π_dk N(z_{t+1,d}; μ_dk, σ_dk²),   (π, μ, log σ) = W h_t + b.

Training minimises the negative log-likelihood of the real next code. The hidden state ``h_t``
is M's summary of the past (speed, where the road was going); the controller may read it.

**Dreaming.** Feeding M its own samples rolls the world forward with no environment at all; V's
decoder shows the dream. A *temperature* τ reshapes each mixture before the draw, as the paper
does: mixture logits are divided by τ and σ is multiplied by √τ, so τ < 1 gives a calmer, more
predictable dream and τ > 1 a wilder one (the paper trains its controller in dreams at τ = 1.15
so that it cannot exploit M's mistakes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import check_range, device_of

LOG_2PI = math.log(2 * math.pi)


@dataclass
class MemoryConfig:
    latent_dim: int = 32  # V's z size
    action_dim: int = 3  # steer, gas, brake
    hidden: int = 256  # the paper's LSTM size for CarRacing
    mixtures: int = 5  # Gaussians per z dimension, as in the paper
    lr: float = 1e-3  # Adam
    batch_size: int = 16  # sequences per batch
    seq_len: int = 100  # training windows (truncated back-propagation through time)
    epochs: int = 20

    def validate(self):
        check_range("latent size", self.latent_dim, 1, 256)
        check_range("hidden size", self.hidden, 1, 4096)
        check_range("mixture components", self.mixtures, 1, 64)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("sequence length", self.seq_len, 2, 10_000)
        check_range("epochs", self.epochs, 1, 100_000)


PRESETS = {
    "book": {},
    "cpu": {"epochs": 30},
    "tiny": {"latent_dim": 4, "hidden": 8, "mixtures": 2, "batch_size": 2, "seq_len": 8, "epochs": 1},
}


class Memory(nn.Module):
    def __init__(self, c: MemoryConfig):
        super().__init__()
        self.latent_dim, self.mixtures, self.hidden = c.latent_dim, c.mixtures, c.hidden
        self.lstm = nn.LSTM(c.latent_dim + c.action_dim, c.hidden, batch_first=True)
        self.head = nn.Linear(c.hidden, 3 * c.mixtures * c.latent_dim)  # logits, mu, log sigma

    def forward(self, z, a, state=None):
        """``z`` (B, T, Z), ``a`` (B, T, 3) -> mixture parameters, each (B, T, Z, K), the LSTM
        outputs h (B, T, H) and the final (h, c) state."""
        h, state = self.lstm(torch.cat([z, a], -1), state)
        B, T, _ = h.shape
        logit, mu, log_sigma = self.head(h).view(B, T, self.latent_dim, 3, self.mixtures).unbind(3)
        return (logit, mu, log_sigma.clamp(-7, 3)), h, state


def build(config: MemoryConfig) -> Memory:
    return Memory(config)


def mixture_nll(params, target) -> torch.Tensor:
    """−log p(target) per element (B, T, Z) under each dimension's Gaussian mixture."""
    logit, mu, log_sigma = params
    t = target.unsqueeze(-1)
    log_n = -0.5 * (((t - mu) / log_sigma.exp()) ** 2 + LOG_2PI) - log_sigma
    return -torch.logsumexp(F.log_softmax(logit, -1) + log_n, -1)


def loss(model: Memory, z, a) -> dict:
    """Mean NLL (nats per z dimension) of each next code given the codes and actions before it."""
    params, _, _ = model(z[:, :-1], a[:, :-1])
    return {"loss": mixture_nll(params, z[:, 1:]).mean()}


def windows(mu, sigma, actions, starts, seq_len, generator):
    """Training windows: one draw z ~ q(z|x) per frame (as the paper does), (B, L, Z) and (B, L, 3)."""
    idx = torch.as_tensor(starts)[:, None] + torch.arange(seq_len)[None]
    z = mu[idx] + sigma[idx] * torch.randn(idx.shape + (mu.shape[1],), generator=generator)
    return z, actions[idx]


def window_starts(episodes: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Every index where a window of ``seq_len`` frames of one episode starts (stride half a window)."""
    starts = []
    ep = episodes.tolist()
    begin = 0
    for i in range(1, len(ep) + 1):
        if i == len(ep) or ep[i] != ep[begin]:
            starts += list(range(begin, i - seq_len + 1, max(1, seq_len // 2)))
            begin = i
    return torch.tensor(starts, dtype=torch.long)


def train(model: Memory, mu, sigma, actions, episodes, config: MemoryConfig, generator, on_step=None,
          should_stop=lambda: False) -> list[float]:
    """Adam on random windows of the encoded rollouts; returns the loss curve."""
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    starts = window_starts(episodes, config.seq_len)
    if len(starts) == 0:
        raise ValueError(f"No episode is as long as the sequence length {config.seq_len}.")
    per_epoch = max(1, len(starts) // config.batch_size)
    total, curve, step = per_epoch * config.epochs, [], 0
    model.train()
    for _ in range(config.epochs):
        order = starts[torch.randperm(len(starts), generator=generator)]
        for b in range(per_epoch):
            if should_stop():
                return curve
            z, a = windows(mu, sigma, actions, order[b * config.batch_size:(b + 1) * config.batch_size],
                           config.seq_len, generator)
            m = loss(model, z, a)
            opt.zero_grad()
            m["loss"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            curve.append(m["loss"].item())
            if on_step:
                on_step(step, total, {"loss": curve[-1]})
    model.eval()
    return curve


@torch.no_grad()
def evaluate(model: Memory, mu, actions, episodes, train_mu=None) -> dict:
    """Held-out NLL of each next code (nats per z dimension, codes = V's ``mu``), beside two
    single-Gaussian baselines: one Gaussian per dimension fitted to the training codes (what a
    model that ignores time knows) and "the next code is this code plus Gaussian noise"."""
    model.eval()
    train_mu = mu if train_mu is None else train_mu
    nll, gauss, persist, n = 0.0, 0.0, 0.0, 0
    m, s = train_mu.mean(0), train_mu.std(0).clamp_min(1e-4)
    d = []
    for e in episodes.unique():
        zi = mu[episodes == e]
        if len(zi) > 1:
            d.append(zi[1:] - zi[:-1])
    step_sd = torch.cat(d).std(0).clamp_min(1e-4)
    for e in episodes.unique():
        sel = episodes == e
        z, a = mu[sel][None], actions[sel][None]
        if z.shape[1] < 2:
            continue
        params, _, _ = model(z[:, :-1], a[:, :-1])
        nll += mixture_nll(params, z[:, 1:]).sum().item()
        target, prev = z[0, 1:], z[0, :-1]
        gauss += (0.5 * (((target - m) / s) ** 2 + LOG_2PI) + s.log()).sum().item()
        persist += (0.5 * (((target - prev) / step_sd) ** 2 + LOG_2PI) + step_sd.log()).sum().item()
        n += target.numel()
    return {"nll": nll / n, "gaussian_nll": gauss / n, "persistence_nll": persist / n}


@dataclass
class DreamStep:
    t: int
    z: torch.Tensor  # (Z,) the dreamt code
    h: torch.Tensor  # (H,) M's hidden state after reading it
    action: torch.Tensor  # (3,) the action that led here


def sample_next(params, temperature: float, generator) -> torch.Tensor:
    """One draw of the next code from the mixtures (B, Z, K) at ``temperature``."""
    logit, mu, log_sigma = params
    probs = F.softmax(logit / temperature, -1)  # (B, Z, K)
    k = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view(probs.shape[:-1])
    mu_k = mu.gather(-1, k[..., None])[..., 0]
    sigma_k = log_sigma.gather(-1, k[..., None])[..., 0].exp() * math.sqrt(temperature)
    return mu_k + sigma_k * torch.randn(mu_k.shape, generator=generator)


@torch.no_grad()
def dream(model: Memory, z0, actions, temperature: float = 1.0, generator=None, policy=None, steps=None,
          state=None):
    """Roll M forward from code ``z0`` (Z,), yielding a :class:`DreamStep` per step.

    Actions come from ``actions`` (T, 3), or from ``policy(z, h) -> action`` for ``steps`` steps.
    ``state`` is the LSTM's (h, c) after the real frames before ``z0`` (a :class:`Tracker`'s), if any.
    The same seed (generator), start and actions give the same dream, bit for bit.
    """
    check_range("temperature", temperature, 0.01, 5.0)
    model.eval()
    z = torch.as_tensor(z0, dtype=torch.float32).reshape(1, 1, -1)
    if z.shape[-1] != model.latent_dim:
        raise ValueError(f"The start code must have {model.latent_dim} numbers; got {z.shape[-1]}.")
    n = steps if policy is not None else len(actions)
    h = state[0][0, 0].clone() if state is not None else torch.zeros(model.hidden)
    for t in range(n):
        a = torch.as_tensor(policy(z[0, 0], h) if policy is not None else actions[t], dtype=torch.float32)
        params, out, state = model(z, a.reshape(1, 1, 3), state)
        h = out[0, 0]
        z = sample_next(tuple(p[:, 0] for p in params), temperature, generator)[:, None]
        yield DreamStep(t + 1, z[0, 0].clone(), h.clone(), a)


class Tracker:
    """M's hidden state alongside a real episode: ``step(z, a)`` after each action returns h."""

    def __init__(self, model: Memory):
        self.model, self.state = model, None
        self.h = torch.zeros(model.hidden)

    @torch.no_grad()
    def step(self, z, a) -> torch.Tensor:
        z = torch.as_tensor(z, dtype=torch.float32).reshape(1, 1, -1)
        a = torch.as_tensor(a, dtype=torch.float32).reshape(1, 1, 3)
        _, out, self.state = self.model(z, a, self.state)
        self.h = out[0, 0]
        return self.h
