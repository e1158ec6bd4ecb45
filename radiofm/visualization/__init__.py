"""Quick-look figures for survey teams (matplotlib with WCSAxes, no display needed)."""

from ._quicklook import class_colors, plot_tiles, source_regions

__all__ = ["class_colors", "plot_tiles", "source_regions"]
