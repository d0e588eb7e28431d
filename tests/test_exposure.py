"""Exposure: the studio binds 127.0.0.1 unless told; served to a network it warns and can ask for a
login; it serves files only from Gradio's own cache (never the code, the shipped assets or the user's
runs), and no endpoint opens a path that a visitor names."""
from __future__ import annotations

import json

import gradio as gr
import httpx
import pytest

import app
from models.core import ROOT, RUNS
from studio import app as studio_app_module


@pytest.fixture
def launched(monkeypatch):
    """Run app.main with a stand-in page that records how it would be launched."""
    seen = {}

    class Page:
        def launch(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(studio_app_module, "build_app", lambda: Page())
    monkeypatch.delenv("STUDIO_AUTH", raising=False)
    return seen


def test_the_studio_binds_only_this_computer_by_default_and_says_nothing(launched, capsys):
    app.main([])
    assert launched["server_name"] == "127.0.0.1" and launched["auth"] is None
    assert "WARNING" not in capsys.readouterr().err


def test_served_to_a_network_it_warns_and_suggests_a_login(launched, capsys):
    app.main(["--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert launched["server_name"] == "0.0.0.0"
    assert "WARNING" in err and "--auth" in err


def test_auth_asks_for_a_login(launched, capsys):
    app.main(["--host", "0.0.0.0", "--auth", "teacher:s3cret:with:colons"])
    assert launched["auth"] == ("teacher", "s3cret:with:colons")
    assert "Add --auth" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        app.main(["--auth", "no-password"])


def test_launch_settings_bound_uploads_and_serve_nothing_of_the_users():
    s = studio_app_module.serving()
    assert s["max_file_size"] == 50 << 20 and s["allowed_paths"] == [] and str(RUNS) in s["blocked_paths"]
    assert s["show_error"] is False  # unexpected errors never show their text (gr.Error messages do)


def test_a_login_is_required_when_auth_is_set():
    with gr.Blocks() as demo:
        gr.Button("x").click(lambda: None, None, None, api_name=False)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **studio_app_module.serving(("u", "p")))
    try:
        assert httpx.get(f"{url}config").status_code == 401
        with httpx.Client() as s:
            assert s.post(f"{url}login", data={"username": "u", "password": "wrong"}).status_code == 400
            assert s.post(f"{url}login", data={"username": "u", "password": "p"}).status_code == 200
            assert s.get(f"{url}config").status_code == 200
    finally:
        demo.close()


@pytest.mark.parametrize("path", ["app.py", str(ROOT / "app.py"), "/etc/passwd",
                                  str(ROOT / "assets/checkpoints/vae_mnist.safetensors"),
                                  str(RUNS / "checkpoints/x.safetensors"), "../../../../etc/hostname"])
def test_files_are_served_only_from_the_studios_outputs(app_url, path):
    assert httpx.get(f"{app_url}gradio_api/file={path}").status_code in (403, 404)


def test_an_output_file_is_served(app_url):
    from gradio_client import Client

    out = Client(app_url, verbose=False, download_files=False).predict(
        checkpoint="vae_mnist", seed=2, n=4, scale=1.0, api_name="/vae_samples")
    assert httpx.get(out[0]["url"]).status_code == 200


def test_no_endpoint_opens_a_path_a_visitor_names(app_url):
    url = f"{app_url}gradio_api/call/vae_encode_upload"
    r = httpx.post(url, json={"data": ["vae_mnist", {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}]})
    with httpx.stream("GET", f"{url}/{r.json()['event_id']}", timeout=60) as s:
        body = s.read().decode()
    message = json.loads(body.split("data:", 1)[1])["error"]
    assert "never opens a path" in message and "passwd" not in message
