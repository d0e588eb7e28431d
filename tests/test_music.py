"""Music: tokens round-trip through scores and MIDI, generated pieces are valid MIDI for pretty_midi
and music21, audio is real sound, seeds reproduce pieces, bad files get clear messages, and the
shipped checkpoint has learnt what an untrained model has not."""
import math

import numpy as np
import pretty_midi
import pytest
import soundfile
import torch

from models.core import checkpoint
from models.music import music_transformer as mt, notes as music
from models.core.family import last, seeded
from models.core.train import SHIPPED

SHIPPED_NAME = "music_chorales"


@pytest.fixture(scope="module")
def shipped():
    model, config, _ = checkpoint.load(SHIPPED / f"{SHIPPED_NAME}.safetensors")
    return model, config


@pytest.fixture(scope="module", params=[SHIPPED_NAME, "music_rnn_chorales"])
def each_shipped(request):
    """Both shipped music models: the transformer and the attention RNN."""
    model, config, _ = checkpoint.load(SHIPPED / f"{request.param}.safetensors")
    return model, config


def test_chorale_tokens_are_its_soprano_line():
    """Tokenising a chorale gives its soprano melody note for note: pitches and durations of the
    score's top part (ties merged), and detokenising gives those notes back."""
    from music21 import corpus

    score = corpus.parse("bach/bwv347")
    pitches, durations = music.tokenize_score(score)
    soprano = [n for n in score.parts[0].stripTies().flatten().notes]
    assert [music.token_midi(p) for p in pitches] == [n.pitch.midi for n in soprano]
    assert [music.duration_quarters(d) for d in durations] == [float(n.quarterLength) for n in soprano]
    back = [n for n in music.to_stream(pitches, durations).flatten().notes]
    assert [(n.pitch.midi, float(n.quarterLength), float(n.offset)) for n in back] == \
           [(n.pitch.midi, float(n.quarterLength), float(n.offset)) for n in soprano]
    # the cached tokens are the same as a fresh parse
    cached = music.chorale("bach/bwv347")
    assert np.array_equal(cached[0], pitches) and np.array_equal(cached[1], durations)


@pytest.mark.parametrize("name", ["bach/bwv269", "bach/bwv153.1", "bach/bwv86.6"])
def test_tokens_survive_a_midi_round_trip(tmp_path, name):
    """Chorale tokens -> MIDI file -> read back as an upload gives the same tokens (rests included)."""
    p, d = music.chorale(name)
    path = tmp_path / "c.mid"
    path.write_bytes(music.midi_bytes(music.to_midi(p, d, bpm=77)))
    p2, d2 = music.read_midi(path)
    assert np.array_equal(p, p2) and np.array_equal(d, d2)


def test_skyline_keeps_the_held_top_note_and_fills_gaps_with_rests():
    # soprano C5 held 8 sixteenths while the alto moves twice, then a gap, then D5 over A4
    events = [(0, 8, 72), (0, 4, 64), (4, 8, 65), (12, 16, 74), (12, 16, 69)]
    line = music.skyline(events)
    assert line == [(0, 8, 72), (12, 16, 74)]
    p, d = music.notes_to_tokens(line)
    assert [music.pitch_name(t) for t in p] == ["C5", "rest", "D5"]
    assert [music.duration_name(t) for t in d] == ["2", "1", "1"]
    assert music.tokens_to_notes(p, d) == line


def test_data_windows_and_transposition():
    config = mt.FAMILY.config("cpu")
    (p, d), info = mt.FAMILY.examples(config, "train")
    (tp, td), tinfo = mt.FAMILY.examples(config, "test")
    assert p.shape[1] == d.shape[1] == config.seq_len + 1 and p.dtype == torch.int64
    assert info["pieces"] + tinfo["pieces"] == len(music.chorales())
    assert info["notes"] > 10 * tinfo["notes"]  # 11 transpositions of 9/10 of the chorales
    assert (p >= 0).all() and (p < music.N_PITCH).all() and (d < music.N_DURATION).all()
    with pytest.raises(ValueError, match="piano range"):
        music.transpose(np.array([music.pitch_token(105)]), 5)


def test_uploaded_midi_is_added_to_the_training_data(tmp_path):
    p, d = music.chorale("bach/bwv269")
    path = tmp_path / "mine.mid"
    path.write_bytes(music.midi_bytes(music.to_midi(p, d)))
    base = mt.FAMILY.config("tiny")
    (x0, _), _ = mt.FAMILY.examples(base, "train")
    (x1, _), info = mt.FAMILY.examples(mt.FAMILY.config("tiny", midi_files=(str(path),)), "train")
    assert info["midi_files"] == ["mine.mid"] and len(x1) > len(x0)


def test_bad_midi_uploads_give_clear_messages(tmp_path):
    text = tmp_path / "notes.mid"
    text.write_text("this is not music")
    with pytest.raises(ValueError, match="not a MIDI file"):
        music.read_midi(text)
    empty = tmp_path / "empty.mid"
    pretty_midi.PrettyMIDI().write(str(empty))
    with pytest.raises(ValueError, match="no notes"):
        music.read_midi(empty)
    drums = pretty_midi.PrettyMIDI()
    kit = pretty_midi.Instrument(0, is_drum=True)
    kit.notes.append(pretty_midi.Note(100, 36, 0, 0.5))
    drums.instruments.append(kit)
    drums.write(str(tmp_path / "drums.mid"))
    with pytest.raises(ValueError, match="no notes"):
        music.read_midi(tmp_path / "drums.mid")
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd" + b"\x00\x00\x00\x06\x00\x01" + b"\xff" * 20)
    with pytest.raises(ValueError, match="could not be read"):
        music.read_midi(broken)
    with pytest.raises(ValueError, match="No file"):
        music.read_midi(tmp_path / "missing.mid")


def test_too_many_notes_is_refused(shipped):
    model, _ = shipped
    with pytest.raises(ValueError, match="number of notes must be between 1 and 2000"):
        last(mt.sample(model, 1, seeded(0), notes=10**6))


def test_generated_midi_parses_back_with_pretty_midi_and_music21(shipped, tmp_path):
    from music21 import converter

    model, _ = shipped
    out = last(mt.sample(model, 1, seeded(3), notes=40))
    p, d = out["pitch"][0].numpy(), out["duration"][0].numpy()
    expected = music.tokens_to_notes(p, d)
    path = tmp_path / "gen.mid"
    path.write_bytes(music.midi_bytes(music.to_midi(p, d, bpm=100, program=music.INSTRUMENTS["Flute"])))
    pm = pretty_midi.PrettyMIDI(str(path))
    assert pm.instruments[0].program == 73
    assert [n.pitch for n in pm.instruments[0].notes] == [m for _, _, m in expected]
    assert pm.instruments[0].notes[0].start == pytest.approx(0.0)
    parsed = [n for n in converter.parse(str(path)).stripTies().flatten().notes]  # barlines split notes
    assert [n.pitch.midi for n in parsed] == [m for _, _, m in expected]


@pytest.mark.parametrize("engine", ["sine", "fluidsynth"])
def test_rendered_audio_is_sound_of_the_right_rate_and_length(tmp_path, engine):
    if engine == "fluidsynth" and not music.fluidsynth_available():
        pytest.skip("FluidSynth is not installed")
    p, d = music.chorale("bach/bwv347")
    midi = music.to_midi(p[:12], d[:12], bpm=120)
    audio, used = music.render(midi, engine=engine)
    assert used == engine and audio.dtype == np.int16 and audio.ndim == 1
    seconds = sum(d[:12]) / 4 * 0.5  # quarters at 120 bpm
    assert len(audio) == math.ceil((midi.get_end_time() + 0.5) * music.SAMPLE_RATE)
    assert abs(midi.get_end_time() - seconds) < 0.02
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 1000  # clearly audible
    wav = music.write_wav(tmp_path / "a.wav", audio)
    back, rate = soundfile.read(str(wav), dtype="int16")
    assert rate == music.SAMPLE_RATE and np.array_equal(back, audio)


def test_bad_render_settings_are_refused():
    p, d = music.chorale("bach/bwv347")
    with pytest.raises(ValueError, match="Tempo"):
        music.to_midi(p, d, bpm=0)
    with pytest.raises(ValueError, match="engine"):
        music.render(music.to_midi(p, d), engine="mp3")


def test_seed_and_seed_phrase_reproduce_the_piece(shipped):
    model, _ = shipped
    phrase = music.chorale("bach/bwv269")
    phrase = (phrase[0][:8], phrase[1][:8])
    run = lambda seed: last(mt.sample(model, 2, seeded(seed), notes=30, note_temperature=0.8,  # noqa: E731
                                      duration_temperature=0.5, prompt=phrase))
    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a["pitch"], b["pitch"]) and torch.equal(a["duration"], b["duration"])
    assert not torch.equal(a["pitch"], c["pitch"])
    assert a["pitch"].shape == (2, 1 + 8 + 30) and a["prompt_length"] == 8
    assert np.array_equal(a["pitch"][0, 1:9].numpy(), phrase[0])  # the phrase is kept as given
    assert (a["pitch"][:, 1:] != music.START).all() and (a["duration"][:, 1:] != music.START).all()
    probs = a["note_probs"]
    assert probs.shape == (2, 30, music.N_PITCH) and torch.allclose(probs.sum(-1), torch.ones(2, 30))


def test_zero_temperature_is_greedy(shipped):
    model, _ = shipped
    a = last(mt.sample(model, 1, seeded(0), notes=20, note_temperature=0, duration_temperature=0))
    b = last(mt.sample(model, 1, seeded(99), notes=20, note_temperature=0, duration_temperature=0))
    assert torch.equal(a["pitch"], b["pitch"])
    assert set(a["note_probs"].unique().tolist()) == {0.0, 1.0}


def test_attention_is_causal_and_sums_to_one(each_shipped):
    model, config = each_shipped
    out = last(mt.sample(model, 1, seeded(1), notes=config.seq_len + 10))
    w, lo = mt.attention(model, out["pitch"][0], out["duration"][0])
    T = config.seq_len
    shape = (config.n_layers, config.n_heads) if isinstance(config, mt.MusicConfig) else (1, 1)
    assert w.shape == (*shape, T, T) and lo == out["pitch"].shape[1] - T
    assert np.allclose(w.sum(-1), 1, atol=1e-5)
    assert np.allclose(np.triu(w, 1), 0)


def test_bad_seed_phrases_are_refused(shipped):
    model, _ = shipped
    with pytest.raises(ValueError, match="as many durations"):
        last(mt.sample(model, 1, seeded(0), notes=4, prompt=([10, 11], [4])))
    with pytest.raises(ValueError, match="vocabulary"):
        last(mt.sample(model, 1, seeded(0), notes=4, prompt=([500], [4])))


def test_baselines_are_measured_on_the_held_out_chorales():
    """Uniform is exactly ln |vocabulary|; the training set's plain frequencies do better than uniform
    but are far from what a model with context reaches."""
    b = music.baselines()
    assert b["note_uniform"] == pytest.approx(math.log(music.N_PITCH))
    assert b["duration_uniform"] == pytest.approx(math.log(music.N_DURATION))
    assert 2.0 < b["note_unigram"] < b["note_uniform"] and 0.8 < b["duration_unigram"] < b["duration_uniform"]
    assert music.baselines() is b  # cached
    lines = mt.FAMILY.metric_lines({"note_loss": 1.5, "note_perplexity": 4.5, "note_accuracy": 0.5,
                                    "duration_loss": 0.8, "duration_accuracy": 0.75})
    assert "pitch loss **1.50 nats**" in lines[0] and f"{b['note_unigram']:.2f}" in lines[1]


def test_attention_map_picks_a_head_or_the_mean(each_shipped):
    model, config = each_shipped
    out = last(mt.sample(model, 1, seeded(2), notes=12))
    full, lo = mt.attention(model, out["pitch"][0], out["duration"][0])
    n_layers, n_heads = mt.attention_shape(config)
    w, lo2 = mt.attention_map(model, config, out["pitch"][0], out["duration"][0], n_layers, "mean")
    assert lo2 == lo and np.allclose(w, full[-1].mean(0)) and np.allclose(w.sum(-1), 1, atol=1e-5)
    h, _ = mt.attention_map(model, config, out["pitch"][0], out["duration"][0], 1, str(n_heads))
    assert np.array_equal(h, full[0, n_heads - 1])
    for layer, head, words in ((0, "mean", "Layer"), (n_layers + 1, "mean", "Layer"), (1, "0", "Head"),
                               (1, str(n_heads + 1), "Head"), (1, "x", "Head")):
        with pytest.raises(ValueError, match=words):
            mt.attention_map(model, config, out["pitch"][0], out["duration"][0], layer, head)


def test_midi_text_events_and_line_summary(tmp_path):
    p, d = music.chorale("bach/bwv347")
    midi = music.embed_text(music.to_midi(p, d), '{"seed": 3}')
    path = tmp_path / "t.mid"
    midi.write(str(path))
    assert [t.text for t in pretty_midi.PrettyMIDI(str(path)).text_events] == ['{"seed": 3}']
    assert music.read_midi(path)[0].tolist() == p.tolist()  # the text event changes no note
    s = music.line_summary(np.concatenate([[music.START], p]), np.concatenate([[music.START], d]))
    assert s == {"notes": int((p >= 2).sum()), "rests": int((p == music.REST).sum()), "quarters": d.sum() / 4}


def test_cards_describe_each_music_family():
    from models.music import music_rnn

    cfg = {"seq_len": 64, "transpose": 5, "midi_files": ["a.mid"], "n_layers": 3, "n_heads": 4, "d_model": 128,
           "lstm_layers": 2, "hidden": 192}
    assert mt.FAMILY.summary(cfg) == ("transformer: 3 blocks × 4 heads, embedding 128, window 64 notes, "
                                      "transposed ±5, plus 1 of your MIDI files")
    assert music_rnn.FAMILY.summary(cfg).startswith("attention RNN: 2 LSTM layers × 192 units, window 64")


def test_shipped_checkpoint_beats_an_untrained_model(each_shipped):
    """Held-out chorales: the shipped model predicts the next pitch and duration far better than the
    same network untrained (≈ ln 90 = 4.5 and ln 33 = 3.5 nats) or the training set's plain token
    frequencies (:func:`notes.baselines`, measured)."""
    model, config = each_shipped
    (p, d), _ = mt.FAMILY.examples(config, "test")
    trained = mt.evaluate(model, p, d)
    torch.manual_seed(0)
    untrained = mt.evaluate(type(model)(config), p, d)
    assert untrained["note_loss"] > 3.5 and untrained["duration_loss"] > 2.5
    assert trained["note_loss"] < 2.0 < music.baselines()["note_unigram"]
    assert trained["duration_loss"] < 1.0 < music.baselines()["duration_unigram"]
    assert trained["note_accuracy"] > 0.4
