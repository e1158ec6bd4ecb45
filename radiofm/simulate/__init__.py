"""Simulated MeerKAT-like skies: the embedded default image for demos and scale tests."""

from ._sky import make_radio_sky

__all__ = ["make_radio_sky"]
