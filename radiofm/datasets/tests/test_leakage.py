"""The leakage guard keeps evaluation sources out of training data."""

import csv

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from radiofm.datasets import GUARD_RADIUS, data_root, evaluation_positions, exclude_near


def test_exclude_near_uses_the_radius():
    guard = SkyCoord([10.0], [20.0], unit="deg")
    candidates = SkyCoord([10.0, 10.0, 10.0, 50.0], [20.0, 20.0 + 59 / 3600, 20.0 + 61 / 3600,
                                                      20.0], unit="deg")
    assert GUARD_RADIUS == 1 * u.arcmin
    np.testing.assert_array_equal(exclude_near(candidates, guard), [False, False, True, True])
    np.testing.assert_array_equal(exclude_near(candidates, guard, 2 * u.arcmin),
                                  [False, False, False, True])
    assert exclude_near(candidates, guard[:0]).all()


def test_data_root_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("RADIOFM_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="does not exist; pass its path or set RADIO"):
        data_root(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="manifest.csv is missing: it lists evaluation"):
        evaluation_positions(tmp_path)


def test_evaluation_sources_of_the_shared_data(shared_data):
    guard = evaluation_positions(shared_data)
    with open(shared_data / "first_fields" / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    split = np.array([r["mirabest_split"] for r in rows])
    fields = SkyCoord([float(r["ra_deg"]) for r in rows], [float(r["dec_deg"]) for r in rows],
                      unit="deg")
    keep = exclude_near(fields, guard)
    assert (split == "test").sum() == 157
    assert not keep[split == "test"].any(), "every MiraBest test field is held out"
    assert keep[split == "train"].mean() > 0.5  # most training fields stay usable
    with open(shared_data / "radiogalaxydataset" / "positions.csv", newline="") as stream:
        held = sum(r["split"] in ("valid", "test") for r in csv.DictReader(stream))
    assert len(guard) == 157 + held
