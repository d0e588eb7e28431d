"""The text-to-image tab: a miniature Stable Diffusion. Type a prompt, watch the latents denoise,
see which part of the image each word attended to, compare prompts from the same noise, look
inside the autoencoder, and train one in the page."""
from __future__ import annotations

import time

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from models.core import data
from models.image import latent_diffusion as ldm
from models.core.family import last, seeded
from studio import widgets
from studio.jobs import JOBS, stream
from studio.widgets import friendly

TITLE = "Text to image"
FAMILY = "ldm"
MAX_SAMPLES = 16
MAX_COMPARE = 4  # prompts compared side by side
PREVIEW_S = 0.2
TRAIN_PRESET = "cpu"  # the sizes a run started in the page gets (tests use "tiny")
EXAMPLES = {"mnist": ["a thick seven", "a thin seven", "a slanted two", "an upright one", "a bold 4", "a nine"],
            "fashion": ["a shoe", "a dark boot", "a bright sneaker", "a wide dress", "a narrow top", "a bag"]}


def loaded(name: str):
    return widgets.load(FAMILY, name)


def grid(x, scale: int = 4) -> np.ndarray:
    return widgets.mosaic(x, int(np.ceil(np.sqrt(len(x)))), pad=1, scale=scale)


@torch.no_grad()
def decode(model, z) -> torch.Tensor:
    """Latents -> pixels on the CPU (a no_grad call of its own: a streaming handler resumes in
    different threads, and grad mode is per thread)."""
    return model.decode(z).cpu()



def latent_mosaic(z) -> np.ndarray:
    """Latents (N, C, 7, 7) as one picture: a row per sample, a 7×7 image per channel, on one scale."""
    lo, hi = z.amin(), z.amax()
    channels = ((z - lo) / (hi - lo + 1e-8)).reshape(-1, 1, 7, 7)
    return widgets.mosaic(channels, z.shape[1], pad=1, scale=12)


@friendly
def select_checkpoint(name: str):
    if not name:
        return "No text-to-image checkpoint yet: train one below.", gr.update()
    _, config, card = loaded(name)
    words = ldm.vocabulary(config.dataset)[2:]
    hint = (f"**Words it knows** ({config.dataset}): {', '.join(words)}. Digits and 'an'/'the' work too. "
            f"Try: " + " · ".join(f"*{p}*" for p in EXAMPLES[config.dataset]))
    return widgets.card_markdown(card) + "  \n" + hint, gr.update(value=EXAMPLES[config.dataset][0])


@friendly
def generate(name, prompt, n, steps, guidance, eta, seed):
    """Stream the reverse process in latent space, decoding x̂₀ as it goes; keep every step for the
    scrubber and the cross-attention maps for the attention view."""
    model, config, _ = loaded(name)
    n = int(n)
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"Number of samples must be from 1 to {MAX_SAMPLES}; got {n}.")
    seed = widgets.seed_of(seed)
    ids = ldm.tokenize(prompt, config.dataset)  # refuse a bad prompt before any work
    words = [ldm.vocabulary(config.dataset)[i] for i in ids]
    frames = ldm.generate(model, n, seeded(seed), prompt, int(steps), float(eta), float(guidance), keep_attention=True)
    run = {"name": name, "prompt": prompt, "words": words, "seed": seed, "x0s": [], "zs": [], "ts": []}
    start = last_yield = time.time()
    yield None, f"Denoising {n} latents over {int(steps)} steps…", None, gr.update()
    total = len(ldm.timesteps(config.T, int(steps)))
    for f in frames:
        run["x0s"].append(decode(model, f.z0))
        run["zs"].append(f.z.cpu())
        run["ts"].append(f.t)
        done = f.step == total
        if done:
            run["images"] = decode(model, f.z)
            run["attention"] = f.attention
        if done or time.time() - last_yield > PREVIEW_S:
            last_yield = time.time()
            status = (f"step {f.step}/{total} (t = {f.t}), {time.time() - start:.1f} s; prompt "
                      f"[{' | '.join(words)}], seed {seed}, guidance {float(guidance):g}, η {float(eta):g}")
            shown = run["images"] if done else run["x0s"][-1]
            yield (grid(shown), status, run if done else None,
                   gr.update(maximum=total, value=total) if done else gr.update())


def _check_run(run):
    if not run:
        raise ValueError("Generate first: this view explains the last finished run.")


@friendly
def scrub(run, k):
    """The decoded x̂₀ after k steps, and the latents z_t the denoiser actually works on."""
    _check_run(run)
    k = int(k)
    if not 1 <= k <= len(run["x0s"]):
        raise ValueError(f"Step must be from 1 to {len(run['x0s'])}.")
    z = run["zs"][k - 1][:4]  # (≤4, C, 7, 7): the latents of the first samples
    return (grid(run["x0s"][k - 1]), latent_mosaic(z),
            f"after {k} of {len(run['x0s'])} steps (t = {run['ts'][k - 1]}); latents: one row per sample, "
            f"one 7×7 image per channel ({z.shape[1]}·7·7 = {z.shape[1] * 49} numbers instead of 784 pixels)")


@friendly
def attention_maps(run, index):
    """Each prompt word's cross-attention over the image: where the denoiser's 49 latent positions
    listened to that word, averaged over heads, blocks and steps."""
    _check_run(run)
    i = int(index)
    if not 0 <= i < len(run["images"]):
        raise ValueError(f"Sample number must be from 0 to {len(run['images']) - 1}.")
    words, att, image = run["words"], run["attention"][i], run["images"][i, 0].numpy()
    maps = F.interpolate(att[None, :len(words)], size=(28, 28), mode="bilinear", align_corners=False)[0].numpy()
    fig = Figure(figsize=(1.9 * (len(words) + 1), 2.3), dpi=90, layout="constrained")
    axes = fig.subplots(1, len(words) + 1)
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0].set_xlabel(f"sample {i}\n", fontsize=9)
    share = att[:len(words)].mean((1, 2))  # each word's share of all attention (sums to 1)
    for ax, word, m, w in zip(axes[1:], words, maps, share):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.imshow(m, cmap="inferno", alpha=0.6, vmin=0, vmax=max(m.max(), 1e-8))  # each map on its own scale
        ax.set_xlabel(f"“{word}”\n{w:.0%} of attention", fontsize=9)  # below: the page's label chip covers the top
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return widgets.figure_to_array(fig)


@friendly
def compare(name, prompts: str, n, steps, guidance, seed):
    """The same starting noise under several prompts: one row per prompt."""
    model, config, _ = loaded(name)
    lines = [p.strip() for p in (prompts or "").splitlines() if p.strip()]
    if not 2 <= len(lines) <= MAX_COMPARE:
        raise ValueError(f"Write 2 to {MAX_COMPARE} prompts, one per line.")
    for p in lines:
        ldm.tokenize(p, config.dataset)
    n = int(n)
    rows = [last(ldm.sample(model, n, seeded(widgets.seed_of(seed)), p, int(steps), 0.0, float(guidance)))
            for p in lines]
    images = widgets.mosaic(torch.cat(rows), n, pad=1, scale=3)
    return images, "Rows, top to bottom: " + " · ".join(f"**{p}**" for p in lines) + f" (seed {int(seed)}, same noise)"


@friendly
def autoencode(name, index):
    """A test image, its latent channels, and the decoder's reconstruction."""
    model, config, _ = loaded(name)
    x, _ = data.images(config.dataset, "test")
    if index is None or not 0 <= int(index) < len(x):
        raise ValueError(f"Test image number must be from 0 to {len(x) - 1}; got {index}.")
    with torch.no_grad():
        z = model.encode(x[int(index)][None])
    back = decode(model, z)
    err = F.binary_cross_entropy(back.clamp(1e-6, 1 - 1e-6), x[int(index)][None]).item()
    return (widgets.mosaic(torch.cat([x[int(index)][None], back]), 2, pad=1, scale=6),
            latent_mosaic(z),
            f"{z.numel()} latent numbers for 784 pixels; reconstruction BCE {err:.3f} per pixel")


# --- training ---

@friendly
def train_start(dataset, ae_steps, steps, batch, lr, run_name, current):
    config = ldm.FAMILY.config(TRAIN_PRESET, dataset=dataset, ae_steps=int(ae_steps), steps=int(steps),
                               batch_size=int(batch), lr=float(lr))
    job = JOBS.start(FAMILY, (run_name or "").strip(), config)
    yield from stream(job, FAMILY, ["loss"], current)


@friendly
def train_resume(run_name, steps, current):
    job = JOBS.resume(FAMILY, run_name, steps)
    yield from stream(job, FAMILY, ["loss"], current)


# --- layout ---

def build(page):
    demo = page.demo
    choices = widgets.checkpoint_choices(FAMILY)
    names = [v for _, v in choices]
    default = "ldm_mnist" if "ldm_mnist" in names else (names[0] if names else None)
    gr.Markdown("A miniature **Stable Diffusion**. An autoencoder squeezes each 28×28 image into 4×7×7 latent "
                "numbers; diffusion runs there, steered by your prompt through **cross-attention** (each latent "
                "position asks which words matter to it); the decoder turns the result back into pixels. "
                "Prompts are short captions: a class and optional attributes measured on the training images. "
                "(Rombach et al. 2022; Foster ch. 13.)")
    with gr.Row():
        ckpt = gr.Dropdown(choices, value=default, label="Checkpoint", scale=2, elem_id="ldm-checkpoint")
        card = gr.Markdown()
    run = gr.State(None)
    with gr.Column():
        with gr.Accordion("Prompt to image", open=True):
            with gr.Row():
                prompt = gr.Textbox(value="a thick seven", label="Prompt", scale=3, elem_id="ldm-prompt")
                go = gr.Button("Generate", variant="primary", elem_id="ldm-generate")
                stop = gr.Button("Cancel", variant="stop")
            with gr.Row():
                n = gr.Slider(1, MAX_SAMPLES, value=9, step=1, label="Samples")
                steps = gr.Slider(1, 1000, value=50, step=1, label="DDIM steps")
                guidance = gr.Slider(0.0, 15.0, value=3.0, step=0.1, label="Guidance w (0 = ignore the prompt)")
                eta = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="η")
                seed = gr.Number(value=0, precision=0, label="Seed")
            status = gr.Markdown(elem_id="ldm-status")
            with gr.Row():
                images = gr.Image(label="Samples (decoded x̂₀ while denoising)", format="png", interactive=False,
                                  elem_id="ldm-images")
                attention = gr.Image(label="Cross-attention per prompt word: where the image attended to it (each map on its own scale)", format="png",
                                     interactive=False, scale=2)
            att_index = gr.Slider(0, MAX_SAMPLES - 1, value=0, step=1, label="Attention maps of sample")
            gr.Markdown("**Replay**: every step of the last run, decoded, and the latents themselves.")
            with gr.Row():
                scrubber = gr.Slider(1, 50, value=50, step=1, label="Step", scale=3)
                scrub_label = gr.Markdown()
            with gr.Row():
                scrub_img = gr.Image(label="x̂₀ decoded", format="png", interactive=False)
                latent_img = gr.Image(label="z_t: the latents being denoised", format="png", interactive=False)
        with gr.Accordion("Compare prompts (same noise)", open=True):
            with gr.Row():
                c_prompts = gr.Textbox(value="a thick seven\na thin seven\na slanted seven\nan upright seven",
                                       lines=4, label=f"Prompts, one per line (2–{MAX_COMPARE})", scale=2)
                with gr.Column():
                    c_n = gr.Slider(1, 10, value=8, step=1, label="Samples per prompt")
                    c_seed = gr.Number(value=0, precision=0, label="Seed")
                    c_go = gr.Button("Compare", variant="primary")
            c_caption = gr.Markdown()
            c_img = gr.Image(label="One row per prompt", format="png", interactive=False)
        with gr.Accordion("Inside the autoencoder", open=False):
            with gr.Row():
                a_index = gr.Number(value=0, precision=0, label="Test image (0–9999)")
                a_caption = gr.Markdown()
            with gr.Row():
                a_pair = gr.Image(label="Image and its reconstruction", format="png", interactive=False)
                a_latent = gr.Image(label="Its latent channels (7×7 each)", format="png", interactive=False)
        with gr.Accordion("Train", open=False):
            gr.Markdown("Stage 1 trains the autoencoder; then it is frozen and the text encoder and denoiser "
                        "learn on its latents. On 2 CPU cores the shipped `cpu` preset takes about an hour; a few "
                        "hundred steps already show the autoencoder working and blobs that follow the class.")
            with gr.Row():
                t_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
                t_ae = gr.Slider(0, 5000, value=300, step=50, label="Autoencoder steps (stage 1)")
                t_steps = gr.Slider(20, 20000, value=1000, step=10, label="Total steps")
            with gr.Row():
                t_batch = gr.Dropdown([16, 32, 64, 96, 128], value=64, label="Batch size")
                t_lr = gr.Number(value=5e-4, label="Learning rate")
                t_name = gr.Textbox(value="my_ldm", label="Run name")
                t_start = gr.Button("Start", variant="primary")
                t_resume = gr.Button("Resume")
                t_cancel = gr.Button("Cancel", variant="stop")
            t_status = gr.Markdown()
            with gr.Row():
                t_curves = gr.Plot(show_label=False)
                t_preview = gr.Image(label="Samples of random prompts from a fixed seed", format="png",
                                     interactive=False)

    for event in (ckpt.change, demo.load):
        event(select_checkpoint, ckpt, [card, prompt], api_name=False)
    gen = go.click(generate, [ckpt, prompt, n, steps, guidance, eta, seed], [images, status, run, scrubber],
                   show_progress_on=[status], api_name="text_to_image")
    prompt.submit(generate, [ckpt, prompt, n, steps, guidance, eta, seed], [images, status, run, scrubber],
                  show_progress_on=[status], api_name=False)
    loaded_run = demo.load(generate, [ckpt, prompt, n, steps, guidance, eta, seed], [images, status, run, scrubber],
                           show_progress_on=[status], api_name=False)
    for done in (gen, loaded_run):
        done.then(attention_maps, [run, att_index], attention, api_name=False).then(
            scrub, [run, scrubber], [scrub_img, latent_img, scrub_label], api_name=False)
    stop.click(None, None, None, cancels=[gen])
    att_index.change(attention_maps, [run, att_index], attention, api_name=False, show_progress="hidden")
    scrubber.change(scrub, [run, scrubber], [scrub_img, latent_img, scrub_label], api_name=False,
                    show_progress="hidden")
    c_go.click(compare, [ckpt, c_prompts, c_n, steps, guidance, c_seed], [c_img, c_caption], api_name=False)
    a_index.change(autoencode, [ckpt, a_index], [a_pair, a_latent, a_caption], api_name=False)
    demo.load(autoencode, [ckpt, a_index], [a_pair, a_latent, a_caption], api_name=False)
    t_start.click(train_start, [t_data, t_ae, t_steps, t_batch, t_lr, t_name, ckpt],
                  [t_status, t_curves, t_preview, ckpt], show_progress_on=[t_status], api_name=False)
    t_resume.click(train_resume, [t_name, t_steps, ckpt], [t_status, t_curves, t_preview, ckpt],
                   show_progress_on=[t_status], api_name=False)
    t_cancel.click(JOBS.cancel, None, t_status, api_name=False)
