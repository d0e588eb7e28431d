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
    return tmp_path / "checkpoints"


@pytest.fixture(scope="session")
def studio_app():
    from studio.app import build_app

    return build_app()


@pytest.fixture(scope="session")
def actions(studio_app):
    """api_name -> the function its button calls (request-taking ones run as the LOCAL visitor)."""
    return {a.api_name: a.fn for a in studio_app.studio_actions}
