"""Quick-look figures for survey teams (matplotlib with WCSAxes, no display needed)."""

from ._quicklook import plot_tiles

__all__ = ["plot_tiles"]
