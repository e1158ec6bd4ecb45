"""Source finding and source catalogues.

`find_sources` runs pyBDSF (the ``bdsf`` extra) or a photutils segmentation finder on any
image `radiofm.image.read_image` accepts; `read_catalog` reads pyBDSF and other catalogues.
Both give one standard QTable (`CATALOG_COLUMNS`): sky position, flux, peak, sizes,
pyBDSF-style S_Code and island id.
"""

from ._catalog import CATALOG_COLUMNS, read_catalog, sky_positions
from ._find import find_sources, position_angles

__all__ = ["CATALOG_COLUMNS", "find_sources", "position_angles", "read_catalog",
           "sky_positions"]
