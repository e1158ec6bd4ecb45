"""Pre-training data: banks of normalised tiles from each source, mixed with weights.

Every source goes through the project's tiling, resampling and normalisation in the order
inference uses (cut, resample to the tile size, stretch with the parent image's fit), and
through the leakage guard: tiles and cutouts within 1 arcmin (plus half a tile diagonal) of
an evaluation source are dropped before anything is trained.

With the "snr" normalisation the bank keeps the signal-to-noise ratio itself (``normalize``
with ``linear=True``, times the softening): the processing augmentations re-clip and re-noise
it, and the crops then go through ``normalize``'s arcsinh (`RadioMultiCrop`).
"""

import csv
import functools
import inspect
import logging
from pathlib import Path

import numpy as np
import torch
from astropy.coordinates import SkyCoord

from ..datasets import (
    FIRST_BEAM,
    GUARD_RADIUS,
    data_root,
    evaluation_positions,
    exclude_near,
    load_mgcls,
    mgcls_flux,
    mgcls_normalization,
)
from ..tiling import NormalizationSpec, prepare_tiles, tile_image
from ._config import MonitorConfig

__all__ = ["TileBank", "build_tile_bank"]

log = logging.getLogger("radiofm")

KINDS = ("simulated", "npy", "fits", "first", "mgcls", "mirabest")


class TileBank:
    """Normalised tiles grouped by source, sampled with per-source weights.

    Parameters
    ----------
    banks : dict
        Source name -> (N, T, T) float16 array of normalised tiles.
    weights : dict
        Source name -> share of the samples.
    """

    def __init__(self, banks, weights):
        names = [name for name, tiles in banks.items() if len(tiles)]
        if not names:
            raise ValueError("no training tiles: every source is empty after the leakage guard")
        self.names = names
        self.banks = [banks[name] for name in names]
        share = np.array([float(weights[name]) for name in names])
        if (share < 0).any() or share.sum() <= 0:
            raise ValueError(f"source weights must be non-negative with a positive sum: {share}")
        self.share = share / share.sum()
        self.tile_size = self.banks[0].shape[-1]

    def __len__(self):
        return sum(len(bank) for bank in self.banks)

    def sample(self, rng, count):
        """``count`` tiles drawn with replacement: (count, 1, T, T) float32 tensor.

        Parameters
        ----------
        rng : `numpy.random.Generator`
            Draws the sources and the tiles.
        count : int
            Tiles in the batch.
        """
        which = rng.choice(len(self.banks), size=count, p=self.share)
        out = np.empty((count, 1, self.tile_size, self.tile_size), dtype=np.float32)
        for k, bank in enumerate(self.banks):
            slots = np.flatnonzero(which == k)
            out[slots, 0] = bank[rng.integers(0, len(bank), size=len(slots))]
        return torch.from_numpy(out)

    def summary(self):
        """Tiles and sampling share of each source, for logs and model metadata."""
        return {name: {"tiles": len(bank), "share": round(float(s), 4)}
                for name, bank, s in zip(self.names, self.banks, self.share, strict=True)}


def build_tile_bank(data, *, monitor=None):
    """Load every source of a `~radiofm.train.DataConfig` into a `TileBank`.

    Parameters
    ----------
    data : `~radiofm.train.DataConfig`
        Sources, weights, tile size and normalisation.
    monitor : `~radiofm.train.MonitorConfig`, optional
        Its MiraBest carve stays out of a ``"mirabest"`` source (default: the default
        carve).

    Returns
    -------
    bank : `TileBank`
    """
    banks, weights = {}, {}
    guard = None
    for index, source in enumerate(data.sources):
        options = dict(source)
        kind = options.pop("kind", None)
        weight = options.pop("weight", 1.0)
        name = f"{kind}-{index}"
        if kind not in KINDS:
            raise ValueError(f"unknown data source kind {kind!r}; use one of {KINDS}")
        reader = {"simulated": _simulated_tiles, "npy": _npy_tiles, "fits": _fits_tiles,
                  "first": _first_tiles, "mgcls": _mgcls_tiles,
                  "mirabest": functools.partial(_mirabest_tiles,
                                                monitor=monitor or MonitorConfig())}[kind]
        accepted = [p for p in inspect.signature(reader).parameters
                    if p not in ("data", "guard", "monitor")]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"data source {index} ({kind!r}) does not take {unknown}; its "
                             f"options are {accepted + ['kind', 'weight']}")
        if kind in ("simulated", "npy"):
            tiles = reader(data, **options)
        else:
            if guard is None:
                guard = evaluation_positions(data.root or None)
            tiles = reader(data, guard, **options)
        finite = np.isfinite(tiles).reshape(len(tiles), -1).all(axis=1)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"training source {name}: {int((~finite).sum())} of {len(tiles)} "
                             f"tiles hold NaN or inf values (the first is tile {first}); blank "
                             "or drop them before training")
        banks[name] = _to_float16(tiles, name)
        weights[name] = weight
        log.info("training source %s: %d tiles, weight %g", name, len(tiles), weight)
    return TileBank(banks, weights)


def _to_float16(tiles, name):
    """Tiles as the bank stores them, float16; S/N values beyond its range (65504: a bright
    source in a deep MeerKAT field) are clipped to it, not turned into inf."""
    limit = float(np.finfo(np.float16).max)
    beyond = np.abs(tiles) > limit
    if beyond.any():
        log.info("training source %s: %d pixels in %d tiles beyond +-%g clipped to it (float16 "
                 "bank)", name, int(beyond.sum()), int(beyond.any(axis=(1, 2)).sum()), limit)
    return np.clip(tiles, -limit, limit).astype(np.float16)


def _normalised_tiles(image, data, guard=None, tile_pixels=None, overlap=0):
    """Guarded tiles of ``tile_pixels`` (default: the tile size) overlapping by ``overlap``
    pixels, resampled to the tile size, then normalised with the fit on the whole image."""
    tiles = tile_image(image, tile_pixels or data.tile_size, overlap=overlap, min_valid=0.95)
    stretch = tiles.fit_normalization(data.normalization)
    keep = np.ones(len(tiles), dtype=bool)
    if guard is not None:
        margin = tiles.tile_angle * np.sqrt(0.5) + GUARD_RADIUS
        keep = exclude_near(tiles.table["sky_center"], guard, margin)
    out = np.empty((int(keep.sum()), data.tile_size, data.tile_size), dtype=np.float32)
    for k, tile_id in enumerate(np.flatnonzero(keep)):
        out[k] = _prepare(tiles.read_tile(tile_id)[None], stretch, data)[0]
    return out


def _prepare(raw, stretch, data):
    """`~radiofm.tiling.prepare_tiles`, stopping for "snr" at the S/N it takes the arcsinh of
    (see the module doc)."""
    spec = NormalizationSpec.from_value(data.normalization)
    if spec.method != "snr":
        return prepare_tiles(raw, stretch, data.tile_size)
    out = prepare_tiles(raw, stretch, data.tile_size, linear=True)
    out *= np.float32(spec.softening)
    return out


def _simulated_tiles(data, fields=4, size=1024, seed=0):
    from ..simulate import make_radio_sky

    parts = [_normalised_tiles(make_radio_sky((size, size), seed=seed + k)[0], data)
             for k in range(fields)]
    return np.concatenate(parts)


def _npy_tiles(data, path):
    """Tiles already cut and normalised, (N, T, T) in a ``.npy`` file (no sky positions:
    their maker answers for the leakage guard)."""
    tiles = np.load(path)
    if tiles.ndim != 3 or tiles.shape[1:] != (data.tile_size, data.tile_size):
        raise ValueError(f"{path} holds shape {tiles.shape}; expected (N, {data.tile_size}, "
                         f"{data.tile_size}) for data.tile_size = {data.tile_size}")
    return tiles


def _fits_tiles(data, guard, path, pattern="*.fits*", tile_pixels=None, overlap=0):
    files = sorted(Path(path).glob(pattern))
    if not files:
        raise ValueError(f"no FITS image matches {pattern} in {path}")
    return _files_tiles(data, guard, files, tile_pixels, overlap)


def _files_tiles(data, guard, files, tile_pixels, overlap, **image_options):
    """Guarded, normalised tiles of each image file; unreadable or blank files are skipped."""
    from ..image import read_image

    parts = []
    for file in files:
        try:
            with read_image(file, **image_options) as image:
                parts.append(_normalised_tiles(image, data, guard, tile_pixels, overlap))
        except ValueError as error:
            log.info("skipping %s: %s", Path(file).name, error)
    if not parts:
        raise ValueError(f"none of the {len(files)} image files gave tiles")
    return np.concatenate(parts)


def _first_tiles(data, guard, limit=None, tile_pixels=None, overlap=0):
    """FIRST fields: whole fields near an evaluation source go, then tiles are guarded too.

    Each field is centred on its MiraBest source: 150-pixel tiles of a 300-pixel field cut
    that source in four unless they overlap (``overlap=75`` adds the centred tile)."""
    folder = data_root(data.root or None) / "first_fields"
    with open(folder / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    centres = SkyCoord([float(r["ra_deg"]) for r in rows], [float(r["dec_deg"]) for r in rows],
                       unit="deg")
    rows = [row for row, ok in zip(rows, exclude_near(centres, guard), strict=True) if ok]
    files = [folder / row["file"] for row in rows][:limit]
    # FIRST files carry no beam keywords
    return _files_tiles(data, guard, files, tile_pixels, overlap, beam=FIRST_BEAM)


def _mgcls_tiles(data, guard, limit=None):
    """MGCLS cutouts put back on an S/N scale (`~radiofm.datasets.mgcls_flux`), resized to
    the tile size and normalised as `~radiofm.datasets.mgcls_normalization` says."""
    cutouts = load_mgcls(data.root or None)
    chosen = np.flatnonzero(exclude_near(cutouts.table["sky_center"], guard))[:limit]
    spec = mgcls_normalization(data.normalization)
    parts = [np.zeros((0, data.tile_size, data.tile_size), np.float32)]
    for start in range(0, len(chosen), 256):  # float32 copies of all 6161 would take 0.9 GB
        block = chosen[start:start + 256]
        stamps = mgcls_flux(cutouts.images[block], cutouts.table["peak_flux"][block])
        parts.append(_stamp_tiles(data, stamps, np.arange(len(block)), spec=spec))
    return np.concatenate(parts)


def _stamp_tiles(data, images, chosen, spec=None):
    """Stamps resized to the tile size, each normalised with its own fit of ``spec`` (default:
    the data's normalisation; constant stamps: 0)."""
    spec = NormalizationSpec.from_value(data.normalization if spec is None else spec)
    out = np.zeros((len(chosen), data.tile_size, data.tile_size), np.float32)
    for slot, k in enumerate(chosen):
        try:
            stretch = spec.fit(images[k])
        except ValueError:  # a constant cutout has nothing to learn from
            continue
        out[slot] = _prepare(images[k][None], stretch, data)[0]
    return out


def _mirabest_tiles(data, guard, limit=None, *, monitor):
    """MiraBest TRAIN stamps (every class code), less the monitor's carve and any stamp near
    an evaluation source: FIRST at 1.8"/px, clipped at 3 sigma (the "snr" fallback)."""
    from ..datasets import load_mirabest
    from ._monitor import monitor_carve

    mirabest = load_mirabest(data.root or None, view="all")
    table = mirabest.table
    fit, valid = monitor_carve(table, monitor.mirabest_fit, monitor.mirabest_valid)
    keep = (np.asarray(table["split"]) == "train") & exclude_near(table["sky_center"], guard)
    keep[np.concatenate([fit, valid])] = False
    return _stamp_tiles(data, mirabest.images, np.flatnonzero(keep)[:limit])
