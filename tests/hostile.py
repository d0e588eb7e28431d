"""Files and values a hostile or careless visitor sends: shared by the fuzz, bad-file and load tests."""
from __future__ import annotations

import json
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A real PNG of side×side black pixels (grayscale): about 400 KB that decode to side² bytes."""
    row = b"\x00" * (side + 1)  # filter byte + a row of zeros
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row * 500) for _ in range(side // 500)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body)
                     + png_chunk(b"IEND", b""))
    return path


def header_only_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header claims side×side pixels, with almost no data: refused before any decoding."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                     + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))
    return path


def digit_png(path: Path) -> Path:
    im = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(im).line([(100, 30), (96, 170)], fill=0, width=18)
    im.save(path)
    return path


def small_midi(path: Path, notes: int = 24) -> Path:
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    for i in range(notes):
        inst.notes.append(pretty_midi.Note(80, 60 + (i * 5) % 12, i * 0.25, i * 0.25 + 0.25))
    midi.instruments.append(inst)
    midi.write(str(path))
    return path


def many_notes_midi(path: Path, notes: int = 1_000_000) -> Path:
    """A valid MIDI file of ``notes`` sixteenth notes, written directly (running status keeps it small)."""
    def note(i: int) -> bytes:  # note on (running status after the first), then off as velocity 0 120 ticks later
        pitch = 60 + i % 12
        return b"\x00" + (b"\x90" if i == 0 else b"") + bytes([pitch, 80]) + b"\x78" + bytes([pitch, 0])

    cycle = b"".join(note(i) for i in range(1, 13))
    rest, extra = divmod(notes - 1, 12)
    events = note(0) + cycle * rest + b"".join(note(i) for i in range(1, extra + 1)) + b"\x00\xff\x2f\x00"
    track = b"MTrk" + struct.pack(">I", len(events)) + bytes(events)
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + track)
    return path


def pickle_named_safetensors(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    return path


def zip_named_safetensors(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    return path


def safetensors_with_header(path: Path, header, body: bytes = b"") -> Path:
    """A file with the safetensors layout (8-byte length, JSON header, bytes) and any header at all."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


def garbage(path: Path, n: int = 4096, seed: int = 0) -> Path:
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def upload_files(folder: Path) -> dict[str, str | None]:
    """A small set of files to put in any upload box: a good image, a MIDI, and bad ones."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "image": str(digit_png(folder / "digit.png")),
        "midi": str(small_midi(folder / "tune.mid")),
        "garbage": str(garbage(folder / "garbage.png")),
        "empty": str((folder / "empty.png").write_bytes(b"") and None or folder / "empty.png"),
        "huge_header": str(header_only_png(folder / "huge.png")),
        "text_as_midi": str((folder / "notes.mid").write_text("not midi at all\n" * 20) and folder / "notes.mid"),
        "missing": str(folder / "gone.png"),
        "none": None,
    }
