"""The Workshop: shipped decks are valid and run offline, an X/Y cell equals the same settings run alone,
compare across checkpoints keeps each cell's provenance, the classroom pack opens offline, training keeps
snapshots for a replay, the Map lists every registered family; and in a real browser a three-scene deck
steps through in presenter view."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from studio import scenes
from studio.tabs import map as family_map, workshop


def test_every_shipped_deck_is_valid_and_its_checkpoints_are_here():
    names = workshop.deck_names()
    for wanted in ("what_a_vae_learns", "why_gans_fail", "denoising_step_by_step", "temperature",
                   "how_music_models_choose_a_note"):
        assert wanted in names
    for name in names:
        deck = workshop.read_deck(name)
        for step in deck["scenes"]:
            assert step["title"] and step["note"]
            assert scenes.problems(step["scene"]) == [], (name, step["title"])


def test_a_deck_step_shows_its_visual(studio_app):
    found = workshop.show_scene(workshop.read_deck("a_tour_in_three_scenes")["scenes"][0]["scene"],
                                studio_app.studio_actions)
    assert found["image"] is not None and found["image"].size > 0
    with pytest.raises(ValueError, match="Step must be"):
        workshop.step_number(9, 3)


def _vae_scene(studio_app):
    from studio.tabs.vae import PRIOR

    action = next(a for a in studio_app.studio_actions if a.api_name == "vae_samples")
    return action, scenes.from_values(action, ["vae_mnist", 0, 4, 1.0, PRIOR], studio_app.studio_page.headers)


def test_an_xy_grid_cell_equals_the_same_settings_run_alone(studio_app):
    action, scene = _vae_scene(studio_app)
    picture, sounds, records = workshop.xy_grid(scene, "scale", [0.5, 2.0], "seed", [0, 7], studio_app.studio_actions)
    assert picture.ndim == 3 and len(records) == 4 and not sounds
    cell = next(r for r in records if r["scale"] == 2.0 and r["seed"] == 7)
    assert cell["provenance"]["scene"]["controls"]["scale"] == 2.0
    alone = scenes.call(action, ["vae_mnist", 7, 4, 2.0, scene["controls"]["source"]])
    rerun = scenes.run(scenes.parse(cell["provenance"]), studio_app.studio_actions)
    assert np.array_equal(np.asarray(alone[0]), np.asarray(rerun[0]))
    with pytest.raises(ValueError, match="no control"):
        workshop.xy_grid(scene, "nope", [1], "seed", [0], studio_app.studio_actions)


def test_the_same_seed_across_checkpoints(studio_app):
    _, scene = _vae_scene(studio_app)
    picture, _, records = workshop.compare_checkpoints(scene, ["vae_mnist", "vae_mnist_z16"], studio_app.studio_actions)
    assert [r["checkpoint"] for r in records] == ["vae_mnist", "vae_mnist_z16"]
    assert all(r["provenance"]["seed"] == 0 for r in records) and picture.shape[1] > picture.shape[0]


def test_the_classroom_pack_opens_offline(studio_app, tmp_path, monkeypatch):
    deck = workshop.read_deck("a_tour_in_three_scenes")
    deck["scenes"] = deck["scenes"][1:2]  # one cheap scene
    (tmp_path / "tiny.json").write_text(json.dumps(deck))
    monkeypatch.setattr(workshop, "DECKS", tmp_path)
    path, note = workshop.classroom_pack(["vae_mnist"], ["tiny"], studio_app.studio_actions)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        html = z.read("index.html").decode()
    assert "checkpoints/vae_mnist.safetensors" in names and "decks/tiny.json" in names
    assert "outputs/tiny/1.png" in names and 'src="outputs/tiny/1.png"' in html and "http" not in html


def test_training_keeps_snapshots_for_a_replay(tmp_path, monkeypatch):
    from models import FAMILIES
    from models.core import train as training

    monkeypatch.setattr(training, "STATE", tmp_path)
    fam = FAMILIES["music_rnn"]
    result = training.train(fam, fam.config("tiny", steps=4), name="snap", out=tmp_path, log_every=2,
                            snapshot_every=2, score_samples=0)
    assert [s for s, _ in result.snapshots] == [2, 4]
    step, preview = training.read_snapshots("snap")[-1]
    assert step == 4 and "pitch" in preview  # notes: the music tab's replay plays them


def test_the_map_lists_every_registered_family_in_the_books_order(studio_app):
    from models import FAMILIES

    rows = family_map.rows(studio_app.studio_page.headers)
    assert {r["family"] for r in rows} == set(FAMILIES)
    order = [list(family_map.GROUPS).index(r["group"]) for r in rows]
    assert order == sorted(order)
    assert next(r for r in rows if r["family"] == "realnvp")["likelihood"] == "exact"
    assert next(r for r in rows if r["family"] == "gan")["likelihood"] == "none"


from test_app import CHROMIUM, FLAGS, _browser_available  # noqa: E402  (the same browser set-up)


@pytest.mark.skipif(not _browser_available() and os.environ.get("STUDIO_REQUIRE_BROWSER") != "1",
                    reason="Debian chromium and playwright are not installed")
def test_a_three_scene_deck_steps_through_in_presenter_view(app_url):
    from playwright.sync_api import sync_playwright

    deck = workshop.read_deck("a_tour_in_three_scenes")
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(app_url + "?deck=a_tour_in_three_scenes", wait_until="domcontentloaded")
        page.wait_for_selector("#workshop-present", state="visible", timeout=180_000)  # the address opened the Workshop
        press = lambda elem_id: page.evaluate(f"document.getElementById('{elem_id}').click()")  # noqa: E731
        press("workshop-present")
        seen = []
        for i, step in enumerate(deck["scenes"]):
            if i == 1:
                press("workshop-next")
            elif i == 2:
                page.keyboard.press("ArrowRight")  # the keyboard steps too
            title = page.locator("#workshop-presenter-title")
            title.get_by_text(step["title"]).wait_for(timeout=90_000)
            img = page.locator("#workshop-presenter-image img")
            page.wait_for_function("prev => { const i = document.querySelector('#workshop-presenter-image img');"
                                   " return i && i.src && !prev.includes(i.src); }", arg=seen, timeout=90_000)
            seen.append(img.get_attribute("src"))
            assert step["note"][:30] in page.locator("#workshop-presenter-note").inner_text()
            assert not page.locator("#studio-tabs [role=tab]").first.is_visible()  # the page's chrome is hidden
        press("workshop-leave")
        page.wait_for_selector("#workshop-deck", state="visible", timeout=30_000)
        assert page.locator("#studio-tabs [role=tab]").first.is_visible()  # leaving restores the page
        browser.close()
    assert len(set(seen)) == 3
    assert not errors, errors
