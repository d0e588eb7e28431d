"""The VAE tab's handlers, called exactly as the page calls them: good input gives the views, bad
input gives a clear message (gr.Error), and the studio keeps working afterwards."""
import json
import time

import gradio as gr
import numpy as np
import pytest
from PIL import Image, ImageDraw

from models import FAMILIES
from models.core import checkpoint
from studio import jobs, parts, widgets
from studio.tabs import vae as tab

SHIPPED = "vae_mnist"


def digit_png(path, background=255, ink=0):
    """A hand-drawn-looking '1' (a thick vertical stroke) saved as PNG."""
    im = Image.new("L", (200, 200), background)
    ImageDraw.Draw(im).line([(100, 30), (96, 170)], fill=ink, width=18)
    im.save(path)
    return str(path)


def test_select_checkpoint_fills_card_map_and_sliders():
    card = parts.card_of(["vae"], SHIPPED)
    map_img, note, *sliders = tab.select_checkpoint(SHIPPED)
    assert "nats" in card and "vae_mnist" in card
    assert map_img.ndim == 3 and map_img.shape[2] == 3
    assert [s["visible"] for s in sliders] == [True, True] + [False] * (tab.N_SLIDERS - 2)


def test_larger_latent_shows_more_sliders():
    *_, note, s1, s2, s3, s4, s5, s6, s7, s8 = tab.select_checkpoint("vae_mnist_z16")
    assert all(s["visible"] for s in (s1, s2, s3, s8))
    assert "16" in note


def test_decode_changes_with_sliders_and_marks_map():
    a, map_a = tab.decode_point(SHIPPED, 0.0, 0.0, *[0.0] * 6)
    b, map_b = tab.decode_point(SHIPPED, 1.5, -2.0, *[0.0] * 6)
    assert a.shape == b.shape and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5
    assert not np.array_equal(map_a, map_b)


def test_map_click_round_trips_to_the_data_point():
    m = tab.loaded(SHIPPED)
    px, py = m.map.to_pixel(1.25, -0.5)

    class Evt:
        index = [px, py]

    z1, z2 = tab.map_click(SHIPPED, Evt())
    assert z1 == pytest.approx(1.25, abs=0.02) and z2 == pytest.approx(-0.5, abs=0.02)


def test_latent_grid_default_and_extremes():
    img = tab.latent_grid(SHIPPED, 30, 1.0)
    assert img.ndim == 3
    assert tab.latent_grid(SHIPPED, 1, 0.1).ndim == 3
    for n in (0, 1000, -3):
        with pytest.raises(gr.Error, match="grid size"):
            tab.latent_grid(SHIPPED, n, 1.0)
    with pytest.raises(gr.Error, match="range"):
        tab.latent_grid(SHIPPED, 10, 0)


def test_encode_upload_places_the_image_on_the_map(tmp_path):
    pair, map_img, text = tab.encode_upload(SHIPPED, digit_png(tmp_path / "one.png"))
    assert pair.ndim == 2 and map_img.ndim == 3
    assert "μ" in text and "σ" in text
    # white-on-black and black-on-white drawings of the same stroke land close together
    _, _, text2 = tab.encode_upload(SHIPPED, digit_png(tmp_path / "one_inv.png", background=0, ink=255))
    mu = lambda t: np.array([float(v) for v in t.split("(")[1].split(")")[0].split(",")])
    assert np.abs(mu(text) - mu(text2)).max() < 0.3


def test_encoded_one_reconstructs_as_a_one(tmp_path):
    """The reconstruction of a drawn '1' is classified as a 1 by the project's classifier."""
    from models.core import data, evaluate
    from models.image import vae

    m = tab.loaded(SHIPPED)
    gray = np.asarray(Image.open(digit_png(tmp_path / "one.png")), np.float32) / 255
    mu, _ = vae.encode(m.model, data.prepare_image(gray, "mnist"))
    probs = evaluate.features_and_probs(evaluate.load_classifier("mnist"), vae.decode(m.model, mu))[1]
    assert int(probs.argmax()) == 1


def test_bad_uploads_and_empty_sketches_give_clear_messages(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(gr.Error, match="not an image"):
        tab.encode_upload(SHIPPED, str(text))
    with pytest.raises(gr.Error, match="Upload an image"):
        tab.encode_upload(SHIPPED, None)
    blank = np.zeros((280, 280, 4), np.uint8)  # an untouched sketchpad: fully transparent
    with pytest.raises(gr.Error, match="empty"):
        tab.encode_sketch(SHIPPED, {"composite": blank, "background": None, "layers": []})
    with pytest.raises(gr.Error, match="empty"):
        tab.encode_sketch(SHIPPED, None)
    plain = tmp_path / "white.png"
    Image.new("L", (64, 64), 255).save(plain)
    with pytest.raises(gr.Error, match="empty"):
        tab.encode_upload(SHIPPED, str(plain))


def test_sketch_with_a_stroke_is_encoded():
    sketch = np.zeros((280, 280, 4), np.uint8)
    sketch[40:240, 130:150] = (0, 0, 0, 255)  # black opaque stroke on transparent canvas
    pair, _, text = tab.encode_sketch(SHIPPED, {"composite": sketch, "background": None, "layers": []})
    assert pair.max() > 200 and "μ" in text


def test_interpolation_strip_and_gif(tmp_path):
    for method in ("linear", "spherical"):
        strip, gif = tab.interpolation(SHIPPED, 0, 1, 8, method)
        assert strip.ndim == 2
        with Image.open(gif) as im:
            assert im.format == "GIF" and im.n_frames >= 8
    with pytest.raises(gr.Error, match="Test image number"):
        tab.interpolation(SHIPPED, 0, 10_000, 8, "linear")
    with pytest.raises(gr.Error, match="steps"):
        tab.interpolation(SHIPPED, 0, 1, 1, "linear")


def test_attribute_arithmetic():
    strip = tab.arithmetic(SHIPPED, 2, "1", "7", 1.0)
    assert strip.ndim == 2
    with pytest.raises(gr.Error, match="strength"):
        tab.arithmetic(SHIPPED, 2, "1", "7", 10)
    with pytest.raises(gr.Error, match="classes"):
        tab.arithmetic(SHIPPED, 2, "Sneaker", "7", 1.0)


def test_samples_same_seed_same_images():
    a, md, record, png = tab.samples(SHIPPED, 7, 16, 1.0)
    b, *_ = tab.samples(SHIPPED, 7, 16, 1.0)
    c, *_ = tab.samples(SHIPPED, 8, 16, 1.0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert "seed 7" in md and "confidence" in md
    # the download is the same picture with its provenance inside, at a path of its own
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im), a)
        embedded = json.loads(im.text["provenance"])
    assert embedded == record and record["seed"] == 7 and record["checkpoint"] == SHIPPED
    assert len(record["checkpoint_sha256"]) == 64
    assert record["controls"] == {"n": 16, "prior_scale": 1.0, "source": tab.PRIOR}
    for bad in ((-1, 16, 1.0), (0, 0, 1.0), (0, 16, -1.0), (1.5, 16, 1.0), (1e30, 16, 1.0), (None, 16, 1.0),
                (0, 16, 1.0, "the moon")):
        with pytest.raises(gr.Error):
            tab.samples(SHIPPED, *bad)


def test_aggregate_posterior_samples_where_the_codes_are():
    """The 2-D VAE sampled from its fitted q(z) (the page's default) is reproducible, says where it
    sampled, and covers more classes than the prior, whose holes and crowded zeros show in its score."""
    from models.core import evaluate

    a, md, record, _ = tab.samples(SHIPPED, 3, 100, 1.0, tab.AGGREGATE)
    assert np.array_equal(a, tab.samples(SHIPPED, 3, 100, 1.0, tab.AGGREGATE)[0])
    assert "aggregate posterior" in md and record["controls"]["source"] == tab.AGGREGATE
    m = tab.loaded(SHIPPED)
    from models.core.family import last, seeded
    from models.image import vae

    cover = {}
    for name, mixture in (("prior", None), ("q(z)", m.q_z)):
        images = last(vae.sample(m.model, 1000, generator=seeded(0), mixture=mixture))
        cover[name] = evaluate.score(images, "mnist")["class_coverage"]
    assert cover["q(z)"] >= cover["prior"] + 0.1, cover


def test_unknown_and_corrupt_checkpoints_give_messages(user_dir):
    with pytest.raises(gr.Error, match="No vae checkpoint"):
        tab.select_checkpoint("nope")
    # a run of the user's whose weights file got corrupted, while its card still lists it
    user_dir.mkdir(parents=True)
    (user_dir / "broken.safetensors").write_bytes(b"\x00" * 5 + b"garbage" * 10)
    (user_dir / "broken.json").write_text(json.dumps({"family": "vae", "name": "broken"}))
    assert "broken" in [v for _, v in widgets.checkpoint_choices("vae")]
    with pytest.raises(gr.Error, match="broken.safetensors"):
        tab.select_checkpoint("broken")
    # a card that is not JSON is reported as corrupt, not as an interrupted run
    (user_dir / "broken.json").write_text("{not json")
    assert "corrupt" in widgets.card_markdown(widgets.read_card(user_dir / "broken.safetensors"))
    # the studio keeps working
    assert tab.latent_grid(SHIPPED, 4, 1.0).ndim == 3


def test_import_checkpoint_refuses_bad_files(user_dir, tmp_path):
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"not really")
    with pytest.raises(ValueError, match="weights.safetensors"):
        parts.import_into(["vae"], str(bad), jobs.LOCAL)
    pt = tmp_path / "weights.pt"
    pt.write_bytes(b"\x80\x04junk")
    with pytest.raises(ValueError, match="not a .safetensors"):
        parts.import_into(["vae"], str(pt), jobs.LOCAL)
    good = tmp_path / "mine.safetensors"
    good.write_bytes(widgets.resolve("vae", SHIPPED).read_bytes())
    with pytest.raises(ValueError, match="vae checkpoint; this tab takes gan"):
        parts.import_into(["gan"], str(good), jobs.LOCAL)
    assert parts.import_into(["vae"], str(good), jobs.LOCAL) == "mine"
    assert "Imported from mine.safetensors" in parts.card_of(["vae"], "mine")
    # importing again never overwrites: the copy gets a free name, with its own card
    assert parts.import_into(["vae"], str(good), jobs.LOCAL) == "mine_imported"


def test_training_in_the_page_streams_then_lists_the_checkpoint(user_dir, actions):
    """Start a short run from the Train tab: status, curves and a preview stream in; at the end the
    run is in the checkpoint dropdown and loads."""
    updates = list(actions["vae_train"]("mnist", 2, 1.0, 50, 128, 1e-3, "page_run", SHIPPED))
    status, _, _, dropdown = updates[-1]
    assert "Finished 50 steps" in status
    figures = [u[1] for u in updates if not isinstance(u[1], dict)]
    previews = [u[2] for u in updates if isinstance(u[2], np.ndarray)]
    assert figures and previews and previews[-1].ndim == 2
    assert "page_run" in [v for _, v in dropdown["choices"]]
    assert "nats" in parts.card_of(["vae"], "page_run")
    with pytest.raises(gr.Error, match="already have a run named"):  # never overwrite the user's work
        list(actions["vae_train"]("mnist", 2, 1.0, 50, 128, 1e-3, "page_run", SHIPPED))


def test_cancel_keeps_checkpoint_and_resume_finishes(user_dir, actions):
    fam = FAMILIES["vae"]
    config = fam.config("tiny", steps=100_000)
    job = jobs.JOBS.start("vae", "cancel_me", config, score_samples=0)
    deadline = time.time() + 60
    while (job.progress is None or job.progress.step < 50) and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(ValueError, match="already in progress"):
        jobs.JOBS.start("vae", "another", config)
    assert "Cancelling" in jobs.JOBS.cancel()
    job.thread.join(30)
    assert job.result.status == "cancelled"
    _, _, meta = checkpoint.load(job.result.path)
    assert meta["step"] == job.result.step >= 50
    assert "cancel_me" in [v for _, v in widgets.checkpoint_choices("vae")]
    # resume from the page with more steps than were done
    updates = list(actions["vae_train_resume"]("cancel_me", job.result.step + 50, SHIPPED))
    assert "Finished" in updates[-1][0]
    assert checkpoint.read_meta(user_dir / "cancel_me.safetensors")["step"] == job.result.step + 50


def test_training_refuses_bad_settings(user_dir, actions):
    train, resume = actions["vae_train"], actions["vae_train_resume"]
    with pytest.raises(gr.Error, match="shipped"):
        list(train("mnist", 2, 1.0, 50, 128, 1e-3, "vae_mnist", SHIPPED))
    with pytest.raises(gr.Error, match="learning rate"):
        list(train("mnist", 2, 1.0, 50, 128, 0, "ok_name", SHIPPED))
    with pytest.raises(gr.Error, match="name"):
        list(train("mnist", 2, 1.0, 50, 128, 1e-3, "../escape", SHIPPED))
    with pytest.raises(gr.Error, match="No run of yours"):
        list(resume("never_ran", 100, SHIPPED))
