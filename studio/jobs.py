"""Training from the page: one background run at a time (two cores), owned by the visitor who started it.

Gradio serves every visitor from one process, so the slot is shared but a run is not: only its owner
(the browser session, or the ``gradio_client`` session, that pressed Start) can cancel it, resume it
or change its settings while it runs; everyone else is told the slot is busy, by what, and until
when. Live changes are queued and applied by the training thread between two steps, so a step
never sees half of them. Cancelling keeps the checkpoint at the current step; closing the page
does not stop the run.

A run with more than one process is a ``torchrun --standalone --nproc_per_node=N -m models.train``
job on this machine (:func:`torchrun_command`): the same shared loop, data parallel; the page
follows its JSON progress lines for the status and curves (no previews: the samples come with its
checkpoint), Cancel sends torchrun SIGTERM and its workers save the current step, and live changes
are refused (they can only reach a run in this process).

The page polls a :class:`Job` from a generator handler (:func:`stream`).
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace

import torch

from models import FAMILIES
from models.core import ROOT, checkpoint
from models.core import train as training
from models.core.train import Progress, Result
from studio import widgets

LOCAL = "local"  # the owner of runs started from Python rather than a browser session


def owner_of(request) -> str:
    """The visitor a handler serves: Gradio's session hash, or ``LOCAL`` when called from Python."""
    return getattr(request, "session_hash", None) or LOCAL


def clock(seconds: float) -> str:
    """12 s, 3 min 20 s, 1 h 05 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass
class Job:
    family: str
    name: str
    config: object
    owner: str = LOCAL
    resume: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None
    result: Result | None = None
    error: str | None = None
    thread: threading.Thread | None = None
    marks: list = field(default_factory=list)  # (step, what changed), drawn on the curves
    keep: dict = field(default_factory=dict)  # what a tab keeps with this run (e.g. the previews for a replay)
    processes: int = 1  # > 1: a torchrun job of that many processes
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))  # torchrun's output
    _pending: dict = field(default_factory=dict)  # live changes waiting for the next step
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def eta(self) -> float | None:
        """Seconds left at the speed so far (None before the first report)."""
        p = self.progress
        if p is None or not p.images_per_s:
            return None
        return (p.total - p.step) * self.config.batch_size / p.images_per_s

    def _left(self) -> str:
        eta = self.eta()
        return f", about {clock(eta)} left" if eta is not None else ""

    def status(self) -> str:
        if self.error:
            return f"**{self.name}**: failed: {self.error}"
        if self.result:
            return f"**{self.name}**: {self.result.message}"
        p = self.progress
        if p is None:
            return f"**{self.name}**: starting…"
        ms = ", ".join(f"{k} {v:.3g}" for k, v in p.metrics.items())
        procs = f", {self.processes} processes (torchrun)" if self.processes > 1 else ""
        return (f"**{self.name}**: step {p.step}/{p.total} ({p.step / p.total:.0%}){self._left()}; {ms}; "
                f"{p.images_per_s:.0f} {FAMILIES[self.family].unit}/s, {clock(p.elapsed)}{procs}")

    def busy_message(self) -> str:
        p = self.progress
        where = f" (step {p.step}/{p.total})" if p else ""
        return (f"The training slot is busy: another visitor is training {self.name} "
                f"({FAMILIES[self.family].title}){where}{self._left()}. Wait for it to finish; only they can cancel it.")

    def request_change(self, changes: dict, apply) -> None:
        """Queue ``changes`` for the training thread: ``apply(config, changes)`` runs between two steps."""
        with self._lock:
            self._pending.update(changes)
            self._apply = apply

    def between_steps(self, step: int) -> None:
        """Called by the training thread between steps: apply queued live changes all at once."""
        with self._lock:
            if not self._pending:
                return
            changes, self._pending = self._pending, {}
        done = self._apply(self.config, changes)
        if done:
            self.marks.append((step, "; ".join(done)))


def torchrun_command(family: str, name: str, config, out, processes: int, resume: bool, settings: dict) -> list[str]:
    """``torchrun --standalone --nproc_per_node=N -m models.train ...`` for a run of the page's settings
    (written beside the run's state as JSON, read back by ``--config``)."""
    config_path = training.STATE / f"{name}.config.json"
    checkpoint.write_json(config_path, asdict(config))
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "models.train", family, "--config", str(config_path), "--name", name, "--out", str(out),
            "--log-every", str(settings["log_every"]), "--checkpoint-every", str(settings["checkpoint_every"]),
            "--score-samples", str(settings["score_samples"]), "--json-progress", *(["--resume"] if resume else [])]


def follow_torchrun(job: Job, cmd: list[str], out) -> Result:
    """Run ``cmd`` (torchrun) and turn its JSON progress lines into ``job.progress``; other lines are kept
    in ``job.log``. Cancel sends torchrun SIGTERM: the workers save the current step and stop."""
    env = {**os.environ, "STUDIO_RUNS": str(training.STATE.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=str(ROOT), start_new_session=True)

    def watch():  # the cancel button reaches the process group's leader, torchrun
        while proc.poll() is None:
            if job.cancel.wait(0.5):
                proc.send_signal(signal.SIGTERM)
                return

    threading.Thread(target=watch, name=f"cancel-{job.name}", daemon=True).start()
    history = []
    for line in proc.stdout:
        if line.startswith("{"):
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                r = None
            if r and "step" in r:
                history.append({"step": r["step"], **r["metrics"]})
                job.progress = Progress(r["step"], r["total"], r["metrics"], r["elapsed"], r["images_per_s"],
                                        None, list(history))
                continue
        job.log.append(line.rstrip())
    rc = proc.wait()
    weights = out / f"{job.name}.safetensors"
    step = checkpoint.read_meta(weights).get("step") if weights.exists() else None
    if rc == 0:
        card = json.loads(weights.with_suffix(".json").read_text())
        return Result("finished", step, weights, f"Finished {step} steps with {job.processes} processes "
                      f"in {card['wall_time_s']:.0f} s.", card, history)
    if job.cancel.is_set():
        return Result("cancelled", step, weights if step is not None else None,
                      f"Cancelled at step {step}; checkpoint saved." if step is not None else "Cancelled.",
                      history=history)
    errors = [t for t in job.log if t.startswith("error: ")]
    raise ValueError(errors[-1][len("error: "):] if errors else
                     f"torchrun exited with code {rc}: " + " / ".join(list(job.log)[-3:]))


class Jobs:
    """The studio's single training slot, and who started which run while this server has been up."""

    @property
    def folder(self):
        return widgets.USER_CHECKPOINTS

    def __init__(self):
        self._lock = threading.Lock()
        self.current: Job | None = None
        self.owners: dict[str, str] = {}  # run name -> owner, for runs started since the server started

    def _check_owner(self, owner: str, name: str, verb: str) -> None:
        started_by = self.owners.get(name)
        if started_by is not None and started_by != owner:
            raise ValueError(f"{name} was started by another visitor; only they can {verb} it. "
                             "Choose another run name for your own run.")

    def start(self, family: str, name: str, config, resume: bool = False, owner: str = LOCAL,
              processes: int = 1, **train_kwargs) -> Job:
        """Start a run in this process, or with ``processes > 1`` as a torchrun job on this machine."""
        name = (name or "").strip()
        training.check_name(name)
        processes = int(processes)
        if not 1 <= processes <= (os.cpu_count() or 1):
            raise ValueError(f"Processes must be between 1 and {os.cpu_count() or 1} (this machine's cores); "
                             f"got {processes}.")
        training.check_shares(config.batch_size, processes)
        if (training.SHIPPED / f"{name}.safetensors").exists():
            raise ValueError(f"{name!r} is a shipped checkpoint; choose another name for your run.")
        if not resume and (self.folder / f"{name}.safetensors").exists():
            raise ValueError(f"You already have a run named {name!r}: resume it, or choose another name "
                             "(a new run would overwrite it).")
        with self._lock:
            job = self.current
            if job and job.running:
                if job.owner != owner:
                    raise ValueError(job.busy_message())
                raise ValueError(f"Your training run {job.name} is already in progress; cancel it or wait for it "
                                 "to finish.")
            self._check_owner(owner, name, "resume" if resume else "replace")
            job = Job(family, name, config, owner, resume, processes=processes)
            fam = FAMILIES[family]

            def run():
                background()
                settings = {"log_every": 10, "checkpoint_every": 250, "preview_every": 50, "score_samples": 500,
                            "command": f"trained in the studio (Train section), name {name}", **train_kwargs}
                try:
                    if processes > 1:
                        cmd = torchrun_command(family, name, config, self.folder, processes, resume, settings)
                        job.result = follow_torchrun(job, cmd, self.folder)
                        return
                    with torch.random.fork_rng(devices=[]):  # the loop seeds the global RNG: give it back after
                        job.result = training.train(fam, config, name=name, out=self.folder, resume=resume,
                                                    cancel=job.cancel,
                                                    on_progress=lambda p: setattr(job, "progress", p),
                                                    between_steps=job.between_steps, **settings)
                except ValueError as e:
                    job.error = str(e)
                except Exception as e:  # keep the studio alive and say what happened
                    traceback.print_exc()
                    job.error = f"{type(e).__name__}: {e}"

            job.thread = threading.Thread(target=run, name=f"train-{name}", daemon=True)
            self.owners[name] = owner
            self.current = job
            job.thread.start()
            return job

    def resume(self, name: str, steps, owner: str = LOCAL, processes: int = 1) -> Job:
        """Continue a run of the user's with its own settings, up to ``steps``, on any number of processes;
        the family comes from the file."""
        name = (name or "").strip()
        path = self.folder / f"{name}.safetensors"
        self._check_owner(owner, name, "resume")
        if not name or not path.exists():
            raise ValueError(f"No run of yours named {name!r} to resume.")
        _, config, meta = checkpoint.load(path)
        return self.start(meta["family"], name, replace(config, steps=int(steps)), resume=True, owner=owner,
                          processes=processes)

    def mine(self, owner: str) -> Job | None:
        """The visitor's own run in progress, if any."""
        job = self.current
        return job if job is not None and job.running and job.owner == owner else None

    def cancel(self, owner: str = LOCAL) -> str:
        job = self.current
        if not job or not job.running:
            return "No training run in progress."
        if job.owner != owner:
            return f"The run in progress ({job.name}) belongs to another visitor; only they can cancel it."
        job.cancel.set()
        return f"Cancelling {job.name}: the checkpoint at the current step is kept."

    def change(self, owner: str, family: str, changes: dict, apply) -> Job:
        """Queue live setting changes for the visitor's own run of ``family`` (applied between steps)."""
        job = self.current
        if job is None or not job.running or job.family != family:
            raise ValueError(f"No {FAMILIES[family].title} training in progress: start one, then change its "
                             "settings while it runs.")
        if job.owner != owner:
            raise ValueError(f"The run in progress ({job.name}) belongs to another visitor; only they can "
                             "change its settings.")
        if job.processes > 1:
            raise ValueError(f"{job.name} runs as a torchrun job of {job.processes} processes, which settings "
                             "changed here cannot reach; live changes need a 1-process run.")
        job.request_change(changes, apply)
        return job


JOBS = Jobs()
TRAIN_NICE = 10  # a run trains at a lower priority than the visitors' clicks


def background() -> None:
    """Lower the calling thread's scheduling priority (Linux: nice is per thread, and the thread pools
    torch starts from it inherit it), so a run in the training slot takes the cores the visitors leave
    idle instead of starving their clicks. Only this thread changes; elsewhere it does nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), TRAIN_NICE)
    except (AttributeError, OSError):
        pass


def stream(job: Job, render, curves):
    """Poll a training job twice a second for a generator handler: yields ``(status, figure or None,
    preview values or None, done)``; the figure and preview only when a new report arrived."""
    drawn_step = -1
    while True:
        done = not job.running
        p = job.progress
        figure = preview = None
        if p is not None and p.step != drawn_step:
            drawn_step = p.step
            figure = curves(p.history, job.marks)
            if p.preview is not None:
                preview = render(p.preview)
        yield job.status(), figure, preview, done
        if done:
            return
        time.sleep(0.5)
