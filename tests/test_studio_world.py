"""The World Models tab's handlers, called as the page calls them, and the tab without gymnasium."""
import sys

import gradio as gr
import numpy as np
import pytest

from models.world import env as E
from studio import parts
from studio.tabs import world as tab

needs_env = pytest.mark.skipif(bool(E.missing()), reason="gymnasium/box2d not installed")
MODELS = ["world_vision", "world_memory", "world_controller"]


@needs_env
def test_drive_streams_the_dashboard_then_step_and_manual_continue_the_episode():
    frames = list(tab.drive({}, 1000, 6, 3, *MODELS))
    board, text, state = frames[-1]
    assert len(frames) == 3 and board.shape == (tab.SHOW, 3 * tab.SHOW + 160 + 24, 3)
    assert "Frame **6**" in text and "running reward" in text
    _, text, state = tab.step_once(state, 1000, *MODELS)
    assert "Frame **7**" in text
    _, text, state = tab.manual(state, 1000, 0.0, 0.5, 0.0, 3, *MODELS)
    assert "Frame **10**" in text and "gas 0.50" in text
    with pytest.raises(gr.Error, match="steer must be between -1 and 1"):
        tab.manual(state, 1000, 3.0, 0.5, 0.0, 3, *MODELS)


def test_explorer_encodes_decodes_and_traverses_a_shipped_frame():
    shown, note, *z = tab.encode_frame({}, 2, "world_vision")
    assert len(z) == 32 and "shipped frame 2" in note and shown.shape[0] == tab.SHOW
    assert tab.decode_sliders("world_vision", *z).shape == (tab.SHOW, tab.SHOW, 3)
    strip = tab.traverse("world_vision", 5, 3.0, *z)
    assert strip.shape[0] == 128 and strip.shape[1] > 9 * 64
    with pytest.raises(gr.Error, match="Dimension must be between 0 and 31"):
        tab.traverse("world_vision", 40, 3.0, *z)


@needs_env
def test_dream_is_reproducible_and_shows_reality_beside_it():
    a = tab.dream(1000, 55, 8, 1.0, 3, "straight, gas 0.3", 0, *MODELS)
    b = tab.dream(1000, 55, 8, 1.0, 3, "straight, gas 0.3", 0, *MODELS)
    assert np.array_equal(a[0], b[0]) and a[1].shape == a[0].shape
    assert a[2].endswith(".gif") and "temperature 1" in a[3]
    hot = tab.dream(1000, 55, 8, 2.5, 3, "straight, gas 0.3", 0, *MODELS)
    assert not np.array_equal(a[0], hot[0])
    with pytest.raises(gr.Error, match="Temperature must be between"):
        tab.dream(1000, 55, 8, 50.0, 3, "controller", 0, *MODELS)


def test_training_refuses_bad_settings_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr(tab, "USER", tmp_path)
    with pytest.raises(gr.Error, match="Steps must be between"):
        next(tab.train_vision("run", 0, 1e-3, False, 0))
    with pytest.raises(gr.Error, match="population must be between"):
        next(tab.train_controller("run", 1, 1, 1, 100, False, False, 0, "world_vision", "world_memory"))


def test_without_gymnasium_the_tab_says_how_to_install_and_the_rest_works(monkeypatch):
    for name in ("gymnasium", "Box2D"):
        monkeypatch.setitem(sys.modules, name, None)  # import gymnasium now fails, as when it is not installed
    assert "gymnasium==1.4.0" in E.install_hint()
    with gr.Blocks() as demo:
        page = parts.Page(demo, tab=tab.TITLE)
        tab.build(page)
    notes = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.value]
    assert any("pip install gymnasium==1.4.0" in n for n in notes)
    with pytest.raises(gr.Error, match="pip install gymnasium"):
        list(tab.drive({}, 1000, 5, 1, *MODELS))
    strip, real, gif, caption, _ = tab.dream(1000, 60, 5, 1.0, 0, "straight, gas 0.3", 1, *MODELS)
    assert "no real side" in caption and strip.shape[0] == 128
    from studio.tabs import vae as vae_tab  # another tab's handler still works
    assert vae_tab is not None and tab.encode_frame({}, 0, "world_vision")[1].startswith("Encoded shipped frame")


def test_training_status_gives_the_time_left_at_the_speed_so_far():
    import time

    assert tab.left(time.time() - 10, 1, 3) in (", about 20 s left", ", about 21 s left")
    assert tab.left(time.time(), 0, 3) == "" and tab.left(time.time() - 5, 3, 3) == ""
