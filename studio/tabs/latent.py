"""The text-to-image tab: a miniature Stable Diffusion. Type a prompt, watch the latents denoise,
see which part of the image each word attended to, compare prompts from the same noise, look
inside the autoencoder, and train one in the page.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them. A visitor's run lives in their own state, with at
most :data:`parts.MAX_FRAMES` uint8 frames for the scrubber.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from models.core import data
from models.core.family import check_range, last, seeded
from models.image import latent_diffusion as ldm
from studio import parts, widgets
from studio.widgets import friendly

TITLE = "Text to image"
FAMILY = "ldm"
MAX_SAMPLES = 16
MAX_COMPARE = 4  # prompts compared side by side
MAX_PER_PROMPT = 10
PREVIEW_S = 0.2
SHOWN_LATENTS = 4  # samples whose latents the scrubber shows
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


def latent_unit(z) -> torch.Tensor:
    """Latents (N, C, 7, 7) put on one scale in [0, 1] for display (their lowest value black, highest white)."""
    z = z.detach().cpu()
    lo, hi = z.amin(), z.amax()
    return (z - lo) / (hi - lo + 1e-8)


def latent_mosaic(unit) -> np.ndarray:
    """Latents on a [0, 1] scale (N, C, 7, 7) as one picture: a row per sample, a 7×7 image per channel."""
    unit = torch.as_tensor(unit)
    return widgets.mosaic(unit.reshape(-1, 1, 7, 7), unit.shape[1], pad=1, scale=12)


@friendly
def select_checkpoint(checkpoint: str):
    """The words the checkpoint knows, and an example prompt for its dataset."""
    if not checkpoint:
        return "No text-to-image checkpoint yet: train one below.", gr.update()
    _, config, _ = loaded(checkpoint)
    words = ldm.vocabulary(config.dataset)[2:]
    extra = ("Digits and 'an'/'the' work too" if config.dataset == "mnist"
             else "So do 'an'/'the' and synonyms such as 'tee', 'pants', 'jumper'")
    hint = (f"**Words it knows** ({config.dataset}): {', '.join(words)}. {extra}. "
            f"Try: " + " · ".join(f"*{p}*" for p in EXAMPLES[config.dataset]))
    return hint, gr.update(value=EXAMPLES[config.dataset][0])


@dataclass
class Run:
    """One visitor's text-to-image run: its settings, how far it got, the scrubber's frames (one per
    kept step: the decoded x̂₀ and the first samples' latents), and the final images and attention."""

    checkpoint: str
    prompt: str
    words: list[str]
    seed: int
    guidance: float
    eta: float
    n: int
    total: int
    frames: parts.Frames  # frame i of state i: after step i + 1
    step: int = 0
    done: bool = False
    cancelled: bool = False
    images: torch.Tensor | None = None  # (n, 1, 28, 28) final images in [0, 1]
    attention: torch.Tensor | None = None  # (n, L, 7, 7) cross-attention per prompt token

    def settings(self) -> str:
        return (f"prompt [{' | '.join(self.words)}], seed {self.seed}, guidance {self.guidance:g}, η {self.eta:g}, "
                f"{self.n} samples, checkpoint {self.checkpoint}")

    def record(self) -> dict:
        return parts.provenance(FAMILY, self.checkpoint, self.seed, prompt=self.prompt, steps=self.total,
                                guidance=self.guidance, eta=self.eta, n=self.n)


@friendly
def generate(checkpoint, prompt, n_samples, steps, guidance, eta, seed):
    """Stream the reverse process in latent space, decoding x̂₀ as it goes; the visitor's run keeps
    the scrubber's frames and the cross-attention maps. Yields the images, status, the run, the
    scrubber update and the output panel."""
    model, config, _ = loaded(checkpoint)
    n = int(n_samples)
    check_range("Number of samples", n, 1, MAX_SAMPLES)
    seed = widgets.seed_of(seed)
    ids = ldm.tokenize(prompt, config.dataset)  # refuse a bad prompt before any work
    words = [ldm.vocabulary(config.dataset)[i] for i in ids]
    total = len(ldm.timesteps(config.T, int(steps)))
    frames = ldm.generate(model, n, seeded(seed), prompt, int(steps), float(eta), float(guidance), keep_attention=True)
    run = Run(checkpoint, prompt, words, seed, float(guidance), float(eta), n, total, parts.Frames(total))
    keep = [gr.update()] * 4  # the scrubber and the output panel change when the run is done
    start = last_yield = time.time()
    yield None, f"Denoising {n} latents over {total} steps…", run, *keep
    for f in frames:
        if run.cancelled:
            return
        run.step = f.step
        preview = f.step < total and time.time() - last_yield > PREVIEW_S
        if run.frames.wants(f.step - 1) or preview:
            x0 = decode(model, f.z0)
            run.frames.add(f.step - 1, x0=x0, z=latent_unit(f.z[:SHOWN_LATENTS]))
        if preview:
            last_yield = time.time()
            status = f"step {f.step}/{total} (t = {f.t}), {time.time() - start:.1f} s; {run.settings()}"
            yield grid(x0), status, run, *keep
    run.images, run.attention, run.done = decode(model, f.z), f.attention, True
    picture = grid(run.images)
    status = f"step {total}/{total} (t = 0), {time.time() - start:.1f} s; {run.settings()}"
    yield (picture, status, run, gr.update(maximum=max(1, len(run.frames) - 1), value=len(run.frames) - 1),
           *parts.publish(picture, run.record(), status, f"{checkpoint}_seed{seed}.png"))


@friendly
def cancel_generate(run):
    """Stop the visitor's run (Cancel also stops its events) and say where; its frames stay scrubbable."""
    if run is None:
        return "Nothing to cancel: generate first.", gr.update()
    if run.done:
        return f"Nothing to cancel: the last run finished all {run.total} steps.", gr.update()
    run.cancelled = True
    kept = len(run.frames)
    return (f"Cancelled at step {run.step} of {run.total}; the {kept} kept frames can be scrubbed.",
            gr.update(maximum=kept - 1, value=kept - 1) if kept > 1 else gr.update())


def _check_run(run, finished: bool = False):
    if not run or not len(run.frames) or (finished and not run.done):
        raise ValueError("Generate first: this view explains the last finished run." if finished else
                         "Generate first: the scrubber replays the last run.")


@friendly
def scrub(run, k):
    """The decoded x̂₀ after a kept step, and the latents z_t the denoiser actually works on."""
    _check_run(run)
    state, images = run.frames.frame(k)
    z = images["z"]  # (≤4, C, 7, 7): the latents of the first samples, on one scale
    return (grid(images["x0"]), latent_mosaic(z),
            f"after {state + 1} of {run.total} steps; latents: one row per sample, one 7×7 image per channel "
            f"({z.shape[1]}·7·7 = {z.shape[1] * 49} numbers instead of 784 pixels)")


@friendly
def attention_maps(run, sample):
    """Each prompt word's cross-attention over the image: where the denoiser's 49 latent positions
    listened to that word, averaged over heads, blocks and steps."""
    _check_run(run, finished=True)
    i = int(sample)
    if not 0 <= i < len(run.images):
        raise ValueError(f"Sample number must be from 0 to {len(run.images) - 1}.")
    words, image = run.words, run.images[i, 0].numpy()
    maps, share = ldm.word_attention(run.attention[i], len(words))
    fig = Figure(figsize=(1.9 * (len(words) + 1), 2.3), dpi=90, layout="constrained")
    axes = fig.subplots(1, len(words) + 1)
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0].set_xlabel(f"sample {i}\n", fontsize=9)
    for ax, word, m, w in zip(axes[1:], words, maps.numpy(), share.tolist()):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.imshow(m, cmap="inferno", alpha=0.6, vmin=0, vmax=max(m.max(), 1e-8))  # each map on its own scale
        ax.set_xlabel(f"“{word}”\n{w:.0%} of attention", fontsize=9)  # below: the page's label chip covers the top
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return widgets.figure_to_array(fig)


@friendly
def compare(checkpoint, prompts: str, samples_per_prompt, steps, guidance, seed):
    """The same starting noise under several prompts: one row per prompt; plus the output panel."""
    model, config, _ = loaded(checkpoint)
    lines = [p.strip() for p in (prompts or "").splitlines() if p.strip()]
    if not 2 <= len(lines) <= MAX_COMPARE:
        raise ValueError(f"Write 2 to {MAX_COMPARE} prompts, one per line.")
    for p in lines:
        ldm.tokenize(p, config.dataset)
    n = int(samples_per_prompt)
    check_range("Samples per prompt", n, 1, MAX_PER_PROMPT)
    seed = widgets.seed_of(seed)
    rows = [last(ldm.sample(model, n, seeded(seed), p, int(steps), 0.0, float(guidance))) for p in lines]
    picture = widgets.mosaic(torch.cat(rows), n, pad=1, scale=3)
    caption = "Rows, top to bottom: " + " · ".join(f"**{p}**" for p in lines) + f" (seed {seed}, same noise)"
    record = parts.provenance(FAMILY, checkpoint, seed, prompts=lines, samples_per_prompt=n, steps=int(steps),
                              guidance=float(guidance), eta=0.0)
    return picture, *parts.publish(picture, record, caption, f"{checkpoint}_compare_seed{seed}.png")


@friendly
def autoencode(checkpoint, test_image):
    """A test image, its latent channels, and the decoder's reconstruction."""
    model, config, _ = loaded(checkpoint)
    x, _ = data.images(config.dataset, "test")
    if test_image is None or not 0 <= int(test_image) < len(x):
        raise ValueError(f"Test image number must be from 0 to {len(x) - 1}; got {test_image}.")
    image = x[int(test_image)][None]
    z, back, bce = ldm.autoencode(model, image)
    return (widgets.mosaic(torch.cat([image, back]), 2, pad=1, scale=6), latent_mosaic(latent_unit(z)),
            f"{z.numel()} latent numbers for 784 pixels; reconstruction BCE {bce:.3f} per pixel")


# --- training ---

def train_config(dataset, ae_steps, *, steps, batch_size, lr):
    """The page's preset with the Train section's settings (stage 1 trains the autoencoder alone)."""
    return ldm.FAMILY.config(TRAIN_PRESET, dataset=dataset, ae_steps=int(ae_steps), steps=steps,
                             batch_size=batch_size, lr=lr)


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("A miniature **Stable Diffusion**. An autoencoder squeezes each 28×28 image into 4×7×7 latent "
                "numbers; diffusion runs there, steered by your prompt through **cross-attention** (each latent "
                "position asks which words matter to it); the decoder turns the result back into pixels. "
                "Prompts are short captions: a class and optional attributes measured on the training images. "
                "(Rombach et al. 2022; Foster ch. 13.)")
    header = parts.checkpoint_header(page, FAMILY, "ldm_mnist", "ldm")
    ckpt = header.dropdown
    run = parts.visitor_state()
    with gr.Column():
        with gr.Accordion("Prompt to image", open=True):
            with gr.Row():
                prompt = gr.Textbox(value="a thick seven", label="Prompt", scale=3, elem_id="ldm-prompt")
                go = gr.Button("Generate", variant="primary", elem_id="ldm-generate")
                stop = gr.Button("Cancel", variant="stop", elem_id="ldm-cancel")
            hint = gr.Markdown(label="Words it knows", elem_id="ldm-hint")
            with gr.Row():
                n = gr.Slider(1, MAX_SAMPLES, value=9, step=1, label="Samples")
                steps = gr.Slider(1, 1000, value=50, step=1, label="DDIM steps")
                guidance = gr.Slider(0.0, 15.0, value=3.0, step=0.1, label="Guidance w (0 = ignore the prompt)")
                eta = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="η")
                seed = widgets.seed_box()
            status = gr.Markdown(label="Status", elem_id="ldm-status")
            with gr.Row():
                images = gr.Image(label="Samples (decoded x̂₀ while denoising)", format="png", interactive=False,
                                  elem_id="ldm-images")
                attention = gr.Image(label="Cross-attention per prompt word: where the image attended to it "
                                     "(each map on its own scale)", format="png", interactive=False, scale=2)
            sample_out = parts.output_panel()
            att_index = gr.Slider(0, MAX_SAMPLES - 1, value=0, step=1, label="Attention maps of sample")
            gr.Markdown(f"**Replay**: the steps of the last run (every step, or {parts.MAX_FRAMES} evenly spaced ones "
                        "of a longer run), decoded, and the latents themselves.")
            with gr.Row():
                scrubber = gr.Slider(0, 49, value=49, step=1, label="Frame", scale=3)
                scrub_label = gr.Markdown(label="Frame shown")
            with gr.Row():
                scrub_img = gr.Image(label="x̂₀ decoded", format="png", interactive=False)
                latent_img = gr.Image(label="z_t: the latents being denoised", format="png", interactive=False)
        with gr.Accordion("Compare prompts (same noise)", open=True):
            with gr.Row():
                c_prompts = gr.Textbox(value="a thick seven\na thin seven\na slanted seven\nan upright seven",
                                       lines=4, label=f"Prompts, one per line (2–{MAX_COMPARE})", scale=2)
                with gr.Column():
                    c_n = gr.Slider(1, MAX_PER_PROMPT, value=8, step=1, label="Samples per prompt")
                    c_seed = widgets.seed_box()
                    c_go = gr.Button("Compare", variant="primary")
            c_img = gr.Image(label="One row per prompt", format="png", interactive=False)
            compare_out = parts.output_panel()
        with gr.Accordion("Inside the autoencoder", open=False):
            with gr.Row():
                a_index = gr.Number(value=0, precision=0, label="Test image (0–9999)")
                a_caption = gr.Markdown(label="Reconstruction")
            with gr.Row():
                a_pair = gr.Image(label="Image and its reconstruction", format="png", interactive=False)
                a_latent = gr.Image(label="Its latent channels (7×7 each)", format="png", interactive=False)
        with parts.TrainPanel(header, "Stage 1 trains the autoencoder; then it is frozen and the text encoder and "
                              "denoiser learn on its latents. On 2 CPU cores the shipped `cpu` preset takes about an "
                              "hour; a few hundred steps already show the autoencoder working and blobs that follow "
                              "the class.", steps_default=1000, batches=(16, 32, 64, 96, 128), batch_default=64,
                              lr_default=5e-4, run_name="my_ldm", elem_id="ldm-train",
                              preview=lambda: gr.Image(label="Samples of random prompts from a fixed seed",
                                                       format="png", interactive=False)) as train:
            t_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
            t_ae = gr.Slider(0, 5000, value=300, step=50, label="Autoencoder steps (stage 1)")

    autoencode_io = ([ckpt, a_index], [a_pair, a_latent, a_caption])
    header.then(select_checkpoint, ckpt, [hint, prompt]).then(autoencode, *autoencode_io)
    generate_io = ([ckpt, prompt, n, steps, guidance, eta, seed], [images, status, run, scrubber, *sample_out.outputs])
    gen = page.action(go.click, generate, *generate_io, api_name="text_to_image", show_progress_on=[status])
    # Enter in the prompt box and the page's first picture run the same handler (plumbing: api_name=False)
    submitted = prompt.submit(generate, *generate_io, show_progress_on=[status], api_name=False)
    first = page.on_load(generate, *generate_io, show_progress_on=[status])
    for event in (gen, submitted, first):
        event.then(attention_maps, [run, att_index], attention, api_name=False).then(
            scrub, [run, scrubber], [scrub_img, latent_img, scrub_label], api_name=False)
    # Cancel stops a run however it was started; it reads the visitor's run (gr.State): api_name=False
    stop.click(cancel_generate, run, [status, scrubber], cancels=[gen, submitted, first], api_name=False)
    att_index.change(attention_maps, [run, att_index], attention, api_name=False, show_progress="hidden")
    scrubber.change(scrub, [run, scrubber], [scrub_img, latent_img, scrub_label], api_name=False,
                    show_progress="hidden")
    page.action(c_go.click, compare, [ckpt, c_prompts, c_n, steps, guidance, c_seed], [c_img, *compare_out.outputs],
                api_name="text_to_image_compare")
    page.action(a_index.change, autoencode, *autoencode_io, api_name="text_to_image_autoencode")
    train.wire(page, train_config, [t_data, t_ae], ["loss"], api_prefix="text_to_image")
