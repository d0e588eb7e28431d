"""The Workshop tab: decks of scenes stepped through like slides (with a presenter view), compare
(one scene across checkpoints, or an X/Y grid over two of its controls), the arena of the MNIST
families, and a classroom pack that opens offline.

Everything here works from the kit's registry (:class:`studio.parts.Page` actions and checkpoint
headers) and :mod:`studio.scenes`, so a tab added later gets scenes, compare and export without a line
of its own. This module also builds the two page-wide parts: the drop zone in the header (drop a
studio output: its tab opens with that scene and runs it) and the scene bar at the foot of every tab.
"""
from __future__ import annotations

import io
import json
import re
import time
import zipfile
from dataclasses import dataclass
from html import escape
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.core import ASSETS
from studio import parts, provenance, scenes, widgets

TITLE = "Workshop"
SCENES = False  # no scene bar on this tab itself
DECKS = ASSETS / "decks"
ARENA = ASSETS / "arena"
MAX_CELLS = 36  # X/Y grid cells (each is one run of the scene)
MAX_CHECKPOINTS = 8
SETTABLE = ("Slider", "Number", "Dropdown", "Radio", "Checkbox", "CheckboxGroup", "Textbox")  # set by a scene in the page

PRESENTER_CSS = """
body.studio-presenting #studio-header, body.studio-presenting .scene-bar,
body.studio-presenting #studio-tabs [role=tablist], body.studio-presenting #studio-tabs .tab-wrapper,
body.studio-presenting #workshop-normal, body.studio-presenting #workshop-intro { display: none !important; }
body.studio-presenting #workshop-presenter img { max-height: 72vh; object-fit: contain; }
body.studio-presenting #workshop-presenter-title h1 { font-size: 2.6rem; }
body.studio-presenting #workshop-presenter-note { font-size: 1.4rem; }
"""

KEYS_JS = """() => {
  if (!document.getElementById('studio-presenter-css')) {
    const s = document.createElement('style'); s.id = 'studio-presenter-css';
    s.textContent = %s; document.head.appendChild(s);
  }
  if (window.__studioKeys) return [];
  window.__studioKeys = true;
  document.addEventListener('keydown', (e) => {
    const t = e.target; const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (typing || !document.body.classList.contains('studio-presenting')) return;
    const click = (id) => { const b = document.getElementById(id); if (b) { b.click(); e.preventDefault(); } };
    if (['ArrowRight', 'PageDown', ' '].includes(e.key)) click('workshop-next');
    else if (['ArrowLeft', 'PageUp'].includes(e.key)) click('workshop-prev');
    else if (e.key === 'Escape') click('workshop-leave');
  });
  return [];
}""" % json.dumps(PRESENTER_CSS)


# --- decks --------------------------------------------------------------------------------------------

def deck_names() -> list[str]:
    return sorted(p.stem for p in DECKS.glob("*.json")) if DECKS.exists() else []


def read_deck(name: str | None = None, file_path=None) -> dict:
    """A deck from ``assets/decks/<name>.json`` or an uploaded file: ``{"title", "scenes": [{"title", "note",
    "scene"}]}``, each scene checked to be one (a clear error otherwise)."""
    if file_path:
        path = Path(file_path)
        if path.suffix.lower() != ".json":
            raise ValueError(f"{path.name} is not a deck (.json).")
    else:
        if name not in deck_names():
            raise ValueError(f"Unknown deck {name!r}; decks here: {', '.join(deck_names()) or 'none'}.")
        path = DECKS / f"{name}.json"
    try:
        deck = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise ValueError(f"{path.name} is not a deck: {e}.") from None
    if not isinstance(deck, dict) or not isinstance(deck.get("scenes"), list) or not deck["scenes"]:
        raise ValueError(f"{path.name} is not a deck: it needs a title and a list of scenes.")
    for i, step in enumerate(deck["scenes"]):
        if not isinstance(step, dict):
            raise ValueError(f"Step {i + 1} of {path.name} is not an object with a title, a note and a scene.")
        step["scene"] = scenes.parse(step.get("scene"))
    deck.setdefault("title", path.stem)
    return deck


def step_number(step, n: int) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, float)) or step != step or step != int(step):
        raise ValueError(f"Step must be a whole number from 1 to {n}; got {step!r}.")
    if not 1 <= int(step) <= n:
        raise ValueError(f"Step must be from 1 to {n}; got {int(step)}.")
    return int(step)


# --- the visuals of an action's outputs -----------------------------------------------------------------

def _value(v):
    return v.get("value") if isinstance(v, dict) and v.get("__type__") == "update" else v


def _image_array(v) -> np.ndarray | None:
    v = _value(v)
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        return v if v.dtype == np.uint8 else (np.asarray(v, np.float32).clip(0, 1) * 255).round().astype(np.uint8)
    if isinstance(v, Image.Image):
        return np.asarray(v)
    if isinstance(v, (str, Path)) and Path(v).is_file():
        with Image.open(v) as im:
            return np.asarray(im.convert("RGB"))
    if hasattr(v, "savefig"):  # a matplotlib figure (gr.Plot)
        return widgets.figure_to_array(v)
    return None


def visuals(action, outputs, show: str | None = None) -> dict:
    """What a presenter shows of an action's outputs, by the kind of each output component: the first
    picture (image or plot; or the one whose label contains ``show``), the first sound, the generated text
    and the caption, and the provenance record."""
    found = {"image": None, "audio": None, "text": "", "record": provenance.record_in(outputs)}
    texts, pictures = [], []
    for component, v in zip(action.outputs, outputs):
        kind = type(component).__name__
        label = getattr(component, "label", "") or ""
        v = _value(v)
        if kind in ("Image", "Plot", "AnnotatedImage"):
            pictures.append((label, v[0] if kind == "AnnotatedImage" and isinstance(v, tuple) else v))
        elif kind == "Audio" and found["audio"] is None and v is not None:
            found["audio"] = v
        elif kind in ("Markdown", "Textbox", "HTML") and isinstance(v, str) and v.strip():
            texts.append((kind, label, v))
    wanted = [p for p in pictures if show and show.lower() in p[0].lower()] + pictures
    for _, v in wanted:
        found["image"] = _image_array(v)
        if found["image"] is not None:
            break
    made = [t for kind, _, t in texts if kind == "Textbox"][:1]  # generated text (a Textbox output)
    caption = [t for _, label, t in texts if label.lower().startswith("caption")][:1]
    found["text"] = "\n\n".join(made + caption) or (texts[0][2] if texts else "")
    return found


def show_scene(scene: dict, actions, show: str | None = None) -> dict:
    action = scenes.action_of(scene, actions)
    return visuals(action, scenes.run(scene, actions), show)


# --- compare ---------------------------------------------------------------------------------------------

def _font(size: int = 14):
    try:
        return ImageFont.load_default(size)
    except TypeError:
        return ImageFont.load_default()


def labelled_grid(cells: list[list[np.ndarray | None]], xs: list[str], ys: list[str], xname: str, yname: str,
                  title: str = "") -> np.ndarray:
    """Cells (rows of pictures) under column labels ``xs`` and beside row labels ``ys``, the axes named."""
    pics = [c for row in cells for c in row if c is not None]
    if not pics:
        raise ValueError("None of the runs made a picture to compare (compare audio with the A/B players).")
    h = max(p.shape[0] for p in pics)
    w = max(p.shape[1] for p in pics)
    scale = max(1, int(np.ceil(160 / max(h, w))))
    h, w = h * scale, w * scale
    left, top, pad = 130, 54 + (24 if title else 0), 6
    canvas = Image.new("RGB", (left + len(xs) * (w + pad) + pad, top + len(ys) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    font, small = _font(15), _font(13)
    if title:
        draw.text((pad, 4), title, fill="black", font=font)
    draw.text((left, top - 44), f"{xname} →", fill="black", font=font)
    draw.text((pad, top - 22), f"{yname} ↓", fill="black", font=font)
    for i, x in enumerate(xs):
        draw.text((left + i * (w + pad) + 4, top - 22), str(x)[:28], fill="black", font=small)
    for r, (y, row) in enumerate(zip(ys, cells)):
        draw.text((pad, top + r * (h + pad) + h // 2 - 8), str(y)[:18], fill="black", font=small)
        for c, pic in enumerate(row):
            if pic is None:
                continue
            im = Image.fromarray(pic).convert("RGB")
            im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
            canvas.paste(im, (left + c * (w + pad) + pad, top + r * (h + pad) + pad))
    return np.asarray(canvas)


def parse_values(text, name: str) -> list:
    """'0.5, 1, 2' -> [0.5, 1.0, 2.0]; words stay words ('ddpm, ddim')."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [t.strip() for t in str(text or "").split(",") if t.strip()]
    if not items:
        raise ValueError(f"Give the values of {name} separated by commas, e.g. '0.5, 1, 2'.")
    out = []
    for t in items:
        if isinstance(t, str):
            try:
                number = float(t)
                t = int(number) if number.is_integer() and re.fullmatch(r"-?\d+", t) else number
            except ValueError:
                pass
        out.append(t)
    return out


def _with(scene: dict, **changes) -> dict:
    new = json.loads(json.dumps(scene))
    for k, v in changes.items():
        if k == "checkpoint":
            new["checkpoint"], new["checkpoint_sha256"] = v, None
            for name, value in new["controls"].items():
                if value == scene.get("checkpoint"):
                    new["controls"][name] = v
        else:
            new["controls"][k] = v
            if k == "seed":
                new["seed"] = v
    return new


def _checkpoint_family(name: str) -> str:
    from models import FAMILIES

    for family in FAMILIES:
        if name in widgets.checkpoint_paths(family):
            return family
    raise ValueError(f"No checkpoint named {name!r} here.")


def compare_checkpoints(scene: dict, names: list[str], actions):
    """The scene run on each checkpoint with everything else (seed included) the same: pictures side by
    side, each cell's provenance, and the first two sounds for an A/B toggle."""
    from models.core.family import last

    return last(compare_checkpoints_steps(scene, names, actions))


def compare_checkpoints_steps(scene: dict, names: list[str], actions):
    """:func:`compare_checkpoints` as a stream: a progress text before each run, then the result."""
    names = [n for n in (names or []) if n]
    if not 1 <= len(names) <= MAX_CHECKPOINTS:
        raise ValueError(f"Choose from 1 to {MAX_CHECKPOINTS} checkpoints to compare; got {len(names)}.")
    if not scene.get("checkpoint"):
        raise ValueError("This scene uses no checkpoint: compare it over two controls (X/Y grid) instead.")
    action = scenes.action_of(scene, actions)
    row, records, sounds = [], [], []
    for k, name in enumerate(names):
        yield f"Running checkpoint {k + 1} of {len(names)} ({name})…"
        cell = _with(scene, checkpoint=name)
        cell["family"] = _checkpoint_family(name)
        found = visuals(action, scenes.call(action, scenes.inputs_of(cell, action)))
        row.append(found["image"])
        records.append({"checkpoint": name, "provenance": found["record"]})
        if found["audio"] is not None:
            sounds.append((name, found["audio"]))
    picture = (labelled_grid([row], names, [f"seed {scene.get('seed')}"], "checkpoint", "same seed",
                             scenes.summary(scene).replace("*", "")) if any(p is not None for p in row) else None)
    yield picture, sounds, records


def xy_grid(scene: dict, x_name: str, x_values: list, y_name: str, y_values: list, actions):
    """The scene run for every (x, y): a labelled grid and each cell's provenance record (a cell is the
    same as that setting run alone: every cell is a fresh run from the scene)."""
    from models.core.family import last

    return last(xy_grid_steps(scene, x_name, x_values, y_name, y_values, actions))


def xy_grid_steps(scene: dict, x_name: str, x_values: list, y_name: str, y_values: list, actions):
    """:func:`xy_grid` as a stream: a progress text before each cell, then the result."""
    action = scenes.action_of(scene, actions)
    for name in (x_name, y_name):
        if name not in scene["controls"]:
            raise ValueError(f"This scene has no control {name!r}; its controls: {', '.join(scene['controls'])}.")
    if x_name == y_name:
        raise ValueError("Choose two different controls for X and Y.")
    if len(x_values) * len(y_values) > MAX_CELLS:
        raise ValueError(f"At most {MAX_CELLS} cells: {len(x_values)} × {len(y_values)} is too many.")
    trouble = scenes.problems(scene)
    if trouble:
        raise ValueError(" ".join(trouble))
    cells, records, sounds = [], [], []
    for y in y_values:
        row = []
        for x in x_values:
            yield f"Running cell {len(records) + 1} of {len(x_values) * len(y_values)} ({x_name} {x}, {y_name} {y})…"
            cell = _with(scene, **{x_name: x, y_name: y})
            found = visuals(action, scenes.call(action, scenes.inputs_of(cell, action)))
            row.append(found["image"])
            records.append({x_name: x, y_name: y, "provenance": found["record"]})
            if found["audio"] is not None:
                sounds.append((f"{x_name}={x}, {y_name}={y}", found["audio"]))
        cells.append(row)
    picture = labelled_grid(cells, [str(x) for x in x_values], [str(y) for y in y_values], x_name, y_name,
                            scenes.summary(scene).replace("*", ""))
    yield picture, sounds, records


# --- classroom pack --------------------------------------------------------------------------------------

def classroom_pack(checkpoints: list[str], decks: list[str], actions) -> tuple[str, str]:
    """One zip: the chosen checkpoints (weights + cards), the decks, each deck step's output as PNG/WAV
    (provenance inside), and an index.html that shows them offline without the studio."""
    from models.core.family import last

    return last(classroom_pack_steps(checkpoints, decks, actions))


def classroom_pack_steps(checkpoints: list[str], decks: list[str], actions):
    """:func:`classroom_pack` as a stream: ``(None, progress)`` per deck step run, then ``(zip, summary)``."""
    checkpoints, decks = list(checkpoints or []), list(decks or [])
    if not checkpoints and not decks:
        raise ValueError("Choose at least one checkpoint or deck for the pack.")
    unknown = [d for d in decks if d not in deck_names()]
    if unknown:
        raise ValueError(f"Unknown deck {unknown[0]!r}; decks here: {', '.join(deck_names())}.")
    path = widgets.export_path("classroom_pack.zip")
    sections = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name in checkpoints:
            weights = widgets.checkpoint_paths(_checkpoint_family(name))[name]
            z.write(weights, f"checkpoints/{weights.name}")
            if weights.with_suffix(".json").exists():
                z.write(weights.with_suffix(".json"), f"checkpoints/{name}.json")
        for d in decks:
            deck = read_deck(d)
            z.write(DECKS / f"{d}.json", f"decks/{d}.json")
            items = []
            for i, step in enumerate(deck["scenes"], 1):
                yield None, f"Running {deck['title']}, step {i} of {len(deck['scenes'])}…"
                found = show_scene(step["scene"], actions, step.get("show"))
                item = f"<h3>{i}. {escape(step.get('title', ''))}</h3><p>{escape(step.get('note', ''))}</p>"
                if found["image"] is not None:
                    buf = io.BytesIO()
                    Image.fromarray(found["image"]).save(buf, format="PNG")
                    png = Path(parts.save_png(found["image"], found["record"] or step["scene"], f"{d}_{i}.png"))
                    z.write(png, f"outputs/{d}/{i}.png")
                    item += f'<img src="outputs/{d}/{i}.png" alt="{escape(step.get("title", ""))}">'
                if found["audio"] is not None:
                    wav = _wav_of(found["audio"], found["record"] or step["scene"], f"{d}_{i}.wav")
                    z.write(wav, f"outputs/{d}/{i}.wav")
                    item += f'<audio controls src="outputs/{d}/{i}.wav"></audio>'
                if found["text"]:
                    item += f"<pre>{escape(found['text'])}</pre>"
                items.append(item)
            sections.append(f"<section><h2>{escape(deck['title'])}</h2>{''.join(items)}</section>")
        listed = "".join(f"<li>{escape(n)}</li>" for n in checkpoints)
        page = (f"<!doctype html><meta charset='utf-8'><title>Classroom pack</title>"
                f"<style>body{{font-family:sans-serif;max-width:60em;margin:auto}}img{{max-width:100%;"
                f"image-rendering:pixelated}}pre{{white-space:pre-wrap}}</style>"
                f"<h1>Generative Deep Learning Studio: classroom pack</h1>"
                f"<p>Made {time.strftime('%Y-%m-%d %H:%M')}. Opens offline; the files under outputs/ carry "
                f"their provenance (drop one onto the studio to re-run it).</p>"
                + (f"<h2>Checkpoints</h2><ul>{listed}</ul>" if checkpoints else "") + "".join(sections))
        z.writestr("index.html", page)
    size = path.stat().st_size
    yield str(path), (f"Pack of {len(checkpoints)} checkpoint(s) and {len(decks)} deck(s), "
                       f"{size / 1e6:.1f} MB: open index.html from the unzipped folder.")


def _wav_of(audio, record: dict, filename: str) -> str:
    if isinstance(audio, (str, Path)):
        return str(audio)
    import soundfile

    rate, samples = audio
    path = widgets.export_path(filename)
    soundfile.write(str(path), np.asarray(samples), int(rate), subtype="PCM_16")
    provenance.embed_wav(path, json.dumps(record, ensure_ascii=False))
    return str(path)


# --- arena -----------------------------------------------------------------------------------------------

def arena_view() -> tuple[str, str | None]:
    table = ARENA / "arena.md"
    grid = ARENA / "arena_grid.png"
    if not table.exists():
        return ("No arena yet: run `python -m models.core.arena` to score every MNIST family on the same "
                "held-out images.", None)
    return table.read_text(encoding="utf-8"), str(grid) if grid.exists() else None


# --- page-wide parts: drop zone, scene bar, and the wiring of scenes into the page -----------------------

@dataclass
class SceneBar:
    tab: object
    action: gr.Dropdown
    save: gr.Button
    compare: gr.Button
    file: gr.File
    note: gr.Markdown
    inputs: list


def drop_zone():
    with gr.Column(scale=1, min_width=260):
        file = gr.File(label="Drop a studio output (PNG, GIF, MIDI, WAV, MusicXML, JSON) or a scene: its tab opens "
                             "and makes it again", height=90, type="filepath", elem_id="studio-drop")
        note = gr.Markdown(label="Scene loaded", elem_id="studio-drop-note")
    return file, note


def scene_bar(page: parts.Page, tab) -> SceneBar:
    """Save the tab's state as a scene, or take it to the Workshop's compare: built from the tab's actions."""
    mine = [a for a in page.actions if a.tab == tab.TITLE and not a.training and a.inputs]
    main = scenes.main_action(page.actions, tab.TITLE, tab, page.headers)
    main = main if main in mine else (mine[0] if mine else None)  # an action without inputs has no scene
    with gr.Accordion("Scene: save this tab's state, compare it", open=False, elem_classes=["scene-bar"]):
        with gr.Row():
            action = gr.Dropdown([(f"{a.section or a.tab}: {a.api_name}", a.api_name) for a in mine],
                                 value=main.api_name if main else None, label="Which output", scale=2)
            save = gr.Button("Save scene")
            compare = gr.Button("Compare in the Workshop")
        file = gr.File(label="Scene (JSON): load it in the Workshop, a deck, or drop it onto the page", height=90)
        note = gr.Markdown(label="Scene")
    inputs = []
    for a in mine:
        for c in a.inputs:
            if all(c is not d for d in inputs):
                inputs.append(c)
    return SceneBar(tab, action, save, compare, file, note, inputs)


def _settable(component) -> bool:
    return type(component).__name__ in SETTABLE


def _accordions_above(block) -> list:
    found = []
    while block is not None:
        block = getattr(block, "parent", None)
        if isinstance(block, gr.Accordion):
            found.append(block)
    return found


def wire(page: parts.Page, tabs: gr.Tabs, bars: list[SceneBar], drop) -> None:
    """Connect the drop zone, the scene bars and the Workshop to one 'apply a scene' event: it opens the
    scene's tab and section, sets every control it can, then presses the action's button."""
    actions = page.actions
    ui = page.demo.studio_workshop
    runnable = [a for a in actions if not a.training]
    targets, sections = [], []
    for a in runnable:
        for c in a.inputs:
            if _settable(c) and all(c is not d for d in targets):
                targets.append(c)
        for acc in _accordions_above(a.trigger):
            if all(acc is not d for d in sections):
                sections.append(acc)
        if type(a.trigger).__name__ == "Button" and not a.trigger.elem_id:
            a.trigger.elem_id = f"run-{a.api_name}"
    scene_box = gr.Textbox(visible=False, label="Scene to apply")
    click_id = gr.Textbox(visible=False, label="Button to press")
    drop_file, drop_note = drop

    def apply(text):
        scene = scenes.parse(text)
        action = scenes.action_of(scene, actions)
        trouble = scenes.problems(scene)
        if trouble:
            raise ValueError(" ".join(trouble))
        values = dict(zip(map(id, action.inputs), scenes.inputs_of(scene, action)))
        updates = [gr.update(value=values[id(c)]) if id(c) in values else gr.update() for c in targets]
        open_ = {id(acc) for acc in _accordions_above(action.trigger)}
        unset = [n for n, c in zip(action.names, action.inputs) if not _settable(c) and not scenes._is_state(c)
                 and scene["controls"].get(n) not in (None, "", [])]
        press = action.trigger.elem_id if type(action.trigger).__name__ == "Button" else ""
        note = (f"Opened {scenes.summary(scene)}"
                + (f"; set these in the page yourself (uploads and drawings are not set by a scene): "
                   f"{', '.join(unset)}" if unset else "")
                + ("; running it now." if press else "; it runs when its controls change."))
        return [gr.update(selected=action.tab), *updates, *[gr.update(open=True) if id(s) in open_ else gr.update()
                                                           for s in sections], press, note]

    apply_outputs = [tabs, *targets, *sections, click_id, drop_note]
    press_js = "(id) => { if (id) setTimeout(() => { const b = document.getElementById(id); if (b) b.click(); }, 600); return []; }"

    def chain(event):
        return (event.then(widgets.friendly(apply), scene_box, apply_outputs, api_name=False)
                .then(None, click_id, None, js=press_js, api_name=False))

    @widgets.friendly
    def dropped(path):
        if not path:
            return gr.update(), gr.update()
        record = provenance.read(path)
        scene = scenes.parse(record)
        return json.dumps(scene), f"Found a scene in {Path(path).name}: {scenes.summary(scene)}."

    chain(drop_file.upload(dropped, drop_file, [scene_box, drop_note], api_name=False))

    for bar in bars:
        def save(name, *values, _bar=bar):
            action = next((a for a in actions if a.api_name == name), None)
            if action is None:
                raise ValueError(f"Choose which output's scene to save; {name!r} is not one of this tab's.")
            by_id = dict(zip(map(id, _bar.inputs), values))
            scene = scenes.from_values(action, [by_id.get(id(c)) for c in action.inputs], page.headers)
            stem = re.sub(r"\W+", "_", f"scene_{action.api_name}")
            return scenes.write(scene, f"{stem}.json"), f"Saved {scenes.summary(scene)}.", json.dumps(scene, indent=1)

        bar.save.click(widgets.friendly(save), [bar.action, *bar.inputs], [bar.file, bar.note, ui["scene"]],
                       api_name=False)
        bar.compare.click(widgets.friendly(save), [bar.action, *bar.inputs], [bar.file, bar.note, ui["scene"]],
                          api_name=False).then(lambda: gr.update(selected=TITLE), None, tabs, api_name=False)

    go = getattr(page.demo, "studio_map", None)
    if go:
        go["button"].click(lambda t: gr.update(selected=t), go["go"], tabs, api_name=False)
    # the Workshop's own "Open in its tab" and a scene file loaded there
    chain(ui["open"].click(lambda text: text, ui["scene"], scene_box, api_name=False))

    def from_query(request: gr.Request):
        q = dict(request.query_params) if request is not None else {}
        deck = q.get("deck")
        if not deck:
            return gr.update(), gr.update(), gr.update()
        name = Path(deck).stem
        return (gr.update(selected=TITLE), gr.update(value=name) if name in deck_names() else gr.update(),
                f"Deck {name!r} from the address; press Show." if name in deck_names()
                else f"No deck named {name!r} here; decks: {', '.join(deck_names())}.")

    page.on_load(from_query, None, [tabs, ui["deck"], ui["status"]]).then(
        None, None, None, js=KEYS_JS, api_name=False)


# --- layout ----------------------------------------------------------------------------------------------

def build(page: parts.Page):
    actions = page.actions  # complete once the page is built: handlers read it when they run
    decks = deck_names()
    first = decks[0] if decks else None
    default_scene = json.dumps(_default_scene(decks), indent=1) if decks else ""
    gr.Markdown(elem_id="workshop-intro", value="Teach with the studio: a **deck** is a list of scenes (a tab's whole state) with a note each, "
                "stepped through like slides; the **presenter view** shows only the large visual, the note and "
                "the step buttons (arrow keys step, Esc leaves). **Compare** runs one scene over several "
                "checkpoints or an X/Y grid of two controls. Every tab has a *Scene* bar at its foot to save "
                "its state or send it here.")
    with gr.Column(elem_id="workshop-normal") as normal:
        with gr.Accordion("Decks", open=True):
            with gr.Row():
                deck = gr.Dropdown(decks, value=first, label="Deck", elem_id="workshop-deck")
                deck_file = gr.File(label="…or your own deck (.json)", type="filepath", height=90)
                step = gr.Number(value=1, precision=0, label="Step", minimum=1, elem_id="workshop-step")
            with gr.Row():
                show = gr.Button("Show", variant="primary", elem_id="workshop-show")
                present = gr.Button("Presenter view", elem_id="workshop-present")
            status = gr.Markdown(label="Deck status", elem_id="workshop-status")
            with gr.Row():
                image = gr.Image(label="Visual", format="png", interactive=False, height=360)
                with gr.Column():
                    note = gr.Markdown(label="Note")
                    text = gr.Markdown(label="Output text")
                    audio = gr.Audio(label="Sound", type="numpy", interactive=False)
        with gr.Accordion("Compare", open=False):
            scene = gr.Code(default_scene, language="json", label="Scene (from a tab's Scene bar, a deck, or pasted)",
                            elem_id="workshop-scene")
            with gr.Row():
                scene_file = gr.File(label="Load a scene or a studio output", type="filepath", height=90)
                open_in_tab = gr.Button("Open in its tab")
            with gr.Tab("Same seed, several checkpoints"):
                all_ckpts = [v for _, v in parts.checkpoint_choices(_families())]
                chosen = gr.Dropdown(all_ckpts, value=[c for c in ("vae_mnist", "vae_mnist_z16") if c in all_ckpts],
                                     multiselect=True, label="Checkpoints")
                run_ckpts = gr.Button("Compare checkpoints", variant="primary")
            with gr.Tab("X/Y grid"):
                with gr.Row():
                    x_name = gr.Textbox(value="scale", label="X control")
                    x_values = gr.Textbox(value="0.5, 1, 2", label="X values")
                    y_name = gr.Textbox(value="seed", label="Y control")
                    y_values = gr.Textbox(value="0, 1", label="Y values")
                run_xy = gr.Button("Run the grid", variant="primary")
            compare_note = gr.Markdown(label="Compare caption")
            grid = gr.Image(label="Compared", format="png", interactive=False)
            with gr.Row():
                ab = gr.Radio(["A", "B"], value="A", label="A/B: listen to")
                ab_audio = gr.Audio(label="A/B sound", type="numpy", interactive=False)
            sounds = parts.visitor_state([])
            cells = gr.JSON(label="Every cell's provenance")
        with gr.Accordion("Arena: same data, every family", open=False):
            arena_table = gr.Markdown(label="Arena table")
            arena_grid = gr.Image(label="Arena samples and their nearest training images", format="png",
                                  interactive=False)
            arena_button = gr.Button("Show the arena")
        with gr.Accordion("Classroom pack", open=False):
            with gr.Row():
                pack_ckpts = gr.Dropdown(all_ckpts, value=[c for c in ("vae_mnist",) if c in all_ckpts],
                                         multiselect=True, label="Checkpoints to pack")
                pack_decks = gr.Dropdown(decks, value=decks[:1], multiselect=True, label="Decks to pack")
            pack_button = gr.Button("Make the pack (zip)")
            pack_file = gr.File(label="Classroom pack (zip)", height=90)
            pack_note = gr.Markdown(label="Pack")
    with gr.Column(visible=False, elem_id="workshop-presenter") as presenter:
        p_title = gr.Markdown(label="Slide title", elem_id="workshop-presenter-title")
        p_image = gr.Image(label="Slide visual", format="png", interactive=False, height=560, show_label=False,
                           elem_id="workshop-presenter-image")
        p_note = gr.Markdown(label="Slide note", elem_id="workshop-presenter-note")
        p_text = gr.Markdown(label="Slide text")
        p_audio = gr.Audio(label="Slide sound", type="numpy", interactive=False)
        with gr.Row():
            prev = gr.Button("◀ Previous", elem_id="workshop-prev")
            nxt = gr.Button("Next ▶", variant="primary", elem_id="workshop-next")
            leave = gr.Button("Leave presenter view", elem_id="workshop-leave")
    page.demo.studio_workshop = {"scene": scene, "open": open_in_tab, "deck": deck, "status": status}

    def deck_step(deck, deck_file=None, step=1):
        deck_name, deck_upload, step_value = deck, deck_file, step
        d = read_deck(deck_name, deck_upload)
        n = len(d["scenes"])
        i = step_number(step_value, n)
        item = d["scenes"][i - 1]
        found = show_scene(item["scene"], actions, item.get("show"))
        title = f"# {item.get('title') or d['title']}"
        where = f"**{d['title']}**, step {i} of {n}: {scenes.summary(item['scene'])}"
        return (where, title, item.get("note", ""), found["image"], found["text"], found["audio"],
                json.dumps(item["scene"], indent=1))

    step_outputs = [status, p_title, note, image, text, audio, scene]
    shown = page.action(show.click, widgets.friendly(deck_step), [deck, deck_file, step], step_outputs,
                        api_name="workshop_deck_step")

    def to_presenter(*outs):  # the presenter's copy of the slide
        status_, title_, note_, image_, text_, audio_, _ = outs
        return title_, image_, note_, text_, audio_

    mirror = dict(fn=to_presenter, inputs=step_outputs, outputs=[p_title, p_image, p_note, p_text, p_audio],
                  api_name=False)
    enter_js = "() => { document.body.classList.add('studio-presenting'); return []; }"
    leave_js = "() => { document.body.classList.remove('studio-presenting'); return []; }"
    shown.then(**mirror)  # after each Show, the presenter has the same slide

    def moved(by):
        def move(deck_name, deck_upload, step_value):
            d = read_deck(deck_name, deck_upload)
            i = step_number(step_value, len(d["scenes"])) + by
            return min(max(i, 1), len(d["scenes"]))
        return widgets.friendly(move)

    for button, by in ((prev, -1), (nxt, 1)):
        button.click(moved(by), [deck, deck_file, step], step, api_name=False).then(
            widgets.friendly(deck_step), [deck, deck_file, step], step_outputs, api_name=False).then(**mirror)
    present.click(lambda: (gr.update(visible=True), gr.update(visible=False)), None, [presenter, normal],
                  js=enter_js, api_name=False).then(
        widgets.friendly(deck_step), [deck, deck_file, step], step_outputs, api_name=False).then(**mirror)
    leave.click(lambda: (gr.update(visible=False), gr.update(visible=True)), None, [presenter, normal],
                js=leave_js, api_name=False)

    @widgets.friendly
    def loaded_scene(path):
        if not path:
            return gr.update()
        return json.dumps(scenes.parse(provenance.read(path)), indent=1)

    scene_file.upload(loaded_scene, scene_file, scene, api_name=False)

    def play(choice, kept):
        kept = kept or []
        i = 0 if choice == "A" else 1
        return kept[i][1] if i < len(kept) else None

    def finish(picture, found, records, what):
        kept = found[:2]
        caption = what + (f" A/B: A = {kept[0][0]}" + (f", B = {kept[1][0]}." if len(kept) > 1 else ".")
                          if kept else "")
        return caption, picture, gr.update(value="A"), kept[0][1] if kept else None, kept, records

    compare_outputs = [compare_note, grid, ab, ab_audio, sounds, cells]

    def streamed(steps, what: str):
        """Yield a progress caption before each run of ``steps`` (a stream of progress texts, then the
        result), then the result; closing the stream stops the runs."""
        waiting = [gr.update()] * (len(compare_outputs) - 1)
        for item in steps:
            if isinstance(item, str):
                yield [item, *waiting]
            else:
                yield finish(*item, what)

    def run_compare(text, names):
        s = scenes.parse(text)
        yield from streamed(compare_checkpoints_steps(s, names, actions),
                            f"{scenes.summary(s)} on {len(names or [])} checkpoints, same seed.")

    def run_grid(text, xn, xv, yn, yv):
        s = scenes.parse(text)
        xs, ys = parse_values(xv, xn), parse_values(yv, yn)
        yield from streamed(xy_grid_steps(s, str(xn).strip(), xs, str(yn).strip(), ys, actions),
                            f"{scenes.summary(s)}: {len(xs)} × {len(ys)} grid over {xn} and {yn}.")

    page.action(run_ckpts.click, widgets.friendly(run_compare), [scene, chosen], compare_outputs,
                api_name="workshop_compare_checkpoints", names=["scene", "checkpoints"])
    page.action(run_xy.click, widgets.friendly(run_grid), [scene, x_name, x_values, y_name, y_values], compare_outputs,
                api_name="workshop_xy_grid", names=["scene", "x_control", "x_values", "y_control", "y_values"])
    ab.change(play, [ab, sounds], ab_audio, api_name=False)
    page.action(arena_button.click, arena_view, None, [arena_table, arena_grid], api_name="workshop_arena", names=[])
    page.action(pack_button.click, widgets.friendly(lambda c, d: (yield from classroom_pack_steps(c, d, actions))),
                [pack_ckpts, pack_decks], [pack_file, pack_note], api_name="workshop_classroom_pack",
                names=["checkpoints", "decks"], heavy=True)


def _default_scene(decks) -> dict:
    """Compare's starting scene: the first deck scene with a checkpoint and a seed (else the first scene)."""
    found = [step["scene"] for d in decks for step in read_deck(d)["scenes"]]
    return next((s for s in found if s.get("checkpoint") and "seed" in s["controls"] and "scale" in s["controls"]),
                next((s for s in found if s.get("checkpoint") and "seed" in s["controls"]), found[0]))


def _families():
    from models import FAMILIES

    return tuple(FAMILIES)
