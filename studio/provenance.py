"""Provenance in the files themselves, and read back from them.

Every output record (:func:`studio.parts.provenance`: family, checkpoint sha256, seed, controls, studio
version, time, and the scene that re-runs it) travels inside the file where the format has room:

* PNG: a ``provenance`` text chunk (tEXt) — :func:`studio.parts.save_png` writes it;
* GIF: the comment block;
* MIDI: a text meta event at time 0 (``pretty_midi.Text``);
* WAV: a RIFF ``LIST``/``INFO`` chunk, ``ICMT`` (comment), which players ignore and keep;
* MusicXML: ``<identification><miscellaneous><miscellaneous-field name="provenance">``;
* anything else (text, CSV): a ``.json`` of the same name beside it.

:func:`stamp` embeds a record into every exported file an action returned that does not carry it yet,
so a tab that writes its own WAV or MusicXML gets its provenance embedded with no code of its own;
:func:`read` finds the record in any of these files (or in a scene/record JSON) for the page's drop zone.
"""
from __future__ import annotations

import html
import json
import re
import struct
from pathlib import Path

from PIL import Image, PngImagePlugin

KEY = "provenance"
SUFFIXES = (".png", ".gif", ".mid", ".midi", ".wav", ".musicxml", ".xml", ".json", ".txt", ".csv")


def is_record(value) -> bool:
    return isinstance(value, dict) and "studio_version" in value and "family" in value


def _unwrap(value):
    if isinstance(value, dict) and value.get("__type__") == "update":
        return value.get("value")
    return value


def record_in(values) -> dict | None:
    """The provenance record among an action's outputs (the output panel's JSON), if any."""
    for v in values if isinstance(values, (list, tuple)) else [values]:
        v = _unwrap(v)
        if is_record(v):
            return v
    return None


def files_in(values) -> list[Path]:
    """The exported files among an action's outputs (paths in the studio's export folder)."""
    from studio import widgets

    found = []
    for v in values if isinstance(values, (list, tuple)) else [values]:
        v = _unwrap(v)
        for p in v if isinstance(v, list) else [v]:
            if isinstance(p, (str, Path)) and len(str(p)) < 4096:
                path = Path(p)
                try:
                    if path.suffix.lower() in SUFFIXES and widgets.EXPORTS in path.parents and path.is_file():
                        found.append(path)
                except OSError:
                    continue
    return found


def stamp(values, done: set | None = None) -> None:
    """Embed the record among ``values`` into every exported file among them that lacks it."""
    record = record_in(values)
    if record is None:
        return
    for path in files_in(values):
        if done is not None:
            if path in done:
                continue
            done.add(path)
        try:
            if read(path, quiet=True) is None:
                embed(path, record)
        except (OSError, ValueError):
            continue  # a file we cannot rewrite keeps what it has; its JSON twin (if any) still holds the record


# --- embedding ------------------------------------------------------------------------------------------

def embed(path, record: dict) -> Path:
    """Write ``record`` into ``path`` in the way its format allows (beside it as JSON otherwise)."""
    path = Path(path)
    text = json.dumps(record, ensure_ascii=False)
    suffix = path.suffix.lower()
    if suffix == ".png":
        with Image.open(path) as im:
            im.load()
            info = PngImagePlugin.PngInfo()
            info.add_text(KEY, text)
            im.save(path, pnginfo=info)
    elif suffix == ".gif":
        with Image.open(path) as im:
            frames, durations = [], []
            try:
                while True:
                    frames.append(im.copy())
                    durations.append(im.info.get("duration", 100))
                    im.seek(im.tell() + 1)
            except EOFError:
                pass
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0,
                       comment=text.encode())
    elif suffix in (".mid", ".midi"):
        import mido

        midi = mido.MidiFile(str(path))
        midi.tracks[0].insert(0, mido.MetaMessage("text", text=text, time=0))
        midi.save(str(path))
    elif suffix == ".wav":
        embed_wav(path, text)
    elif suffix in (".musicxml", ".xml"):
        embed_musicxml(path, text)
    elif suffix != ".json":
        path.with_suffix(".json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def embed_wav(path: Path, text: str) -> None:
    """Append a RIFF LIST/INFO chunk with the text as its ICMT (comment) and fix the RIFF size."""
    data = bytearray(path.read_bytes())
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path.name} is not a RIFF WAVE file.")
    body = text.encode("utf-8") + b"\0"
    if len(body) % 2:
        body += b"\0"
    info = b"INFO" + b"ICMT" + struct.pack("<I", len(body)) + body
    if len(data) % 2:
        data += b"\0"
    data += b"LIST" + struct.pack("<I", len(info)) + info
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))


def read_wav_comment(path: Path) -> str | None:
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    i = 12
    while i + 8 <= len(data):
        cid, size = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        if cid == b"LIST" and data[i + 8:i + 12] == b"INFO":
            j, end = i + 12, i + 8 + size
            while j + 8 <= end:
                sid, ssize = data[j:j + 4], struct.unpack("<I", data[j + 4:j + 8])[0]
                if sid == b"ICMT":
                    return data[j + 8:j + 8 + ssize].rstrip(b"\0").decode("utf-8", "replace")
                j += 8 + ssize + (ssize % 2)
        i += 8 + size + (size % 2)
    return None


MISC = re.compile(r'<miscellaneous-field name="provenance">(.*?)</miscellaneous-field>', re.S)


def embed_musicxml(path: Path, text: str) -> None:
    """The record as a MusicXML ``miscellaneous-field`` of ``identification`` (made when the score has none)."""
    xml = path.read_text(encoding="utf-8")
    field = f'<miscellaneous-field name="provenance">{html.escape(text, quote=False)}</miscellaneous-field>'
    if "<miscellaneous>" in xml:
        xml = xml.replace("<miscellaneous>", f"<miscellaneous>{field}", 1)
    elif "</identification>" in xml:
        xml = xml.replace("</identification>", f"<miscellaneous>{field}</miscellaneous></identification>", 1)
    else:
        m = re.search(r"<(score-partwise|score-timewise)[^>]*>", xml)
        if not m:
            raise ValueError(f"{path.name} is not a MusicXML score.")
        xml = xml[:m.end()] + f"<identification><miscellaneous>{field}</miscellaneous></identification>" + xml[m.end():]
    path.write_text(xml, encoding="utf-8")


# --- reading back ---------------------------------------------------------------------------------------

def _record(text) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read(path, quiet: bool = False) -> dict | None:
    """The provenance record (or scene) a studio file carries; None (or a clear error) when it has none."""
    path = Path(path)
    suffix = path.suffix.lower()
    found = None
    try:
        if suffix in (".png", ".gif"):
            with Image.open(path) as im:
                text = im.info.get(KEY) or getattr(im, "text", {}).get(KEY) if suffix == ".png" else im.info.get("comment")
            found = _record(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
        elif suffix in (".mid", ".midi"):
            import mido

            for track in mido.MidiFile(str(path)).tracks[:1]:
                for msg in track:
                    if msg.is_meta and msg.type == "text":
                        found = _record(msg.text)
                        if found:
                            break
        elif suffix == ".wav":
            found = _record(read_wav_comment(path))
        elif suffix in (".musicxml", ".xml"):
            m = MISC.search(path.read_text(encoding="utf-8", errors="replace"))
            found = _record(html.unescape(m[1])) if m else None
        elif suffix == ".json":
            found = _record(path.read_text(encoding="utf-8", errors="replace"))
        else:
            beside = path.with_suffix(".json")
            found = _record(beside.read_text(encoding="utf-8")) if beside.exists() else None
    except (OSError, EOFError, ValueError, KeyError, IndexError, struct.error) as e:
        if quiet:
            return None
        raise ValueError(f"{path.name} could not be read ({type(e).__name__}): is it a studio output?") from None
    if found is None and not quiet:
        raise ValueError(f"{path.name} carries no studio provenance (outputs of this studio carry it in the "
                         "file: PNG, GIF, MIDI, WAV, MusicXML, or the JSON beside a text).")
    return found
