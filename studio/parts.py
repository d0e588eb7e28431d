"""The parts every tab is built from, each a small dataclass of components plus its own wiring
(the pattern of AUTOMATIC1111's ``OutputPanel`` / ``create_output_panel``):

* :class:`Page`: what a tab builds into: the Blocks and the registry of named API actions;
* :class:`CheckpointHeader`: checkpoint picker + card; tabs chain their views on a new choice;
* :class:`TrainPanel`: the whole Train section: family controls (passed in), steps / batch / lr /
  run name, processes (more than 1 runs a torchrun job), Start / Resume / Cancel owned by the visitor, a planner that times a few steps and fits
  a time budget, live status with ETA, curves, preview, import;
* :class:`OutputPanel`: caption with the seed, provenance record kept with the output, and a
  download whose file embeds that record (PNG text chunk) at a path of its own.

Handlers stay plain functions of plain values; these parts only lay out and wire.
"""
from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
from PIL import Image, PngImagePlugin

from models import FAMILIES
from models.core import train as training
from studio import jobs, lanes, widgets
from studio.jobs import owner_of

VERSION = "0.12"  # studio version recorded in every provenance record
UPLOADS = training.RUNS / "uploads"
STATE_TTL_S = 3600  # a departed visitor's per-session state is freed after this long
MAX_UPLOAD_BYTES = 50 << 20  # the largest file a visitor may upload (Gradio refuses bigger ones on arrival)


# --- named actions -------------------------------------------------------------------------------

@dataclass
class Action:
    api_name: str
    tab: str
    fn: Callable
    example: dict = field(default_factory=dict)  # inputs the page's defaults leave empty (uploads, sketches)
    lane: str = "cheap"  # studio.lanes: how many run at once and may wait
    inputs: list = field(default_factory=list)  # the components whose values the action takes (a scene's controls)
    outputs: list = field(default_factory=list)  # the components it fills
    trigger: object = None  # the component whose event runs it (a button, a slider, the page's load)
    names: list = field(default_factory=list)  # its parameter names, one per input
    section: str | None = None  # the label of the accordion that holds its trigger (open in a scene)
    run: Callable | None = None  # fn outside its lane: what a scene calls from inside another action

    @property
    def training(self) -> bool:
        return self.lane in ("train", "control") or bool(re.search(r"_train(_resume|_plan|_cancel|_switch)?$",
                                                                     self.api_name))


@dataclass
class Page:
    """The Blocks a tab builds into, and every named action registered so far (the API's contents)."""

    demo: gr.Blocks
    actions: list[Action] = field(default_factory=list)
    tab: str = ""
    headers: list = field(default_factory=list)  # every CheckpointHeader, with the tab it is in

    def action(self, trigger, fn, inputs, outputs, api_name: str, names: list[str] | None = None,
               example: dict | None = None, heavy: bool | None = None, lane: str | None = None, **kwargs):
        """Wire a main action: ``trigger(fn, ...)`` with a meaningful ``api_name``, registered for the
        API tests. ``names`` (when ``fn`` takes ``*values``) name its parameters after the controls.
        It runs in a lane (:mod:`studio.lanes`): ``heavy`` when the handler streams, unless ``heavy=`` or
        ``lane=`` say otherwise."""
        if any(a.api_name == api_name for a in self.actions):
            raise ValueError(f"API name {api_name!r} is used twice.")
        if names is not None:
            fn = named(fn, names)
        where = lanes.lane_for(fn, heavy, lane)
        inputs_list = [] if inputs is None else list(inputs) if isinstance(inputs, (list, tuple, set)) else [inputs]
        outputs_list = [] if outputs is None else list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.name != "request" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        params = params[:len(inputs_list)] + [_param(c) for c in inputs_list[len(params):]]
        block = getattr(trigger, "__self__", None)
        action = Action(api_name, self.tab, None, example or {}, where.name, inputs_list, outputs_list, block,
                        params, _section_of(block))
        action.run = in_scene(fn, action)  # what a scene re-runs from inside another action (already in a lane)
        fn = action.fn = where.guard(action.run)
        self.actions.append(action)
        return trigger(fn, inputs, outputs, api_name=api_name, concurrency_id=f"lane-{where.name}",
                       concurrency_limit=where.gradio_limit, **kwargs)

    def on_load(self, fn, inputs, outputs, **kwargs):
        return self.demo.load(fn, inputs, outputs, api_name=False, **kwargs)


CURRENT_SCENE: contextvars.ContextVar = contextvars.ContextVar("studio_scene", default=None)


def in_scene(fn, action: Action):
    """``fn`` run with :data:`CURRENT_SCENE` telling :func:`provenance` which action made the output and
    from which input values (so every record can re-run it, with no code in the tab)."""
    def scene_of(args):
        return {"tab": action.tab, "action": action.api_name, "values": list(args[:len(action.inputs)]),
                "names": action.names, "components": action.inputs, "section": action.section}

    from studio import provenance as embedded

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            stamped = set()
            token = CURRENT_SCENE.set(scene_of(args))
            try:
                it = fn(*args, **kwargs)
            finally:
                CURRENT_SCENE.reset(token)
            while True:  # the scene is current while each item is made, in whatever thread asks for it
                token = CURRENT_SCENE.set(scene_of(args))
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    CURRENT_SCENE.reset(token)
                embedded.stamp(item, stamped)  # WAV, MusicXML, MIDI… get the record inside them
                try:
                    yield item
                except GeneratorExit:
                    it.close()
                    raise

        return streaming

    @functools.wraps(fn)
    def call(*args, **kwargs):
        token = CURRENT_SCENE.set(scene_of(args))
        try:
            result = fn(*args, **kwargs)
        finally:
            CURRENT_SCENE.reset(token)
        embedded.stamp(result)
        return result

    return call


def _section_of(block) -> str | None:
    """The label of the innermost accordion around ``block`` (the section a scene opens), if any."""
    while block is not None:
        block = getattr(block, "parent", None)
        if isinstance(block, gr.Accordion):
            return block.label
    return None


def named(fn, names: list[str]):
    """``fn(*values, request=...)`` with a signature naming each value (the API's parameter names),
    and the visitor's request passed in when ``fn`` takes one."""
    wants_request = "request" in inspect.signature(fn).parameters
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    if wants_request:
        params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request))

    def split(values):  # called from Python without a request: the caller is the LOCAL visitor
        if wants_request and len(values) == len(names) + 1:
            return values[:-1], {"request": values[-1]}
        return values, {}

    if inspect.isgeneratorfunction(fn):
        def call(*values):
            args, kw = split(values)
            yield from fn(*args, **kw)
    else:
        def call(*values):
            args, kw = split(values)
            return fn(*args, **kw)
    functools.update_wrapper(call, fn)
    del call.__wrapped__  # inspect.signature must read __signature__, not fn's own
    call.__signature__ = inspect.Signature(params)
    call.__annotations__ = {"request": gr.Request} if wants_request else {}
    return call


def visitor_state(value=None) -> gr.State:
    """Per-visitor state, freed an hour after the visitor leaves."""
    return gr.State(value, time_to_live=STATE_TTL_S)


# --- checkpoint header ---------------------------------------------------------------------------

def checkpoint_choices(families) -> list[tuple[str, str]]:
    return [c for family in families for c in widgets.checkpoint_choices(family)]


def default_checkpoint(families, preferred: str | None) -> str | None:
    names = [v for _, v in checkpoint_choices(families)]
    return preferred if preferred in names else (names[0] if names else None)


@dataclass
class CheckpointHeader:
    """Checkpoint picker and its card. :meth:`then` chains a tab's views after every new choice (and
    after the page's first load), so a tab never re-writes that idiom."""

    families: tuple[str, ...]
    dropdown: gr.Dropdown
    card: gr.Markdown
    _events: list = field(default_factory=list)

    def then(self, fn, inputs, outputs, **kwargs) -> "CheckpointHeader":
        """Run ``fn`` after the card, on every new choice and on page load (``inputs`` may use ``dropdown``)."""
        self._events = [e.then(fn, inputs, outputs, api_name=False, **kwargs) for e in self._events]
        return self

    def refresh(self, current=None):
        """An update listing the checkpoints again (after a run or an import), keeping ``current``."""
        return gr.update(choices=checkpoint_choices(self.families), value=current)


def checkpoint_header(page: Page, families, preferred: str | None, elem_id: str,
                      label: str = "Checkpoint") -> CheckpointHeader:
    families = tuple([families] if isinstance(families, str) else families)
    with gr.Row():
        dropdown = gr.Dropdown(checkpoint_choices(families), value=default_checkpoint(families, preferred),
                               label=label, scale=2, elem_id=f"{elem_id}-checkpoint")
        card = gr.Markdown(elem_id=f"{elem_id}-card")
    header = CheckpointHeader(families, dropdown, card)
    page.headers.append((page.tab, header))
    show = widgets.friendly(functools.partial(card_of, families))
    header._events = [event(show, dropdown, card, api_name=False) for event in (dropdown.change, page.demo.load)]
    return header


def card_of(families, name: str) -> str:
    """The markdown card of checkpoint ``name`` of one of ``families``."""
    family = widgets.family_of(families, name)
    return widgets.card_markdown(widgets.read_card(widgets.checkpoint_paths(family)[name]))


# --- train panel ---------------------------------------------------------------------------------

def parse_duration(text) -> float:
    """'5 minutes', '90 s', '1h30', '2:30' (min:s) -> seconds; a clear error otherwise."""
    s = str(text or "").strip().lower()
    m = re.fullmatch(r"(\d+):(\d{1,2})", s)
    if m:
        return int(m[1]) * 60 + int(m[2])
    units = {"h": 3600, "hour": 3600, "hours": 3600, "hr": 3600, "m": 60, "min": 60, "mins": 60,
             "minute": 60, "minutes": 60, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", s)
    if not s or not parts or re.sub(r"[\d.\sa-z]", "", s):
        raise ValueError(f"Time budget {text!r}: write it like '5 minutes', '90 s' or '1 h 30 min'.")
    total = 0.0
    for i, (number, unit) in enumerate(parts):
        if unit == "" and i > 0 and parts[i - 1][1] in ("h", "hour", "hours", "hr"):
            unit = "min"  # "1h30"
        if unit not in units and unit != "":
            raise ValueError(f"Time budget {text!r}: unknown unit {unit!r} (use s, min or h).")
        total += float(number) * units.get(unit or "min", 60)
    if not 1 <= total <= 7 * 24 * 3600:
        raise ValueError("Time budget must be between 1 second and a week.")
    return total


@dataclass
class TrainPanel:
    """The Train section. Use as a context manager: the family's own controls are created inside the
    ``with`` block, then :meth:`wire` connects Start / Resume / Cancel / Plan / Import."""

    header: CheckpointHeader
    intro: str
    steps_default: int = 1000
    steps_max: int = 20000
    batches: tuple = (32, 64, 128, 256)
    batch_default: int = 128
    lr_default: float = 1e-3
    lr_label: str = "Learning rate"  # e.g. "G learning rate" when the family has one per network
    run_name: str = "my_run"
    preview: Callable[[], object] | None = None  # makes the preview component(s); default one image
    elem_id: str = "train"
    components: dict = field(default_factory=dict)

    def __enter__(self):
        self._accordion = gr.Accordion("Train", open=True)
        self._accordion.__enter__()
        gr.Markdown(self.intro)
        self._row = gr.Row()
        self._row.__enter__()
        return self

    def __exit__(self, *exc):
        self._row.__exit__(*exc)
        if exc[0] is None:
            self._common()
        self._accordion.__exit__(*exc)
        return False

    def _common(self):
        with gr.Row():
            self.steps = gr.Slider(10, self.steps_max, value=self.steps_default, step=10, label="Steps")
            self.batch = gr.Dropdown(list(self.batches), value=self.batch_default, label="Batch size")
            self.lr = gr.Number(value=self.lr_default, label=self.lr_label)
            self.name = gr.Textbox(value=self.run_name, label="Run name", elem_id=f"{self.elem_id}-name")
            cores = os.cpu_count() or 1
            self.processes = gr.Slider(1, cores, value=1, step=1, label="Processes", interactive=cores > 1,
                                       info="1 trains here with previews and live changes; more run "
                                            "torchrun --nproc_per_node=N (data parallel, curves only)")
        with gr.Row():
            self.start = gr.Button("Start", variant="primary", elem_id=f"{self.elem_id}-start")
            self.resume = gr.Button("Resume")
            self.cancel = gr.Button("Cancel", variant="stop")
            self.budget = gr.Textbox(value="5 minutes", label="Time budget", scale=1)
            self.plan = gr.Button("Plan: time a few steps", elem_id=f"{self.elem_id}-plan")
        self.plan_note = gr.Markdown(label="Plan", elem_id=f"{self.elem_id}-plan-note")
        self.status = gr.Markdown(label="Training status", elem_id=f"{self.elem_id}-status")
        with gr.Row():
            self.curves = gr.Plot(label="Training curves", show_label=False)
            made = self.preview() if self.preview else gr.Image(label="Samples from a fixed seed", format="png",
                                                                 interactive=False)
            self.previews = list(made) if isinstance(made, (list, tuple)) else [made]
        with gr.Accordion("Replay training, and the curves as CSV", open=False):
            with gr.Row():
                self.replay_step = gr.Slider(1, training.MAX_SNAPSHOTS, value=1, step=1, label="Snapshot",
                                             info="the fixed-seed preview kept every few steps, oldest first")
                self.replay_play = gr.Button("Play in order", elem_id=f"{self.elem_id}-replay")
                self.curves_button = gr.Button("Curves as CSV")
            self.replay_note = gr.Markdown(label="Replay")
            self.curves_csv = gr.File(label="Training curves (CSV, and its record as JSON)", height=120,
                                      file_count="multiple")
        self.import_file = gr.File(label="Import a checkpoint (.safetensors)", type="filepath")
        self.import_note = gr.Markdown()

    def wire(self, page: Page, config: Callable, inputs: list, keys: list[str], render: Callable | None = None,
             api_prefix: str | None = None, extra_outputs: list | None = None, extra: Callable | None = None,
             names: list[str] | None = None):
        """``config(*family_values, steps=, batch_size=, lr=)`` builds the run's config from the family
        controls ``inputs``; ``keys`` are the curves drawn; ``render(preview)`` gives the preview
        component(s)' values; ``extra(job)`` values for ``extra_outputs`` on every poll. The API names
        the family controls after their labels unless ``names`` are given."""
        render = render or (lambda images: widgets.mosaic(images, 4, pad=1, scale=4))
        extra_outputs = extra_outputs or []
        header, n_prev = self.header, len(self.previews)
        outputs = [self.status, self.curves, *self.previews, header.dropdown, *extra_outputs]

        def follow(job, current):
            for status, figure, preview, done in jobs.stream(job, render, lambda h, marks:
                                                             widgets.curves_figure(h, keys, marks=marks)):
                shown = ([gr.update()] * n_prev if preview is None
                         else list(preview) if n_prev > 1 else [preview])
                yield [status, gr.update() if figure is None else figure, *shown,
                       header.refresh(current) if done else gr.update(),
                       *(extra(job) if extra else [])]

        @widgets.friendly
        def start(*values, request: gr.Request = None):
            n = len(inputs)  # family controls, then steps, batch, lr, name, checkpoint and (optional) processes
            family_values, (steps, batch, lr, name, current), processes = values[:n], values[n:n + 5], values[n + 5:]
            processes = processes[0] if processes and isinstance(processes[0], (int, float)) else 1
            cfg = config(*family_values, steps=int(steps), batch_size=int(batch), lr=float(lr))
            job = jobs.JOBS.start(family_of_config(cfg), name, cfg, owner=owner_of(request),
                                  processes=int(processes or 1))
            yield from follow(job, current)

        @widgets.friendly
        def resume(name, steps, current, processes=1, request: gr.Request = None):
            yield from follow(jobs.JOBS.resume(name, steps, owner=owner_of(request), processes=int(processes or 1)),
                              current)

        def cancel(request: gr.Request = None):
            return jobs.JOBS.cancel(owner_of(request))

        @widgets.friendly
        def plan(*values):
            *family_values, steps, batch, lr, budget = values
            seconds = parse_duration(budget)
            cfg = config(*family_values, steps=int(steps), batch_size=int(batch), lr=float(lr))
            return plan_note(family_of_config(cfg), cfg, seconds, self.steps_max)

        @widgets.friendly
        def import_checkpoint(file_path, request: gr.Request = None):
            name = import_into(header.families, file_path, owner_of(request))
            return header.refresh(name), f"Imported **{name}**."

        prefix = api_prefix or self.elem_id
        common = [self.steps, self.batch, self.lr]
        names = (names or [_param(c) for c in inputs]) + ["steps", "batch_size", "lr"]
        page.action(self.start.click, start, [*inputs, *common, self.name, header.dropdown, self.processes],
                    outputs, api_name=f"{prefix}_train", names=[*names, "run_name", "checkpoint", "processes"],
                    show_progress_on=[self.status], lane="train")
        page.action(self.resume.click, resume, [self.name, self.steps, header.dropdown, self.processes], outputs,
                    api_name=f"{prefix}_train_resume", names=["run_name", "steps", "checkpoint", "processes"],
                    show_progress_on=[self.status], lane="train")
        page.action(self.cancel.click, cancel, None, self.status, api_name=f"{prefix}_train_cancel", names=[],
                    lane="control")
        page.action(self.plan.click, plan, [*inputs, *common, self.budget], [self.plan_note, self.steps],
                    api_name=f"{prefix}_train_plan", names=[*names, "budget"], show_progress_on=[self.plan_note],
                    heavy=True)
        self.import_file.upload(named(import_checkpoint, ["file"]), self.import_file,
                                [header.dropdown, self.import_note], api_name=False)
        self._wire_replay(render, n_prev)
        return self

    def _wire_replay(self, render, n_prev: int):
        """Snapshots of the visitor's run (or of the chosen checkpoint's run here) played back in order, like
        the books' figures of samples at successive epochs; and the curves as a CSV download."""
        header = self.header

        def kept(current, owner):
            job = jobs.JOBS.mine(owner)
            if job is not None and job.progress is not None and job.progress.snapshots:
                return job.name, list(job.progress.snapshots)
            if current and re.fullmatch(r"[\w-]{1,100}", str(current)):
                return current, training.read_snapshots(str(current))
            return current, []

        def shown(name, snaps, i):
            step, preview = snaps[i]
            values = render(preview)
            values = list(values) if n_prev > 1 else [values]
            return [f"**{name}**, snapshot {i + 1} of {len(snaps)}: step {step:,}.", *values]

        @widgets.friendly
        def one(index, current, request: gr.Request = None):
            name, snaps = kept(current, owner_of(request))
            if not snaps:
                raise ValueError("No snapshots yet: a run started here keeps its preview every few steps "
                                 "(shipped checkpoints have none).")
            i = min(max(int(index) - 1, 0), len(snaps) - 1)
            return shown(name, snaps, i)

        @widgets.friendly
        def play(current, request: gr.Request = None):
            name, snaps = kept(current, owner_of(request))
            if not snaps:
                raise ValueError("No snapshots yet: a run started here keeps its preview every few steps "
                                 "(shipped checkpoints have none).")
            for i in range(len(snaps)):
                yield shown(name, snaps, i)
                time.sleep(0.4)

        @widgets.friendly
        def curves_csv(current, request: gr.Request = None):
            job = jobs.JOBS.mine(owner_of(request))
            history = job.progress.history if job is not None and job.progress is not None else None
            name = job.name if history else current
            if not history and current and re.fullmatch(r"[\w-]{1,100}", str(current)):
                path = training.STATE / f"{current}.history.json"
                history = json.loads(path.read_text()) if path.exists() else None
            if not history:
                raise ValueError("No training curves here: train a run in this section first.")
            return save_csv(history, {"run": name, "studio_version": VERSION}, f"{name}_curves.csv")

        outs = [self.replay_note, *self.previews]
        self.replay_step.release(one, [self.replay_step, header.dropdown], outs, api_name=False)
        self.replay_play.click(play, header.dropdown, outs, api_name=False)
        self.curves_button.click(curves_csv, header.dropdown, self.curves_csv, api_name=False)


def _param(component) -> str:
    """A component's label as an API parameter name: 'D learning rate' -> 'd_learning_rate'."""
    label = (getattr(component, "label", None) or "value").split("(")[0]
    return re.sub(r"\W+", "_", label.strip().lower()).strip("_") or "value"


def family_of_config(config) -> str:
    """The registry name of the family whose config class ``config`` is."""
    for name, fam in FAMILIES.items():
        if type(config) is fam.config_cls:
            return name
    raise ValueError(f"No family trains a {type(config).__name__}.")


def plan_note(family: str, config, budget_s: float, steps_max: int):
    """Time a few steps here, then say how long the chosen steps take and how many fit the budget."""
    busy = jobs.JOBS.current is not None and jobs.JOBS.current.running
    per_step = training.time_steps(FAMILIES[family], config)
    fits = int(budget_s / per_step) // 10 * 10
    suggested = int(np.clip(fits, 10, steps_max))
    note = (f"Measured **{per_step:.3g} s per step** (3 steps at batch {config.batch_size} on this machine). "
            f"{config.steps:,} steps take about **{jobs.clock(config.steps * per_step)}**; "
            f"a budget of {jobs.clock(budget_s)} fits about **{fits:,} steps**"
            + (f" (the slider goes to {steps_max:,})" if fits > steps_max else "")
            + "; Steps is set to that."
            + (" A training run is in progress, so this is slower than an idle machine." if busy else ""))
    return note, gr.update(value=suggested)


def import_into(families, file_path, owner: str) -> str:
    """Validate an uploaded checkpoint (never unpickled), copy it among the user's checkpoints under
    a name that is free, and write a card saying where it came from (never an old run's card)."""
    from models.core import checkpoint

    if not file_path:
        raise ValueError("Choose a .safetensors file to import.")
    src = Path(file_path)
    if src.suffix != ".safetensors":
        raise ValueError(f"{src.name} is not a .safetensors checkpoint.")
    _, config, meta = checkpoint.load(src)
    if meta["family"] not in families:
        raise ValueError(f"{src.name} is a {meta['family']} checkpoint; this tab takes "
                         f"{' or '.join(families)}.")
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", src.stem)[:60] or "imported"
    name, k = stem, 1
    taken = lambda n: ((training.SHIPPED / f"{n}.safetensors").exists()
                       or (widgets.USER_CHECKPOINTS / f"{n}.safetensors").exists())
    while taken(name):
        name, k = f"{stem}_imported{'' if k == 1 else k}", k + 1
    dest = widgets.USER_CHECKPOINTS / f"{name}.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    checkpoint.write_json(dest.with_suffix(".json"), {
        "name": name, "family": meta["family"], "config": widgets.config_dict(config),
        "steps": meta.get("step"), "wall_time_s": meta.get("wall_time_s"),
        "imported": {"file": src.name, "sha256": file_hash(dest), "at": time.strftime("%Y-%m-%d %H:%M:%S")}})
    jobs.JOBS.owners[name] = owner
    return name


# --- output panel, provenance, exports and uploads -------------------------------------------------

@functools.lru_cache(maxsize=64)
def _hash(path: str, mtime: float, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hash(path) -> str:
    """sha256 of a file, cached per (path, mtime, size)."""
    st = Path(path).stat()
    return _hash(str(path), st.st_mtime, st.st_size)


def provenance(family: str, checkpoint: str | None, seed=None, **controls) -> dict:
    """What made an output: enough to make it again."""
    record = {"family": family, "checkpoint": checkpoint}
    if checkpoint:
        path = widgets.checkpoint_paths(family).get(checkpoint)
        record["checkpoint_sha256"] = file_hash(path) if path else None
    if seed is not None:
        record["seed"] = seed
    record["controls"] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in controls.items()}
    record.update(studio_version=VERSION, time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    current = CURRENT_SCENE.get()
    if current is not None:  # the action that made it, with every input: a scene that re-runs it
        from studio import scenes

        record["scene"] = scenes.capture(current, family=family, checkpoint=checkpoint, seed=seed)
    return record


def save_png(image: np.ndarray, record: dict, filename: str) -> str:
    """A PNG with its provenance in a text chunk (``provenance``, JSON)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("provenance", json.dumps(record))
    path = widgets.export_path(filename)
    Image.fromarray(np.asarray(image)).save(path, pnginfo=info)
    return str(path)


def save_text(text: str, record: dict, filename: str) -> list[str]:
    """A UTF-8 ``.txt`` of ``text`` with, beside it in the same fresh folder, a ``.json`` of the same
    name holding the provenance record (plain text has nowhere to embed it); both paths."""
    path = widgets.export_path(filename)
    path.write_text(text, encoding="utf-8")
    beside = path.with_suffix(".json")
    beside.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    return [str(path), str(beside)]


def save_csv(rows: list[dict], record: dict, filename: str) -> list[str]:
    """Rows (dicts; the union of their keys is the header) as a CSV, with the record as a JSON beside it."""
    import csv
    import io

    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, keys)
    writer.writeheader()
    writer.writerows(rows)
    return save_text(buf.getvalue(), record, filename)


def store_upload(file_path, suffixes: tuple[str, ...], folder: str, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Keep an upload under a name that includes its content hash: a later upload with the same file
    name but other contents gets its own file, so a run keeps training on the data it started with."""
    src = Path(file_path)
    if src.suffix.lower() not in suffixes:
        raise ValueError(f"{src.name} is not a {' or '.join(suffixes)} file.")
    if src.stat().st_size > max_bytes:
        raise ValueError(f"{src.name} is larger than {max_bytes >> 20} MB.")
    digest = file_hash(src)[:12]
    stem = re.sub(r"[^\w-]", "_", src.stem)[:60]
    dest = UPLOADS / folder / f"{stem}-{digest}{src.suffix.lower()}"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return dest


@dataclass
class OutputPanel:
    """Caption (with the seed), the provenance record, and a download of the output with the record
    embedded. A handler returns ``publish(...)``'s values for :attr:`outputs`."""

    caption: gr.Markdown
    record: gr.JSON
    file: gr.File

    @property
    def outputs(self) -> list:
        return [self.caption, self.record, self.file]


def output_panel(label: str = "Download (PNG with its provenance)", file_count: str = "single") -> OutputPanel:
    """``file_count="multiple"`` when one output is several files (MIDI, MusicXML, WAV, JSON; a text and
    its JSON record); the box is then tall enough to list them."""
    caption = gr.Markdown(label="Caption")
    with gr.Row():
        file = gr.File(label=label, height=90 if file_count == "single" else 150, interactive=False,
                       file_count=file_count)
        with gr.Accordion("Provenance: what made this output", open=False):
            record = gr.JSON(label="Provenance", show_label=False)
    return OutputPanel(caption, record, file)


def publish(image: np.ndarray, record: dict, caption: str, filename: str) -> tuple[str, dict, str]:
    """The values of an image :class:`OutputPanel`: caption, record, and the PNG written with it."""
    return caption, record, save_png(image, record, filename)


# --- frames a scrubber replays -----------------------------------------------------------------------

MAX_FRAMES = 200  # frames of one streamed run kept per visitor (a longer run keeps this many, evenly spaced)


def frame_steps(total: int, cap: int = MAX_FRAMES) -> list[int]:
    """Which of the states 0 … total - 1 a scrubber keeps: all of them, or ``cap`` evenly spaced ones
    (the first and the last always)."""
    if total <= cap:
        return list(range(total))
    return sorted({round(i * (total - 1) / (cap - 1)) for i in range(cap)})


@dataclass
class Frames:
    """The frames a scrubber replays of a streamed run of ``total`` states: at most ``cap``, each
    image kept as uint8, so a visitor's memory stays bounded however long the run (for 1000 DDPM
    steps of 16 samples: 200 frames, about 5 MB instead of 100 MB of float tensors)."""

    total: int
    cap: int | None = None  # default: MAX_FRAMES
    steps: list[int] = field(default_factory=list)  # the run's state number of each kept frame
    images: list[dict] = field(default_factory=list)  # per kept frame: name -> uint8 array (or None)

    def __post_init__(self):
        self.cap = MAX_FRAMES if self.cap is None else self.cap
        self._keep = frozenset(frame_steps(self.total, self.cap))

    def wants(self, step: int) -> bool:
        """Whether state ``step`` is one kept (so a caller can skip rendering the others)."""
        return step in self._keep

    def add(self, step: int, **images) -> None:
        """Keep ``images`` (arrays or tensors of floats in [0, 1], or None) as state ``step``, if it is kept."""
        if self.wants(step):
            self.steps.append(step)
            self.images.append({k: None if v is None else
                                (np.asarray(v, dtype=np.float32).clip(0, 1) * 255).round().astype(np.uint8)
                                for k, v in images.items()})

    def __len__(self) -> int:
        return len(self.steps)

    def frame(self, i: int) -> tuple[int, dict]:
        """Kept frame ``i``: its state number and its images as floats in [0, 1]."""
        if not len(self):
            raise ValueError("No frames kept yet: generate first.")
        if i != int(i) or not 0 <= i < len(self):
            raise ValueError(f"Frame must be from 0 to {len(self) - 1}; got {i}.")
        i = int(i)
        return self.steps[i], {k: None if v is None else v.astype(np.float32) / 255 for k, v in self.images[i].items()}

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for f in self.images for v in f.values() if v is not None)
