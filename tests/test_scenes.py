"""Scenes round-trip to identical outputs for every tab, and refuse a missing or changed checkpoint.

For each tab (from the page's registry, so a new tab is covered with no list to edit) its main action runs
with the page's defaults, counts and step numbers at their minimum to stay cheap; the scene its output's
provenance carries (or, for an action without a record, the scene saved from the same values) runs
again, and every picture, sound, generated text and record (less its time) must be the same.
"""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from PIL import Image

from studio import provenance, scenes

CHEAP = re.compile(r"^(n|n_samples|samples|steps|length|notes|rows|columns|images_per_direction|iterations|seeds|"
                   r"particles|max_iterations|tokens|samples_per_prompt)$")


def cheap_values(action) -> list:
    values = []
    for name, component in zip(action.names, action.inputs):
        value = copy.deepcopy(getattr(component, "value", None))
        if type(component).__name__ == "Slider" and CHEAP.match(name):
            value = component.minimum
            value = int(value) if float(value).is_integer() else value
        if name in action.example:
            value = action.example[name]
        values.append(value)
    return values


def fingerprint(action, outputs) -> list:
    """What must be identical: pictures, sounds, generated text, records without their time."""
    out = []
    for component, v in zip(action.outputs, outputs):
        kind = type(component).__name__
        v = v.get("value") if isinstance(v, dict) and v.get("__type__") == "update" else v
        if kind == "Image" and v is not None:
            out.append(np.asarray(Image.open(v)) if isinstance(v, str) else np.asarray(v))
        elif kind == "Audio" and isinstance(v, tuple):
            out.append(np.asarray(v[1]))
        elif kind == "Textbox" and isinstance(v, str):
            out.append(v)
        elif kind == "JSON" and provenance.is_record(v):
            out.append(json.dumps({k: x for k, x in v.items() if k != "time"}, sort_keys=True))
        elif kind == "JSON" and v is not None:
            out.append(json.dumps(v, sort_keys=True, default=str))
        elif kind == "Plot" and hasattr(v, "savefig"):
            from studio import widgets

            out.append(widgets.figure_to_array(v))
        elif kind in ("HighlightedText", "Dataframe", "Gallery", "Slider", "Number", "Dropdown", "Radio") \
                and v is not None:
            out.append(json.dumps(v, sort_keys=True, default=str))
    return out


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y for x, y in zip(a, b))


def tab_cases():
    from studio.app import TABS

    return [t for t in TABS if getattr(t, "SCENES", True)]


@pytest.mark.parametrize("tab", tab_cases(), ids=lambda t: t.TITLE)
def test_a_scene_round_trips_to_identical_outputs(studio_app, tab, user_dir):
    action = scenes.main_action(studio_app.studio_actions, tab.TITLE, tab, studio_app.studio_page.headers)
    assert action is not None, f"{tab.TITLE} has no action a scene could re-run"
    values = cheap_values(action)
    first = scenes.call(action, values)
    record = provenance.record_in(first)
    scene = (record or {}).get("scene") or scenes.from_values(action, values, studio_app.studio_page.headers)
    scene = json.loads(json.dumps(scene))  # what a file holds
    assert scene["tab"] == tab.TITLE and scene["action"] == action.api_name
    again = scenes.run(scene, studio_app.studio_actions)
    a, b = fingerprint(action, first), fingerprint(action, again)
    assert a, f"{action.api_name} gave nothing to compare"
    assert same(a, b), f"{action.api_name}: the scene made a different output"


def test_a_missing_or_changed_checkpoint_is_said_not_substituted(studio_app, tmp_path):
    action = next(a for a in studio_app.studio_actions if a.api_name == "vae_decode_grid")
    scene = scenes.from_values(action, ["vae_mnist", 4, 1.0], studio_app.studio_page.headers)
    assert scene["checkpoint_sha256"] and scenes.problems(scene) == []
    changed = {**scene, "checkpoint_sha256": "0" * 64}
    with pytest.raises(ValueError, match="has changed"):
        scenes.run(changed, studio_app.studio_actions)
    missing = {**scene, "checkpoint": "vae_gone"}
    with pytest.raises(ValueError, match="not here"):
        scenes.run(missing, studio_app.studio_actions)
    with pytest.raises(ValueError, match="Not a studio scene"):
        scenes.parse('{"hello": 1}')
    with pytest.raises(ValueError, match="does not have"):
        scenes.run({**scene, "action": "no_such_action"}, studio_app.studio_actions)


def test_values_survive_json(tmp_path):
    sketch = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    encoded = json.loads(json.dumps(scenes.encode({"composite": sketch, "layers": []})))
    back = scenes.decode(encoded)
    assert np.array_equal(back["composite"], sketch) and back["layers"] == []
    assert scenes.decode(scenes.encode(np.float32(0.5))) == 0.5
