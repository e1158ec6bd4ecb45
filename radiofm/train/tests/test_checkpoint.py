"""Checkpoints carry their sha256: damaged, truncated and foreign files are refused."""

import logging

import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")

from radiofm.train import (  # noqa: E402
    CheckpointError,
    create_backbone,
    find_checkpoint,
    load_backbone,
    read_checkpoint,
    read_run,
    save_checkpoint,
)

CONFIG = {"model": {"arch": "resnet10t", "patch_size": 8, "timm_options": {}},
          "data": {"normalization": "percentile"}, "crops": {"global_size": 32}}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    backbone = create_backbone("resnet10t")
    save_checkpoint({"model": CONFIG["model"], "state_dict": backbone.state_dict(),
                     "config": CONFIG, "radiofm_version": "test", "data": "{}"},
                    folder / "teacher_backbone.pt")
    return folder


def _copy(source, target, change=None):
    raw = bytearray(source.read_bytes())
    if change is not None:
        raw = change(raw)
    target.write_bytes(bytes(raw))
    return target


def test_round_trip_gives_the_same_weights(run_folder):
    backbone, state, path = read_run(run_folder)
    assert path.name == "teacher_backbone.pt"
    assert state["radiofm_version"] == "test"
    x = torch.zeros(1, 1, 32, 32)
    assert load_backbone(run_folder)(x).shape == backbone(x).shape
    assert [p.name for p in run_folder.iterdir()] == ["teacher_backbone.pt"]


def test_a_save_that_fails_keeps_the_old_checkpoint_whole(run_folder, tmp_path, monkeypatch):
    path = _copy(run_folder / "teacher_backbone.pt", tmp_path / "checkpoint.pt")
    before = path.read_bytes()

    def killed(state, target):
        with open(target, "wb") as stream:
            stream.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 1}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert read_checkpoint(path)["radiofm_version"] == "test"


def _flip(raw):
    raw[len(raw) // 2] ^= 0x01
    return raw


@pytest.mark.parametrize("change, fragment", [
    (_flip, "is damaged: its sha256"),
    (lambda raw: raw[: len(raw) // 2], "cannot be read as a radiofm checkpoint"),
    (lambda raw: raw[:-1], "is truncated or damaged"),
    (lambda raw: bytearray(b"just some text\n"), "not a radiofm checkpoint"),
    (lambda raw: bytearray(), "not a radiofm checkpoint"),
])
def test_damaged_file_is_refused_with_its_name(run_folder, tmp_path, change, fragment):
    bad = _copy(run_folder / "teacher_backbone.pt", tmp_path / "teacher_backbone.pt", change)
    for reader in (read_checkpoint, load_backbone):
        with pytest.raises(CheckpointError, match=fragment) as error:
            reader(bad)
        assert str(bad) in str(error.value) and "\n" not in str(error.value)


def test_torch_file_that_is_no_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    save_checkpoint({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="lacks the config and the teacher weights"):
        read_checkpoint(path)


def test_file_without_checksum_loads_with_a_warning(run_folder, tmp_path, caplog):
    state = torch.load(run_folder / "teacher_backbone.pt", weights_only=True)
    old = tmp_path / "checkpoint.pt"
    torch.save(state, old)
    with caplog.at_level(logging.WARNING, logger="radiofm"):
        assert read_checkpoint(old)["radiofm_version"] == "test"
    assert "carries no checksum" in caplog.text


def test_folder_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="has neither teacher_backbone.pt nor"):
        find_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_backbone(tmp_path / "missing.pt")
