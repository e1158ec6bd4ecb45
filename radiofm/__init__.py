"""radiofm: self-supervised foundation models for radio-astronomy survey pipelines."""

try:
    from ._version import version as __version__
except ImportError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

from .image import RadioImage, read_image
from .tiling import tile_image

__all__ = ["RadioImage", "__version__", "read_image", "tile_image"]
