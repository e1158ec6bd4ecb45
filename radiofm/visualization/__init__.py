"""Quick-look figures for survey teams (matplotlib with WCSAxes, no display needed)."""

from ._mosaic import plot_mosaic
from ._quicklook import class_colors, plot_tiles, source_regions

__all__ = ["class_colors", "plot_mosaic", "plot_tiles", "source_regions"]
