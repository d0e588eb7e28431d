"""Lanes: how many calls of each kind run at once, and how many may wait, so that a room full of
visitors cannot starve one another or pile up without bound.

Gradio's queue runs events in concurrency groups (``concurrency_id``). Every named action is put in
one of a few lanes, each a group with its own running limit and a bounded waiting room:

* ``cheap``: one-shot views (a grid of samples, a plot): as many at once as half the cores;
* ``heavy``: streamed samplers and optimisers (diffusion, text generation, style transfer) and the
  planner: a quarter of the cores, at least one; cheap calls never take their turn;
* ``train``: the streams that follow a training run (they poll twice a second; the run itself
  trains in its own thread, niced, in :mod:`studio.jobs`);
* ``control``: cancel and live changes, which must never wait behind the work they control.

The cores themselves are shared by ``cheap`` and ``heavy`` calls through :class:`Cores`: at most half
the cores' worth of them compute at once (each already uses every core through torch's threads, and
oversubscribed OpenMP teams slow everyone down), a waiting heavy call goes before waiting cheap ones,
and a stream that has computed for :data:`SLICE_S` lets one waiting cheap call through between two of
its items. So a heavy generator under a room's load stays near its idle time, and a cheap call waits
at most about a slice behind it.

A visitor who arrives when a lane's waiting room is full is told at once, in the page and through
the API: "The studio is busy: 6 requests are ahead of you ...". Gradio's own ``max_size`` bounds the
whole queue as a last resort (its message there is its own: "currently busy").

An action a tab registers without saying anything goes to ``heavy`` if its handler streams (a
generator) and to ``cheap`` otherwise; ``page.action(..., heavy=True)`` or ``lane="control"`` says
otherwise in one word.
"""
from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from dataclasses import dataclass, field

import gradio as gr

CORES = os.cpu_count() or 2


SLICE_S = 1.0  # a stream computes this long before a waiting cheap call gets a turn


class Cores:
    """Turns to compute, shared by cheap and heavy calls: heavy waiters first, cheap ones between slices."""

    def __init__(self, turns: int):
        self.turns = turns
        self._free = turns
        self._cv = threading.Condition()
        self._waiting = {"heavy": 0, "cheap": 0}
        self._cheap_granted = 0

    def acquire(self, heavy: bool) -> None:
        kind = "heavy" if heavy else "cheap"
        with self._cv:
            self._waiting[kind] += 1
            try:
                while not (self._free > 0 and (heavy or self._waiting["heavy"] == 0)):
                    self._cv.wait()
                self._free -= 1
                if not heavy:
                    self._cheap_granted += 1
            finally:
                self._waiting[kind] -= 1

    def release(self) -> None:
        with self._cv:
            self._free += 1
            self._cv.notify_all()

    def pass_turn(self) -> None:
        """A heavy holder's pause between two items: one waiting cheap call computes, then it goes on."""
        with self._cv:
            if not self._waiting["cheap"]:
                return
            granted = self._cheap_granted
            self._free += 1
            self._cv.notify_all()
            while not (self._free > 0 and (self._cheap_granted > granted or not self._waiting["cheap"])):
                self._cv.wait()
            self._free -= 1


CORES_TURNS = Cores(max(1, CORES // 2))


@dataclass
class Lane:
    name: str
    running: int  # calls of this lane that run at once
    waiting: int  # calls that may wait for a turn; one more is told the studio is busy
    what: str  # how the busy message names the work
    computes: bool = False  # takes a turn of the cores (cheap and heavy work, not polling or control)
    heavy: bool = False  # goes before cheap work for the cores
    _slots: threading.Semaphore = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _inside: int = field(default=0, repr=False)  # running + waiting now

    def __post_init__(self):
        self._slots = threading.Semaphore(self.running)

    @property
    def gradio_limit(self) -> int:
        """Gradio's concurrency limit for the group: the runners, the waiters, and one more thread that
        is there only to tell the next visitor the room is full (so nobody waits in silence)."""
        return self.running + self.waiting + 1

    @property
    def inside(self) -> int:
        return self._inside

    def enter(self) -> None:
        """Wait for a turn, or raise ``gr.Error`` at once when the waiting room is full."""
        with self._lock:
            ahead = self._inside
            if ahead >= self.running + self.waiting:
                raise gr.Error(f"The studio is busy: {ahead} requests are ahead of you for {self.what} "
                               f"({self.running} running, {ahead - self.running} waiting, at most "
                               f"{self.waiting} may wait). Try again in a minute.", print_exception=False)
            self._inside += 1
        self._slots.acquire()
        if self.computes:
            CORES_TURNS.acquire(self.heavy)

    def leave(self) -> None:
        if self.computes:
            CORES_TURNS.release()
        self._slots.release()
        with self._lock:
            self._inside -= 1

    def guard(self, fn):
        """``fn`` (plain or generator) run inside this lane, keeping its signature for the API."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def streaming(*args, **kwargs):
                self.enter()
                try:  # released when the stream ends, fails or is closed (a visitor left)
                    since = time.monotonic()
                    for item in fn(*args, **kwargs):
                        yield item
                        if self.computes and time.monotonic() - since > SLICE_S:
                            CORES_TURNS.pass_turn()
                            since = time.monotonic()
                finally:
                    self.leave()

            return streaming

        @functools.wraps(fn)
        def call(*args, **kwargs):
            self.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()

        return call


LANES = {lane.name: lane for lane in (
    Lane("cheap", max(1, CORES // 2), 16, "quick views", computes=True),
    Lane("heavy", max(1, CORES // 4), 6, "streamed generation and planning", computes=True, heavy=True),
    Lane("train", 8, 8, "following training runs"),
    Lane("control", 4, 16, "cancel and live changes"),
)}
QUEUE_MAX = 96  # Gradio's bound on the whole queue (every lane's threads plus the page's own events)
THREADS = sum(lane.gradio_limit for lane in LANES.values()) + 16  # Gradio's worker threads (16 for page plumbing)


def lane_for(fn, heavy: bool | None = None, lane: str | None = None) -> Lane:
    """The lane of an action: named, or heavy/cheap as said, or heavy when the handler streams."""
    if lane is not None:
        if lane not in LANES:
            raise ValueError(f"No lane {lane!r}; lanes are {', '.join(LANES)}.")
        return LANES[lane]
    if heavy is None:
        heavy = inspect.isgeneratorfunction(inspect.unwrap(fn)) or inspect.isgeneratorfunction(fn)
    return LANES["heavy" if heavy else "cheap"]
