"""Local data sets for training and evaluation, and the leakage guard.

Loaders read the shared data root (an argument, ``$RADIOFM_DATA`` or ``../shared/data``),
check archives against their published md5 sums and never download anything:
`load_mirabest` (MBFRConfident, MBFRUncertain or all ten classes), `load_radio_galaxy_dataset`
(FRI / FRII / Compact / Bent; `radio_galaxy_flux` and `radio_galaxy_normalization` put its
stamps on MiraBest's S/N scale),
`load_first_fields` (FITS cutouts in Jy/beam with redshifts)
and `load_mgcls` (MeerKAT cutouts with anomaly scores; `mgcls_flux` and `mgcls_normalization`
put their display stretch back on an S/N scale). Each returns an `ImageSet`.

`evaluation_positions` lists every source of the evaluation splits (MiraBest test,
RadioGalaxyDataset valid/test); `exclude_near` drops anything within 1 arcmin of them from
pre-training and probe-training data; `radiogalaxy_positions` lists RadioGalaxyDataset
sources as a set (its images carry no position).
"""

from ._imageset import ImageSet
from ._leakage import (
    GUARD_RADIUS,
    data_root,
    evaluation_positions,
    exclude_near,
    radiogalaxy_positions,
)
from ._surveys import (
    FIRST_BEAM,
    FIRST_PIXEL,
    MGCLS_NOISE,
    RADIOGALAXY_NOISE,
    RADIOGALAXY_PEAK_SNR,
    cache_dir,
    load_first_fields,
    load_mgcls,
    load_mirabest,
    load_radio_galaxy_dataset,
    mgcls_flux,
    mgcls_normalization,
    radio_galaxy_flux,
    radio_galaxy_normalization,
)

__all__ = [
    "FIRST_BEAM",
    "FIRST_PIXEL",
    "GUARD_RADIUS",
    "MGCLS_NOISE",
    "RADIOGALAXY_NOISE",
    "RADIOGALAXY_PEAK_SNR",
    "ImageSet",
    "cache_dir",
    "data_root",
    "evaluation_positions",
    "exclude_near",
    "load_first_fields",
    "load_mgcls",
    "load_mirabest",
    "load_radio_galaxy_dataset",
    "mgcls_flux",
    "mgcls_normalization",
    "radio_galaxy_flux",
    "radio_galaxy_normalization",
    "radiogalaxy_positions",
]
