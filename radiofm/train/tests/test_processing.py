"""Issue 12 pieces: S/N tiles, processing augmentations, the feature monitor, the configs."""

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")

from radiofm.tiling import Normalization, normalize  # noqa: E402
from radiofm.train import (  # noqa: E402
    MONITOR_COLUMNS,
    CropConfig,
    DataConfig,
    MonitorConfig,
    RadioMultiCrop,
    TrainConfig,
    load_config,
    monitor_carve,
    stretch_snr,
    train,
)

PROCESSING = dict(clip_probability=0.5, renoise_probability=0.5, snr_scale=[0.7, 1.4])


def _snr_tiles(count=6, size=40, seed=0):
    """S/N tiles: unit noise with a bright blob."""
    rng = np.random.default_rng(seed)
    tiles = rng.normal(0.0, 1.0, (count, 1, size, size)).astype(np.float32)
    y, x = np.mgrid[:size, :size]
    tiles[:, 0] += 50 * np.exp(-((x - size / 2) ** 2 + (y - size / 2) ** 2) / 8.0)
    return torch.from_numpy(tiles)


def test_processing_augmentations_are_a_function_of_the_step_seed():
    augment = RadioMultiCrop(CropConfig(global_size=32, local_size=16, n_local=2,
                                        **PROCESSING), {"method": "snr"})
    tiles = _snr_tiles()
    views = augment(tiles, torch.Generator().manual_seed(7))
    again = augment(tiles, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(views, again, strict=True))
    other = augment(tiles, torch.Generator().manual_seed(8))
    assert not torch.equal(views[0], other[0])
    assert all(torch.isfinite(v).all() and v.dtype == torch.float32 for v in views)


def test_clip_zeroes_below_its_level_and_the_arcsinh_is_normalize():
    crops = CropConfig(global_size=40, local_size=16, n_local=0, global_scale=[1.0, 1.0],
                       blur_probability=0.0, clip_probability=1.0, clip_sigma=[3.0, 3.0])
    tiles = _snr_tiles(count=4)
    clipped = RadioMultiCrop(crops, "snr")(tiles, torch.Generator().manual_seed(0))[0]
    values = clipped.flatten()
    kept = values[values != 0]
    assert (values == 0).float().mean() > 0.9  # the noise is gone
    assert kept.min() >= np.arcsinh(3.0) - 1e-5  # and everything left is above 3 sigma
    plain = RadioMultiCrop(CropConfig(**{**crops.__dict__, "clip_probability": 0.0}), "snr")
    unclipped = plain(tiles, torch.Generator().manual_seed(0))[0]
    assert (unclipped == 0).float().mean() < 0.01
    # off by default: an "snr" crop of a whole tile is normalize's arcsinh of the tile
    snr = torch.tensor([[-2.0, 0.0, 5.0, 300.0]])
    expected = normalize(snr.numpy(), Normalization("snr", 0.0, 2.0))
    np.testing.assert_array_equal(stretch_snr(snr, 2.0).numpy(), expected)



def test_the_accelerator_stretch_is_normalizes_arithmetic():
    """On a GPU, stretch_snr runs in torch there: it must stay normalize's "snr" stretch."""
    from radiofm.train._augment import _stretch_snr_torch

    snr = torch.tensor([-1e4, -30.0, -2.0, -1e-3, 0.0, 1e-3, 0.5, 5.0, 300.0, 1e6, np.nan])
    for softening in (0.5, 1.0, 2.0):
        expected = normalize(snr.numpy(), Normalization("snr", 0.0, softening))
        stretched = _stretch_snr_torch(snr, softening)
        assert stretched.dtype == torch.float32
        np.testing.assert_allclose(stretched.numpy(), expected, rtol=2e-7, atol=1e-7)
    assert _stretch_snr_torch(snr, 1.0)[-1] == 0  # a blank pixel is 0, as normalize has it


def test_cpu_noise_fields_come_from_the_step_generator():
    """On the CPU the noise fields are the step generator's own draws (so CPU runs repeat
    the crops drawn before the fields moved to the accelerator there)."""
    from radiofm.train._augment import _standard_normal

    drawn = _standard_normal((3, 1, 8, 8), torch.Generator().manual_seed(5), torch.device("cpu"))
    assert torch.equal(drawn, torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(5)))

def test_renoise_keeps_unit_noise_and_lowers_the_source_snr():
    crops = CropConfig(global_size=40, local_size=16, n_local=0, global_scale=[1.0, 1.0],
                       blur_probability=0.0, renoise_probability=1.0, renoise_sigma=[2.0, 2.0],
                       noise_beam=[1.5, 1.5])
    tiles = _snr_tiles(count=8)
    noisy = RadioMultiCrop(crops, "snr")(tiles, torch.Generator().manual_seed(0))[0]
    snr = torch.sinh(noisy)  # back to S/N
    corner = snr[:, 0, :8, :8]
    assert float(corner.std()) == pytest.approx(1.0, rel=0.25)
    # the peak falls by sqrt(1 + 2**2)
    assert float(snr[:, 0, 18:22, 18:22].amax(dim=(1, 2)).mean()) == pytest.approx(
        50 / np.sqrt(5), rel=0.25)


def test_area_average_gives_shrunk_crops_the_noise_of_an_area_resampled_tile():
    """A 96 px noise tile shrunk to a 32 px crop: sampled bilinearly it keeps nearly unit
    noise per pixel; with area_average it approaches the block mean's 1/3, as inference's
    resampling gives. Crops that do not shrink are left as they were."""
    from radiofm.tiling import resample_tiles

    tiles = torch.randn((8, 1, 96, 96), generator=torch.Generator().manual_seed(0))
    whole = dict(global_size=32, local_size=16, n_local=0, global_scale=[1.0, 1.0],
                 blur_probability=0.0)

    def crop(**options):
        return RadioMultiCrop(CropConfig(**whole, **options), "snr")(
            tiles, torch.Generator().manual_seed(0))[0]

    area = float(resample_tiles(tiles[:, 0].numpy(), 32).std())  # the 3 x 3 block mean
    bilinear, averaged = float(torch.sinh(crop()).std()), float(torch.sinh(
        crop(area_average=True)).std())
    assert area == pytest.approx(1 / 3, rel=0.1)
    assert bilinear > 0.8  # interpolation between pixels smooths a little
    assert averaged == pytest.approx(area, rel=0.25)
    whole["global_size"] = 96  # no shrink: nothing to average
    assert torch.equal(crop(), crop(area_average=True))


def test_snr_banks_hold_signal_to_noise_and_configs_validate(tmp_path):
    from radiofm.train import build_tile_bank

    config = DataConfig(sources=[{"kind": "simulated", "fields": 1, "size": 256}],
                        tile_size=64, normalization={"method": "snr", "softening": 2.0})
    tiles = np.asarray(build_tile_bank(config).banks[0], dtype=np.float32)
    corner = tiles[:, :8, :8]
    assert np.median(np.abs(corner)) == pytest.approx(0.6745, rel=0.3)  # unit noise, not /2
    with pytest.raises(ValueError, match="data.normalization"):
        TrainConfig.from_dict({"data": {"normalization": {"method": "snr", "floor": "x"}}})
    with pytest.raises(ValueError, match="renoise_sigma and snr_scale must be positive"):
        TrainConfig.from_dict({"crops": {"snr_scale": [0.0, 1.0]}})
    with pytest.raises(ValueError, match="clip_probability"):
        TrainConfig.from_dict({"crops": {"clip_probability": 2.0}})


def test_every_committed_config_loads(repo_root):
    paths = sorted((repo_root / "configs").glob("*.toml"))
    assert len(paths) >= 5  # the default, the study and the GPU configs
    for path in paths:
        assert load_config(path).data.spec.method in ("percentile", "snr"), path


def test_monitor_carve_is_fixed_and_inside_the_confident_train_split():
    from astropy.table import Table

    codes = ["100", "200", "110", "201", "102"] * 40
    table = Table({"filename": [f"f{k:03d}" for k in range(200)], "code": codes,
                   "split": ["train"] * 150 + ["test"] * 50})
    fit, valid = monitor_carve(table, 30, 20)
    assert len(fit) == 30 and len(valid) == 20 and not set(fit) & set(valid)
    chosen = np.concatenate([fit, valid])
    assert (np.asarray(table["split"])[chosen] == "train").all()
    assert not np.isin(np.asarray(table["code"])[chosen], ["110"]).any()
    again = monitor_carve(table[::-1], 30, 20)  # the order of the rows does not matter
    names = np.asarray(table["filename"])
    assert set(names[fit]) == set(np.asarray(table[::-1]["filename"])[again[0]])


def test_mirabest_source_keeps_out_test_and_the_monitor_carve(shared_data):
    from radiofm.datasets import evaluation_positions, load_mirabest
    from radiofm.train._data import _mirabest_tiles

    monitor = MonitorConfig(mirabest_fit=50, mirabest_valid=50)
    data = DataConfig(root=str(shared_data), tile_size=32, normalization="snr")
    tiles = _mirabest_tiles(data, evaluation_positions(shared_data), monitor=monitor)
    table = load_mirabest(shared_data, view="all").table
    train_rows = int((np.asarray(table["split"]) == "train").sum())
    assert len(tiles) <= train_rows - 100 and len(tiles) > 0.5 * train_rows
    # clipped uint8 stamps read as S/N: the lowest non-zero pixels near 3 sigma
    assert np.isfinite(tiles).all() and tiles.max() > 10


def test_monitor_rows_in_the_training_log(tmp_path):
    config = TrainConfig.from_dict({
        "data": {"sources": [{"kind": "simulated", "fields": 1, "size": 128}], "tile_size": 32,
                 "normalization": "snr", "root": str(tmp_path / "no-data")},
        "model": {"arch": "resnet18", "out_dim": 16, "hidden_dim": 16, "bottleneck_dim": 8},
        "crops": {"global_size": 32, "local_size": 16, "n_local": 1, **PROCESSING},
        "optim": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 2},
        "run": {"output": str(tmp_path / "run"), "threads": 1},
        "monitor": {"every": 2, "count_fields": 2},
    })
    train(config, progress=False)
    with open(tmp_path / "run" / "train_log.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert set(MONITOR_COLUMNS) <= set(rows[0])
    monitored = [int(r["step"]) for r in rows if r["sim_count_r2"]]
    assert monitored == [0, 2, 3]  # before step 0, every 2 steps, after the last
    assert all(r["mb_logistic_acc"] == "" for r in rows)  # no MiraBest here: counts only
    assert rows[-1]["loss"] == "" and float(rows[-1]["sim_count_r2"]) <= 1.0
    train(config, progress=False, resume=True)  # nothing left to run: the log stays whole
    with open(tmp_path / "run" / "train_log.csv", newline="") as stream:
        assert list(csv.DictReader(stream)) == rows


def test_resume_accepts_a_checkpoint_from_before_new_options(tmp_path):
    config = TrainConfig.from_dict({
        "data": {"sources": [{"kind": "simulated", "fields": 1, "size": 128}], "tile_size": 32},
        "model": {"arch": "resnet18", "out_dim": 16, "hidden_dim": 16, "bottleneck_dim": 8},
        "crops": {"global_size": 32, "local_size": 16, "n_local": 1},
        "optim": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2},
        "run": {"output": str(tmp_path / "run"), "threads": 1},
    })
    train(config, progress=False, stop_after=1)
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    for key in ("clip_probability", "snr_scale"):  # as a checkpoint of an older radiofm
        del state["config"]["crops"][key]
    torch.save(state, path)
    train(config, progress=False, resume=True)
    config.crops.clip_probability = 0.5  # a new option set to a new value is a change
    with pytest.raises(ValueError, match="config changed"):
        train(config, progress=False, resume=True)


@pytest.mark.parametrize("name, arch, size", [
    ("gpu-resnet18-64.toml", "resnet18", 64),
    ("gpu-resnet18-128.toml", "resnet18", 128),
    ("gpu-vits16.toml", "vit_small_patch16_224", 128),
])
def test_gpu_route_packs_trains_returns_and_unpacks(repo_root, repo_script, tmp_path, monkeypatch,
                                                    name, arch, size):
    """scripts/train_gpu.py: pack a bank, train 2 CPU steps on it (--dry-run), return the
    teacher in half-precision parts and join them into a run folder that export reads (on
    simulated tiles: no data root here)."""
    import re

    from radiofm.train._checkpoint import backbone_state, read_checkpoint

    monkeypatch.setenv("RADIOFM_DATA", str(tmp_path / "no-data"))
    script = repo_script("train_gpu")
    text = (repo_root / "configs" / name).read_text()
    text = re.sub(r"sources = \[.*?\]\n", 'sources = [{kind = "simulated", fields = 1, '
                  'size = 256}]\n', text, count=1, flags=re.S)
    config = tmp_path / name
    config.write_text(text)
    bank = tmp_path / "bank.npz"
    script.main(["pack", str(config), "--bank", str(bank)])
    script.main(["run", str(config), "--bank", str(bank), "--dry-run", "--output",
                 str(tmp_path), "--return", str(tmp_path / "back")])
    script.main(["unpack", str(tmp_path / "back"), "--into", str(tmp_path / "joined")])

    trained = read_checkpoint(tmp_path / "dry-run" / "teacher_backbone.pt")
    joined = read_checkpoint(tmp_path / "joined" / "teacher_backbone.pt")
    assert joined["config"]["model"]["arch"] == arch
    assert joined["config"]["crops"]["global_size"] == size
    assert joined["config"]["data"]["normalization"]["method"] == "snr"
    assert joined["config"]["data"]["sources"][0]["kind"] == "simulated"  # not the npy copy
    assert list(json.loads(joined["data"])) == ["simulated-0"]  # not "npy-0"
    assert joined["step"] == 2
    model, weights = backbone_state(joined)
    assert model == backbone_state(trained)[0]
    for key, value in backbone_state(trained)[1].items():
        assert weights[key].dtype == value.dtype
        torch.testing.assert_close(weights[key], value, rtol=2e-3, atol=1e-3)
    parts = sorted((tmp_path / "back").glob("backbone-part*.pt"))
    assert all(part.stat().st_size < 16 * 2**20 for part in parts)
    assert len(parts) == (3 if arch.startswith("vit") else 2)


def test_gpu_bank_codes_keep_the_signal_to_noise(repo_script):
    """The packed bank's int8 codes: within 0.05 of every value after the arcsinh the crops
    take, within 0.03 sigma below 0.2 sigma, and saturating (not wrapping) beyond float16."""
    script = repo_script("train_gpu")
    values = np.concatenate([np.linspace(-6, 6, 2001), np.geomspace(6, 6e4, 500)])
    back = script.decode(script.encode(values))
    assert np.abs(np.arcsinh(back) - np.arcsinh(values)).max() <= 0.05
    near_zero = np.abs(values) < 0.2
    assert np.abs(back - values)[near_zero].max() <= 0.03
    assert script.decode(script.encode([1e9, -1e9])).tolist() == pytest.approx(
        [8.2e4, -8.2e4], rel=0.01)
