"""The bad-input suite: every crafted bad or quirky input gets a correct result or one clear
error (a specific exception class and message), never a silently wrong answer.

Each table row is one case: a builder that crafts the input in ``tmp_path`` and runs the
entry point, and the expected outcome: ``OK`` with a check of the result, or an exception
class with a message fragment. Model cases live in ``test_bad_models.py`` (they need the
tiny exported model), checkpoints in ``radiofm/train/tests/test_checkpoint.py``.
"""

import bz2
import gzip
import logging
import re
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from radiofm.image import InputWarning, read_image
from radiofm.sources import find_sources, read_catalog
from radiofm.tests.helpers import sky_header, write_image
from radiofm.tiling import tile_image

OK = "ok"


def _run(case, tmp_path):
    """Run one case: (builder, expected, fragment_or_check)."""
    build, expected, detail = case
    if expected is OK:
        result = build(tmp_path)
        assert detail(result), f"wrong result: {result!r}"
        return
    with pytest.raises(expected) as error:
        build(tmp_path)
    message = str(error.value)
    assert re.search(detail, message), message
    assert "\n" not in message.strip(), f"not one line: {message!r}"


# ---------------------------------------------------------------- images

def _noise(shape=(64, 64), seed=0):
    return np.random.default_rng(seed).normal(0, 1e-4, shape).astype(np.float32)


def _image_file(tmp_path, name="image.fits", header=None, data=None):
    header = sky_header(64, 64) if header is None else header
    return write_image(tmp_path / name, header, _noise() if data is None else data)


def _header(**changes):
    header = sky_header(64, 64)
    for key, value in changes.items():
        header[key] = value
    return header


def _gz(tmp_path, change=None, opener=gzip):
    plain = _image_file(tmp_path).read_bytes()
    packed = bytearray(opener.compress(plain))
    if change is not None:
        packed = change(packed)
    path = tmp_path / ("image.fits.gz" if opener is gzip else "image.fits.bz2")
    path.write_bytes(bytes(packed))
    return read_image(path)


def _flip_middle(raw):
    raw[len(raw) // 2] ^= 0x01
    return raw


def _gz_truncated_fits(tmp_path):
    plain = _image_file(tmp_path).read_bytes()
    path = tmp_path / "short.fits.gz"
    path.write_bytes(gzip.compress(plain[:6000]))
    return read_image(path)


def _duplicate(tmp_path, keyword, first, last):
    header = sky_header(64, 64)
    header["BMAJ"] = header["BMIN"] = 5 / 3600
    header["BPA"] = 0.0
    cards = [c for c in header.cards if c.keyword != keyword]
    cards += [fits.Card(keyword, first), fits.Card(keyword, last)]
    path = _image_file(tmp_path, header=fits.Header(cards))
    with pytest.warns(InputWarning, match=f"header keyword {keyword} appears 2 times"):
        return read_image(path)


def _text_file(tmp_path, name, text="my observing notes\n"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _find(data, method="photutils"):
    header = sky_header(*data.shape[::-1])
    header["BMAJ"] = header["BMIN"] = 3.3 / 3600
    header["BPA"] = 0.0
    header["RESTFREQ"] = 1.4e9
    return find_sources((data, header), method)


def _with_source(data):
    data = data.copy()
    data[30:34, 30:34] = 1e-2
    return data


IMAGE_CASES = {
    "one-d-file": (lambda t: read_image(write_image(t / "a.fits", fits.Header(), np.ones(64,
                                                                                  "f4"))),
                   ValueError, "1-D .*needs a 2-D image"),
    "cdelt-zero": (lambda t: read_image(_image_file(t, header=_header(CDELT1=0.0))),
                   ValueError, "WCS is invalid: .*singular"),
    "singular-pc": (lambda t: read_image(_image_file(t, header=_header(
        PC1_1=1.0, PC1_2=1.0, PC2_1=1.0, PC2_2=1.0))), ValueError, "matrix is singular"),
    "crval2-beyond-pole": (lambda t: read_image(_image_file(t, header=_header(CRVAL2=120.0))),
                           ValueError, r"CRVAL2 = 120.0 is not a latitude in \[-90, 90\]"),
    "gzip-bit-flip": (lambda t: _gz(t, _flip_middle), ValueError,
                      "gzip stream fails its check"),
    "gzip-truncated": (lambda t: _gz(t, lambda raw: raw[: len(raw) * 2 // 3]), ValueError,
                       "gzip stream fails its check"),
    "gzip-crc-zeroed": (lambda t: _gz(t, lambda raw: raw[:-8] + bytes(4) + raw[-4:]),
                        ValueError, "CRC check failed"),
    "bzip2-bit-flip": (lambda t: _gz(t, _flip_middle, opener=bz2), ValueError,
                       "bzip2 stream fails its check"),
    "gzip-holding-truncated-fits": (_gz_truncated_fits, ValueError, "is truncated"),
    "gzip-good": (lambda t: _gz(t), OK, lambda image: image.shape == (64, 64)),
    "gzip-not-fits": (lambda t: read_image(_write(t / "x.fits.gz", gzip.compress(b"hello"))),
                      ValueError, "compressed but holds no FITS file"),
    "truncated-plain": (lambda t: read_image(_write(t / "cut.fits",
                                                    _image_file(t).read_bytes()[:6000])),
                        ValueError, "truncated"),
    "text-file": (lambda t: read_image(_text_file(t, "notes.fits")), ValueError,
                  "is not a FITS file"),
    "missing-file": (lambda t: read_image(t / "absent.fits"), FileNotFoundError,
                     "no such image file"),
    "all-nan": (lambda t: read_image(_image_file(t, data=np.full((64, 64), np.nan, "f4"))),
                ValueError, "no finite pixel"),
    "duplicate-cdelt1-last-wins": (lambda t: _duplicate(t, "CDELT1", -1.1 / 3600, -2.2 / 3600),
                                   OK, lambda image: np.allclose(
                                       abs(image.wcs.wcs.cdelt[0]) * 3600, 2.2)),
    "duplicate-bmaj-last-wins": (lambda t: _duplicate(t, "BMAJ", 5 / 3600, 9 / 3600), OK,
                                 lambda image: np.isclose(image.beam.major.to_value(u.arcsec),
                                                          9.0)),
    "coarse-pixels-tiles": (lambda t: tile_image(read_image((_noise(), sky_header(
        64, 64, cdelt_arcsec=40 * 3600))), 16), ValueError, "no finite sky position"),
    "cube-without-plane": (lambda t: read_image(_image_file(t, header=sky_header(
        64, 64, cube=[("FREQ", 3, 1.4e9, 1e6)]), data=_noise((3, 64, 64)))), ValueError,
                           "more than one plane"),
    "no-celestial-wcs": (lambda t: read_image((_noise(), fits.Header())), ValueError,
                         "no celestial WCS"),
    "tile-larger-than-image": (lambda t: tile_image((_noise(), sky_header(64, 64)), 128),
                               ValueError, "smaller than one 128-pixel tile"),
    "tile-size-in-jansky": (lambda t: tile_image((_noise(), sky_header(64, 64)), 3 * u.Jy),
                            u.UnitsError, "must be pixels or an angle"),
    "overlap-not-below-tile": (lambda t: tile_image((_noise(), sky_header(64, 64)), 16,
                                                    overlap=16), ValueError,
                               "overlap must be smaller"),
    "inf-pixels-photutils": (lambda t: _find(np.where(np.arange(64)[:, None] < 2, np.inf,
                                                      _with_source(_noise()))), OK,
                             lambda catalog: len(catalog) == 1),
    "constant-image-photutils": (lambda t: _find(np.ones((64, 64), "f4")), ValueError,
                                 "is constant"),
}


def _write(path, raw):
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("name", sorted(IMAGE_CASES))
def test_image_case(name, tmp_path):
    _run(IMAGE_CASES[name], tmp_path)


# ---------------------------------------------------------------- catalogues

def _csv(tmp_path, text, name="catalog.csv", **options):
    path = tmp_path / name
    path.write_text(text)
    return read_catalog(path, **options)


def _strings(*rows, unit=None):
    """A table whose RA/DEC columns are strings, as many CSV writers leave them."""
    table = Table(rows=rows, names=("RA", "DEC"), dtype=(str, str))
    if unit is not None:
        table["RA"].unit = unit
    return read_catalog(table)


def _ra(catalog):
    return catalog["sky_center"].ra.deg


def _masked(tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("ra,dec,total_flux\n257.1165,-30.1,1.5\n,-30.0,2.0\n10.0,-31.0,\n")
    with pytest.warns(InputWarning, match=r"holes.csv: 1 of 3 rows have no sky position"):
        return read_catalog(path)


def _masked_ecsv(tmp_path):
    table = Table({"ra": np.ma.MaskedArray([10.0, 11.0], mask=[False, False]),
                   "dec": [-30.0, -31.0],
                   "total_flux": np.ma.MaskedArray([1.0, 2.0], mask=[True, False])})
    table["total_flux"].unit = u.mJy
    path = tmp_path / "holes.ecsv"
    table.write(path)
    return read_catalog(path)


CATALOG_CASES = {
    "ra-decimal-degree-strings": (lambda t: _strings(("257.11650", "-30.5")), OK,
                                  lambda c: np.allclose(_ra(c), 257.1165)),
    "ra-sexagesimal-colons-are-hours": (lambda t: _strings(("17:08:27.96", "-30:30:00")), OK,
                                        lambda c: np.allclose(_ra(c), 257.1165)),
    "ra-sexagesimal-spaces-are-hours": (lambda t: _strings(("17 08 27.96", "-30 30 00")), OK,
                                        lambda c: np.allclose(_ra(c), 257.1165)),
    "ra-hms-letters": (lambda t: _strings(("17h08m27.96s", "-30d30m00s")), OK,
                       lambda c: np.allclose(_ra(c), 257.1165)
                       and np.allclose(c["sky_center"].dec.deg, -30.5)),
    "ra-number-strings-in-hourangle-unit": (lambda t: _strings(("17.1411", "-30.5"),
                                                               unit=u.hourangle), OK,
                                            lambda c: np.allclose(_ra(c), 257.1165)),
    "ra-numbers-in-hourangle-unit": (lambda t: read_catalog(Table(
        {"RA": [17.1411] * u.hourangle, "DEC": [-30.5] * u.deg})), OK,
                                     lambda c: np.allclose(_ra(c), 257.1165)),
    "csv-empty-cells-are-nan": (_masked, OK, lambda c: np.isnan(_ra(c)[1])
                                and np.isnan(c["flux"][2].value) and c["flux"][0].value == 1.5),
    "ecsv-masked-flux-is-nan": (_masked_ecsv, OK,
                                lambda c: np.isnan(c["flux"][0].value)
                                and np.isclose(c["flux"][1].to_value(u.Jy), 2e-3)),
    "no-position-columns": (lambda t: read_catalog(Table({"flux": [1.0]})), ValueError,
                            "has no sky position columns"),
    "dec-beyond-pole": (lambda t: read_catalog(Table({"RA": [10.0], "DEC": [120.0]})),
                        ValueError, r"latitudes outside \[-90, 90\]"),
    "ra-not-an-angle": (lambda t: _strings(("north", "-30")), ValueError, "not an angle"),
    "flux-not-a-number": (lambda t: _csv(t, 'ra,dec,total_flux\n1,2,"bright"\n'), ValueError,
                          "not a number"),
    "missing-file": (lambda t: read_catalog(t / "absent.csv"), FileNotFoundError,
                     "no such catalogue file"),
    "binary-junk": (lambda t: read_catalog(_write(t / "junk.fits", bytes(range(256)) * 20)),
                    ValueError, "cannot read .* as a table"),
    "not-a-path": (lambda t: read_catalog(42), TypeError, "must be a path or an astropy Table"),
    "empty-table": (lambda t: read_catalog(Table({"Blank": []})), OK, lambda c: len(c) == 0),
    "galactic-columns": (lambda t: read_catalog(Table({"GLON": [0.0], "GLAT": [0.0]})), OK,
                         lambda c: np.isclose(_ra(c)[0], 266.405, atol=0.01)),
}


@pytest.mark.parametrize("name", sorted(CATALOG_CASES))
def test_catalog_case(name, tmp_path):
    _run(CATALOG_CASES[name], tmp_path)


# ---------------------------------------------------------------- training configs

CONFIG_CASES = {
    "epochs-as-string": ('[optim]\nepochs = "10"\n', TypeError,
                         r"\[optim\] epochs must be an integer, got '10'"),
    "epochs-as-float": ("[optim]\nepochs = 2.5\n", TypeError, "epochs must be an integer"),
    "lr-as-word": ('[optim]\nlr = "fast"\n', TypeError, "lr must be a number"),
    "lr-as-integer": ("[optim]\nlr = 1\n", OK, lambda c: c.optim.lr == 1),
    "negative-seed": ("[run]\nseed = -1\n", ValueError, "run.seed must be >= 0"),
    "unknown-device": ('[run]\ndevice = "gpu"\n', ValueError,
                       r"run.device must be one of \('auto', 'cpu', 'cuda'\), got 'gpu'"),
    "amp-as-string": ('[run]\namp = "yes"\n', TypeError, "amp must be true or false"),
    "sources-as-table": ('[data.sources]\nkind = "simulated"\n', TypeError,
                         "sources must be a list"),
    "source-without-kind": ("[data]\nsources = [{weight = 1.0}]\n", ValueError,
                            r"data.sources\[0\] must be a table with a 'kind'"),
    "source-negative-weight": ('[data]\nsources = [{kind = "simulated", weight = -1}]\n',
                               ValueError, "weight must be a positive number"),
    "unknown-arch": ('[model]\narch = "resnt18"\n', ValueError,
                     "unknown backbone architecture 'resnt18'.*did you mean resnet18"),
    "unknown-section": ("[optimiser]\nlr = 1e-3\n", ValueError, "unknown config sections"),
    "unknown-key": ("[optim]\nlearning_rate = 1e-3\n", ValueError, "unknown keys"),
    "bad-toml": ("[optim\n", ValueError, "is not valid TOML"),
    "batch-of-one": ("[optim]\nbatch_size = 1\n", ValueError, "batch_size must be >= 2"),
    "defaults": ("", OK, lambda c: c.run.device == "auto"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_case(name, tmp_path):
    pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")
    from radiofm.train import load_config

    text, expected, detail = CONFIG_CASES[name]
    path = tmp_path / "config.toml"
    path.write_text(text)
    _run((lambda t: load_config(path), expected, detail), tmp_path)


def test_config_missing_file(tmp_path):
    pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")
    from radiofm.train import load_config

    with pytest.raises(FileNotFoundError, match="no such training config"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize("stop_after", [-5, 0, 2.5])
def test_train_refuses_bad_stop_after_before_loading_data(stop_after, tmp_path):
    pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")
    from radiofm.train import TrainConfig, train

    config = TrainConfig.from_dict({"run": {"output": str(tmp_path / "run")},
                                    "data": {"sources": [{"kind": "npy",
                                                          "path": "/nonexistent.npy"}]}})
    with pytest.raises(ValueError, match="stop_after must be a positive number of steps"):
        train(config, stop_after=stop_after)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("source, fragment", [
    ({"kind": "npy", "path": "TILES"}, r"training source npy-0: 1 of 3 tiles hold NaN .*tile 1"),
    ({"kind": "npy", "path": "TILES", "colour": "red"},
     r"data source 0 \('npy'\) does not take \['colour'\]"),
    ({"kind": "astro"}, "unknown data source kind 'astro'"),
])
def test_training_sources(source, fragment, tmp_path):
    pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")
    from radiofm.train import DataConfig, build_tile_bank

    tiles = np.zeros((3, 16, 16), np.float32)
    tiles[1, 4, 4] = np.nan
    np.save(tmp_path / "tiles.npy", tiles)
    source = {k: (str(tmp_path / "tiles.npy") if v == "TILES" else v) for k, v in source.items()}
    with pytest.raises(ValueError, match=fragment):
        build_tile_bank(DataConfig(sources=[source], tile_size=16))


# ---------------------------------------------------------------- the command line

def _cli(argv, monkeypatch=None, env=None):
    from radiofm.cli import main

    if env and monkeypatch is not None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    return main([str(a) for a in argv])


def _unwritable(tmp_path):
    """A folder that cannot be created (its parent is a file), whoever runs the tests."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    return blocker / "out"


def _catalog_file(tmp_path):
    path = tmp_path / "sources.ecsv"
    Table({"ra": [150.0], "dec": [-30.0]}).write(path)
    return path


def _damaged_run(tmp_path):
    """A config whose run folder holds a checkpoint with one flipped byte."""
    import torch

    from radiofm.train import TrainConfig, save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig.from_dict({"run": {"output": str(run)}})
    save_checkpoint({"teacher": {}, "student": {}, "config": config.to_dict(), "step": 3,
                     "center": torch.arange(4096.0)}, run / "checkpoint.pt")
    raw = bytearray((run / "checkpoint.pt").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (run / "checkpoint.pt").write_bytes(bytes(raw))
    config_path = _text_file(tmp_path, "c.toml", f'[run]\noutput = "{run}"\n')
    return ["train", config_path, "--resume"]


CLI_CASES = {
    "annotate-output-is-the-catalog": (
        lambda t: ["annotate", _image_file(t), "--catalog", _catalog_file(t).rename(
            t / "image_sources.ecsv"), "-o", t, "--overwrite"],
        "it is an input of this command"),
    "annotate-tiles-output-is-the-catalog": (
        lambda t: ["annotate", _image_file(t), "--catalog", _catalog_file(t).rename(
            t / "image_tiles.ecsv"), "-o", t, "--overwrite"],
        "it is an input of this command"),
    "annotate-unwritable-folder": (
        lambda t: ["annotate", _image_file(t), "-o", _unwritable(t)],
        "cannot write to the output folder"),
    "annotate-bad-batch-size": (
        lambda t: ["annotate", _image_file(t), "-o", t / "x", "--batch-size", "0"],
        "--batch-size must be at least 1"),
    "tile-unwritable-folder": (lambda t: ["tile", _image_file(t), "-o", _unwritable(t)],
                               "cannot write to the output folder"),
    "tile-existing-output": (
        lambda t: ["tile", _image_file(t), "-o", t, "--tile-size", "32"]
        if _write(t / "image_tiles.ecsv", b"mine") else None, "would overwrite .*pass --overwrite"),
    "label-output-is-the-catalog": (
        lambda t: ["label", _image_file(t), "--catalog", _catalog_file(t).rename(
            t / "image_sources.ecsv"), "-o", t, "--overwrite"], "it is an input"),
    "train-negative-stop-after": (
        lambda t: ["train", _text_file(t, "c.toml", ""), "--stop-after", "-5"],
        "--stop-after must be a positive number of steps"),
    "train-missing-config": (lambda t: ["train", t / "absent.toml"],
                             "no such training config"),
    "train-unknown-device": (
        lambda t: ["train", _text_file(t, "c.toml", '[run]\ndevice = "gpu"\n')],
        "run.device must be one of"),
    "train-resume-damaged-checkpoint": (_damaged_run, r"checkpoint.pt is damaged: its sha256"),
    "train-resume-without-checkpoint": (
        lambda t: ["train", _text_file(t, "c.toml", f'[run]\noutput = "{t / "run"}"\n'),
                   "--resume"], "cannot resume: .* does not exist"),
    "export-folder-that-is-no-run": (lambda t: ["export", t], "has neither teacher_backbone.pt"),
    "export-text-file": (lambda t: ["export", _text_file(t, "checkpoint.pt")],
                         "not a radiofm checkpoint"),
    "simulate-zero-size": (lambda t: ["simulate", "-o", t, "--size", "0"],
                           "--size must be a positive number of pixels"),
    "simulate-unwritable-folder": (lambda t: ["simulate", "-o", _unwritable(t),
                                              "--size", "64"],
                                   "cannot write to the output folder"),
    "evaluate-unwritable-folder": (lambda t: ["evaluate", "pixels", "-o", _unwritable(t)],
                                   "cannot write to the output folder"),
}
_NEEDS_TORCH = ("train-", "export-")


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_cli_case(name, tmp_path, capsys, caplog):
    if name.startswith(_NEEDS_TORCH):
        pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")
    build, fragment = CLI_CASES[name]
    argv = build(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with caplog.at_level(logging.ERROR, logger="radiofm"):
        assert _cli(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and re.search(fragment, errors[0]), errors
    assert "\n" not in errors[0]
    assert "Traceback" not in capsys.readouterr().err
    for path, content in before.items():  # no input was touched
        assert path.read_bytes() == content, path


def test_cli_error_traceback_only_with_debug(tmp_path, capsys, monkeypatch):
    argv = ["tile", tmp_path / "absent.fits", "-o", tmp_path]
    monkeypatch.delenv("RADIOFM_DEBUG", raising=False)
    assert _cli(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert _cli(argv + ["--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert _cli(argv, monkeypatch, env={"RADIOFM_DEBUG": "1"}) == 2
    assert "Traceback" in capsys.readouterr().err


def test_cli_internal_error_is_one_line(monkeypatch, caplog, tmp_path):
    import radiofm.cli as cli

    def broken(args):
        raise RuntimeError("something\ndeep")

    monkeypatch.setattr(cli, "_run_simulate", broken)
    with caplog.at_level(logging.ERROR, logger="radiofm"):
        assert cli.main(["simulate", "-o", str(tmp_path)]) == 2
    assert "internal error (RuntimeError: something deep); rerun with --debug" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_cli_outputs_are_atomic(tmp_path):
    """A writer that fails half-way leaves no output file and no temporary file behind."""
    from radiofm._atomic import atomic_path

    target = tmp_path / "table.ecsv"
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_text("half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as partial:
        assert partial.parent == tmp_path and partial.name.endswith("table.ecsv")
        partial.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(FileExistsError, match="would overwrite"), atomic_path(target):
        pass


def test_writers_of_one_file_at_once_never_share_a_temporary_file(tmp_path):
    """Two writers of one target in one process (threads, or a nested write) stay apart."""
    from radiofm._atomic import atomic_path

    target = tmp_path / "new" / "index.json"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.parent == second.parent == target.parent
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer write renames last
    assert [p.name for p in target.parent.iterdir()] == ["index.json"]


def test_environment_threads(monkeypatch):
    from radiofm.inference._session import _threads

    monkeypatch.setenv("RADIOFM_THREADS", "abc")
    with pytest.raises(ValueError, match="RADIOFM_THREADS must be a whole number.*'abc'"):
        _threads(None)
    monkeypatch.setenv("RADIOFM_THREADS", "0")
    with pytest.raises(ValueError, match="RADIOFM_THREADS must be at least 1"):
        _threads(None)
    monkeypatch.setenv("RADIOFM_THREADS", "2")
    assert _threads(None) == 2
    with pytest.raises(TypeError, match="threads must be a whole number"):
        _threads(1.5)


def test_no_warning_escapes_for_clean_input(tmp_path):
    """A clean image and catalogue read without any warning (the suite's control case)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(_image_file(tmp_path)).shape == (64, 64)
        assert len(read_catalog(Table({"RA": [1.0], "DEC": [2.0]}))) == 1
