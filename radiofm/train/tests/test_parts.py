"""Pieces of the DINO trainer: config, augmentation, loss, schedules, models, data."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")

from radiofm.train import (  # noqa: E402
    CropConfig,
    DataConfig,
    DINOHead,
    DINOLoss,
    MultiCropModel,
    RadioMultiCrop,
    TileBank,
    TrainConfig,
    build_tile_bank,
    cosine_schedule,
    create_backbone,
    embed_tiles,
    koleo_loss,
    load_config,
    sinkhorn_knopp,
)


def test_config_defaults_toml_and_errors(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\narch = "resnet18"\n[optim]\nbatch_size = 16\n')
    config = load_config(path)
    assert config.model.arch == "resnet18" and config.optim.batch_size == 16
    assert config.crops.n_local == CropConfig().n_local  # untouched sections keep defaults
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown keys \['lr_max'\] in \[optim\]"):
        TrainConfig.from_dict({"optim": {"lr_max": 1.0}})
    with pytest.raises(ValueError, match=r"unknown config sections \['trainer'\]"):
        TrainConfig.from_dict({"trainer": {}})
    with pytest.raises(ValueError, match="local_size <= global_size <= data.tile_size"):
        TrainConfig.from_dict({"crops": {"global_size": 512}})
    with pytest.raises(ValueError, match="koleo_weight must be >= 0, got -0.1"):
        TrainConfig.from_dict({"optim": {"koleo_weight": -0.1}})
    with pytest.raises(ValueError, match=r"optim.centering must be one of \('ema', "
                       r"'sinkhorn'\), got 'swav'"):
        TrainConfig.from_dict({"optim": {"centering": "swav"}})
    with pytest.raises(ValueError, match="sinkhorn_iterations must be >= 1, got 0"):
        TrainConfig.from_dict({"optim": {"centering": "sinkhorn", "sinkhorn_iterations": 0}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="no such training config"):
        load_config(tmp_path / "absent.toml")


def test_multicrop_shapes_and_repeatability():
    crops = CropConfig(global_size=32, local_size=16, n_local=3)
    augment = RadioMultiCrop(crops)
    tiles = torch.rand(5, 1, 48, 48)
    views = augment(tiles, torch.Generator().manual_seed(1))
    assert [tuple(v.shape) for v in views] == [(5, 1, 32, 32)] * 2 + [(5, 1, 16, 16)] * 3
    again = augment(tiles, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(views, again, strict=True))
    other = augment(tiles, torch.Generator().manual_seed(2))
    assert not torch.equal(views[0], other[0])
    assert all(torch.isfinite(v).all() for v in views)


def test_multicrop_keeps_a_constant_sky_constant_without_noise():
    crops = CropConfig(global_size=16, local_size=8, n_local=1, noise_probability=0.0,
                       stretch=[1.0, 1.0])
    views = RadioMultiCrop(crops)(torch.full((4, 1, 32, 32), 0.25),
                                  torch.Generator().manual_seed(0))
    for view in views:
        torch.testing.assert_close(view, torch.full_like(view, 0.25))


def test_cosine_schedule():
    values = cosine_schedule(1.0, 0.0, 10, warmup_steps=4)
    assert len(values) == 10
    np.testing.assert_allclose(values[:4], [0.0, 0.25, 0.5, 0.75])
    assert values[4] == 1.0 and values[-1] > 0.0 and np.all(np.diff(values[4:]) < 0)


def test_dino_loss_and_centering():
    loss_fn = DINOLoss(out_dim=8, n_global=2, teacher_temps=[0.04], center_momentum=0.5)
    teacher = torch.randn(2 * 3, 8)
    student = torch.cat([teacher, torch.randn(3, 8)])  # 2 global + 1 local crop, batch 3
    loss, probs = loss_fn(student, teacher, epoch=0)
    assert torch.isfinite(loss) and loss > 0
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(6))
    torch.testing.assert_close(loss_fn.center, 0.5 * teacher.mean(dim=0, keepdim=True))


def test_sinkhorn_knopp_spreads_a_collapsed_teacher_over_the_prototypes():
    generator = torch.Generator().manual_seed(0)
    collapsed = torch.randn(4, 8, generator=generator)
    collapsed[:, 0] += 25.0  # a sharp teacher: every image on prototype 0
    assert torch.softmax(collapsed, dim=-1)[:, 0].min() > 0.99
    balanced = sinkhorn_knopp(collapsed, iterations=50)
    torch.testing.assert_close(balanced.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(balanced.sum(dim=0), torch.full((8,), 0.5), atol=1e-3, rtol=0)
    # three rounds (the default) already move most of prototype 0's mass to the others
    assert sinkhorn_knopp(collapsed)[:, 0].sum() < 1.0
    # a sharp teacher that is already balanced keeps its assignment
    distinct = 30.0 * torch.eye(4) + torch.randn(4, 4, generator=generator)
    torch.testing.assert_close(sinkhorn_knopp(distinct), torch.softmax(distinct, dim=-1),
                               atol=1e-4, rtol=0)
    assert torch.isfinite(sinkhorn_knopp(collapsed / 1e-3)).all()  # no overflow when sharp
    with pytest.raises(ValueError, match=r"\(N, K\) scores, got shape \(8,\)"):
        sinkhorn_knopp(collapsed[0])


def test_dino_loss_with_sinkhorn_centering_leaves_the_centre_alone():
    generator = torch.Generator().manual_seed(0)
    teacher = 0.1 * torch.randn(2 * 3, 8, generator=generator)
    teacher[:, 0] += 10.0  # every image on prototype 0
    student = torch.cat([teacher, torch.randn(3, 8, generator=generator)])
    sinkhorn = DINOLoss(out_dim=8, n_global=2, teacher_temps=[0.04], centering="sinkhorn")
    loss, probs = sinkhorn(student, teacher, epoch=0)
    assert torch.isfinite(loss)
    torch.testing.assert_close(probs, sinkhorn_knopp(teacher / 0.04))
    assert not sinkhorn.center.any()  # unused, so never updated
    ema_loss, ema_probs = DINOLoss(out_dim=8, n_global=2, teacher_temps=[0.04])(
        student, teacher, epoch=0)
    assert ema_probs[:, 0].min() > 0.99 > probs[:, 0].max()  # the EMA's first step: collapsed
    assert not torch.isclose(loss, ema_loss)
    with pytest.raises(ValueError, match=r"centering must be one of \('ema', 'sinkhorn'\)"):
        DINOLoss(out_dim=8, n_global=2, teacher_temps=[0.04], centering="none")
    with pytest.raises(ValueError, match="sinkhorn_iterations must be >= 1, got 0"):
        DINOLoss(out_dim=8, n_global=2, teacher_temps=[0.04], centering="sinkhorn",
                 sinkhorn_iterations=0)


def test_koleo_loss_rewards_spread_and_pushes_near_neighbours_apart():
    spread = koleo_loss(torch.eye(4))
    torch.testing.assert_close(spread, -torch.log(torch.tensor(2.0).sqrt()))  # all sqrt(2) apart
    torch.testing.assert_close(koleo_loss(5 * torch.eye(4)), spread)  # directions only
    features = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.05, 0.0], [0.0, 0.0, 1.0]],
                            requires_grad=True)
    loss = koleo_loss(features)
    assert loss > spread
    loss.backward()
    with torch.no_grad():
        moved = features - 0.5 * features.grad
    gap = torch.nn.functional.normalize(moved, dim=-1)
    before = torch.nn.functional.normalize(features.detach(), dim=-1)
    assert (gap[0] - gap[1]).norm() > (before[0] - before[1]).norm()  # the close pair parts
    with pytest.raises(ValueError, match=r"B >= 2, got shape \(1, 3\)"):
        koleo_loss(torch.ones(1, 3))


@pytest.mark.parametrize(("arch", "patch"), [("vit_tiny_patch16_224", 8),
                                             ("vit_tiny_patch16_224", 16), ("resnet18", None)])
def test_backbones_take_one_channel_and_any_crop_size(arch, patch):
    torch.manual_seed(0)
    backbone = create_backbone(arch, patch_size=patch)
    head = DINOHead(backbone.num_features, 32, hidden_dim=16, bottleneck_dim=8)
    model = MultiCropModel(backbone, head)
    out = model([torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32), torch.rand(2, 1, 16, 16)])
    assert out.shape == (6, 32)
    embedding = embed_tiles(backbone, np.random.default_rng(0).random((3, 32, 32)), batch_size=2)
    assert embedding.shape == (3, backbone.num_features) and embedding.dtype == np.float32


def test_head_last_layer_is_weight_normalised():
    head = DINOHead(16, 10, hidden_dim=8, bottleneck_dim=4, norm_last_layer=True)
    parametrized = head.last_layer.parametrizations.weight
    assert not parametrized.original0.requires_grad  # the norm is fixed to 1
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(10))
    free = DINOHead(16, 10, hidden_dim=8, bottleneck_dim=4, norm_last_layer=False)
    assert free.last_layer.parametrizations.weight.original0.requires_grad


def test_tile_bank_mixes_sources_by_weight(tmp_path):
    bank = TileBank({"a": np.zeros((10, 8, 8)), "b": np.ones((1000, 8, 8))},
                    {"a": 3.0, "b": 1.0})
    batch = bank.sample(np.random.default_rng(0), 4000)
    assert batch.shape == (4000, 1, 8, 8)
    share_a = float((batch[:, 0, 0, 0] == 0).float().mean())
    assert share_a == pytest.approx(0.75, abs=0.03)
    assert bank.summary()["a"] == {"tiles": 10, "share": 0.75}
    with pytest.raises(ValueError, match="no training tiles"):
        TileBank({"a": np.zeros((0, 8, 8))}, {"a": 1.0})
    path = tmp_path / "tiles.npy"
    np.save(path, np.zeros((3, 16, 16), np.float32))
    with pytest.raises(ValueError, match=r"expected \(N, 8, 8\)"):
        build_tile_bank(DataConfig(sources=[{"kind": "npy", "path": str(path)}], tile_size=8))
    with pytest.raises(ValueError, match="unknown data source kind 'hdf5'; use one of"):
        build_tile_bank(DataConfig(sources=[{"kind": "hdf5"}], root=str(tmp_path)))


def test_tile_bank_keeps_bright_snr_finite(tmp_path):
    # S/N tiles of a bright source in a deep field exceed float16's range (65504): the bank
    # clips them there instead of storing inf (which made the DINO loss NaN)
    tiles = np.zeros((2, 8, 8), np.float32)
    tiles[0, 4, 4] = 4.6e5
    tiles[1, 2, 2] = -1e5
    path = tmp_path / "bright.npy"
    np.save(path, tiles)
    bank = build_tile_bank(DataConfig(sources=[{"kind": "npy", "path": str(path)}],
                                      tile_size=8))
    stored = np.asarray(bank.banks[0], dtype=np.float32)
    assert np.isfinite(stored).all()
    assert stored[0, 4, 4] == np.finfo(np.float16).max
    assert stored[1, 2, 2] == -np.finfo(np.float16).max


def test_real_sources_pass_the_leakage_guard(shared_data, tmp_path):
    import csv
    import shutil

    from radiofm.datasets import evaluation_positions
    from radiofm.train._data import _mgcls_tiles

    guard = evaluation_positions(shared_data)
    tiles = _mgcls_tiles(DataConfig(root=str(shared_data), tile_size=64), guard, limit=20)
    assert tiles.shape == (20, 64, 64) and np.isfinite(tiles).all()
    # on the S/N scale every MGCLS cutout keeps its source (read as grey levels, a third
    # of them had no contrast and became blank tiles), and its background stays at zero
    snr = _mgcls_tiles(DataConfig(root=str(shared_data), tile_size=64, normalization="snr"),
                       guard, limit=20)
    assert snr.max(axis=(1, 2)).min() > 5 and (snr == 0).mean() > 0.1
    bank = build_tile_bank(DataConfig(root=str(shared_data), tile_size=100,
                                      sources=[{"kind": "first", "limit": 6}]))
    assert len(bank) > 0 and bank.tile_size == 100
    # 150-pixel tiles resampled to 64: four per 300-pixel field, stretched to [0, 1]
    resampled = build_tile_bank(DataConfig(root=str(shared_data), tile_size=64, sources=[
        {"kind": "first", "limit": 6, "tile_pixels": 150}]))
    tiles = np.asarray(resampled.banks[0], dtype=np.float32)
    assert tiles.shape[1:] == (64, 64) and len(tiles) <= 24
    assert tiles.min() >= 0 and tiles.max() == 1
    # tiles overlapping by half: nine per field, and the centre one holds the field's
    # MiraBest source whole, which the four corner tiles above cut at their shared corner
    overlapping = build_tile_bank(DataConfig(
        root=str(shared_data), tile_size=64, normalization="snr",
        sources=[{"kind": "first", "limit": 6, "tile_pixels": 150, "overlap": 75}]))
    snr = np.asarray(overlapping.banks[0], dtype=np.float32)
    assert 24 < len(snr) <= 54
    centre_peaks = snr[:, 24:40, 24:40].max(axis=(1, 2))
    assert (centre_peaks > 5).sum() >= 4  # one centred tile per field (6, some blank-edged)
    # through a FITS folder, a MiraBest test field loses every tile near its source
    with open(shared_data / "first_fields" / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    test_field = next(r["file"] for r in rows if r["mirabest_split"] == "test")
    folder = tmp_path / "fits"
    folder.mkdir()
    shutil.copy(shared_data / "first_fields" / test_field, folder / test_field)
    config = DataConfig(root=str(shared_data), tile_size=100,
                        sources=[{"kind": "fits", "path": str(folder)}])
    assert len(build_tile_bank(config)) < 9  # a 300 px field has 9 tiles of 100 px


def _tiny_run(tmp_path, epochs, steps_per_epoch, *, name="run", **optim):
    """A ResNet-18 run on one simulated field, small enough to train in seconds; ``optim``
    sets more ``[optim]`` options."""
    return TrainConfig.from_dict({
        "data": {"sources": [{"kind": "simulated", "fields": 1, "size": 128}], "tile_size": 64},
        "model": {"arch": "resnet18", "out_dim": 16, "hidden_dim": 16, "bottleneck_dim": 8},
        "crops": {"global_size": 32, "local_size": 16, "n_local": 1},
        "optim": {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": 2,
                  **optim},
        "run": {"output": str(tmp_path / name), "threads": 1},
    })


def test_koleo_weight_adds_the_spread_term_to_the_students_gradient(tmp_path):
    import csv

    from radiofm.train import train

    runs = {weight: train(_tiny_run(tmp_path, 1, 2, name=f"koleo-{weight}",
                                    koleo_weight=weight), progress=False)
            for weight in (0.0, 0.5)}
    logs = {weight: list(csv.DictReader((run / "train_log.csv").read_text().splitlines()))
            for weight, run in runs.items()}
    assert [row["koleo"] for row in logs[0.0]] == ["", ""]  # left out, not logged as 0
    assert all(np.isfinite(float(row["koleo"])) for row in logs[0.5])
    # step 0 sees the same weights, crops and teacher: the DINO term alone is logged
    assert logs[0.0][0]["loss"] == logs[0.5][0]["loss"]
    state = [torch.load(run / "teacher_backbone.pt", weights_only=True)["state_dict"]
             for run in runs.values()]
    assert any(not torch.equal(state[0][k], state[1][k]) for k in state[0]
               if state[0][k].is_floating_point())


def test_sinkhorn_centering_reaches_the_trainers_teacher_targets(tmp_path):
    import csv

    from radiofm.train import train

    runs = {centering: train(_tiny_run(tmp_path, 1, 2, name=centering, centering=centering),
                             progress=False)
            for centering in ("ema", "sinkhorn")}
    logs = {centering: list(csv.DictReader((run / "train_log.csv").read_text().splitlines()))
            for centering, run in runs.items()}
    # step 0: same weights and crops, so only the teacher's targets can part the two losses
    assert logs["ema"][0]["loss"] != logs["sinkhorn"][0]["loss"]
    centre = {centering: torch.load(run / "checkpoint.pt", weights_only=True)["center"]
              for centering, run in runs.items()}
    assert centre["ema"].any() and not centre["sinkhorn"].any()
    assert (runs["sinkhorn"] / "teacher_backbone.pt").exists()


def test_stop_after_counts_the_runs_steps_from_its_start(tmp_path):
    from radiofm.train import train

    config = _tiny_run(tmp_path, epochs=2, steps_per_epoch=3)
    run = tmp_path / "run"

    def step():
        return torch.load(run / "checkpoint.pt", weights_only=True)["step"]

    train(config, progress=False, stop_after=2)
    assert step() == 2
    train(config, progress=False, resume=True, stop_after=4)  # to step 4, not 2 + 4
    assert step() == 4
    assert not (run / "teacher_backbone.pt").exists()  # the schedule (6 steps) is not done
    with pytest.raises(ValueError, match="already at step 4, not before stop_after=4"):
        train(config, progress=False, resume=True, stop_after=4)
    assert step() == 4  # the refused call left the checkpoint alone
    train(config, progress=False, resume=True)
    assert step() == 6
    assert (run / "teacher_backbone.pt").exists()


def test_resume_refuses_a_changed_config(tmp_path):
    from radiofm.train import train

    config = _tiny_run(tmp_path, epochs=1, steps_per_epoch=2)
    train(config, progress=False, stop_after=1)
    with pytest.raises(ValueError, match="exists: pass resume=True"):
        train(config, progress=False)
    config.optim.lr = 1e-3
    with pytest.raises(ValueError, match=r"config changed since it was written \(sections "
                                         r"\['optim'\]\)"):
        train(config, progress=False, resume=True)
