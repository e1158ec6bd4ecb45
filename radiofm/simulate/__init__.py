"""Simulated MeerKAT-like skies: the embedded default image for demos and scale tests, and
the true compact-source count of their tiles (`count_true_compact`)."""

from ._counts import COUNT_SNR, count_true_compact
from ._sky import EXAMPLE_SEED, EXAMPLE_SHAPE, make_radio_sky

__all__ = ["COUNT_SNR", "EXAMPLE_SEED", "EXAMPLE_SHAPE", "count_true_compact", "make_radio_sky"]
