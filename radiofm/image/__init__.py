"""Reading radio images: one parser for every input a pipeline hands over.

`read_image` accepts paths (plain, tile-compressed or gzipped FITS), HDULists, image HDUs,
NDData/CCDData and (array, WCS) pairs, and returns a `RadioImage` holding a 2-D plane, its
celestial WCS, beam, frequency, unit and header. Every header quirk of CASA, WSClean, AIPS,
SkyView and the MeerKAT pipelines is handled here and nowhere else.
"""

from ._header import Beam
from ._radio_image import RadioImage
from ._read import read_image
from ._warnings import InputWarning

__all__ = ["Beam", "InputWarning", "RadioImage", "read_image"]
