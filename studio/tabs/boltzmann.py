"""The Boltzmann machines tab (Goodfellow et al. ch. 20): an RBM's block Gibbs chain stepped v → h → v′
with its hidden activations, its learned filters, clamped fill-in of part of an image, an AIS estimate
of log Z and the test log-likelihood with its error bar; a DBN grown by one greedily trained layer; a
DBM's mean-field inference converging; DBN and DBM samples and their cost side by side; and RBMs, DBNs
and DBMs trained in the page (CD-k or PCD, k as a slider).

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them.
"""
from __future__ import annotations

import math
import time

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from models.core.family import built, seeded
from models.energy import ais, deep_boltzmann as deep, rbm
from studio import parts, widgets
from studio.tabs.autoregressive import REGIONS, region_mask
from studio.widgets import friendly, number, whole

TITLE = "Boltzmann machines"
FAMILIES = ("rbm", "dbn", "dbm")
SIZE = 28
MAX_CHAINS = 16
MAX_SWEEPS = 5000
PREVIEW_S = 0.1  # stream at most this often
FIGURE_S = 0.5  # … and a drawn figure (slower to render) at most this often
STARTS = ("noise", "test image")
TRAIN_MODELS = ("RBM", "DBN", "DBM")
HEAT_UNITS = 100  # hidden units shown in the heatmap


# --- loading ------------------------------------------------------------------------------------------

def loaded(name: str, families=FAMILIES, what: str = ""):
    """``(family, model, config, card)`` of a checkpoint of one of ``families``."""
    family = widgets.family_of(families, name, what)
    model, config, card = widgets.load(family, name)
    return family, model, config, card


def the_rbm(name: str):
    """The RBM of an RBM checkpoint, refusing a DBN or DBM one with a clear message."""
    family = widgets.family_of(FAMILIES, name)
    if family != "rbm":
        raise ValueError(f"{name} is a {family.upper()} checkpoint; this view runs an RBM: choose an RBM checkpoint "
                         "(rbm_mnist) above.")
    return loaded(name, ("rbm",))


def test_images(config) -> torch.Tensor:
    return rbm.data(config, "test")[0][0]


def show(images, nrow: int = 8, scale: int = 4) -> np.ndarray:
    images = torch.as_tensor(images)
    return widgets.mosaic(images, min(len(images), nrow), pad=1, scale=scale)


def dbn_dbm_choices(family: str) -> list[tuple[str, str]]:
    return widgets.checkpoint_choices(family)


# --- the Gibbs chain ------------------------------------------------------------------------------------

def chain_figure(step: rbm.GibbsStep, what: str) -> np.ndarray:
    """The chains' p(v′|h) as images beside the hidden activations p(h|v) that produced them."""
    fig = Figure(figsize=(10, 3.4), dpi=90, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 2])
    pv = rbm.images(step.p_v)
    ax1.imshow(widgets.mosaic(pv, min(len(pv), 4), pad=1), cmap="gray", vmin=0, vmax=255)
    ax1.set_title(f"p(v′ | h) after sweep {step.t}", fontsize=9)
    ax1.axis("off")
    heat = step.p_h[:, :HEAT_UNITS].numpy()
    im = ax2.imshow(heat, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax2.set_xlabel(f"hidden unit j (first {heat.shape[1]})")
    ax2.set_ylabel("chain")
    ax2.set_title(f"hidden activations p(h_j = 1 | v), {what}", fontsize=9)
    fig.colorbar(im, ax=ax2, fraction=0.03)
    return widgets.figure_to_array(fig)


def chain_start(model, config, start: str, index, n: int, generator) -> tuple[torch.Tensor, str]:
    if start not in STARTS:
        raise ValueError(f"Start must be one of {', '.join(STARTS)}; got {start!r}.")
    if start == "noise":
        return rbm.start_noise(model, n, generator), "from independent pixels"
    x = test_images(config)
    i = whole(index, "Test image number", 0, len(x) - 1)
    return rbm.flat(x[i:i + 1]).repeat(n, 1), f"from test image {i}"


@friendly
def gibbs(checkpoint: str, seed, n, start: str, index, sweeps, state=None, fresh: bool = False):
    """Advance the visitor's block Gibbs chains by ``sweeps`` sweeps v → h → v′ (a new chain when asked,
    or when the checkpoint or settings changed), streamed; returns the chain for the next click."""
    family, model, config, _ = the_rbm(checkpoint)
    seed = widgets.seed_of(seed)
    n = whole(n, "Number of chains", 1, MAX_CHAINS)
    sweeps = whole(sweeps, "Sweeps per click", 1, MAX_SWEEPS)
    key = (checkpoint, seed, n, start, str(index))
    if fresh or not isinstance(state, dict) or state.get("key") != key:
        generator = seeded(seed)
        v, what = chain_start(model, config, start, index, n, generator)
        state = {"key": key, "v": v, "t": 0, "what": what, "rng": generator.get_state()}
    generator = torch.Generator().set_state(state["rng"])  # the chain's own random stream, continued
    t0, last_yield, step = time.time(), 0.0, None
    for step in rbm.chain(model, state["v"], sweeps, generator):
        if step.t < sweeps and time.time() - last_yield > FIGURE_S:
            last_yield = time.time()
            shown = rbm.GibbsStep(state["t"] + step.t, step.p_h, step.p_v, step.v)
            yield chain_figure(shown, state["what"]), f"Sweep {state['t'] + step.t}…", state
    state = {**state, "v": step.v, "t": state["t"] + sweeps, "rng": generator.get_state()}
    final = rbm.GibbsStep(state["t"], step.p_h, step.p_v, step.v)
    active = float(step.p_h.mean())
    yield chain_figure(final, state["what"]), (
        f"{n} chains {state['what']}, seed {seed}: **{state['t']} sweeps** so far ({sweeps} in "
        f"{time.time() - t0:.2f} s). Mean hidden activation {active:.3f}. Each sweep samples every hidden unit "
        "at once given v, then every pixel at once given h: the layers are conditionally independent."), state


def new_chain(checkpoint: str, seed, n, start: str, index, sweeps, state=None):
    """Start fresh chains from the chosen start and run ``sweeps`` sweeps."""
    yield from gibbs(checkpoint, seed, n, start, index, sweeps, state, fresh=True)


# --- filters, fill-in, AIS -------------------------------------------------------------------------------

@friendly
def filters(checkpoint: str, n):
    """The first n hidden units' weights to the pixels as images (each scaled to its own range); for a
    DBN or DBM, the first layer's."""
    family, model, _, _ = loaded(checkpoint)
    first = model if family == "rbm" else model.rbms[0]
    n = whole(n, "Number of filters", 1, first.hidden)
    picture = show(rbm.filters(first, n), nrow=min(n, 16), scale=3)
    return picture, (f"{checkpoint}: weights W_{{:,j}} of the first {n} of {first.hidden} hidden units"
                     + ("" if family == "rbm" else " of the first layer") + ": strokes and parts of digits; each unit "
                     "turns on when its pattern (bright) is inked and its surround (dark) is not.")


@friendly
def fill_in(checkpoint: str, index, region: str, seed, n, sweeps):
    """Clamp everything but the region of a test image and let the chain fill the rest, streamed: the strip
    shows the original, the observed part (grey: missing) and n completions."""
    family, model, config, _ = the_rbm(checkpoint)
    seed = widgets.seed_of(seed)
    n = whole(n, "Number of completions", 1, MAX_CHAINS)
    sweeps = whole(sweeps, "Fill-in sweeps", 1, MAX_SWEEPS)
    x = test_images(config)
    i = whole(index, "Test image number", 0, len(x) - 1)
    x = x[i:i + 1]
    known = region_mask(region)
    observed = torch.where(known, x, torch.full_like(x, 0.5))
    head = torch.cat([x, observed])
    last_yield, step = 0.0, None
    for step in rbm.fill_in(model, x.repeat(n, 1, 1, 1), known.repeat(n, 1, 1, 1), sweeps, seeded(seed),
                            every=max(1, sweeps // 50)):
        if time.time() - last_yield > PREVIEW_S:
            last_yield = time.time()
            yield show(torch.cat([head, rbm.images(step.p_v)])), f"Sweep {step.t} of {sweeps}…", None, None
    picture = show(torch.cat([head, rbm.images(step.p_v)]))
    md = (f"Test image {i}, {region} missing, {n} completions after {sweeps} sweeps, seed {seed}. The known pixels are "
          "clamped at every sweep, so the chain samples p(v_missing | v_known); completions shown as p(v | h).")
    record = parts.provenance(family, checkpoint, seed, index=i, region=region, n=n, sweeps=sweeps)
    yield picture, *parts.publish(picture, record, md, f"{checkpoint}_fill_seed{seed}.png")


def weights_figure(log_w: torch.Tensor) -> np.ndarray:
    fig = Figure(figsize=(5, 2.6), dpi=90, layout="constrained")
    ax = fig.subplots()
    rel = (log_w - log_w.max()).numpy()
    ax.hist(rel, bins=30, color="C0")
    ax.set_xlabel("log w − max log w (per AIS run)")
    ax.set_ylabel("runs")
    ax.set_title("importance weights: a long left tail is fine, a few dominant runs are not", fontsize=8)
    return widgets.figure_to_array(fig)


@friendly
def estimate(checkpoint: str, runs, betas, test_n, seed):
    """AIS estimate of log Z (streamed as it anneals) and the test log-likelihood it gives, with the ±3σ
    interval of Salakhutdinov & Murray."""
    family, model, config, card = the_rbm(checkpoint)
    runs = whole(runs, "AIS runs", 2, 1000)
    betas = whole(betas, "Temperatures", 10, 50_000)
    test_n = whole(test_n, "Test images", 1, 10_000)
    seed = widgets.seed_of(seed)
    base = ais.base_bias(rbm.flat(rbm.data(config, "train")[0][0]))
    v = rbm.flat(test_images(config)[:test_n])
    with torch.no_grad():
        minus_f = float(-model.free_energy(v).double().mean())
    out = None
    for out in ais.anneal(model.W.detach(), model.b.detach(), model.c.detach(), base, runs=runs, betas=betas,
                          generator=seeded(seed), every=max(1, betas // 20)):
        if isinstance(out, ais.Progress):
            yield None, f"Annealing… temperature {out.k:,} of {betas:,}"
    ll, low, high = minus_f - out.log_z, minus_f - out.high, minus_f - out.low
    shipped = card.get("metrics", {}).get("test_log_likelihood")
    md = (f"**log Ẑ = {out.log_z:.2f}** (±3σ: {out.low:.2f} … {out.high:.2f}) from {runs} runs × {betas:,} temperatures "
          f"in {out.seconds:.1f} s; effective runs {ais.effective_runs(out.log_weights):.1f} of {runs}.  \n"
          f"Test log-likelihood on {test_n:,} images: **{ll:.2f} nats** (interval {low:.2f} … {high:.2f}) = mean −F(v) "
          f"{minus_f:.2f} − log Ẑ."
          + (f"  \nThe card's estimate (all test images, its own schedule): {shipped:.2f} nats." if shipped else "")
          + "  \nAIS under-estimates log Z more often than not, so too short a schedule makes the likelihood look "
            "better: lengthen it until the figure stops moving.")
    yield weights_figure(out.log_weights), md


# --- DBN: add a layer ---------------------------------------------------------------------------------------

@friendly
def add_layer(dbn_checkpoint: str, hidden, steps, method: str, k, seed, n, state=None):
    """Grow the visitor's DBN (the checkpoint's, or the one grown before from it) by one RBM and train it
    greedily here on the first layers' codes of the training images, streamed; then sample it."""
    _, model, config, _ = loaded(dbn_checkpoint, ("dbn",), "DBN")
    hidden = whole(hidden, "New layer size", 1, 2000)
    steps = whole(steps, "Training steps for the new layer", 10, 5000)
    k = whole(k, "Gibbs steps k", 1, 25)
    n = whole(n, "Number of samples", 1, MAX_CHAINS)
    seed = widgets.seed_of(seed)
    if method not in rbm.METHODS:
        raise ValueError(f"Method must be one of {', '.join(rbm.METHODS)}; got {method!r}.")
    base = state["model"] if isinstance(state, dict) and state.get("from") == dbn_checkpoint else model
    generator = seeded(seed)
    grown = built(deep.add_layer, base, hidden, chains=100, seed=seed)  # the new layer's initial weights
    settings = deep.DBNConfig(layers=grown.sizes[1:], method=method, k=k, lr=0.01, batch_size=100, steps=steps)
    x = rbm.data(config, "train")[0][0][:10_000]
    t0, m = time.time(), {}
    for s, m in deep.train_layer(grown, x, steps, settings, generator, every=max(1, steps // 20)):
        yield None, (f"Training layer {len(grown.rbms)} ({'-'.join(map(str, grown.sizes))}): step {s} of {steps}, "
                     f"reconstruction error {m['recon_error']:.2f} ({time.time() - t0:.0f} s)"), state
    samples = None
    for samples in deep.dbn_sample(grown, n, generator=seeded(seed), sweeps=500, every=500):
        pass
    state = {"from": dbn_checkpoint, "model": grown}
    yield show(samples), (f"Added a layer of {hidden} units: the DBN is now **{'-'.join(map(str, grown.sizes))}**, "
                          f"its new top RBM trained greedily for {steps} steps ({method.upper()}-{k}, 10,000 images, "
                          f"{time.time() - t0:.0f} s; reconstruction error of its input {m.get('recon_error', 0):.2f}). "
                          "The layers below are untouched. Samples: 500 Gibbs sweeps in the new top RBM, then one "
                          "pass down. Click again to add another layer."), state


# --- DBM: mean field -------------------------------------------------------------------------------------------

@friendly
def mean_field_view(dbm_checkpoint: str, index, iterations):
    """Mean-field Q(h | v) of one test image after a chosen number of iterations, and how much Q still
    changes at each iteration (it converges to a fixed point)."""
    _, model, config, _ = loaded(dbm_checkpoint, ("dbm",), "DBM")
    x = test_images(config)
    i = whole(index, "Test image number", 0, len(x) - 1)
    iterations = whole(iterations, "Mean-field iterations", 0, 50)
    states = deep.mean_field(model, rbm.flat(x[i:i + 1]), 50)
    change = [[float((b[l] - a[l]).abs().max()) for a, b in zip(states[:-1], states[1:])]
              for l in range(1, len(model.sizes))]
    fig = Figure(figsize=(11, 3.2), dpi=90, layout="constrained")
    axes = fig.subplots(1, 2 + len(model.rbms), width_ratios=[1.4, 0.7] + [1.0] * len(model.rbms))
    for l, c in enumerate(change, 1):
        axes[0].semilogy(range(1, len(c) + 1), np.maximum(c, 1e-12), label=f"Q(h{l})")
    axes[0].axvline(max(iterations, 0.5), color="k", ls=":")
    axes[0].set_xlabel("mean-field iteration")
    axes[0].set_ylabel("max |Δμ|")
    axes[0].legend(fontsize=7)
    axes[0].set_title("how much Q still changes", fontsize=9)
    mu = states[iterations]
    with torch.no_grad():
        recon = model.rbms[0].p_v(mu[1]).reshape(SIZE, SIZE).numpy()
    axes[1].imshow(np.concatenate([x[i, 0].numpy(), recon], 0), cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("image / p(v | μ¹)", fontsize=8)
    axes[1].axis("off")
    for l, ax in enumerate(axes[2:], 1):
        units = mu[l][0].numpy()
        side = int(math.ceil(math.sqrt(len(units))))
        grid = np.full(side * side, np.nan)
        grid[:len(units)] = units
        ax.imshow(grid.reshape(side, side), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"μ{l} = Q(h{l}_j = 1) ({len(units)} units)", fontsize=8)
        ax.set_xlabel("unit j, row by row")
        ax.set_xticks([])
        ax.set_yticks([])
    md = (f"Test image {i}, **{iterations} iterations** (0: the bottom-up start, each layer but the top counting its "
          f"input twice). Largest change of any μ at iteration {max(iterations, 1)}: "
          f"{max(c[max(iterations, 1) - 1] for c in change):.2e}; after 50: {max(c[-1] for c in change):.2e}.")
    return widgets.figure_to_array(fig), md


# --- DBN vs DBM ------------------------------------------------------------------------------------------------

@friendly
def compare(dbn_checkpoint: str, dbm_checkpoint: str, seed, n, sweeps):
    """Samples of a DBN (Gibbs in its top RBM, then one directed pass down) and a DBM (odd/even Gibbs in every
    layer) from the same seed and sweeps, with what each sweep costs."""
    dbn_family, dbn_model, _, _ = loaded(dbn_checkpoint, ("dbn",), "DBN")
    dbm_family, dbm_model, _, _ = loaded(dbm_checkpoint, ("dbm",), "DBM")
    seed = widgets.seed_of(seed)
    n = whole(n, "Number of samples", 1, MAX_CHAINS)
    sweeps = whole(sweeps, "Gibbs sweeps", 1, MAX_SWEEPS)
    a, ta = deep.timed_samples(deep.DBN_FAMILY, dbn_model, n, sweeps, seeded(seed))
    b, tb = deep.timed_samples(deep.DBM_FAMILY, dbm_model, n, sweeps, seeded(seed))
    ca, cb = deep.sweep_cost(dbn_model, "dbn"), deep.sweep_cost(dbm_model, "dbm")
    md = (f"{n} samples each, {sweeps} sweeps, seed {seed}.  \n"
          f"**DBN** {'-'.join(map(str, dbn_model.sizes))}: {ta:.2f} s; a sweep costs {ca / 1e6:.2f} M "
          "multiply-adds per chain (its top RBM only), plus one pass down at the end.  \n"
          f"**DBM** {'-'.join(map(str, dbm_model.sizes))}: {tb:.2f} s; a sweep costs {cb / 1e6:.2f} M multiply-adds "
          "per chain (every layer, odd then even), since no layer is directed.")
    return show(a), show(b), md


# --- training -----------------------------------------------------------------------------------------------------

def layer_sizes(text) -> list[int]:
    """'500, 500' -> [500, 500], with the contract's message for anything else."""
    try:
        sizes = [int(float(p)) if float(p) == int(float(p)) else p for p in str(text).replace(";", ",").split(",")]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"Layers must be sizes separated by commas, such as '500, 500'; got {text!r}.") from None
    return deep.check_layers(sizes)


def train_config(model_name, method, k, hidden, layers, *, steps, batch_size, lr):
    """A run's config from the Train section."""
    if model_name not in TRAIN_MODELS:
        raise ValueError(f"Model must be one of {', '.join(TRAIN_MODELS)}; got {model_name!r}.")
    if method not in rbm.METHODS:
        raise ValueError(f"Method must be one of {', '.join(rbm.METHODS)}; got {method!r}.")
    k = whole(k, "Gibbs steps k", 1, 25)
    lr = number(lr, "learning rate", 1e-6, 10.0)
    common = {"method": method, "k": k, "steps": steps, "batch_size": batch_size, "lr": lr}
    if model_name == "RBM":
        return rbm.FAMILY.config("cpu", hidden=whole(hidden, "Hidden units", 1, 10_000), ais_betas=2000, **common)
    sizes = layer_sizes(layers)
    if model_name == "DBN":
        return deep.DBN_FAMILY.config("cpu", layers=sizes, **common)
    return deep.DBM_FAMILY.config("cpu", layers=sizes, pretrain_steps=max(1, steps // (len(sizes) + 1)), **common)


# --- layout -----------------------------------------------------------------------------------------------------

def build(page: parts.Page):
    gr.Markdown("A **restricted Boltzmann machine** scores binary pixels v and hidden units h with an energy "
                "E(v, h) = −bᵀv − cᵀh − vᵀWh; no unit talks to its own layer, so given one layer the other is a "
                "set of independent coins and **block Gibbs sampling** alternates v → h → v′. Training needs the "
                "model's samples (CD-k: k steps from the data; PCD: chains kept across updates), and its likelihood "
                "needs log Z, estimated by **annealed importance sampling**. Stacking RBMs gives a **DBN** (greedy, "
                "the lower layers directed) or a **DBM** (all undirected; mean-field inference). Goodfellow et al. "
                "ch. 20; binarised MNIST.")
    header = parts.checkpoint_header(page, FAMILIES, "rbm_mnist", "bm")
    ckpt = header.dropdown
    chain_state, dbn_state = parts.visitor_state(), parts.visitor_state()
    with gr.Column():
        with gr.Accordion("Block Gibbs chain v → h → v′ (RBM)", open=True):
            with gr.Row():
                g_seed = widgets.seed_box()
                g_n = gr.Slider(1, MAX_CHAINS, value=8, step=1, label="Number of chains")
                g_start = gr.Radio(list(STARTS), value="noise", label="Start from")
                g_index = gr.Number(value=0, precision=0, label="Test image number (0–9999)")
                g_sweeps = gr.Slider(1, 1000, value=1, step=1, label="Sweeps per click")
            with gr.Row():
                step_btn = gr.Button("Step the chain", variant="primary", elem_id="bm-step")
                reset_btn = gr.Button("New chain")
            chain_img = gr.Image(label="Chains and their hidden activations", format="png", interactive=False)
            chain_md = gr.Markdown(label="Chain")
        with gr.Accordion("Learned filters", open=True):
            with gr.Row():
                f_n = gr.Slider(1, 500, value=64, step=1, label="Number of filters")
                filter_btn = gr.Button("Show filters", variant="primary")
            filter_img = gr.Image(label="Filters W (one hidden unit each)", format="png", interactive=False)
            filter_md = gr.Markdown(label="Filters")
        with gr.Accordion("Clamp part of an image and let the chain fill in the rest", open=True):
            with gr.Row():
                c_index = gr.Number(value=0, precision=0, label="Test image to complete (0–9999)")
                c_region = gr.Dropdown(list(REGIONS), value="bottom half", label="Missing region")
                c_seed = widgets.seed_box(label="Fill-in seed")
                c_n = gr.Slider(1, MAX_CHAINS, value=6, step=1, label="Number of completions")
                c_sweeps = gr.Slider(1, 2000, value=200, step=1, label="Fill-in sweeps")
                fill_btn = gr.Button("Fill in", variant="primary")
            fill_img = gr.Image(label="original | observed | completions", format="png", interactive=False)
            fill_out = parts.output_panel()
        with gr.Accordion("Log-likelihood by annealed importance sampling", open=True):
            with gr.Row():
                a_runs = gr.Slider(2, 500, value=50, step=1, label="AIS runs")
                a_betas = gr.Slider(10, 20_000, value=1000, step=10, label="Temperatures")
                a_test = gr.Slider(1, 10_000, value=1000, step=1, label="Test images")
                a_seed = widgets.seed_box(label="AIS seed")
                ais_btn = gr.Button("Estimate log Z", variant="primary")
            with gr.Row():
                ais_img = gr.Image(label="AIS importance weights", format="png", interactive=False, height=240)
                ais_md = gr.Markdown(label="AIS estimate")
        with gr.Accordion("DBN: add a layer", open=True):
            with gr.Row():
                dbn_ck = gr.Dropdown(dbn_dbm_choices("dbn"), value=parts.default_checkpoint(("dbn",), "dbn_mnist"),
                                     label="DBN checkpoint")
                l_hidden = gr.Number(value=200, precision=0, label="New layer size")
                l_steps = gr.Slider(10, 5000, value=300, step=10, label="Training steps for the new layer")
                l_method = gr.Radio(list(rbm.METHODS), value="pcd", label="Layer training")
                l_k = gr.Slider(1, 25, value=1, step=1, label="k (layer)")
                l_seed = widgets.seed_box(label="Layer seed")
                l_n = gr.Slider(1, MAX_CHAINS, value=8, step=1, label="Samples of the grown DBN")
                layer_btn = gr.Button("Add a layer", variant="primary", elem_id="bm-add-layer")
            layer_img = gr.Image(label="Samples of the grown DBN", format="png", interactive=False)
            layer_md = gr.Markdown(label="Grown DBN")
        with gr.Accordion("DBM: mean-field inference", open=True):
            with gr.Row():
                dbm_ck = gr.Dropdown(dbn_dbm_choices("dbm"), value=parts.default_checkpoint(("dbm",), "dbm_mnist"),
                                     label="DBM checkpoint")
                m_index = gr.Number(value=0, precision=0, label="Test image for Q (0–9999)")
                m_iter = gr.Slider(0, 50, value=5, step=1, label="Mean-field iterations")
                mf_btn = gr.Button("Run mean field", variant="primary")
            mf_img = gr.Image(label="Q(h | v) converging", format="png", interactive=False)
            mf_md = gr.Markdown(label="Mean field")
        with gr.Accordion("DBN vs DBM: samples and sampling cost", open=True):
            with gr.Row():
                s_seed = widgets.seed_box(label="Sampling seed")
                s_n = gr.Slider(1, MAX_CHAINS, value=8, step=1, label="Samples each")
                s_sweeps = gr.Slider(1, MAX_SWEEPS, value=500, step=1, label="Gibbs sweeps")
                cmp_btn = gr.Button("Sample both", variant="primary")
            with gr.Row():
                dbn_img = gr.Image(label="DBN samples", format="png", interactive=False)
                dbm_img = gr.Image(label="DBM samples", format="png", interactive=False)
            cmp_md = gr.Markdown(label="Cost")
        with parts.TrainPanel(header, "Train an RBM, a DBN (greedy, layer by layer) or a DBM (pre-trained RBMs, then "
                              "mean field + persistent chains) here on binarised MNIST. The curves are the data's "
                              "free energy and the one-step reconstruction error. On one CPU thread a 500-unit RBM "
                              "takes about 30 ms per CD-1 step at batch 100 (k multiplies the Gibbs part). An RBM's "
                              "card ends with a short AIS estimate of its test log-likelihood.",
                              steps_default=500, steps_max=50_000, batches=(20, 50, 100, 200), batch_default=100,
                              lr_default=0.01, run_name="my_rbm", elem_id="bm-train") as train:
            t_model = gr.Radio(list(TRAIN_MODELS), value="RBM", label="Model")
            t_method = gr.Radio(list(rbm.METHODS), value="pcd", label="CD or PCD")
            t_k = gr.Slider(1, 25, value=1, step=1, label="k (Gibbs steps per update)")
            t_hidden = gr.Number(value=200, precision=0, label="Hidden units (RBM)")
            t_layers = gr.Textbox(value="300, 300", label="Layer sizes (DBN / DBM)")

    header.then(filters, [ckpt, f_n], [filter_img, filter_md])
    gibbs_inputs = [ckpt, g_seed, g_n, g_start, g_index, g_sweeps, chain_state]
    page.action(step_btn.click, gibbs, gibbs_inputs, [chain_img, chain_md, chain_state], api_name="bm_gibbs",
                names=["checkpoint", "seed", "n", "start", "index", "sweeps", "state"])
    page.action(reset_btn.click, new_chain, gibbs_inputs,
                [chain_img, chain_md, chain_state], api_name="bm_gibbs_new",
                names=["checkpoint", "seed", "n", "start", "index", "sweeps", "state"])
    page.action(filter_btn.click, filters, [ckpt, f_n], [filter_img, filter_md], api_name="bm_filters")
    page.action(fill_btn.click, fill_in, [ckpt, c_index, c_region, c_seed, c_n, c_sweeps],
                [fill_img, *fill_out.outputs], api_name="bm_fill_in")
    page.action(ais_btn.click, estimate, [ckpt, a_runs, a_betas, a_test, a_seed], [ais_img, ais_md],
                api_name="bm_ais")
    page.action(layer_btn.click, add_layer, [dbn_ck, l_hidden, l_steps, l_method, l_k, l_seed, l_n, dbn_state],
                [layer_img, layer_md, dbn_state], api_name="bm_add_layer")
    page.action(mf_btn.click, mean_field_view, [dbm_ck, m_index, m_iter], [mf_img, mf_md], api_name="bm_mean_field")
    m_iter.release(friendly(mean_field_view), [dbm_ck, m_index, m_iter], [mf_img, mf_md], api_name=False)
    page.action(cmp_btn.click, compare, [dbn_ck, dbm_ck, s_seed, s_n, s_sweeps], [dbn_img, dbm_img, cmp_md],
                api_name="bm_compare")
    train.wire(page, train_config, [t_model, t_method, t_k, t_hidden, t_layers], ["free_energy", "recon_error"],
               api_prefix="bm", names=["model", "method", "k", "hidden", "layers"])
