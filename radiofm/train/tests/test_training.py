"""Whole training runs: exact resume after kill -9 or SIGTERM, and two processes through
torchrun."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")

CONFIG = """
[data]
sources = [{{kind = "simulated", fields = 1, size = 256}}]
tile_size = 64

[model]
arch = "vit_tiny_patch16_224"
patch_size = 8
out_dim = 128
hidden_dim = 64
bottleneck_dim = 32

[crops]
global_size = 32
local_size = 16
n_local = 2

[optim]
epochs = 3
steps_per_epoch = 4
batch_size = 4

[run]
output = "{output}"
checkpoint_every = 2
threads = 1
"""


def _config(folder, name):
    path = folder / f"{name}.toml"
    path.write_text(CONFIG.format(output=folder / name))
    return path


def _environment():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


def _teacher(folder):
    return torch.load(folder / "teacher_backbone.pt", weights_only=True)["state_dict"]


def _log(folder):
    with open(folder / "train_log.csv", newline="") as stream:
        return list(csv.DictReader(stream))


TRAIN = [sys.executable, "-m", "radiofm", "train"]


def _train(config, *options):
    """One ``radiofm train`` process to its end; raises if it fails."""
    subprocess.run(TRAIN + [str(config), *options], check=True, env=_environment(),
                   capture_output=True)


def _assert_same_teacher(expected_folder, resumed_folder):
    expected, resumed = _teacher(expected_folder), _teacher(resumed_folder)
    assert expected.keys() == resumed.keys()
    for name, value in expected.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


def test_resume_after_kill_ends_with_the_same_weights(tmp_path):
    _train(_config(tmp_path, "whole"))

    killed = _config(tmp_path, "killed")
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    process = subprocess.Popen(TRAIN + [str(killed)], env=_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = torch.load(checkpoint, weights_only=True)["step"]
    assert stopped_at < 12, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "teacher_backbone.pt").exists()
    with pytest.raises(subprocess.CalledProcessError):  # refuses to start over the old run
        _train(killed)
    _train(killed, "--resume")

    _assert_same_teacher(tmp_path / "whole", tmp_path / "killed")
    whole_log, resumed_log = _log(tmp_path / "whole"), _log(tmp_path / "killed")
    assert [r["step"] for r in resumed_log] == [str(s) for s in range(12)]
    assert [r["loss"] for r in resumed_log] == [r["loss"] for r in whole_log]


def test_sigterm_stops_after_its_step_with_a_checkpoint(tmp_path):
    _train(_config(tmp_path, "whole"))

    stopped = _config(tmp_path, "stopped")
    log_file = tmp_path / "stopped" / "train_log.csv"
    process = subprocess.Popen(TRAIN + [str(stopped)], env=_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while (process.poll() is None and time.monotonic() < deadline
           and (not log_file.exists() or log_file.read_text().count("\n") < 2)):
        time.sleep(0.01)  # until the first step is logged
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr  # the command line's "interrupted"
    assert "SIGTERM: stopped after step" in stderr
    state = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
    assert state["step"] == len(_log(tmp_path / "stopped")) < 12  # no logged step is lost
    assert not (tmp_path / "stopped" / "teacher_backbone.pt").exists()
    _train(stopped, "--resume")
    _assert_same_teacher(tmp_path / "whole", tmp_path / "stopped")


def test_two_processes_with_torchrun(tmp_path):
    config = _config(tmp_path, "ddp")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "radiofm", "train", str(config)]
    done = subprocess.run(command, env=_environment(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _log(tmp_path / "ddp")
    assert len(rows) == 12  # one log, written by the first process only
    saved = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 12
    # the effective batch is 2 x 4: the peak learning rate scales with it
    single = 5e-4 * 4 / 256
    assert max(float(r["lr"]) for r in rows) == pytest.approx(2 * single, rel=0.3)
    assert _teacher(tmp_path / "ddp")


SINKHORN_PROCESS = """
import sys

import torch
import torch.distributed as dist

from radiofm.train import sinkhorn_knopp

dist.init_process_group("gloo")
rank = dist.get_rank()
scores = torch.load(sys.argv[1], weights_only=True).chunk(dist.get_world_size())[rank]
torch.save(sinkhorn_knopp(scores), sys.argv[2] + f"/rank{rank}.pt")
dist.destroy_process_group()
"""


def test_sinkhorn_knopp_balances_the_batch_of_every_process(tmp_path):
    from radiofm.train import sinkhorn_knopp

    scores = torch.randn(6, 16, generator=torch.Generator().manual_seed(0)) / 0.04
    scores[:3, 0] += 200.0  # the first process's rows all lean on prototype 0
    torch.save(scores, tmp_path / "scores.pt")
    script = tmp_path / "sinkhorn_process.py"
    script.write_text(SINKHORN_PROCESS)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(script), str(tmp_path / "scores.pt"), str(tmp_path)]
    done = subprocess.run(command, env=_environment(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    whole = sinkhorn_knopp(scores)
    torch.testing.assert_close(torch.cat(parts), whole)  # as one process with the whole batch
    assert not torch.allclose(parts[0], sinkhorn_knopp(scores[:3]))  # not each half alone
