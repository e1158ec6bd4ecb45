"""Where the shared data lives, and the guard that keeps evaluation sources out of training."""

import csv
import os
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

__all__ = ["data_root", "evaluation_positions", "exclude_near", "radiogalaxy_positions"]

# Files that list the sources of the evaluation splits, relative to the data root.
FIRST_MANIFEST = Path("first_fields") / "manifest.csv"
RGZ_POSITIONS = Path("radiogalaxydataset") / "positions.csv"
GUARD_RADIUS = 1 * u.arcmin


def data_root(root=None):
    """The shared data folder: ``root``, else ``$RADIOFM_DATA``, else ``../shared/data``.

    Parameters
    ----------
    root : str or path-like, optional
        An explicit folder.

    Returns
    -------
    root : `~pathlib.Path`

    Raises
    ------
    FileNotFoundError
        The folder does not exist.
    """
    chosen = root or os.environ.get("RADIOFM_DATA") or Path("..") / "shared" / "data"
    path = Path(chosen).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"data folder {path} does not exist; pass its path or set RADIOFM_DATA"
        )
    return path


def evaluation_positions(root=None):
    """Sky positions of every source in an evaluation split.

    The MiraBest test batch (through the FIRST manifest's ``mirabest_split``) and the
    RadioGalaxyDataset valid and test splits: nothing within `GUARD_RADIUS` of these may be
    used for pre-training, probe training or hyper-parameter choice.

    Parameters
    ----------
    root : str or path-like, optional
        The data folder (see `data_root`).

    Returns
    -------
    positions : `~astropy.coordinates.SkyCoord`

    Raises
    ------
    FileNotFoundError
        A file listing evaluation sources is missing (named in the message).
    """
    root = data_root(root)
    ra, dec = [], []
    for relative, split_column, held_out in ((FIRST_MANIFEST, "mirabest_split", {"test"}),
                                             (RGZ_POSITIONS, "split", {"valid", "test"})):
        path = root / relative
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: it lists evaluation sources that must stay out of training"
            )
        with open(path, newline="") as stream:
            for row in csv.DictReader(stream):
                if row[split_column] in held_out:
                    ra.append(float(row["ra_deg"]))
                    dec.append(float(row["dec_deg"]))
    return SkyCoord(ra, dec, unit="deg")


def exclude_near(positions, guard, radius=GUARD_RADIUS):
    """Boolean mask: True where a position lies farther than ``radius`` from every guard one.

    Parameters
    ----------
    positions : `~astropy.coordinates.SkyCoord`
        Candidate training items (field centres, cutout positions, tile centres).
    guard : `~astropy.coordinates.SkyCoord`
        Evaluation sources (see `evaluation_positions`).
    radius : `~astropy.units.Quantity`
        Exclusion radius (default 1 arcmin).

    Returns
    -------
    keep : `~numpy.ndarray` of bool
    """
    if len(positions) == 0 or len(guard) == 0:
        return np.ones(len(positions), dtype=bool)
    _, separation, _ = positions.match_to_catalog_sky(guard)
    return np.asarray(separation > radius)


def radiogalaxy_positions(root=None, *, splits=("train", "valid", "test"),
                          classes=("FRI", "FRII", "Compact", "Bent")):
    """Sky positions of the RadioGalaxyDataset sources of some splits and classes.

    They come from ``radiogalaxydataset/positions.csv``, which lists every source of each
    split but not in the order of the HDF5 file: use them as a set (e.g. for
    `exclude_near`), not image by image.

    Parameters
    ----------
    root : str or path-like, optional
        The data folder (see `data_root`).
    splits : sequence of str
        Any of ``"train"``, ``"valid"``, ``"test"``.
    classes : sequence of str
        Any of ``"FRI"``, ``"FRII"``, ``"Compact"``, ``"Bent"``.

    Returns
    -------
    positions : `~astropy.coordinates.SkyCoord`

    Raises
    ------
    FileNotFoundError
        ``positions.csv`` is missing.
    """
    path = data_root(root) / RGZ_POSITIONS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it lists the RadioGalaxyDataset positions")
    with open(path, newline="") as stream:
        rows = [row for row in csv.DictReader(stream)
                if row["split"] in splits and row["label"] in classes]
    return SkyCoord([float(r["ra_deg"]) for r in rows], [float(r["dec_deg"]) for r in rows],
                    unit="deg")
