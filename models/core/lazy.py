"""Lazy imports that stay safe when several visitors' handlers import the same package at once.

Heavy optional packages are imported inside the functions that need them, so the studio starts in
seconds. Two Gradio worker threads importing a package with internal import cycles at the same moment
(scikit-learn: ``sklearn/__init__`` imports ``sklearn.base``, which imports ``sklearn``) can make one
of them see the package half initialised and fail with "cannot import name ... partially initialized
module". One process-wide lock around such imports makes the second thread wait instead.
"""
from __future__ import annotations

import importlib
import threading
from types import ModuleType

_LOCK = threading.RLock()


def module(name: str) -> ModuleType:
    """``importlib.import_module(name)`` under the process-wide import lock."""
    with _LOCK:
        return importlib.import_module(name)
