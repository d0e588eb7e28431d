"""The named API, through gradio_client against the served app, as a script would use it:

* every main action registered by a tab is an endpoint of that name, with parameters named after
  their controls and labelled outputs; nothing else is exposed (plumbing is api_name=False);
* every action, called with the page's default values, returns a non-empty result of its kind
  (DeepDream's broken default would fail here);
* two visitors cannot cancel, resume or take over each other's training run.
"""
import re
import time
from pathlib import Path

import pytest
from PIL import Image

TRAINING = re.compile(r"_train(_resume)?$")  # long runs: driven in the visitor test, not by defaults


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def endpoints(client):
    return client.view_api(return_format="dict", print_info=False)["named_endpoints"]


def test_every_registered_action_is_a_named_endpoint_and_nothing_else(studio_app, endpoints):
    registered = {a.api_name for a in studio_app.studio_actions}
    served = {name.lstrip("/") for name in endpoints}
    assert registered - served == set(), "registered actions missing from the API"
    assert served - registered == set(), "endpoints no tab registered (plumbing needs api_name=False)"
    assert not [n for n in served if re.search(r"_\d+$", n)], "auto-numbered endpoint names"
    from studio.app import TABS

    assert {a.tab for a in studio_app.studio_actions} == {t.TITLE for t in TABS}, "a tab without actions"


def test_parameters_are_named_after_controls_and_outputs_are_labelled(endpoints):
    unnamed = [(name, p["parameter_name"]) for name, ep in endpoints.items() for p in ep["parameters"]
               if re.fullmatch(r"(param|value)_\d+", p["parameter_name"] or "")]
    unlabelled = [(name, r.get("label")) for name, ep in endpoints.items() for r in ep["returns"]
                  if not r.get("label") or re.fullmatch(r"value_\d+", r["label"])]
    assert not unnamed, unnamed
    assert not unlabelled, unlabelled


def _example_value(value, tmp: Path):
    """Stand-ins for inputs the page's defaults leave empty: a drawn digit, a small image."""
    from gradio_client import handle_file

    png = tmp / "digit.png"
    if not png.exists():
        im = Image.new("L", (200, 200), 255)
        from PIL import ImageDraw

        ImageDraw.Draw(im).line([(100, 30), (96, 170)], fill=0, width=18)
        im.save(png)
    if value == "digit.png":
        return handle_file(str(png))
    if value == "stroke":
        return {"background": None, "layers": [], "composite": handle_file(str(png))}
    return value


def _check_kind(value, component: str) -> str | None:
    """None when ``value`` is a proper output of ``component``, else what is wrong."""
    if isinstance(value, dict) and value.get("__type__") == "update":  # new props: check the value sent
        value = value.get("value")
    if value is None:
        return None  # an output an action leaves alone
    if component in ("Image", "AnnotatedImage"):
        path = value if isinstance(value, str) else value.get("path") if isinstance(value, dict) else None
        if not path or not Path(path).exists():
            return f"image output is {value!r}"
        with Image.open(path) as im:
            return None if min(im.size) > 0 else "empty image"
    if component in ("File", "Audio", "Video", "Model3D"):
        paths = value if isinstance(value, list) else [value]
        for p in paths:
            p = p.get("path") if isinstance(p, dict) else p
            if isinstance(p, str) and not Path(p).exists():
                return f"{component} output {p!r} does not exist"
        return None
    if component in ("Markdown", "Textbox", "HTML", "Code"):
        return None if isinstance(value, str) else f"text output is {type(value).__name__}"
    return None


def test_every_action_called_with_the_page_defaults_returns_a_result(studio_app, client, endpoints, tmp_path):
    tried, failures = [], []
    for action in studio_app.studio_actions:
        if TRAINING.search(action.api_name):
            continue
        name = "/" + action.api_name
        kwargs = {k: _example_value(v, tmp_path) for k, v in action.example.items()}
        t0 = time.time()
        try:
            result = client.predict(api_name=name, **kwargs)
        except Exception as e:  # collect every failure, then report them together
            failures.append(f"{name}: {type(e).__name__}: {e}")
            continue
        tried.append((name, round(time.time() - t0, 1)))
        results = list(result) if isinstance(result, (tuple, list)) and len(endpoints[name]["returns"]) > 1 \
            else [result]
        if all(r in (None, "", [], {}) for r in results):
            failures.append(f"{name}: every output is empty")
        for r, spec in zip(results, endpoints[name]["returns"]):
            wrong = _check_kind(r, spec["component"])
            if wrong:
                failures.append(f"{name} ({spec.get('label')}): {wrong}")
    print(f"{len(tried)} actions called with their defaults: {tried}")
    assert not failures, "\n".join(failures)


def _wait_for_step(job, deadline_s=120):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        outs = job.outputs()
        if outs and "step" in str(outs[-1][0]):
            return outs[-1][0]
        if job.done():
            break
        time.sleep(0.3)
    raise AssertionError(f"the run never reported a step: {job.outputs()[-1:] or job.exception()}")


def test_two_visitors_cannot_cancel_resume_or_take_over_each_others_run(app_url):
    from gradio_client import Client

    a, b = Client(app_url, verbose=False), Client(app_url, verbose=False)
    run = a.submit(dataset="mnist", latent_size=2, beta=1.0, steps=20000, batch_size=32, lr=1e-3,
                   run_name="visitor_a", checkpoint="vae_mnist", api_name="/vae_train")
    try:
        assert "visitor_a" in _wait_for_step(run)
        assert "belongs to another visitor" in b.predict(api_name="/vae_train_cancel")
        with pytest.raises(Exception, match="busy"):
            b.predict(dataset="mnist", latent_size=2, beta=1.0, steps=10, batch_size=32, lr=1e-3,
                      run_name="visitor_b", checkpoint="vae_mnist", api_name="/vae_train")
        with pytest.raises(Exception, match="another visitor"):
            b.predict(run_name="visitor_a", steps=20000, checkpoint="vae_mnist", api_name="/vae_train_resume")
        assert not run.done()
    finally:
        message = a.predict(api_name="/vae_train_cancel")
    assert "Cancelling visitor_a" in message
    deadline = time.time() + 60
    while not run.done() and time.time() < deadline:
        time.sleep(0.2)
    assert "Cancelled at step" in run.outputs()[-1][0]
    # the slot is free again, and the run is A's to resume, not B's
    with pytest.raises(Exception, match="another visitor"):
        b.predict(run_name="visitor_a", steps=20000, checkpoint="vae_mnist", api_name="/vae_train_resume")
