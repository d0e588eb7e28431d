"""One likelihood table: every shipped checkpoint whose family gives a likelihood, scored on the same
held-out images, grouped by preprocessing and ranked inside each group.

    python -m models.density.likelihood            # all 10,000 test images; writes assets/likelihood_table.json
    python -m models.density.likelihood --n 500    # a quick look

A family takes part by having a ``log_likelihood(model, x)`` hook (per-example log p(x) in nats, on the
test examples its ``data`` hook returns, whose info names the ``preprocessing``) and says whether that
is ``"exact"``, a lower ``"bound"`` or an ``"estimate"`` (an RBM's, whose log Z is estimated by AIS).
A hook that also takes ``k`` (importance samples) gets a second, tighter row (the IWAE bound). Nothing
here knows any family by name.

Each row gives nats per image and bits per dimension, ``nats / (D ln 2)`` with D the number of pixels.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import time
from pathlib import Path

from models.core import ASSETS, checkpoint

TABLE = ASSETS / "likelihood_table.json"
ESTIMATES = {"bound": "ELBO", "estimate": "AIS estimate", "exact": "exact"}  # a family's likelihood -> its row
IWAE_K = 50
CAVEAT = ("Log-likelihoods are only comparable under the same preprocessing: binarised MNIST and dequantised "
          "8-bit MNIST are different data sets, so rows are ranked only inside their group. A bound is not a "
          "likelihood: a VAE's true log p(x) is higher than its ELBO by an unknown gap, so a bound row can "
          "only lose a comparison unfairly, never win one. And a high likelihood does not mean good samples, "
          "nor the reverse (Goodfellow et al. §20.14; Theis, van den Oord & Bethge 2016).")
PUBLISHED = {  # reference figures from the literature, for the reader's orientation only (not measured here)
    "binarised": "published on binarised MNIST: NADE ≈ 88.9 nats (Larochelle & Murray 2011), a one-layer VAE "
                 "≈ 86.8 nats (Burda et al. 2016, estimated with k = 5000), PixelCNN ≈ 81.3 nats (van den Oord et al. 2016)",
    "dequantised": "published on dequantised 8-bit MNIST: RealNVP-class flows ≈ 1.06 bits/dim, Glow 1.05 "
                   "(Kingma & Dhariwal 2018)",
}


def likelihood_families(families=None) -> dict:
    """The registry's families that give a likelihood."""
    if families is None:
        from models import FAMILIES as families
    return {name: fam for name, fam in families.items() if fam.log_likelihood is not None}


def shipped_checkpoints(family: str, folder: Path) -> list[Path]:
    """Checkpoints in ``folder`` whose card names ``family`` (cards are read; weights only when scored)."""
    found = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        card = path.with_suffix(".json")
        try:
            if json.loads(card.read_text()).get("family") == family:
                found.append(path)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            continue
    return found


def card_metrics(path: Path, meta: dict) -> dict:
    """The held-out metrics on the card beside ``path`` when the card describes these weights (same
    config and step), else {}."""
    try:
        card = json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    same = isinstance(card, dict) and card.get("config") == meta.get("config") and card.get("steps") == meta.get("step")
    return card.get("metrics") or {} if same else {}


def _group(preprocessing: str) -> str:
    p = preprocessing.lower()
    return "binarised" if "binar" in p else "dequantised" if "dequant" in p else preprocessing


def score_checkpoint(family, path: Path, n: int | None) -> list[dict]:
    """The row(s) of one checkpoint: its hook's mean −log p on the first ``n`` test examples."""
    model, config, meta = checkpoint.load(path, {family.name: family})
    tensors, info = family.examples(config, "test")
    x = tensors[0] if n is None else tensors[0][:n]
    dims = x[0].numel()
    preprocessing = info.get("preprocessing") or info.get("title", "unstated")
    takes = inspect.signature(family.log_likelihood).parameters
    takes_k = "k" in takes
    runs = [(ESTIMATES.get(family.likelihood, "exact"),
             {"card": card_metrics(path, meta)} if "card" in takes else {})]  # e.g. an RBM's stored log Z
    if takes_k and family.likelihood == "bound":
        runs.append((f"IWAE k={IWAE_K}", {"k": IWAE_K}))
    rows = []
    for what, kwargs in runs:
        t0 = time.perf_counter()
        log_p = family.log_likelihood(model, x, **kwargs)
        seconds = time.perf_counter() - t0
        nats = float(-log_p.mean())
        rows.append({"family": family.name, "title": family.title, "checkpoint": path.stem,
                     "summary": family.summary(meta["config"]),
                     "kind": family.likelihood, "estimate": what, "preprocessing": preprocessing,
                     "group": _group(preprocessing), "nats": nats, "bits_per_dim": nats / (dims * math.log(2)),
                     "dims": dims, "test_examples": len(x), "seconds": round(seconds, 2)})
    return rows


def table(n: int | None = None, folder: Path | None = None, families=None) -> dict:
    """Every likelihood family's shipped checkpoints scored on the first ``n`` test examples (all when
    None): rows grouped by preprocessing, ranked by nats inside each group."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000):
        raise ValueError(f"Number of test images must be a whole number from 1 to 100000; got {n!r}.")
    folder = Path(folder) if folder else ASSETS / "checkpoints"
    rows = []
    for fam in likelihood_families(families).values():
        for path in shipped_checkpoints(fam.name, folder):
            rows += score_checkpoint(fam, path, n)
    rows.sort(key=lambda r: (r["group"], r["nats"]))
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
        r["rank"] = len(groups[r["group"]])
    return {"rows": rows, "groups": list(groups), "caveat": CAVEAT,
            "published": {g: PUBLISHED[g] for g in groups if g in PUBLISHED},
            "test_examples": n or "all", "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def format_table(result: dict) -> str:
    """The table as plain text, one block per preprocessing group, with the caveat beside it."""
    lines = []
    for group in result["groups"]:
        rows = [r for r in result["rows"] if r["group"] == group]
        lines.append(f"\n== {rows[0]['preprocessing']} ==")
        if group in result.get("published", {}):
            lines.append(f"   ({result['published'][group]})")
        lines.append(f"{'#':>2} {'family':<24} {'checkpoint':<22} {'estimate':<19} {'nats/image':>10} "
                     f"{'bits/dim':>9} {'images':>7}")
        for r in rows:
            lines.append(f"{r['rank']:>2} {r['title'][:24]:<24} {r['checkpoint'][:22]:<22} "
                         f"{(r['estimate'] + (' (bound)' if r['kind'] == 'bound' else ''))[:19]:<19} "
                         f"{r['nats']:>10.2f} {r['bits_per_dim']:>9.4f} {r['test_examples']:>7}")
    lines.append("\nCaveat: " + result["caveat"])
    return "\n".join(lines)


def load_table(path: Path = TABLE) -> dict | None:
    """The table written by the CLI, or None when there is none (or it cannot be read)."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return result if isinstance(result, dict) and "rows" in result else None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Rank every shipped likelihood model on the same held-out images.")
    p.add_argument("--n", type=int, default=None, help="test images per model (default: the whole test set)")
    p.add_argument("--out", type=Path, default=TABLE, help="where to write the JSON (the Likelihoods tab reads it)")
    p.add_argument("--no-write", action="store_true", help="print only")
    a = p.parse_args(argv)
    result = table(a.n)
    print(format_table(result))
    if not a.no_write:
        checkpoint.write_json(a.out, result)
        print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
