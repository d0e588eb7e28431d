"""MuseGAN: the cached chorale rolls, the four latent groups (a re-roll changes only what it should),
4-track MIDI out, and the studio's MuseGAN section."""
import json

import gradio as gr
import numpy as np
import pretty_midi
import pytest
import torch

from models.music import musegan as mg
from models.core.family import last, seeded
from studio import parts
from studio.tabs import music as tab

SHIPPED = "musegan_chorales"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return mg.build_model(mg.FAMILY.config("tiny"))


def test_cached_phrases_are_four_voices_of_two_bars_in_range():
    (pitch,), info = mg.data(mg.FAMILY.config("tiny"), "train")
    (held,), _ = mg.data(mg.FAMILY.config("tiny"), "test")
    assert pitch.shape[1:] == (4, 32) and len(pitch) > 1000 and len(held) > 100
    assert 0 <= int(pitch.min()) and int(pitch.max()) < mg.N_PITCHES
    # soprano above bass on average, as in any chorale
    assert pitch[:, 0].float().mean() > pitch[:, 3].float().mean() + 12
    assert "chorales" in info["title"].lower()


def test_wide_leaps_are_rare_in_bach_and_common_in_noise():
    (pitch,), _ = mg.data(mg.FAMILY.config("tiny"), "test")
    assert mg.wide_leaps(pitch.numpy()) < 0.03
    noise = torch.randint(0, mg.N_PITCHES, pitch.shape, generator=seeded(0)).numpy()
    assert mg.wide_leaps(noise) > 0.5
    assert mg.wide_leaps(np.array([[[0, 0, 7, 15, 15, 14]]])) == pytest.approx(1 / 3)  # moves 7, 8, 1


def test_a_sample_is_one_note_per_voice_per_step(tiny):
    roll = last(mg.sample(tiny, 3, seeded(0)))
    assert roll.shape == (3, 4, 32, mg.N_PITCHES)
    assert torch.equal(roll.sum(-1), torch.ones(3, 4, 32))


@pytest.mark.parametrize("group, track, bar, changed", [
    ("melody", 2, -1, {2}), ("groove", 1, -1, {1}), ("melody", 0, 1, {0}),
    ("chords", 0, 0, {0, 1, 2, 3}), ("style", 0, -1, {0, 1, 2, 3})])
def test_rerolling_one_group_changes_only_its_tracks(tiny, group, track, bar, changed):
    """With the same seed, a re-roll keeps every other latent identical: the tanh outputs of untouched
    tracks are bit-for-bit the same, and the re-rolled ones differ."""
    g = tiny.generator.eval()
    with torch.no_grad():
        lat = mg.latents(2, tiny.z_dim, seeded(5))
        fresh = mg.latents(2, tiny.z_dim, seeded(9))
        u = g.unroll(lat)
        v = mg.reroll(lat, u, fresh, g.unroll(fresh), group, track, bar)
        a, b = g.decode(u), g.decode(v)
    for key in ("style", "groove", "chords", "melody"):
        kept = torch.equal(u[key], v[key])
        assert kept == (key != group), key
    for k in range(4):
        assert torch.equal(a[:, k], b[:, k]) == (k not in changed), f"track {k}"
    if group == "melody" and bar >= 0:  # only that bar of that track
        assert torch.equal(a[:, track, 1 - bar], b[:, track, 1 - bar])
        assert not torch.equal(a[:, track, bar], b[:, track, bar])


def test_rerolls_through_the_sampler_are_reproducible_and_refuse_nonsense(tiny):
    base = last(mg.sample(tiny, 2, seeded(3)))
    again = last(mg.sample(tiny, 2, seeded(3), group="", track=1))
    assert torch.equal(base, again)
    a = last(mg.sample(tiny, 2, seeded(3), group="groove", track=1, reroll_seed=4))
    assert torch.equal(a, last(mg.sample(tiny, 2, seeded(3), group="groove", track=1, reroll_seed=4)))
    with pytest.raises(ValueError, match="Latent group"):
        last(mg.sample(tiny, 1, seeded(0), group="rhythm"))
    with pytest.raises(ValueError, match="track must be between"):
        last(mg.sample(tiny, 1, seeded(0), group="groove", track=4))


def test_roll_becomes_midi_with_four_instruments(tmp_path, tiny):
    roll = last(mg.sample(tiny, 1, seeded(0)))[0]
    path = tmp_path / "p.mid"
    mg.to_midi(roll, bpm=100).write(str(path))
    pm = pretty_midi.PrettyMIDI(str(path))
    assert [i.name for i in pm.instruments] == list(mg.TRACKS)
    assert all(len(i.notes) >= 4 for i in pm.instruments)  # at least one note a beat-group per bar
    assert abs(pm.get_end_time() - 32 * 60 / 100 / 4) < 0.05
    with pytest.raises(ValueError, match="Tempo"):
        mg.to_midi(roll, bpm=5)


def test_voice_notes_and_changed_voices(tiny):
    a = last(mg.sample(tiny, 1, seeded(0)))[0].numpy()
    b = a.copy()
    b[2] = np.roll(b[2], 1, axis=-1)  # move the tenor up a semitone
    notes = mg.voice_notes(a)
    assert list(notes) == list(mg.TRACKS) and all(len(v) == 32 for v in notes.values())
    assert notes["Soprano"][0] == pretty_midi.note_number_to_name(int(a[0, 0].argmax()) + mg.LOWEST)
    assert mg.changed_voices(a, b) == ["Tenor"] and mg.changed_voices(a, a) == []


def test_card_lines_and_description_come_from_the_family():
    card = parts.card_of(["musegan"], SHIPPED)
    assert "in the best-fitting key" in card and "Wasserstein" in card and ", , " not in card
    assert "4 latent groups of 32, generator width 16, critic width 16, 5 critic steps" in card
    assert mg.FAMILY.metric_lines({"critic_loss": 1.5}) == ["Held-out: critic loss **1.5**"]  # an older card


def test_musegan_section_generates_and_rerolls():
    roll, sound, caption, record, files = tab.musegan_generate(SHIPPED, 7, 90)
    assert roll.ndim == 3 and sound[0] > 0 and np.abs(sound[1]).max() > 1000 and "seed 7" in caption.lower()
    midi_path, wav_path, json_path = files
    pm = pretty_midi.PrettyMIDI(midi_path)
    assert len(pm.instruments) == 4 and [json.loads(t.text) for t in pm.text_events] == [record]
    beside = json.loads(open(json_path).read())
    assert beside["seed"] == 7 and beside["family"] == "musegan" and list(beside["voices"]) == list(mg.TRACKS)
    assert record["controls"] == {"tempo": 90.0, "instruments": "Wind quartet"}
    # two visitors asking for the same phrase get files of their own
    assert set(tab.musegan_generate(SHIPPED, 7, 90)[4]).isdisjoint(files)
    a_roll, b_roll, a_sound, b_sound, note = tab.musegan_reroll(SHIPPED, 7, 90, "melody", "Tenor", "every bar", 1)
    assert "Voices that changed: Tenor." in note  # only the re-rolled voice
    assert a_roll.shape == b_roll.shape and not np.array_equal(a_roll, b_roll)
    assert np.array_equal(a_roll, tab.gan_roll_image(tab.gan_draw(SHIPPED, 7), "A: the seed's phrase"))  # A = seed 7
    for bad in (-1, 1.5, None, 1e30):
        with pytest.raises(gr.Error, match="Seed"):
            tab.musegan_generate(SHIPPED, bad, 90)
        with pytest.raises(gr.Error, match="Seed"):
            tab.musegan_reroll(SHIPPED, 7, 90, "melody", "Tenor", "every bar", bad)
    with pytest.raises(gr.Error, match="Latent group"):
        tab.musegan_reroll(SHIPPED, 7, 90, "rhythm", "Tenor", "every bar", 1)
    with pytest.raises(gr.Error, match="ensemble"):
        tab.musegan_generate(SHIPPED, 7, 90, "Kazoo")
    with pytest.raises(gr.Error, match="No musegan checkpoint"):
        tab.musegan_generate("nope", 7, 90)
