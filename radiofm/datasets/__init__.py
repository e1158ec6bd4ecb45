"""Local data sets for training and evaluation, and the leakage guard.

`evaluation_positions` lists every source of the evaluation splits (MiraBest test,
RadioGalaxyDataset valid/test); `exclude_near` drops anything within 1 arcmin of them from
pre-training data. The data loaders for each survey come with the evaluation harness.
"""

from ._leakage import GUARD_RADIUS, data_root, evaluation_positions, exclude_near

__all__ = ["GUARD_RADIUS", "data_root", "evaluation_positions", "exclude_near"]
