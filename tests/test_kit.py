"""The studio kit's parts on their own: time budgets, the planner, named API parameters, the
per-visitor training slot, uploads by content, unique exports, safe image reading."""
import inspect
import threading
import time
import zlib

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from models import FAMILIES
from models.core import train as training
from studio import jobs, parts, widgets


@pytest.mark.parametrize("text, seconds", [("5 minutes", 300), ("90 s", 90), ("1h30", 5400), ("2:30", 150),
                                           ("1 h 5 min", 3900), ("45", 2700), ("0.5 hours", 1800)])
def test_time_budgets_read_like_people_write_them(text, seconds):
    assert parts.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 fortnights", "-3 min", "0 s", "9999 h"])
def test_unreadable_time_budgets_say_how_to_write_them(text):
    with pytest.raises(ValueError, match="Time budget"):
        parts.parse_duration(text)


def test_planner_times_real_steps_and_fits_the_budget_without_touching_the_global_rng():
    fam = FAMILIES["vae"]
    config = fam.config("tiny", steps=500)
    state = torch.random.get_rng_state()
    note, update = parts.plan_note("vae", config, 60.0, 20000)
    assert torch.equal(state, torch.random.get_rng_state())
    per_step = float(note.split("**")[1].split(" s per step")[0])
    assert 0 < per_step < 5
    expected = np.clip(60 / per_step, 10, 20000)  # per_step is shown rounded to 3 digits
    assert abs(update["value"] - expected) <= 0.01 * expected + 10
    assert "500 steps take about" in note


def test_named_gives_the_api_real_parameter_names_and_passes_the_visitor():
    seen = {}

    def start(*values, request: gr.Request = None):
        seen["values"], seen["owner"] = values, jobs.owner_of(request)
        return "ok"

    fn = parts.named(start, ["dataset", "steps"])
    params = list(inspect.signature(fn).parameters)
    assert params == ["dataset", "steps", "request"]
    fn("mnist", 10)  # from Python: the local visitor
    assert seen == {"values": ("mnist", 10), "owner": jobs.LOCAL}

    class Request:
        session_hash = "abc"

    fn("mnist", 10, Request())
    assert seen["owner"] == "abc"


@pytest.fixture
def running(user_dir):
    """A long tiny VAE run owned by visitor A."""
    config = FAMILIES["vae"].config("tiny", steps=1_000_000)
    job = jobs.JOBS.start("vae", "a_run", config, owner="A", score_samples=0)
    deadline = time.time() + 60
    while job.progress is None and time.time() < deadline:
        time.sleep(0.05)
    yield job
    job.cancel.set()
    job.thread.join(30)


def test_only_the_owner_can_cancel_resume_or_change_a_run(running):
    slot = jobs.JOBS
    assert "belongs to another visitor" in slot.cancel("B")
    with pytest.raises(ValueError, match="busy: another visitor is training a_run"):
        slot.start("vae", "b_run", FAMILIES["vae"].config("tiny"), owner="B")
    with pytest.raises(ValueError, match="belongs to another visitor"):
        slot.change("B", "vae", {"beta": 2.0}, lambda cfg, ch: [])
    assert running.running and not running.cancel.is_set()
    assert "Cancelling a_run" in slot.cancel("A")
    running.thread.join(30)
    assert running.result.status == "cancelled"
    with pytest.raises(ValueError, match="started by another visitor"):
        slot.resume("a_run", 10_000_000, owner="B")


def test_live_changes_are_applied_between_steps_all_at_once(running):
    applied = []

    def apply(config, changes):  # runs in the training thread, between two steps
        applied.append((threading.current_thread().name, dict(changes)))
        object.__setattr__(config, "beta", changes["beta"])
        return [f"β {changes['beta']}"]

    jobs.JOBS.change("A", "vae", {"beta": 2.0}, apply)
    deadline = time.time() + 30
    while not running.marks and time.time() < deadline:
        time.sleep(0.05)
    assert applied == [("train-a_run", {"beta": 2.0})]
    assert running.config.beta == 2.0 and running.marks[0][1] == "β 2.0"


def test_status_shows_an_eta(running):
    deadline = time.time() + 30
    while "left" not in running.status() and time.time() < deadline:
        time.sleep(0.05)
    assert "left" in running.status()


def test_uploads_are_kept_by_content(user_dir, tmp_path):
    a = tmp_path / "one" / "corpus.txt"
    b = tmp_path / "two" / "corpus.txt"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_text("first text")
    b.write_text("second text")
    kept_a = parts.store_upload(a, (".txt",), "corpora")
    kept_b = parts.store_upload(b, (".txt",), "corpora")
    assert kept_a != kept_b and kept_a.read_text() == "first text" and kept_b.read_text() == "second text"
    assert parts.store_upload(a, (".txt",), "corpora") == kept_a
    with pytest.raises(ValueError, match="not a .mid"):
        parts.store_upload(tmp_path / "one" / "corpus.txt", (".mid",), "midi")


def test_every_export_gets_its_own_path():
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(widgets.export_path("samples.png"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 8 and all(p.name == "samples.png" for p in paths)


def huge_png(path, side=20000):
    """A valid PNG header promising side×side pixels, with a tiny compressed body (a decompression bomb)."""
    import struct

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress(b"\x00" * (side + 1) * 8, 9)
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_uploaded_images_are_refused_with_a_message_before_decoding(tmp_path):
    with pytest.raises(ValueError, match="megapixels"):
        widgets.read_image(huge_png(tmp_path / "bomb.png"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        widgets.read_image(tmp_path / "empty.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        widgets.read_image(tmp_path / "notes.png")
    with pytest.raises(ValueError, match="Upload an image"):
        widgets.read_image(None)
    Image.new("RGB", (40, 30), "white").save(tmp_path / "ok.png")
    assert widgets.read_image(tmp_path / "ok.png").size == (40, 30)


@pytest.mark.parametrize("bad", [None, "", 1.5, -1, 1e30, float("nan"), "seven"])
def test_seeds_refuse_what_is_not_a_whole_number_in_range(bad):
    with pytest.raises(ValueError, match="Seed must be a whole number"):
        widgets.seed_of(bad)


def test_seeds_accept_whole_numbers_as_sent_by_the_page():
    assert widgets.seed_of(7) == 7 and widgets.seed_of(7.0) == 7 and widgets.seed_of(widgets.MAX_SEED) == widgets.MAX_SEED


def test_provenance_names_the_checkpoint_by_content():
    record = parts.provenance("vae", "vae_mnist", 3, n=4)
    path = training.SHIPPED / "vae_mnist.safetensors"
    import hashlib

    assert record["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["seed"] == 3 and record["controls"] == {"n": 4} and record["studio_version"] == parts.VERSION


def test_every_family_describes_its_checkpoints_without_the_studio_naming_keys():
    for fam in FAMILIES.values():
        assert isinstance(fam.summary(fam.config("tiny").__dict__), str)
        assert isinstance(fam.metric_lines({}), list)
