"""Music speed on this machine's CPU: notes generated per second (the shipped music transformer) and
seconds of audio rendered per second of compute (FluidSynth and sine synthesis).

    python bench/music_speed.py [--threads 1] [--notes 200]

Prints figures only; never part of pass/fail.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from timing import median_ms  # noqa: E402  (also puts the repository on sys.path)

from models.core import checkpoint  # noqa: E402
from models.music import music_transformer as mt, notes as music  # noqa: E402
from models.core.family import last, seeded  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "checkpoints"
MODELS = ["music_chorales", "music_rnn_chorales"]  # the transformer and the attention RNN


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--notes", type=int, default=200, help="notes per generated piece")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f} (figures are only meaningful on an idle machine)")
    for name in MODELS:
        model, config, _ = checkpoint.load(SHIPPED / f"{name}.safetensors")
        print(f"{name}: window {config.seq_len}, {sum(q.numel() for q in model.parameters()) / 1e6:.2f}M parameters")
        for n in (1, 8):
            ms = median_ms(lambda: last(mt.sample(model, n, seeded(0), notes=a.notes)), runs=3, warmup=1)
            print(f"  generate {n} piece(s) × {a.notes} notes: {ms / 1000:6.2f} s median of 3 = "
                  f"{n * a.notes / ms * 1000:7.0f} notes/s")
    out = last(mt.sample(model, 1, seeded(0), notes=a.notes))
    midi = music.to_midi(out["pitch"][0], out["duration"][0], bpm=90)
    seconds = midi.get_end_time()
    engines = ["sine"] + (["fluidsynth"] if music.fluidsynth_available() else [])
    for engine in engines:
        t = time.perf_counter()
        audio, _ = music.render(midi, engine=engine)
        wall = time.perf_counter() - t
        print(f"render {seconds:5.1f} s of music with {engine:10s}: {wall:5.2f} s = "
              f"{seconds / wall:6.1f} s of audio per second ({len(audio)} samples at {music.SAMPLE_RATE} Hz)")
    if "fluidsynth" not in engines:
        print("FluidSynth not installed: apt-get install libfluidsynth3 && pip install pyfluidsynth")
    ms = median_ms(lambda: music.midi_bytes(music.to_midi(out["pitch"][0], out["duration"][0])), runs=20)
    print(f"tokens -> MIDI bytes ({a.notes} notes): {ms:.1f} ms")


if __name__ == "__main__":
    main()
