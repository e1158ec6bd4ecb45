"""annotate_many on a local Dask cluster, the survey index, similar and outliers."""

import logging

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, QTable, Table

from radiofm.cli import main
from radiofm.simulate import make_radio_sky
from radiofm.tiling import read_table

pytest.importorskip("distributed")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """Three small simulated fields and a corrupt one."""
    folder = tmp_path_factory.mktemp("survey")
    paths = []
    for seed in range(3):
        hdu, _ = make_radio_sky((256, 256), seed=seed)
        hdu.header["CRVAL1"] = 150.0 + seed  # three pointings
        hdu.writeto(folder / f"field{seed}.fits")
        paths.append(folder / f"field{seed}.fits")
    (folder / "broken.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 100)
    return paths, folder / "broken.fits"


@pytest.fixture(scope="module")
def annotated(survey, tiny_model, tmp_path_factory):
    """annotate_many over a LocalCluster of 2 processes; the big image split in row blocks."""
    from distributed import Client, LocalCluster

    from radiofm.survey import annotate_many

    images, broken = survey
    out = tmp_path_factory.mktemp("annotated")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        manifest = annotate_many([*images, broken], out, model=tiny_model, client=client,
                                 block_tiles=20, progress=False)
    return out, manifest


def test_annotate_many_isolates_failures_and_writes_every_output(annotated, survey):
    out, manifest = annotated
    images, broken = survey
    assert list(manifest["image"]) != []  # in completion order
    rows = {row["image"]: row for row in manifest}
    assert rows[str(broken)]["status"] == "failed"
    assert "broken.fits" in rows[str(broken)]["error"]
    for image in images:
        assert rows[str(image)]["status"] == "done"
        assert rows[str(image)]["n_tiles"] == 64
        tiles = QTable.read(out / f"{image.stem}_tiles.ecsv")
        assert tiles["embedding"].shape == (64, 96)
        assert (out / f"{image.stem}_quicklook.png").is_file()
    assert manifest.meta["N_FAILED"] == 1
    on_disk = QTable.read(out / "manifest.ecsv")
    assert sorted(on_disk["status"]) == ["done", "done", "done", "failed"]


def test_row_blocks_give_the_same_table_as_one_run(annotated, survey, tiny_model, tmp_path):
    from radiofm.survey import annotate_image

    out, _ = annotated
    image = survey[0][0]
    annotate_image(image, tmp_path, model=tiny_model, threads=1, progress=False)
    whole = QTable.read(tmp_path / "field0_tiles.ecsv")
    blocks = QTable.read(out / "field0_tiles.ecsv")  # 64 tiles in 4 blocks of 20 rows
    np.testing.assert_allclose(blocks["embedding"], whole["embedding"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(blocks["tile_id"], whole["tile_id"])
    assert blocks.meta["NORMSCL"] == whole.meta["NORMSCL"]


def test_written_counts_keep_their_mask_unit_and_description(annotated):
    """Row blocks keep what count_sources gives n_compact_pred: no number is written for a
    flagged tile, and the column says what it counts."""
    out, _ = annotated
    tiles = Table.read(out / "field0_tiles.ecsv")  # 4 blocks of 20 rows
    counts = tiles["n_compact_pred"]
    assert counts.unit == u.ct
    assert "catalogue column" not in counts.description and "count" in counts.description
    flagged = np.asarray(tiles["ood_flag"])
    np.testing.assert_array_equal(np.ma.getmaskarray(counts), flagged)


def test_a_rerun_skips_what_is_done_and_redoes_what_changed(annotated, survey, tiny_model,
                                                             tmp_path):
    import shutil

    from radiofm.survey import annotate_many

    images, _ = survey
    work = tmp_path / "images"
    work.mkdir()
    copies = [shutil.copy(p, work / p.name) for p in images[:2]]
    out = tmp_path / "out"
    first = annotate_many(copies, out, model=tiny_model, n_workers=0, progress=False)
    assert list(first["status"]) == ["done", "done"]
    before = (out / "field1_tiles.ecsv").stat().st_mtime_ns
    with open(copies[0], "r+b") as stream:  # change a pixel: a new input checksum
        stream.seek(-4, 2)
        stream.write(b"\x3f\x80\x00\x00")
    second = annotate_many(copies, out, model=tiny_model, n_workers=0, progress=False)
    assert list(second["status"]) == ["done", "skipped"]
    assert (out / "field1_tiles.ecsv").stat().st_mtime_ns == before
    assert second["n_tiles"][1] == 64


def test_index_similar_and_outliers(annotated, survey):
    from radiofm.survey import outliers, read_index, similar

    out, _ = annotated
    index = read_index(out / "index")
    assert len(index) == 3 * 64 and index.embeddings.shape == (192, 96)
    assert set(index.table["image"]) == {str(p) for p in survey[0]}
    matches = similar(index, 5, k=4)
    assert len(matches) == 4 and 5 not in matches["index_id"]
    assert np.all(np.diff(matches["distance"]) >= 0)
    # a sky position stands for the tile nearest to it
    near = similar(index, index.table["sky_center"][7], k=3)
    assert 7 not in near["index_id"]
    np.testing.assert_array_equal(near["index_id"], similar(index, 7, k=3)["index_id"])
    ranked = outliers(index, 5, k=3)
    assert len(ranked) == 5 and np.all(np.diff(ranked["outlier_score"]) <= 0)


def test_the_index_holds_no_count_for_a_flagged_tile(annotated, tmp_path):
    """A count the tile table masks (out of distribution) is NaN in the index, not the
    number under the mask; a part written before the uncertainty column still reads."""
    import pyarrow.parquet as pq

    from radiofm.survey import add_to_index, read_index

    out, _ = annotated
    tiles = QTable.read(out / "field0_tiles.ecsv")
    flagged = np.arange(len(tiles)) % 3 == 0  # as count_sources masks flagged tiles
    tiles["n_compact_pred"] = MaskedColumn(np.asarray(tiles["n_compact_pred"]), mask=flagged)
    index = read_index(add_to_index(tmp_path / "index", tiles))
    counts = np.asarray(index.table["n_compact_pred"])
    assert np.isnan(counts[flagged]).all() and np.isfinite(counts[~flagged]).all()
    assert np.isnan(np.asarray(index.table["n_compact_pred_err"])).all()  # no heads
    part = tmp_path / "index" / "field0.parquet"
    pq.write_table(pq.read_table(part).drop(["n_compact_pred_err"]), part)
    assert len(read_index(tmp_path / "index")) == len(tiles)


def test_similar_to_a_cutout_uses_the_model(annotated, survey, tiny_model):
    from astropy.io import fits

    from radiofm.survey import read_index, similar

    out, _ = annotated
    index = read_index(out / "index")
    with fits.open(survey[0][1]) as hdul:
        hdu = hdul[0].copy()
    matches = similar(index, hdu, k=3, model=tiny_model)
    assert len(matches) == 3
    with pytest.raises(ValueError, match="not the model of this index"):
        similar(index, hdu, k=3, model="default")


def test_cli_similar_outliers_and_index(annotated, tmp_path, caplog):
    out, _ = annotated
    assert main(["similar", str(out / "index"), "--tile", "3", "-k", "4",
                 "-o", str(tmp_path)]) == 0
    assert len(read_table(tmp_path / "similar.ecsv")) == 4
    assert (tmp_path / "similar.png").read_bytes()[:4] == b"\x89PNG"
    sky = SkyCoord(151.0, -30.0, unit="deg")
    assert main(["similar", str(out / "index"), "--position",
                 f"{sky.ra.deg} {sky.dec.deg}", "-o", str(tmp_path / "pos")]) == 0
    assert main(["outliers", str(out / "index"), "-n", "6", "-o", str(tmp_path)]) == 0
    assert len(read_table(tmp_path / "outliers.ecsv")) == 6
    assert main(["index", str(out / "field0_tiles.ecsv"), "-o", str(tmp_path / "idx")]) == 0
    assert (tmp_path / "idx" / "field0.parquet").is_file()
    with caplog.at_level(logging.ERROR, logger="radiofm"):
        assert main(["outliers", str(tmp_path / "nothing"), "-o", str(tmp_path)]) == 2
    assert "holds no index parts" in caplog.text


def test_cli_from_list_in_process_and_bad_inputs(survey, tiny_model, tmp_path, caplog):
    images, broken = survey
    listing = tmp_path / "images.txt"
    listing.write_text(f"# two fields\n{images[0]}\n\n{broken}\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="radiofm"):
        assert main(["annotate", "--from-list", str(listing), "--model", str(tiny_model),
                     "--workers", "0", "-o", str(out)]) == 1
    assert "[1/2]" in caplog.text and "1 failed" in caplog.text
    with caplog.at_level(logging.ERROR, logger="radiofm"):
        assert main(["annotate", str(images[0]), str(tmp_path / "absent.fits"),
                     "--model", str(tiny_model), "-o", str(out)]) == 2
    assert "no such file" in caplog.text
