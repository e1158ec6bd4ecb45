"""radiofm: self-supervised foundation models for radio-astronomy survey pipelines."""

from ._provenance import radiofm_version

__version__ = radiofm_version()

from .image import RadioImage, read_image
from .tiling import tile_image

#: Pipeline functions of `radiofm.inference`, imported on first use (they load onnxruntime).
_INFERENCE = ("classify_morphology", "count_sources", "embed_image", "embed_sources")

__all__ = ["RadioImage", "__version__", "read_image", "tile_image", *_INFERENCE]


def __getattr__(name):
    if name in _INFERENCE:
        from . import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'radiofm' has no attribute {name!r}")
