"""Training from the page: one background run at a time (two cores), with live progress, cancel
(the checkpoint at the current step is kept), resume, and the result listed among checkpoints.

The page polls a :class:`Job` from a generator handler; closing the tab does not stop the run.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field, replace

import gradio as gr

from models import FAMILIES
from models.core import checkpoint, train as training
from models.core.train import Progress, Result
from studio import widgets


@dataclass
class Job:
    family: str
    name: str
    config: object
    resume: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None
    result: Result | None = None
    error: str | None = None
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def status(self) -> str:
        if self.error:
            return f"**{self.name}**: failed: {self.error}"
        if self.result:
            return f"**{self.name}**: {self.result.message}"
        p = self.progress
        if p is None:
            return f"**{self.name}**: starting…"
        ms = ", ".join(f"{k} {v:.2f}" for k, v in p.metrics.items())
        return (f"**{self.name}**: step {p.step}/{p.total} ({p.step / p.total:.0%}), {ms}; "
                f"{p.images_per_s:.0f} {FAMILIES[self.family].unit}/s, {p.elapsed:.0f} s")


class Jobs:
    """The studio's single training slot."""

    def __init__(self):
        self._lock = threading.Lock()
        self.current: Job | None = None

    def start(self, family: str, name: str, config, resume: bool = False, **train_kwargs) -> Job:
        training.check_name(name)
        if (training.SHIPPED / f"{name}.safetensors").exists():
            raise ValueError(f"{name!r} is a shipped checkpoint; choose another name for your run.")
        if not resume and (widgets.USER_CHECKPOINTS / f"{name}.safetensors").exists():
            raise ValueError(f"You already have a run named {name!r}: resume it, or choose another name "
                             "(a new run would overwrite it).")
        with self._lock:
            if self.current and self.current.running:
                raise ValueError(f"A training run ({self.current.name}) is already in progress; "
                                 "cancel it or wait for it to finish.")
            job = Job(family, name, config, resume)
            fam = FAMILIES[family]

            def run():
                settings = {"log_every": 10, "checkpoint_every": 250, "preview_every": 50, "score_samples": 500,
                            "command": f"trained in the studio (Train tab), name {name}", **train_kwargs}
                try:
                    job.result = training.train(fam, config, name=name, out=widgets.USER_CHECKPOINTS, resume=resume,
                                                cancel=job.cancel, on_progress=lambda p: setattr(job, "progress", p),
                                                **settings)
                except ValueError as e:
                    job.error = str(e)
                except Exception as e:  # keep the studio alive and say what happened
                    traceback.print_exc()
                    job.error = f"{type(e).__name__}: {e}"

            job.thread = threading.Thread(target=run, name=f"train-{name}", daemon=True)
            job.thread.start()
            self.current = job
            return job

    def resume(self, family: str, name: str, steps) -> Job:
        """Continue a run of the user's with its own settings, up to ``steps``."""
        name = (name or "").strip()
        path = widgets.USER_CHECKPOINTS / f"{name}.safetensors"
        if not name or not path.exists():
            raise ValueError(f"No run of yours named {name!r} to resume.")
        config = replace(checkpoint.load(path)[1], steps=int(steps))
        return self.start(family, name, config, resume=True)

    def cancel(self) -> str:
        job = self.current
        if not job or not job.running:
            return "No training run in progress."
        job.cancel.set()
        return f"Cancelling {job.name}: the checkpoint at the current step is kept."


JOBS = Jobs()


def stream(job: Job, family: str, keys: list[str], current_checkpoint, render=None):
    """Poll a training job twice a second for a generator handler: yields (status, curves, preview,
    checkpoint dropdown). Curves and preview are sent only when they change; at the end the
    dropdown is refreshed so the new checkpoint can be picked. ``render`` turns the family's preview
    into what the preview component shows (default: a 4×4 mosaic of images)."""
    render = render or (lambda images: widgets.mosaic(images, 4, pad=1, scale=4))
    drawn_step = -1
    while True:
        done = not job.running
        p = job.progress
        curves = preview = gr.update()
        if p is not None and p.step != drawn_step:
            drawn_step = p.step
            curves = widgets.curves_figure(p.history, keys)
            if p.preview is not None:
                preview = render(p.preview)
        choices = (gr.update(choices=widgets.checkpoint_choices(family), value=current_checkpoint)
                   if done else gr.update())
        yield job.status(), curves, preview, choices
        if done:
            return
        time.sleep(0.5)
