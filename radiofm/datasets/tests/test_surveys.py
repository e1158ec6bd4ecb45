"""Loaders of the local evaluation data sets."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy.table import QTable

from radiofm.datasets import (
    MGCLS_NOISE,
    RADIOGALAXY_PEAK_SNR,
    ImageSet,
    cache_dir,
    evaluation_positions,
    exclude_near,
    load_first_fields,
    load_mgcls,
    load_mirabest,
    load_radio_galaxy_dataset,
    mgcls_flux,
    mgcls_normalization,
    radio_galaxy_flux,
    radio_galaxy_normalization,
)
from radiofm.tiling import NormalizationSpec


def _splits(data):
    names, counts = np.unique(np.asarray(data.table["split"]), return_counts=True)
    return dict(zip(names.tolist(), counts.tolist(), strict=True))


def test_imageset_subsets():
    table = QTable({"label": [0, 1, 0, 1, 0, 1], "split": ["train"] * 4 + ["test"] * 2})
    data = ImageSet("toy", np.arange(6 * 4).reshape(6, 2, 2), table, class_names=["a", "b"])
    assert len(data.split("train")) == 4
    assert data.split("train", "test").images.shape == (6, 2, 2)
    small = data.head(2)
    assert _splits(small) == {"test": 2, "train": 2}
    np.testing.assert_array_equal(small.labels, [0, 1, 0, 1])  # evenly spaced, both classes
    assert "train: 2" in repr(small)
    with pytest.raises(ValueError, match="4 images but 6 table rows"):
        ImageSet("bad", np.zeros((4, 2, 2)), table)
    with pytest.raises(ValueError, match=r"images must be \(N, H, W\)"):
        ImageSet("bad", np.zeros((6, 4)), table)
    with pytest.raises(ValueError, match="has no split column"):
        ImageSet("nosplit", np.zeros((1, 2, 2)), QTable({"label": [0]})).split("train")


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RADIOFM_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    assert (tmp_path / "cache").is_dir()


def test_missing_files_are_named(tmp_path):
    for loader, name in ((load_mirabest, "MiraBest_F_batches.tar.gz"),
                         (load_radio_galaxy_dataset, "galaxy_data_h5.zip"),
                         (load_mgcls, "mgcls_protege_192.npz")):
        with pytest.raises(FileNotFoundError, match=name):
            loader(tmp_path)
    with pytest.raises(ValueError, match="unknown MiraBest view 'sure'"):
        load_mirabest(tmp_path, view="sure")


def test_mirabest_views(shared_data):
    confident = load_mirabest(shared_data)
    assert confident.name == "MBFRConfident"
    assert _splits(confident) == {"test": 104, "train": 729}  # Porter & Scaife 2023
    assert confident.images.shape[1:] == (150, 150) and confident.images.dtype == np.uint8
    assert set(np.asarray(confident.table["code"])) == {"100", "102", "104", "200", "201"}
    fri = np.asarray(confident.table["class_name"]) == "FRI"
    np.testing.assert_array_equal(confident.labels, np.where(fri, 0, 1))
    uncertain = load_mirabest(shared_data, view="uncertain")
    assert set(np.asarray(uncertain.table["code"])) == {"110", "112", "210"}
    everything = load_mirabest(shared_data, view="all")
    assert len(everything) == 1256 and len(everything.class_names) == 10
    # positions decoded from the file names are the manifest's
    first = QTable.read(shared_data / "first_fields" / "manifest.csv", format="ascii.csv")
    assert np.isin(np.round(everything.table["sky_center"].ra.deg, 3),
                   np.round(np.asarray(first["ra_deg"]), 3)).all()


def test_mirabest_md5_is_checked(shared_data, tmp_path):
    archive = tmp_path / "mirabest" / "MiraBest_F_batches.tar.gz"
    archive.parent.mkdir()
    shutil.copy(shared_data / "mirabest" / "MiraBest_F_batches.tar.gz", archive)
    with open(archive, "r+b") as stream:
        stream.seek(1000)
        byte = stream.read(1)
        stream.seek(1000)
        stream.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="not the published 7d4e3a623d29db7204bce81676ee8ce2"):
        load_mirabest(tmp_path)


def test_radio_galaxy_dataset(shared_data):
    data = load_radio_galaxy_dataset(shared_data)
    assert data.images.shape == (2158, 300, 300)
    assert _splits(data) == {"test": 200, "train": 1758, "valid": 200}
    assert data.class_names == ("FRI", "FRII", "Compact", "Bent")
    test = data.split("test")
    np.testing.assert_array_equal(np.bincount(test.labels), [50, 50, 50, 50])
    assert (cache_dir() / "galaxy_data_h5.h5").is_file()


def test_processes_unpacking_radio_galaxy_dataset_at_once_each_get_it_whole(
        shared_data, tmp_path, monkeypatch):
    # pytest workers and survey jobs may all meet an empty cache at once: each must read
    # the whole data set, and the cache must hold it whole afterwards
    script = ("import sys; from radiofm.datasets import load_radio_galaxy_dataset; "
              "print(len(load_radio_galaxy_dataset(sys.argv[1])))")
    env = dict(os.environ, RADIOFM_CACHE=str(tmp_path))
    jobs = [subprocess.Popen([sys.executable, "-c", script, str(shared_data)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    for job in jobs:
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
        assert out.strip() == "2158"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["galaxy_data_h5.h5",
                                                                "galaxy_data_h5.md5"]
    unpacked = tmp_path / "galaxy_data_h5.h5"
    written = unpacked.stat().st_mtime_ns
    monkeypatch.setenv("RADIOFM_CACHE", str(tmp_path))
    assert len(load_radio_galaxy_dataset(shared_data)) == 2158
    assert unpacked.stat().st_mtime_ns == written  # its md5 stamp matched: read, not unpacked


def _snr(stamp, spec):
    """The S/N that a stretch gives each pixel of a stamp."""
    stretch = spec.fit(stamp)
    return (stamp - stretch.offset) / (stretch.scale / spec.softening)


def test_radio_galaxy_stamps_read_on_mirabest_snr_scale(shared_data):
    # RadioGalaxyDataset puts its 3-sigma clip level at 0 and keeps no noise: read as they
    # are, every peak sits near S/N 500 and every clip edge near S/N 2. In MiraBest's form
    # they reach the median peak S/N of MBFRConfident's training stamps, the background
    # stays zero flux and the faintest kept pixel is just above 3 sigma
    galaxies = load_radio_galaxy_dataset(shared_data).head(10, by="label")
    raw = galaxies.images[0].astype(np.float32)
    assert raw.min() == 0 and raw[raw > 0].min() == 1  # the clip level at the floor
    snr = NormalizationSpec("snr")
    assert _snr(raw, snr).max() > 400
    flux = radio_galaxy_flux(galaxies.images)
    assert flux.dtype == np.float32 and flux.shape == galaxies.images.shape
    read = _snr(flux[0], radio_galaxy_normalization(snr))
    assert read.max() == pytest.approx(RADIOGALAXY_PEAK_SNR)
    assert read[raw == 0].max() == 0 and read[raw == 1].min() == pytest.approx(3.34, abs=0.01)
    mirabest = load_mirabest(shared_data).split("train")
    typical = np.median([_snr(s.astype(np.float32), snr).max() for s in mirabest.images])
    assert typical == pytest.approx(RADIOGALAXY_PEAK_SNR, rel=0.05)
    assert radio_galaxy_normalization("percentile") == NormalizationSpec("percentile")


def test_first_fields(shared_data):
    data = load_first_fields(shared_data, limit=5)
    assert _splits(data) == {"test": 5, "train": 5}
    assert data.images.shape == (10, 300, 300) and data.images.dtype == np.float32
    assert np.isfinite(data.images).mean() > 0.9
    guard = evaluation_positions(shared_data)
    train = np.asarray(data.table["split"]) == "train"
    assert exclude_near(data.table["sky_center"][train], guard).all()
    assert not exclude_near(data.table["sky_center"][~train], guard).any()
    assert (np.asarray(data.table["redshift"]) > 0).all()
    centres = [wcs.pixel_to_world(149.5, 149.5) for wcs in data.wcs]
    separations = [c.separation(s).arcmin for c, s in zip(centres, data.table["sky_center"],
                                                           strict=True)]
    assert max(separations) < 3  # the manifest position lies inside each 9' field
    assert len(data.subset([0, 3]).wcs) == 2


def test_mgcls(shared_data):
    data = load_mgcls(shared_data)
    assert data.images.shape == (6161, 192, 192)
    scores = np.asarray(data.table["author_score"])
    assert (scores >= 0).sum() == 400 and set(scores[scores >= 0]) == {1, 2, 3, 4, 5}


def test_mgcls_cutouts_read_on_an_snr_scale(shared_data):
    # Read as published (grey levels of a display stretch), a third of the cutouts have no
    # contrast for the "snr" stretch and most others read their source as background. Put
    # back in Jy/beam, every one is read with the survey's noise: the background is zero
    # flux, the faintest kept pixel the 3-sigma clip and the peak the catalogued peak flux
    data = load_mgcls(shared_data).subset(np.arange(0, 6161, 31))
    snr = NormalizationSpec("snr")
    unread = 0
    for cutout in data.images.astype(np.float32):
        try:
            unread += _snr(cutout, snr).max() < 5
        except ValueError:
            unread += 1
    assert unread > len(data) / 2
    peak = data.table["peak_flux"]
    flux = mgcls_flux(data.images, peak)
    assert flux.dtype == np.float32 and flux.shape == data.images.shape
    spec = mgcls_normalization(snr)
    for stamp, cutout, expected in zip(flux, data.images, peak.value / MGCLS_NOISE, strict=True):
        read = _snr(stamp, spec)
        assert read.max() == pytest.approx(expected, rel=1e-4)
        assert read[cutout <= 3].max(initial=0) == 0
        assert read[cutout > 3].min() == pytest.approx(3.0, rel=1e-4)
    assert mgcls_normalization("percentile") == NormalizationSpec("percentile")


def test_mgcls_flux_of_a_cutout_its_source_fills():
    # a source over 80 % of the cutout: still read with the given noise, not the MAD of
    # the source itself
    cutout = np.full((1, 20, 20), 3, np.uint8)
    cutout[0, 2:, :] = np.linspace(4, 255, 18 * 20).reshape(18, 20).astype(np.uint8)
    stamp = mgcls_flux(cutout, [8e-4])[0]
    stretch = mgcls_normalization("snr").fit(stamp)
    assert stretch.offset == 0 and stretch.scale == pytest.approx(MGCLS_NOISE)
    with pytest.raises(ValueError, match="one positive value per cutout"):
        mgcls_flux(cutout, [8e-4, 1e-3])
    with pytest.raises(ValueError, match="one positive value per cutout"):
        mgcls_flux(cutout, [-1.0])
