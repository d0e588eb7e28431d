"""Lazy imports under one lock: several visitors' first calls may import scikit-learn at the same
moment (the Gaussians tab's k-means++ and the RealNVP lab's moons did, on one page load)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RACE = """
import threading
from models.core import lazy
names = ["sklearn.cluster", "sklearn.datasets"] * 4
start, errors = threading.Barrier(len(names)), []
def first_use(name):
    start.wait()
    try:
        lazy.module(name)
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=first_use, args=(n,)) for n in names]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors or "ok")
"""


def test_eight_threads_importing_scikit_learn_at_once_all_succeed():
    out = subprocess.run([sys.executable, "-c", RACE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    # the last line: on CI (the CI variable set) pyfluidsynth, imported by pretty_midi, prints where it found its library
    assert out.stdout.strip().splitlines()[-1:] == ["ok"], out.stdout + out.stderr


def test_the_lazy_users_go_through_the_lock():
    for path in ("models/density/gmm.py", "models/density/flow2d.py", "studio/tabs/paint.py"):
        text = (ROOT / path).read_text()
        assert "from sklearn" not in text and 'lazy.module("sklearn.' in text, path
