"""Shared fixtures: the user's folders in a temporary place, and the page's named actions."""
import pytest

from models.core import train as training
from studio import jobs, widgets


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """Send the user's checkpoints, training state, uploads and the training slot to a temporary place."""
    from studio import parts

    monkeypatch.setattr(widgets, "USER_CHECKPOINTS", tmp_path / "checkpoints")
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    monkeypatch.setattr(parts, "UPLOADS", tmp_path / "uploads")
    monkeypatch.setattr(jobs, "JOBS", jobs.Jobs())
    yield tmp_path / "checkpoints"
    job = jobs.JOBS.current  # a run a failing test left behind must not train on into the next test
    if job is not None and job.running:
        job.cancel.set()
        job.thread.join(60)


@pytest.fixture(scope="session")
def studio_app():
    from studio.app import build_app

    return build_app()


@pytest.fixture(scope="session")
def actions(studio_app):
    """api_name -> the function its button calls (request-taking ones run as the LOCAL visitor)."""
    return {a.api_name: a.fn for a in studio_app.studio_actions}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """`python app.py` in a subprocess, as a user starts it, on a free port, with the user's runs in a
    temporary folder (STUDIO_RUNS) so tests never touch runs/."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    folder = tmp_path_factory.mktemp("app")
    log = open(folder / "app.log", "w+")
    env = {**os.environ, "STUDIO_RUNS": str(folder / "runs")}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=root, stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    else:
        proc.kill()
    if proc.poll() is not None:
        log.seek(0)
        pytest.fail(f"app.py did not start:\n{log.read()}")
    yield url
    proc.terminate()
    proc.wait(10)
