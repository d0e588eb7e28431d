"""Scenes: the whole state of a tab as JSON, saved from any tab and loaded to make the same output again.

A scene names the tab and the action (the button) that made an output, every input value that action
takes (controls, seed, the checkpoint, a drawing or an uploaded file by its content hash), the family,
the checkpoint's name *and* sha256, and the section (accordion) that holds the button::

    {"kind": "studio-scene", "version": 1, "tab": "VAE", "action": "vae_decode_grid",
     "section": "Sample", "family": "vae", "checkpoint": "vae_mnist", "checkpoint_sha256": "9f…",
     "seed": 0, "controls": {"checkpoint": "vae_mnist", "seed": 0, "n": 16, …}}

Nothing here is written per tab: :class:`studio.parts.Page` records every action's input components
and parameter names, and :func:`studio.parts.provenance` (which every output panel's record comes
from) adds the scene of the action that is running, so every output carries one. Loading checks the
checkpoint first: a missing checkpoint or one whose contents changed is said, never silently replaced.
Values are plain JSON; arrays (drawings) are stored as compressed bytes, files by name and hash.
"""
from __future__ import annotations

import base64
import copy
import json
import zlib
from pathlib import Path

import numpy as np

KIND = "studio-scene"
VERSION = 1
FILE_COMPONENTS = ("File", "UploadButton", "Video", "Model3D")  # their values are paths on the server


def _is_file_input(component) -> bool:
    kind = type(component).__name__
    return kind in FILE_COMPONENTS or (kind in ("Image", "Audio") and getattr(component, "type", None) == "filepath")


def _is_state(component) -> bool:
    return type(component).__name__ == "State"


# --- values <-> JSON --------------------------------------------------------------------------------

def encode(value, component=None):
    """An input value as JSON: arrays as compressed bytes, files by name and sha256, state left out."""
    if component is not None and _is_state(component):
        return {"__state__": True}  # per-visitor state is never part of a scene (the page's start value is used)
    if component is not None and _is_file_input(component) and value:
        paths = value if isinstance(value, list) else [value]
        files = [_file_ref(p) for p in paths]
        return {"__files__": files} if isinstance(value, list) else {"__file__": files[0]}
    return _plain(value)


def _file_ref(path) -> dict:
    from studio import parts

    p = Path(path.get("path") if isinstance(path, dict) else path)
    return {"name": p.name, "sha256": parts.file_hash(p) if p.exists() else None, "path": str(p)}


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__ndarray__": {"dtype": str(value.dtype), "shape": list(value.shape),
                                "zlib": base64.b64encode(zlib.compress(value.tobytes(), 6)).decode()}}
    if hasattr(value, "size") and hasattr(value, "mode") and hasattr(value, "getdata"):  # a PIL image
        return _plain(np.asarray(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def decode(value, component=None):
    """The inverse of :func:`encode`; a file is found again by its hash (it must still be here)."""
    if isinstance(value, dict):
        if "__state__" in value:
            return copy.deepcopy(getattr(component, "value", None))
        if "__file__" in value:
            return _find_file(value["__file__"])
        if "__files__" in value:
            return [_find_file(f) for f in value["__files__"]]
        if "__ndarray__" in value:
            a = value["__ndarray__"]
            return np.frombuffer(zlib.decompress(base64.b64decode(a["zlib"])), dtype=a["dtype"]).reshape(a["shape"]).copy()
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def _find_file(ref: dict) -> str:
    from studio import parts

    p = Path(ref.get("path") or "")
    if p.is_file() and (ref.get("sha256") is None or parts.file_hash(p) == ref["sha256"]):
        return str(p)
    for folder in (parts.UPLOADS,):  # uploads are kept under names that carry their hash
        if folder.exists() and ref.get("sha256"):
            for q in folder.rglob(f"*{ref['sha256'][:12]}*"):
                if q.is_file() and parts.file_hash(q) == ref["sha256"]:
                    return str(q)
    raise ValueError(f"This scene uses the file {ref.get('name')!r}, which is no longer here: upload it again, "
                     "then run the tab.")


# --- making and checking scenes ------------------------------------------------------------------------

def capture(current: dict, family: str | None = None, checkpoint: str | None = None, seed=None) -> dict:
    """The scene of an action being run (``current`` as :data:`studio.parts.CURRENT_SCENE` holds it)."""
    from studio import parts, widgets

    names, components, values = current["names"], current["components"], current["values"]
    names = [n if n else f"input_{i}" for i, n in enumerate(list(names) + [None] * (len(components) - len(names)))]
    scene = {"kind": KIND, "version": VERSION, "tab": current["tab"], "action": current["action"],
             "section": current.get("section"), "family": family, "checkpoint": checkpoint,
             "checkpoint_sha256": None, "seed": seed,
             "controls": {n: encode(v, c) for n, v, c in zip(names, values, components)}}
    if checkpoint and family:
        path = widgets.checkpoint_paths(family).get(checkpoint) if family in _families() else None
        scene["checkpoint_sha256"] = parts.file_hash(path) if path else None
    return scene


def _families():
    from models import FAMILIES

    return FAMILIES


def from_values(action, values: list, headers=()) -> dict:
    """The scene of ``action`` with the page's current ``values`` of its inputs (Save scene)."""
    family = checkpoint = seed = None
    for component, value in zip(action.inputs, values):
        for _, header in headers:
            if component is header.dropdown and value:
                checkpoint = value
                family = next((f for f in header.families if value in _checkpoint_names(f)), header.families[0])
        label = (getattr(component, "label", None) or "").lower()
        if seed is None and "seed" in label and isinstance(value, (int, float)):
            seed = int(value)
    current = {"tab": action.tab, "action": action.api_name, "values": list(values), "names": action.names,
               "components": action.inputs, "section": action.section}
    return capture(current, family, checkpoint, seed)


def _checkpoint_names(family: str) -> set:
    from studio import widgets

    return set(widgets.checkpoint_paths(family)) if family in _families() else set()


def parse(data) -> dict:
    """A scene from JSON text, a dict, or a provenance record that carries one; a clear error otherwise."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"Not a scene: the text is not JSON ({e}).") from None
    if isinstance(data, dict) and data.get("kind") != KIND:
        for key in ("scene", "provenance"):
            if isinstance(data.get(key), dict):
                return parse(data[key])
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("controls"), dict):
        raise ValueError("Not a studio scene: it has no tab, action and controls (is it an output of an older "
                         "studio, or of another program?).")
    for key in ("tab", "action"):
        if not isinstance(data.get(key), str):
            raise ValueError(f"Not a studio scene: its {key!r} is missing.")
    return data


def action_of(scene: dict, actions):
    found = next((a for a in actions if a.api_name == scene["action"]), None)
    if found is None:
        raise ValueError(f"This scene was made by {scene['action']!r} ({scene['tab']} tab), which this studio "
                         "does not have.")
    if found.training:
        raise ValueError("A scene re-runs an output, not a training run.")
    return found


def problems(scene: dict) -> list[str]:
    """What stops a scene from making the same output here: its checkpoint missing or changed."""
    from studio import parts, widgets

    name, family, saved = scene.get("checkpoint"), scene.get("family"), scene.get("checkpoint_sha256")
    if not name or family not in _families():
        return []
    path = widgets.checkpoint_paths(family).get(name)
    if path is None:
        return [f"This scene needs the {family} checkpoint {name!r}, which is not here (not shipped, not among "
                "your runs): import or train it first."]
    now = parts.file_hash(path)
    if saved and now != saved:
        return [f"The checkpoint {name!r} has changed since this scene was saved (sha256 {saved[:12]}… then, "
                f"{now[:12]}… now): its outputs would differ, so the scene is not run."]
    return []


def inputs_of(scene: dict, action) -> list:
    """The values to call ``action`` with: the scene's, then the action's examples, then the page's defaults."""
    controls = scene["controls"]
    values = []
    for i, component in enumerate(action.inputs):
        name = action.names[i] if i < len(action.names) else f"input_{i}"
        if name in controls:
            values.append(decode(controls[name], component))
        elif name in action.example:
            values.append(action.example[name])
        else:
            values.append(copy.deepcopy(getattr(component, "value", None)))
    return values


def run(scene: dict, actions) -> tuple:
    """Check ``scene`` and run its action with its values: the outputs, as the button gives them (a streaming
    action's last item)."""
    action = action_of(scene, actions)
    trouble = problems(scene)
    if trouble:
        raise ValueError(" ".join(trouble))
    return call(action, inputs_of(scene, action))


def call(action, values: list) -> tuple:
    """``action`` run as its button runs it; a stream is drained to its last item. Always a tuple."""
    import inspect

    result = (action.run or action.fn)(*values)  # not through its lane: the caller already holds a turn
    if inspect.isgenerator(result):
        last = None
        for last in result:
            pass
        result = last
    if len(action.outputs) == 1 and not (isinstance(result, tuple) and len(result) == 1):
        return (result,)
    return tuple(result) if isinstance(result, (list, tuple)) else (result,)


def summary(scene: dict) -> str:
    """One line naming a scene: tab, checkpoint, seed and the changed controls."""
    bits = [f"**{scene['tab']}** ({scene['action']})"]
    if scene.get("checkpoint"):
        bits.append(f"checkpoint {scene['checkpoint']}")
    if scene.get("seed") is not None:
        bits.append(f"seed {scene['seed']}")
    return ", ".join(bits)


def write(scene: dict, filename: str = "scene.json") -> str:
    """The scene as a JSON file at a path of its own (a download)."""
    from studio import widgets

    path = widgets.export_path(filename)
    path.write_text(json.dumps(scene, indent=1, ensure_ascii=False), encoding="utf-8")
    return str(path)


def main_action(actions, tab: str, module=None, headers=()):
    """The action a tab's scene is about: the tab module's ``SCENE_ACTION`` when it names one, else the first
    non-training action whose trigger is a button (what a visitor presses first), else the first one."""
    mine = [a for a in actions if a.tab == tab and not a.training]
    wanted = getattr(module, "SCENE_ACTION", None)
    for a in mine:
        if a.api_name == wanted:
            return a
    buttons = [a for a in mine if type(a.trigger).__name__ == "Button"]
    dropdowns = {id(h.dropdown) for t, h in headers if t == tab}
    with_model = [a for a in buttons if any(id(c) in dropdowns for c in a.inputs)]
    return (with_model or buttons or [a for a in mine if a.inputs] or mine or [None])[0]
