"""Which optional dependencies are installed: one flag each, checked without importing them.

``pip install radiofm`` is the inference path; ``radiofm[train]`` adds torch, timm and onnx;
``radiofm[bdsf]`` adds pyBDSF. Code that needs one of them tests its flag here (and imports
it inside the function that uses it), so the base install never imports torch.
"""

from importlib.util import find_spec

__all__ = ["HAS_BDSF", "HAS_ONNX", "HAS_TIMM", "HAS_TORCH", "TRAIN_EXTRA_HINT"]


def _installed(name):
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # a blocking import hook, or a broken half-import
        return False


#: pyBDSF, the ``bdsf`` extra (source finding; photutils is the fallback).
HAS_BDSF = _installed("bdsf")
#: torch, of the ``train`` extra (training, export, torch baselines of the evaluation).
HAS_TORCH = _installed("torch")
#: timm, of the ``train`` extra (the backbones).
HAS_TIMM = _installed("timm")
#: onnx, of the ``train`` extra (writing ONNX files).
HAS_ONNX = _installed("onnx")
#: What to tell a user who lacks the ``train`` extra.
TRAIN_EXTRA_HINT = "pip install -c constraints.txt 'radiofm[train]'"
