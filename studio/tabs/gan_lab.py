"""The GAN Lab tab: a GAN on toy 2-D data that you can play, pause and step, train one side at a
time, switch loss or learning rates while it runs, and watch from every angle: real and fake points,
the discriminator's heatmap, the generator's warped noise grid, the push on each fake, and the
losses with KL/JS curves.

Each visitor's lab lives in their own gr.State (a :class:`Session`) and draws its randomness from its
own torch.Generator: nothing here touches the global RNG or the process's thread settings.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

from models.image import gan2d
from studio import parts, widgets
from studio.widgets import friendly, whole

TITLE = "GAN Lab"
CANVAS_PX = 320  # the drawing canvas is CANVAS_PX square and maps linearly onto [-EXTENT, EXTENT]²
FRAME_S = 0.15  # at most this often a frame while playing
MAX_PLAY_STEPS = 20_000  # a play run stops by itself after this many steps
STOP_WAIT_S = 5.0  # Pause waits at most this long for the Play loop to end
VIEWS = ["D heatmap", "noise grid", "fake gradients", "real points", "fake points"]
STEPS = {"both": (True, True), "D": (True, False), "G": (False, True)}  # which networks a click trains


# --- drawing ---

def canvas(points, extent: float = gan2d.EXTENT, minimum: int = gan2d.MIN_POINTS) -> np.ndarray:
    """The drawing canvas: the plane [-extent, extent]² with its axes, and the points clicked so far."""
    fig = Figure(figsize=(CANVAS_PX / 100, CANVAS_PX / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))  # the axes fill the image, so pixels map linearly to data
    e = extent
    ax.set_xlim(-e, e)
    ax.set_ylim(-e, e)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    for v in np.arange(-e + 0.5, e, 0.5):
        ax.axhline(v, color="0.93", lw=0.5)
        ax.axvline(v, color="0.93", lw=0.5)
    if points:
        p = np.asarray(points)
        ax.scatter(p[:, 0], p[:, 1], s=25, color="#1b9e77")
    ax.text(-e + 0.04 * e, e - 0.12 * e, f"{len(points or [])} points (at least {minimum})", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return widgets.figure_to_array(fig)


def pixel_to_plane(px: float, py: float, size: int = CANVAS_PX, extent: float = gan2d.EXTENT) -> tuple[float, float]:
    e = extent
    return -e + 2 * e * px / size, e - 2 * e * py / size


def add_point(points, evt: gr.SelectData):
    px, py = evt.index
    points = list(points or []) + [list(pixel_to_plane(px, py))]
    return points, canvas(points)


def clear_points():
    return [], canvas([])


# --- the lab ---

@dataclass
class Player:
    """One Play loop: Pause, Reset or another Play sets ``stop``; the loop sets ``done`` once it has ended."""

    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Session:
    """One visitor's lab, kept in their gr.State: the 2-D GAN (whose own torch.Generator draws all its
    randomness), a lock so one training chunk runs at a time, and the Play loop running, if any."""

    lab: gan2d.Lab
    lock: threading.Lock = field(default_factory=threading.Lock)
    player: Player | None = None
    closed: bool = False  # replaced by a Reset: no Play may start on it any more
    _guard: threading.Lock = field(default_factory=threading.Lock)  # for player and closed

    def start_player(self) -> Player | None:
        """A new Play loop in place of any earlier one (stopped, and waited for); None after a Reset."""
        with self._guard:
            if self.closed:
                return None
            old, self.player = self.player, Player()
            new = self.player
        if old is not None:
            old.stop.set()
            old.done.wait(STOP_WAIT_S)
        return new

    def end_player(self, player: Player) -> None:
        with self._guard:
            if self.player is player:
                self.player = None
        player.done.set()

    def halt(self, close: bool = False, timeout: float = STOP_WAIT_S) -> bool:
        """Stop the Play loop and wait until it has ended. Gradio sends a streamed frame before it asks
        the loop for the next one, so once the loop has ended every frame it made has been sent, and
        the caller's output (Pause's "Paused.") comes after them. ``close``: this lab is being replaced.
        True when a loop was playing."""
        with self._guard:
            player = self.player
            self.closed = self.closed or close
            if player is not None:
                player.stop.set()
        if player is None:
            return False
        player.done.wait(timeout)
        return True


def _need(session):
    if session is None:
        raise ValueError("Press Reset first to build a lab.")


def new_session(dataset, loss, d_learning_rate, g_learning_rate, neurons_per_layer, hidden_layers, seed,
                points) -> Session:
    seed = widgets.seed_of(seed)
    config = gan2d.LabConfig(dataset=dataset, loss=loss, lr_d=float(d_learning_rate), lr_g=float(g_learning_rate),
                             hidden=int(neurons_per_layer), layers=int(hidden_layers), seed=seed)
    lab = gan2d.make_lab(config, points=points)
    lab.history.append({"step": 0, **gan2d.divergences(lab)})
    return Session(lab)


@friendly
def reset(session, shown, dataset, loss, d_learning_rate, g_learning_rate, neurons_per_layer, hidden_layers, seed,
          points):
    """A fresh lab with the chosen settings (a drawn distribution needs enough points); a lab that was
    playing stops first."""
    if session is not None:
        session.halt(close=True)
    session = new_session(dataset, loss, d_learning_rate, g_learning_rate, neurons_per_layer, hidden_layers, seed,
                          points)
    return (session, *show(session, shown),
            f"New lab: {dataset}, {loss} loss, seed {session.lab.config.seed}. Press Play or Step.")


def frame(lab, shown) -> np.ndarray:
    """The plane: D's heatmap, the generator's noise grid, real and fake points, the push on fakes."""
    shown = set(shown or [])
    e = gan2d.EXTENT
    fig = Figure(figsize=(5.2, 4.6), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    if "D heatmap" in shown:
        heat = gan2d.d_heatmap(lab, 64).numpy()
        if lab.config.loss == "log":
            im = ax.imshow(heat, extent=(-e, e, -e, e), cmap="PRGn", vmin=0, vmax=1, alpha=0.55)
            label = "D: P(real)"
        else:
            mid = 0.5 if lab.config.loss == "least-squares" else 0.0  # LSGAN's boundary: halfway from 0 to 1
            lim = float(np.abs(heat - mid).max()) or 1.0
            im = ax.imshow(heat, extent=(-e, e, -e, e), cmap="PRGn", vmin=mid - lim, vmax=mid + lim, alpha=0.55)
            label = "D's score (higher = more real)"
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    if "noise grid" in shown:
        for line in gan2d.noise_grid(lab, 11, 40).numpy():
            ax.plot(line[:, 0], line[:, 1], color="0.45", lw=0.6, alpha=0.7)
    real, fake = gan2d.samples(lab, 300)
    if "real points" in shown:
        ax.scatter(real[:, 0], real[:, 1], s=5, color="#1b9e77", label="real")
    if "fake points" in shown:
        ax.scatter(fake[:, 0], fake[:, 1], s=5, color="#7570b3", label="fake")
    if "fake gradients" in shown:
        pts, push = gan2d.fake_gradients(lab, 60)
        norm = push.norm(dim=1, keepdim=True).max().clamp_min(1e-12)
        push = (push / norm * 0.4).numpy()  # longest arrow 0.4 units: directions and relative sizes
        ax.quiver(pts[:, 0], pts[:, 1], push[:, 0], push[:, 1], angles="xy", scale_units="xy", scale=1,
                  color="#d95f02", width=0.004)
    ax.set_xlim(-e, e)
    ax.set_ylim(-e, e)
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(f"step {lab.step}: {lab.config.dataset}, {lab.config.loss} loss", fontsize=10)
    if shown & {"real points", "fake points"}:
        ax.legend(loc="lower right", fontsize=8, markerscale=2)
    return widgets.figure_to_array(fig)


def curves(lab) -> np.ndarray:
    """Losses and KL/JS against step, with every live change of loss or learning rate marked."""
    fig = Figure(figsize=(7.5, 2.6), dpi=90, layout="constrained")
    panels = [("d_loss", "g_loss"), ("kl", "js")]
    titles = ["losses (D, G)", "divergence real ‖ fake (nats)"]
    for i, (keys, title) in enumerate(zip(panels, titles)):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, key in enumerate(keys):
            rows = [h for h in lab.history if key in h]
            ax.plot([h["step"] for h in rows], [h[key] for h in rows], color=f"C{j + 2 * i}", label=key)
        for step, what in lab.marks:
            ax.axvline(step, color="k", ls=":", lw=1)
            ax.text(step, ax.get_ylim()[1], f" {what}", fontsize=7, va="top", rotation=90)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return widgets.figure_to_array(fig)


def views(lab, shown):
    return frame(lab, shown), curves(lab)


def show(session: Session, shown):
    """The views, drawn while no training chunk runs (drawing the push on fakes toggles D's gradients)."""
    with session.lock:
        return views(session.lab, shown)


def status(lab, note: str = "") -> str:
    last = next((h for h in reversed(lab.history) if "kl" in h), {})
    row = lab.history[-1] if lab.history else {}
    bits = [f"step **{lab.step}**"]
    if "d_loss" in row:
        bits.append(f"D loss {row['d_loss']:.3f}, G loss {row['g_loss']:.3f} (trained: {row['trained']})")
    if last:
        bits.append(f"KL {last['kl']:.2f}, JS {last['js']:.3f} nats")
    return ", ".join(bits) + (f". {note}" if note else "")


@friendly
def step(session, shown, which: str, steps, dataset, loss, d_learning_rate, g_learning_rate, neurons_per_layer,
         hidden_layers, seed, points):
    """One click: ``steps`` steps of D and G, D only, or G only, on the visitor's lab (or, before there
    is one, on a fresh lab with the settings shown)."""
    if which not in STEPS:
        raise ValueError(f"Train one of {sorted(STEPS)}; got {which!r}.")
    if session is None:
        session = new_session(dataset, loss, d_learning_rate, g_learning_rate, neurons_per_layer, hidden_layers,
                              seed, points)
    with session.lock:
        gan2d.run(session.lab, whole(steps, "Steps per click"), *STEPS[which])
    return (session, *show(session, shown), status(session.lab))


@friendly
def play(session, shown, steps_per_frame):
    """Train until paused (or MAX_PLAY_STEPS), streaming a frame every FRAME_S seconds at most. Loss and
    learning-rate changes made while it plays apply between two chunks of steps. The loop checks its
    stop flag before every frame, so after Pause it sends nothing more (see :meth:`Session.halt`)."""
    _need(session)
    k = whole(steps_per_frame, "Steps per frame")
    if not 1 <= k <= 200:
        raise ValueError(f"Steps per frame must be from 1 to 200; got {k}.")
    player = session.start_player()  # a second Play replaces the first
    if player is None:
        return  # this lab was reset meanwhile; the new one has its own Play
    lab = session.lab
    start, last = lab.step, 0.0
    try:
        while not player.stop.is_set():
            if lab.step - start >= MAX_PLAY_STEPS:
                yield (*show(session, shown), status(lab, f"Stopped after {MAX_PLAY_STEPS} steps."))
                return
            with session.lock:
                gan2d.run(lab, k, cancel=player.stop)
            if time.time() - last > FRAME_S and not player.stop.is_set():
                last = time.time()
                frame = show(session, shown)
                if player.stop.is_set():
                    break
                yield (*frame, status(lab, "Playing…"))
    finally:
        session.end_player(player)


@friendly
def pause(session, shown):
    """Stop Play; the status says "Paused." and stays so (no frame of the loop can follow it)."""
    if session is None:
        return gr.update(), gr.update(), ""
    session.halt()
    return (*show(session, shown), status(session.lab, "Paused."))


@friendly
def switch_loss(session, loss, shown):
    if session is None:
        return gr.update(), gr.update()
    with session.lock:
        gan2d.set_loss(session.lab, loss)
    return show(session, shown)


@friendly
def switch_lr(session, d_learning_rate, g_learning_rate):
    if session is None:
        return ""
    with session.lock:
        gan2d.set_learning_rates(session.lab, float(d_learning_rate), float(g_learning_rate))
    return status(session.lab, f"Learning rates now D {float(d_learning_rate):g}, G {float(g_learning_rate):g}.")


@friendly
def redraw(session, shown):
    _need(session)
    return show(session, shown)


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("GAN Lab in two dimensions, after [Kahng et al.](https://poloclub.github.io/ganlab/): the "
                "generator (purple) learns to bend a square of noise into the real data (green). The "
                "background is the discriminator's opinion; arrows show where each fake is pushed. Play, "
                "pause, step one network at a time, and change the loss or learning rates while it runs "
                "(marked on the curves).")
    lab = parts.visitor_state(None)  # the visitor's Session
    points = parts.visitor_state([])
    with gr.Column():
        with gr.Accordion("Lab", open=True):
            with gr.Row():
                dataset = gr.Radio(list(gan2d.DATASETS), value="ring", label="Data (drawn: click on the canvas below)")
                loss = gr.Radio(list(gan2d.LOSSES), value="log", label="Loss (switches live)")
                seed = widgets.seed_box()
            with gr.Row():
                lr_d = gr.Number(value=5e-3, label="D learning rate (live)")
                lr_g = gr.Number(value=5e-3, label="G learning rate (live)")
                hidden = gr.Slider(4, 256, value=64, step=4, label="Neurons per layer")
                layers = gr.Slider(1, 4, value=2, step=1, label="Hidden layers")
                reset_btn = gr.Button("Reset", variant="primary", elem_id="ganlab-reset")
            with gr.Row():
                play_btn = gr.Button("▶ Play", variant="primary", elem_id="ganlab-play")
                pause_btn = gr.Button("Pause", variant="stop", elem_id="ganlab-pause")
                k = gr.Slider(1, 200, value=10, step=1, label="Steps per frame / per click")
                step_btn = gr.Button("Step D+G", elem_id="ganlab-step")
                d_btn = gr.Button("Train D only")
                g_btn = gr.Button("Train G only")
            shown = gr.CheckboxGroup(VIEWS, value=VIEWS, label="Show")
            status_md = gr.Markdown(label="Status", elem_id="ganlab-status")
            with gr.Row():
                plane = gr.Image(label="The plane", format="png", interactive=False, elem_id="ganlab-plane")
                curve_img = gr.Image(label="Curves", format="png", interactive=False)
        with gr.Accordion("Draw your own distribution", open=False):
            gr.Markdown(f"Click to add points (at least {gan2d.MIN_POINTS}); each becomes a small blob of real "
                        "data. Then choose **drawn** above and press Reset.")
            with gr.Row():
                draw = gr.Image(value=canvas([]), label="Canvas: the plane [-2, 2]²", format="png",
                                interactive=False, height=CANVAS_PX + 20, width=CANVAS_PX + 20,
                                elem_id="ganlab-canvas")
                clear_btn = gr.Button("Clear points")

    settings = [dataset, loss, lr_d, lr_g, hidden, layers, seed, points]
    outs = [lab, plane, curve_img, status_md]
    page.action(reset_btn.click, reset, [lab, shown, *settings], outs, api_name="gan_lab_reset")
    page.on_load(reset, [lab, shown, *settings], outs)
    for btn, which, verb in ((step_btn, "both", "step"), (d_btn, "D", "train_d"), (g_btn, "G", "train_g")):
        page.action(btn.click, step, [lab, shown, gr.State(which), k, *settings], outs, api_name=f"gan_lab_{verb}")
    # Play streams until Pause: a loop only the page can stop, so it and Pause stay off the API
    # (gan_lab_step with a step count does the same training in one call). Pause does not cancel the
    # event: it stops the loop and waits for it to end, so "Paused." is the last status either sends.
    play_btn.click(play, [lab, shown, k], [plane, curve_img, status_md], show_progress="hidden", api_name=False)
    pause_btn.click(pause, [lab, shown], [plane, curve_img, status_md], api_name=False)
    loss.change(switch_loss, [lab, loss, shown], [plane, curve_img], api_name=False)
    for box in (lr_d, lr_g):
        for event in (box.submit, box.blur):
            event(switch_lr, [lab, lr_d, lr_g], status_md, api_name=False)
    shown.change(redraw, [lab, shown], [plane, curve_img], api_name=False, show_progress="hidden")
    draw.select(add_point, points, [points, draw], api_name=False)
    clear_btn.click(clear_points, None, [points, draw], api_name=False)
