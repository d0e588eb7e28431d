"""Provenance inside the files: a PNG and a MIDI from the studio restore their scene and make the same
output again; WAV, MusicXML and GIF carry the record; text keeps it in a JSON beside it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio import parts, provenance, scenes, widgets


def action(studio_app, name):
    return next(a for a in studio_app.studio_actions if a.api_name == name)


def test_a_png_from_the_studio_restores_its_scene_bit_for_bit(studio_app):
    from studio.tabs.vae import PRIOR

    picture, caption, record, png = scenes.call(action(studio_app, "vae_samples"), ["vae_mnist", 3, 4, 1.0, PRIOR])
    found = provenance.read(png)
    scene = scenes.parse(found)
    assert scene["action"] == "vae_samples" and scene["seed"] == 3 and scene["checkpoint"] == "vae_mnist"
    again = scenes.run(scene, studio_app.studio_actions)
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(again[3])))


def test_a_midi_from_the_studio_restores_its_scene_and_its_wav_and_musicxml_carry_it(studio_app):
    act = action(studio_app, "music_generate")
    values = [c.value for c in act.inputs]
    values[act.names.index("notes")] = 4
    out = scenes.call(act, values)
    files = [Path(f) for f in next(v for v in out if isinstance(v, list) and v and str(v[0]).endswith(".mid"))]
    by_suffix = {f.suffix: f for f in files}
    for suffix in (".mid", ".wav", ".musicxml"):
        record = provenance.read(by_suffix[suffix])
        assert record["family"] == "music_transformer" and record["scene"]["action"] == "music_generate", suffix
    import soundfile

    sound, rate = soundfile.read(by_suffix[".wav"])  # the extra chunk leaves the file playable
    assert rate > 0 and len(sound) > 0
    again = scenes.run(scenes.parse(provenance.read(by_suffix[".mid"])), studio_app.studio_actions)
    files2 = {Path(f).suffix: Path(f) for f in next(v for v in again if isinstance(v, list) and v
                                                    and str(v[0]).endswith(".mid"))}
    import pretty_midi

    notes = lambda p: [(n.pitch, round(n.start, 4), round(n.end, 4)) for n in pretty_midi.PrettyMIDI(str(p)).instruments[0].notes]  # noqa: E731
    assert notes(by_suffix[".mid"]) == notes(files2[".mid"])


def test_every_format_carries_a_record(tmp_path, monkeypatch):
    monkeypatch.setattr(widgets, "EXPORTS", tmp_path)
    record = parts.provenance("vae", "vae_mnist", 1, n=4)
    gif = Path(widgets.save_gif([np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)], "a.gif"))
    text = [Path(p) for p in parts.save_text("hello", record, "t.txt")]
    png = widgets.export_path("p.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png)
    provenance.stamp([str(gif), record, str(png), [str(p) for p in text]])
    for path in (gif, png, text[0]):
        assert provenance.read(path)["checkpoint"] == "vae_mnist", path.suffix
    with pytest.raises(ValueError, match="no studio provenance"):
        plain = tmp_path / "plain.png"
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(plain)
        provenance.read(plain)


def test_a_scene_saved_as_json_is_read_back(studio_app, tmp_path):
    act = action(studio_app, "vae_decode_grid")
    scene = scenes.from_values(act, ["vae_mnist", 4, 1.0], studio_app.studio_page.headers)
    path = scenes.write(scene, "s.json")
    assert scenes.parse(provenance.read(path)) == json.loads(json.dumps(scene))
