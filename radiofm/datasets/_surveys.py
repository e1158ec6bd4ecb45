"""Loaders for the local evaluation data: MiraBest, RadioGalaxyDataset, FIRST fields, MGCLS.

Every loader reads the files of the data root (`data_root`), checks archives against their
published md5 sums, and never downloads anything.
"""

import csv
import hashlib
import logging
import os
import pickle
import re
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable

from .._atomic import atomic_path
from ..tiling import NormalizationSpec
from ._imageset import ImageSet
from ._leakage import data_root, evaluation_positions, exclude_near

__all__ = ["MGCLS_NOISE", "RADIOGALAXY_NOISE", "RADIOGALAXY_PEAK_SNR", "cache_dir",
           "load_first_fields", "load_mgcls", "load_mirabest", "load_radio_galaxy_dataset",
           "mgcls_flux", "mgcls_normalization", "radio_galaxy_flux",
           "radio_galaxy_normalization"]

log = logging.getLogger("radiofm")

MIRABEST_ARCHIVE = Path("mirabest") / "MiraBest_F_batches.tar.gz"
MIRABEST_MD5 = "7d4e3a623d29db7204bce81676ee8ce2"
MIRABEST_CODES = ("100", "102", "104", "110", "112", "200", "201", "210", "300", "310")
# The standard two-class views (Porter & Scaife 2023): label index -> FRI (0) or FRII (1).
MIRABEST_VIEWS = {
    "confident": {0: 0, 1: 0, 2: 0, 5: 1, 6: 1},
    "uncertain": {3: 0, 4: 0, 7: 1},
}
RGZ_ARCHIVE = Path("radiogalaxydataset") / "galaxy_data_h5.zip"
RGZ_MD5 = "37659bb2d4bf094fe6ccb9c012d3f163"
RGZ_CLASSES = ("FRI", "FRII", "Compact", "Bent")
#: The peak S/N that RadioGalaxyDataset stamps are given (`radio_galaxy_flux`): the median
#: peak S/N of the MBFRConfident training stamps (FIRST sources of the same kind, whose noise
#: the clipped-stamp fallback recovers from their 3-sigma clip level), rounded.
RADIOGALAXY_PEAK_SNR = 90.0
#: The level, in noise sigma, below which RadioGalaxyDataset's maker clipped FIRST.
RGZ_CLIP_SIGMA = 3.0
#: The noise of `radio_galaxy_flux` stamps, in grey levels of the published stamps: the peak
#: (255 above the clip level) is then at S/N `RADIOGALAXY_PEAK_SNR`.
RADIOGALAXY_NOISE = 255.0 / (RADIOGALAXY_PEAK_SNR - RGZ_CLIP_SIGMA)
FIRST_FOLDER = Path("first_fields")
FIRST_PIXEL = 1.8 * u.arcsec
FIRST_BEAM = 5.4 * u.arcsec
MGCLS_ARCHIVE = Path("mgcls_protege") / "mgcls_protege_192.npz"
MGCLS_CATALOGUE = Path("mgcls_protege") / "protege_catalogue.csv"
#: The grey level of the MGCLS cutouts' background: the colour map's darkest colour, which
#: every cutout reaches (about 30 % of all pixels sit on it, none below it).
MGCLS_FLOOR_GREY = 3
#: The noise assumed for the MGCLS cutouts, Jy/beam: the typical rms of MGCLS's
#: full-resolution images, 3-5 uJy/beam (Knowles et al. 2022), whose islands they frame.
MGCLS_NOISE = 4e-6
#: The level, in noise sigma, assumed for the cutouts' floor (as MiraBest's and
#: RadioGalaxyDataset's makers clipped theirs).
MGCLS_CLIP_SIGMA = 3.0


def cache_dir():
    """Folder for derived files (source catalogues, unpacked archives): ``$RADIOFM_CACHE``,
    else ``~/.cache/radiofm``; created when missing."""
    path = Path(os.environ.get("RADIOFM_CACHE") or Path.home() / ".cache" / "radiofm")
    path = path.expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _require(path, what):
    if not path.is_file():
        raise FileNotFoundError(f"{what} needs {path}, which is missing (data root: set "
                                "RADIOFM_DATA or pass root=)")
    return path


def _check_md5(path, expected):
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ValueError(f"{path} has md5 {digest.hexdigest()}, not the published "
                         f"{expected}: the file is damaged or a different version")


def load_mirabest(root=None, *, view="confident"):
    """MiraBest FRI/FRII images (Porter & Scaife 2023) with the official train/test split.

    Parameters
    ----------
    root : str or path-like, optional
        The data root (see `data_root`); reads ``mirabest/MiraBest_F_batches.tar.gz``.
    view : {"confident", "uncertain", "all"}
        ``"confident"`` is MBFRConfident (FRI = codes 100/102/104, FRII = 200/201),
        ``"uncertain"`` MBFRUncertain (FRI = 110/112, FRII = 210), ``"all"`` the ten
        MiraBest codes as classes.

    Returns
    -------
    data : `ImageSet`
        uint8 images (N, 150, 150) at 1.8 arcsec per pixel; table columns ``label``,
        ``class_name``, ``code``, ``split`` (train/test), ``sky_center``, ``redshift``,
        ``las`` (largest angular size) and ``filename``.
    """
    if view not in (*MIRABEST_VIEWS, "all"):
        raise ValueError(f"unknown MiraBest view {view!r}; use 'confident', 'uncertain' or "
                         "'all'")
    path = _require(data_root(root) / MIRABEST_ARCHIVE, "MiraBest")
    _check_md5(path, MIRABEST_MD5)
    images, labels, names, splits = [], [], [], []
    with tarfile.open(path) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            batch = Path(member.name).name
            if not (batch.startswith("data_batch") or batch == "test_batch"):
                continue
            content = pickle.load(archive.extractfile(member), encoding="latin1")
            images.append(np.asarray(content["data"], dtype=np.uint8).reshape(-1, 150, 150))
            labels.extend(content["labels"])
            names.extend(content["filenames"])
            splits.extend(["test" if batch == "test_batch" else "train"] * len(content["labels"]))
    images = np.concatenate(images)
    labels = np.asarray(labels)
    if view == "all":
        keep, mapped, class_names = np.ones(len(labels), bool), labels, MIRABEST_CODES
    else:
        mapping = MIRABEST_VIEWS[view]
        keep = np.isin(labels, list(mapping))
        mapped = np.array([mapping.get(int(label), -1) for label in labels])
        class_names = ("FRI", "FRII")
    parsed = [_parse_mirabest_name(name) for name in names]
    table = QTable({
        "label": mapped,
        "class_name": [class_names[k] if k >= 0 else "" for k in mapped],
        "code": [MIRABEST_CODES[k] for k in labels],
        "split": splits,
        "sky_center": SkyCoord([p[0] for p in parsed], [p[1] for p in parsed], unit="deg"),
        "redshift": [p[2] for p in parsed],
        "las": [p[3] for p in parsed] * u.arcsec,
        "filename": names,
    })
    name = {"confident": "MBFRConfident", "uncertain": "MBFRUncertain", "all": "MiraBest"}[view]
    return ImageSet(name, images[keep], table[keep], class_names=class_names,
                    pixel_scale=FIRST_PIXEL)


def _parse_mirabest_name(name):
    """(ra, dec, z, las) from a file name like ``100_010.451-009.284_0.0529_0080.60.png``."""
    match = re.match(r"\d+_(\d+\.\d+)([+-]\d+\.\d+)_(\d+\.\d+)_(\d+\.\d+)", Path(name).name)
    if not match:
        raise ValueError(f"MiraBest file name {name!r} does not encode class_RA+Dec_z_LAS")
    return tuple(float(group) for group in match.groups())


def load_radio_galaxy_dataset(root=None):
    """RadioGalaxyDataset (Griese et al. 2023): FRI, FRII, Compact and Bent sources.

    The HDF5 file is unpacked from ``radiogalaxydataset/galaxy_data_h5.zip`` into
    `cache_dir` on first use.

    Parameters
    ----------
    root : str or path-like, optional
        The data root (see `data_root`).

    Returns
    -------
    data : `ImageSet`
        uint8 images (N, 300, 300); table columns ``label``, ``class_name`` and ``split``
        (the literature train / valid / test split), and ``index`` (the HDF5 group number).
    """
    try:
        import h5py
    except ImportError as error:
        raise ImportError("RadioGalaxyDataset needs h5py: pip install h5py") from error
    archive = _require(data_root(root) / RGZ_ARCHIVE, "RadioGalaxyDataset")
    unpacked = cache_dir() / "galaxy_data_h5.h5"
    stamp = unpacked.with_suffix(".md5")
    if not (unpacked.is_file() and stamp.is_file() and stamp.read_text() == RGZ_MD5):
        _check_md5(archive, RGZ_MD5)
        # A partial file of this process's own, so that processes unpacking at once (pytest
        # workers, survey jobs) never write into one file.
        with zipfile.ZipFile(archive) as bundle, atomic_path(unpacked, overwrite=True) as partial:
            with bundle.open("galaxy_data_h5.h5") as source, open(partial, "wb") as target:
                for block in iter(lambda: source.read(1 << 22), b""):
                    target.write(block)
        stamp.write_text(RGZ_MD5)
    with h5py.File(unpacked, "r") as store:
        count = len(store)
        images = np.empty((count, 300, 300), dtype=np.uint8)
        labels = np.empty(count, dtype=int)
        splits = []
        for index in range(count):
            group = store[f"data_{index}"]
            images[index] = group["Img"][()]
            labels[index] = int(group["Label_literature"][()])
            split = group["Split_literature"][()]
            splits.append(split.decode() if isinstance(split, bytes) else str(split))
    table = QTable({"label": labels, "class_name": [RGZ_CLASSES[k] for k in labels],
                    "split": splits, "index": np.arange(count)})
    return ImageSet("RadioGalaxyDataset", images, table, class_names=RGZ_CLASSES)


def radio_galaxy_flux(images):
    """RadioGalaxyDataset stamps in MiraBest's convention: zero below the clip, flux above.

    RadioGalaxyDataset's maker clipped FIRST at 3 sigma and rescaled each stamp so that the
    clip level is 0 and the peak 255, which leaves no trace of the noise and puts the
    background on the clip level. MiraBest keeps zero flux at 0 and the clip level as the
    smallest value above it. Shifting every pixel above the floor up by the clip level, in
    units where the noise is `RADIOGALAXY_NOISE`, gives the MiraBest form: the background is
    zero flux and the peak sits at S/N `RADIOGALAXY_PEAK_SNR`, the median of MiraBest's
    training stamps, so both samples (and stamps cut from a real image, floored at 3 sigma)
    reach a model on one S/N scale. Read them with `radio_galaxy_normalization`.

    Parameters
    ----------
    images : array-like
        (N, H, W) RadioGalaxyDataset stamps (uint8, 0 at the clip level).

    Returns
    -------
    stamps : `~numpy.ndarray`
        (N, H, W) float32.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.datasets import RADIOGALAXY_NOISE, radio_galaxy_flux
    >>> stamp = radio_galaxy_flux(np.array([[[0, 1, 255]]], dtype=np.uint8))[0, 0]
    >>> [round(float(value), 2) for value in stamp / RADIOGALAXY_NOISE]  # S/N
    [0.0, 3.34, 90.0]
    """
    images = np.asarray(images, dtype=np.float32)
    return np.where(images > 0, images + np.float32(RGZ_CLIP_SIGMA * RADIOGALAXY_NOISE),
                    np.float32(0.0))


def _clipped_normalization(normalization, noise, clip_sigma, floor_fraction=None):
    """The "snr" stretch read through the clipped-stamp fallback with a known noise
    (``floor_fraction`` None keeps the stretch's own)."""
    spec = NormalizationSpec.from_value(normalization)
    if spec.method != "snr":
        return spec
    if floor_fraction is None:
        floor_fraction = spec.floor_fraction
    return replace(spec, floor="zero", clip_sigma=clip_sigma, noise=noise,
                   floor_fraction=floor_fraction)


def radio_galaxy_normalization(normalization):
    """A model's stretch as `radio_galaxy_flux` stamps need it: for "snr", the clipped-stamp
    fallback with the noise given (`RADIOGALAXY_NOISE`); other methods unchanged.

    Parameters
    ----------
    normalization : `~radiofm.tiling.NormalizationSpec`, str or dict
        The model's stretch.

    Returns
    -------
    normalization : `~radiofm.tiling.NormalizationSpec`

    Examples
    --------
    >>> from radiofm.datasets import RADIOGALAXY_NOISE, radio_galaxy_normalization
    >>> radio_galaxy_normalization("snr").noise == RADIOGALAXY_NOISE
    True
    >>> radio_galaxy_normalization("percentile").method
    'percentile'
    """
    return _clipped_normalization(normalization, RADIOGALAXY_NOISE, RGZ_CLIP_SIGMA)


def mgcls_flux(images, peak_flux):
    """MGCLS cutouts in Jy/beam, in MiraBest's convention: zero below the clip, flux above.

    The published cutouts are a display stretch of the sky (uint8 from an inverted colour
    map): the background sits on grey `MGCLS_FLOOR_GREY` and the island's peak near 255,
    with no noise left to measure, so the "snr" stretch cannot read them as they are (it
    takes the source for the background or finds no contrast). Each cutout's catalogued
    peak flux fixes its scale: the floor becomes zero flux, the first grey level above it
    the clip level (`MGCLS_CLIP_SIGMA` times `MGCLS_NOISE`) and the cutout's brightest grey
    level its peak flux, linearly in between (the display stretch is monotonic but not
    linear, so intermediate levels are approximate). Read them with `mgcls_normalization`.

    Parameters
    ----------
    images : array-like
        (N, H, W) MGCLS cutouts (grey levels, `load_mgcls`).
    peak_flux : `~astropy.units.Quantity` or array-like
        (N,) catalogued peak flux of each cutout (Jy/beam when a bare number).

    Returns
    -------
    stamps : `~numpy.ndarray`
        (N, H, W) float32 in Jy/beam.

    Raises
    ------
    ValueError
        ``peak_flux`` does not give one positive value per cutout.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.datasets import MGCLS_NOISE, mgcls_flux
    >>> cutout = np.array([[[3, 4, 255]]], dtype=np.uint8)
    >>> stamp = mgcls_flux(cutout, [400e-6])[0, 0]
    >>> [round(float(value), 2) for value in stamp / MGCLS_NOISE]  # S/N
    [0.0, 3.0, 100.0]
    """
    images = np.asarray(images, dtype=np.float32)
    if isinstance(peak_flux, u.Quantity):
        peak_flux = peak_flux.to_value(u.Jy / u.beam)
    peak = np.asarray(peak_flux, dtype=np.float64).reshape(-1)
    if peak.shape != images.shape[:1] or not np.all(np.isfinite(peak) & (peak > 0)):
        raise ValueError(f"peak_flux needs one positive value per cutout ({len(images)}), got "
                         f"{np.asarray(peak_flux).shape} values")
    clip = MGCLS_CLIP_SIGMA * MGCLS_NOISE
    lowest = np.float32(MGCLS_FLOOR_GREY + 1)
    top = np.maximum(images.reshape(len(images), -1).max(axis=1), lowest + 1)[:, None, None]
    step = (np.maximum(peak, clip)[:, None, None] - clip) / (top - lowest)
    flux = clip + (images - lowest) * step
    return np.where(images > MGCLS_FLOOR_GREY, flux, 0.0).astype(np.float32)


def mgcls_normalization(normalization):
    """A model's stretch as `mgcls_flux` stamps need it: for "snr", the clipped-stamp
    fallback with the noise given (`MGCLS_NOISE`) for every cutout, however much of it the
    source fills; other methods unchanged.

    Parameters
    ----------
    normalization : `~radiofm.tiling.NormalizationSpec`, str or dict
        The model's stretch.

    Returns
    -------
    normalization : `~radiofm.tiling.NormalizationSpec`

    Examples
    --------
    >>> from radiofm.datasets import MGCLS_NOISE, mgcls_normalization
    >>> mgcls_normalization("snr").noise == MGCLS_NOISE
    True
    """
    return _clipped_normalization(normalization, MGCLS_NOISE, MGCLS_CLIP_SIGMA, 0.0)


def _first_manifest(root):
    path = _require(data_root(root) / FIRST_FOLDER / "manifest.csv", "the FIRST fields")
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def load_first_fields(root=None, *, limit=None):
    """The VLA FIRST fields behind MiraBest: 300 x 300 pixel cutouts in Jy/beam.

    A field is in the ``"test"`` split when its centre lies within 1 arcmin of an evaluation
    source (`evaluation_positions`), else ``"train"``. Fields without a finite pixel are left
    out (one is entirely blank).

    Parameters
    ----------
    root : str or path-like, optional
        The data root (see `data_root`).
    limit : int, optional
        Read only this many fields of each split (evenly spaced), for quick runs.

    Returns
    -------
    data : `ImageSet`
        float32 images (N, 300, 300) at 1.8 arcsec per pixel (NaN = blank) with their WCS
        (``data.wcs``); table columns
        ``file``, ``code`` (MiraBest class code), ``sky_center``, ``redshift``, ``las``,
        ``mirabest_split`` and ``split``.
    """
    from ..image import read_image

    root = data_root(root)
    rows = _first_manifest(root)
    centres = SkyCoord([float(r["ra_deg"]) for r in rows], [float(r["dec_deg"]) for r in rows],
                       unit="deg")
    splits = np.where(exclude_near(centres, evaluation_positions(root)), "train", "test")
    table = QTable({
        "file": [r["file"] for r in rows],
        "code": [r["mirabest_code"] for r in rows],
        "sky_center": centres,
        "redshift": [float(r["redshift"]) for r in rows],
        "las": [float(r["las_arcsec"]) for r in rows] * u.arcsec,
        "mirabest_split": [r["mirabest_split"] for r in rows],
        "split": splits,
    })
    placeholder = ImageSet("FIRST", np.zeros((len(rows), 1, 1), np.float32), table)
    table = placeholder.head(limit).table
    images, keep, wcs = np.full((len(table), 300, 300), np.nan, dtype=np.float32), [], []
    for k, name in enumerate(table["file"]):
        try:
            with read_image(_require(root / FIRST_FOLDER / name, "the FIRST fields"),
                            beam=FIRST_BEAM) as image:
                images[k] = image.data
                wcs.append(image.wcs)
            keep.append(k)
        except ValueError as error:
            log.info("skipping FIRST field %s: %s", name, error)
    return ImageSet("FIRST", images[keep], table[keep], pixel_scale=FIRST_PIXEL, wcs=wcs)


def load_mgcls(root=None):
    """MeerKAT MGCLS cutouts (Lochner & Rudnick 2024) with their anomaly scores.

    Parameters
    ----------
    root : str or path-like, optional
        The data root (see `data_root`).

    Returns
    -------
    data : `ImageSet`
        uint8 display-stretched images (6161, 192, 192), no WCS; table columns
        ``protege_rank``, ``sky_center``, ``author_score`` (1-5 for the 400 cutouts the
        authors scored, -1 otherwise), ``protege_score``, ``peak_flux`` and
        ``original_image``.
    """
    root = data_root(root)
    archive = _require(root / MGCLS_ARCHIVE, "the MGCLS cutouts")
    catalogue = _require(root / MGCLS_CATALOGUE, "the MGCLS cutouts")
    with np.load(archive) as content:
        images, ranks = content["images"], content["protege_rank"]
    with open(catalogue, newline="") as stream:
        by_rank = {int(row["protege_rank"]): row for row in csv.DictReader(stream)}
    missing = [int(r) for r in ranks if int(r) not in by_rank]
    if missing:
        raise ValueError(f"{catalogue} lacks {len(missing)} cutouts, e.g. rank {missing[0]}")
    rows = [by_rank[int(r)] for r in ranks]
    table = QTable({
        "protege_rank": np.asarray(ranks, dtype=int),
        "sky_center": SkyCoord([float(r["ra"]) for r in rows], [float(r["dec"]) for r in rows],
                               unit="deg"),
        "author_score": [int(float(r["author_ML_score"])) for r in rows],
        "protege_score": [float(r["protege_score"]) for r in rows],
        "peak_flux": [float(r["peak_flux"]) for r in rows] * u.Jy / u.beam,
        "original_image": [r["original_image"] for r in rows],
    })
    return ImageSet("MGCLS", images, table)
