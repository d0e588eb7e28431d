"""Every named action, fuzzed: values across and beyond each control's range, of the wrong type, empty,
NaN, huge and unicode, drawn by Hypothesis from the controls themselves (slider bounds, dropdown
choices, number boxes, upload boxes), so an action a new tab registers is fuzzed with no list to edit.

Every call must end with a result or a clear ``gr.Error`` (a message), never another exception, never
longer than :data:`CALL_LIMIT_S`, and never a process-wide change (torch threads, default dtype, grad
mode, the global RNGs, the working directory, the environment, PIL's pixel limit).

* In process (the bulk): the values go through Gradio's own reading of an event's inputs
  (``demo.preprocess_data``, as for a visitor: uploads must be in Gradio's upload folder) and then the
  handler the button calls; streams are read for a few items and closed.
* Over HTTP (a smaller pass): every endpoint of the served app gets hostile values through Gradio's
  ``/gradio_api/call`` API (raw JSON, so NaN and unuploaded paths can be sent) and must answer with a
  message, and the app keeps answering afterwards.

The number of calls tried is printed.
"""
from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import random
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
import torch
from gradio import utils as gradio_utils
from hypothesis import HealthCheck, Phase, assume, given, settings, strategies as st
from PIL import Image

import hostile
from studio import jobs

EXAMPLES = 6  # in-process examples per endpoint
ENDPOINT_BUDGET_S = 1.5  # once an endpoint has used this much time, its remaining examples are skipped
STREAM_ITEMS = 2  # items read from a streaming handler before it is closed
CALL_LIMIT_S = 60.0  # a call that takes longer is a hang
STARTS_RUN = re.compile(r"_train(_resume)?$")

WEIRD = [None, "", "∞ 🎵 \u202e\u0000 ÿ", "x" * 20_000, [], {}, True, -1, 10**30, -1e308,
         float("nan"), float("inf"), {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}]


def block_fn(demo, api_name):
    return next(f for f in demo.fns.values() if f.api_name == api_name)


def _values(component) -> list:
    return [v for _, v in component.choices] if getattr(component, "choices", None) else []


def _file_data(path):
    return None if path is None else {"path": path, "meta": {"_type": "gradio.FileData"}}


def strategy(component, files: dict, hostile_only: bool = False):
    """Values a visitor can send for ``component``: the control's own range (unless ``hostile_only``),
    just beyond it, and the weird values any field may receive."""
    weird = st.sampled_from(WEIRD)
    c = component
    if isinstance(c, gr.State):  # not sent by the visitor: the page's own default
        return st.just(None)
    if isinstance(c, gr.Slider):
        lo, hi, step = float(c.minimum), float(c.maximum), float(c.step or 1)
        inside = st.one_of(st.sampled_from([lo, hi, c.value]),
                           st.floats(lo, hi).map(lambda x: min(hi, lo + round((x - lo) / step) * step)))
        beyond = st.sampled_from([lo - step, hi + step, lo - 1e9, hi + 1e9, hi * 1e12 + 1])
        own = st.one_of(inside, inside, beyond)
    elif isinstance(c, gr.Number):
        own = st.one_of(st.sampled_from([c.value, 0, 1, -1, 0.5, 2**63, 2**64, 10**6]),
                        st.integers(-(10**20), 10**20), st.floats(allow_nan=True, allow_infinity=True))
    elif isinstance(c, gr.CheckboxGroup) or (isinstance(c, gr.Dropdown) and c.multiselect):
        own = st.lists(st.sampled_from(_values(c) or [""]), unique=True, max_size=len(_values(c)) + 1)
    elif isinstance(c, (gr.Dropdown, gr.Radio)):
        own = st.one_of(st.sampled_from(_values(c) or [None]), st.sampled_from(_values(c) or [None]),
                        st.text(max_size=30), st.integers())
    elif isinstance(c, gr.Checkbox):
        own = st.one_of(st.booleans(), st.sampled_from([0, 1, "yes"]))
    elif isinstance(c, gr.Textbox):
        own = st.one_of(st.sampled_from([c.value, "", " ", "x" * 100_000, "🎵" * 1000]), st.text(max_size=40))
    elif isinstance(c, gr.ImageEditor):  # the sketchpad: a drawing, an empty one, or an upload that isn't one
        drawings = st.sampled_from([files["image"], files["garbage"], files["huge_header"], None])
        own = drawings.map(lambda p: {"background": None, "layers": [], "composite": _file_data(p), "id": None})
    elif isinstance(c, gr.File):
        single = st.sampled_from(list(files.values())).map(_file_data)
        own = st.lists(single, max_size=3) if c.file_count == "multiple" else single
    else:
        own = st.just(c.value)
    return weird if hostile_only else st.one_of(own, own, own, weird)


def snapshot() -> dict:
    """The process-wide settings a handler must leave alone."""
    return {"torch threads": torch.get_num_threads(), "default dtype": torch.get_default_dtype(),
            "grad mode": torch.is_grad_enabled(), "inference mode": torch.is_inference_mode_enabled(),
            "anomaly mode": torch.is_anomaly_enabled(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "torch global RNG": torch.random.get_rng_state().numpy().tobytes(),
            "numpy global RNG": np.random.get_state()[1].tobytes(), "python RNG": random.getstate(),
            "cwd": os.getcwd(), "environment": dict(os.environ), "PIL pixel limit": Image.MAX_IMAGE_PIXELS,
            "sys.path": list(sys.path)}


# set by libraries when first imported, not by a handler: torch (the first optimizer imports its compiler)
# and scikit-learn (its __init__ sets the two KMP variables)
SET_BY_LIBRARIES = {"TORCHINDUCTOR_CACHE_DIR", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK",
                    "PYGAME_HIDE_SUPPORT_PROMPT"}  # set once when pygame is first imported


def changed(before: dict, after: dict) -> list[str]:
    for snap in (before, after):
        snap["environment"] = {k: v for k, v in snap["environment"].items() if k not in SET_BY_LIBRARIES}
    out = [k for k in before if before[k] != after[k]]
    if "environment" in out:
        env = {k for k in {**before["environment"], **after["environment"]}
               if before["environment"].get(k) != after["environment"].get(k)}
        out[out.index("environment")] = f"environment ({', '.join(sorted(env))})"
    return out


def finish_runs():
    """Cancel and wait for a run a fuzzed Start left, so the next call starts from an idle slot."""
    job = jobs.JOBS.current
    if job is not None and job.running:
        job.cancel.set()
        job.thread.join(120)


def call(demo, action, values):
    """One call as the page makes it: Gradio reads the inputs, then the handler runs (a stream is read
    for a few items). Returns "result" or "refused: message"; raises for anything else."""
    fn = block_fn(demo, action.api_name)
    try:
        args = asyncio.run(demo.preprocess_data(fn, values, None, explicit_call=False))
    except gr.Error as e:
        return f"refused: {e.message}"
    try:
        out = action.fn(*args)
        if hasattr(out, "__next__"):
            try:
                for _, _ in zip(range(STREAM_ITEMS), out):
                    pass
            finally:
                out.close()
    except gr.Error as e:
        return f"refused: {e.message}"
    return "result"


@pytest.fixture
def quick_training(monkeypatch):
    """Fuzzing Start, Resume and Plan is about the values they are given, not about training: the run
    builds the model its config describes and stops; the planner's timing is a constant."""
    from models.core import train as training

    def build_only(family, config, *, name, **kwargs):
        with torch.random.fork_rng(devices=[]):
            family.build(config)
        return training.Result("cancelled", 0, None, "stopped by the fuzz test")

    monkeypatch.setattr(training, "train", build_only)
    if hasattr(jobs, "follow_torchrun"):  # a run of several processes: the command is built, never started
        monkeypatch.setattr(jobs, "follow_torchrun",
                            lambda job, cmd, folder: training.Result("cancelled", 0, None, "stopped by the fuzz test"))
    monkeypatch.setattr(training, "time_steps", lambda family, config, steps=3: 0.01)


@pytest.fixture(scope="module")
def files():
    """Hostile and ordinary uploads, placed in Gradio's upload folder as if a visitor had uploaded them."""
    folder = Path(gradio_utils.get_upload_folder()) / f"fuzz-{uuid.uuid4().hex[:8]}"
    made = hostile.upload_files(folder)
    yield made
    shutil.rmtree(folder, ignore_errors=True)


def test_every_action_survives_fuzzed_values_in_process(studio_app, files, user_dir, quick_training, capsys):
    totals, failures, slow, times = {}, [], [], {}
    t_all = time.time()
    for action in studio_app.studio_actions:
        components = block_fn(studio_app, action.api_name).inputs
        spent = {"s": 0.0}
        counts = {"result": 0, "refused": 0}

        @settings(max_examples=EXAMPLES,
                  deadline=None, derandomize=True, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(values=st.tuples(*[strategy(c, files) for c in components]))
        def fuzz(values):
            assume(spent["s"] < ENDPOINT_BUDGET_S)
            before = snapshot()
            t0 = time.time()
            try:
                outcome = call(studio_app, action, list(values))
            except Exception as e:  # anything but a result or a message is a failure
                failures.append(f"/{action.api_name}{_short(values)}: {type(e).__name__}: {e}"[:400])
                outcome = "failed"
            finally:
                finish_runs()
            took = time.time() - t0
            spent["s"] += took
            if took > CALL_LIMIT_S:
                slow.append(f"/{action.api_name} took {took:.0f} s with {_short(values)}")
            diff = changed(before, snapshot())
            if diff:
                failures.append(f"/{action.api_name}{_short(values)} changed {', '.join(diff)}")
            if outcome.startswith("refused"):
                counts["refused"] += 1
                if not outcome[len("refused: "):].strip():
                    failures.append(f"/{action.api_name}{_short(values)}: gr.Error without a message")
            elif outcome == "result":
                counts["result"] += 1

        fuzz()
        totals[action.api_name] = counts
        times[action.api_name] = spent["s"]
    calls = sum(c["result"] + c["refused"] for c in totals.values())
    with capsys.disabled():
        print(f"\nfuzz in process: {calls} calls over {len(totals)} endpoints in {time.time() - t_all:.0f} s "
              f"({sum(c['result'] for c in totals.values())} results, "
              f"{sum(c['refused'] for c in totals.values())} clear refusals, {len(failures)} failures); slowest: "
              + ", ".join(f"/{k} {v:.1f} s" for k, v in sorted(times.items(), key=lambda kv: -kv[1])[:6]))
    assert len(totals) == len(studio_app.studio_actions)
    assert calls >= 2 * len(totals), "the fuzzer hardly called anything"
    assert not slow, "\n".join(slow)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])


def _short(values) -> str:
    text = repr(tuple(values))
    return text if len(text) < 200 else text[:200] + "…)"


# --- over HTTP ------------------------------------------------------------------------------------

HTTP_EXAMPLES = 1  # hostile draws per endpoint through the served app
GENERIC = "has raised an exception"  # what Gradio says when it has no message (a crash)


def call_http(base: str, api_name: str, values: list, timeout: float = CALL_LIMIT_S) -> tuple[str, object]:
    """POST the values to Gradio's call API (raw JSON: NaN allowed), then read the event's outcome."""
    url = f"{base}gradio_api/call/{api_name}"
    r = httpx.post(url, content=json.dumps({"data": values}), headers={"content-type": "application/json"},
                   timeout=timeout)
    if r.status_code != 200:
        return "rejected", r.text
    event = r.json()["event_id"]
    kind, data = None, None
    with httpx.stream("GET", f"{url}/{event}", timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                data = json.loads(line[5:])
                break
    return kind, data


def test_every_endpoint_answers_hostile_values_over_http_with_a_message(studio_app, app_url, files, capsys):
    failures, tried = [], 0
    rng = random.Random(0)
    t0 = time.time()
    for action in studio_app.studio_actions:
        components = block_fn(studio_app, action.api_name).inputs
        sent = [c for c in components if not isinstance(c, gr.State)]  # gr.State is not part of the API
        for k in range(HTTP_EXAMPLES):
            values = [rng.choice(WEIRD) for _ in sent]
            for i, c in enumerate(sent):  # never start a real run here (the load test does)
                if STARTS_RUN.search(action.api_name) and getattr(c, "label", "") == "Run name":
                    values[i] = "../not a run name"
            kind, data = call_http(app_url, action.api_name, values)
            tried += 1
            message = data.get("error") if isinstance(data, dict) else None
            if kind == "error" and (not message or GENERIC in str(message)):
                failures.append(f"/{action.api_name}{_short(values)}: an error without a message")
            elif kind not in ("error", "complete"):
                failures.append(f"/{action.api_name}{_short(values)}: {kind} {str(data)[:200]}")
    kind, _ = call_http(app_url, "gan_samples", ["gan_mnist", 0, 4, 1.0, "7"])
    with capsys.disabled():
        print(f"\nfuzz over HTTP: {tried} calls over {len(studio_app.studio_actions)} endpoints in "
              f"{time.time() - t0:.0f} s, {len(failures)} without a message")
    assert kind == "complete", "the app stopped answering after the fuzzing"
    assert not failures, "\n".join(failures[:40])
