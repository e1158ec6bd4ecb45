"""A short DINO run must learn: kNN accuracy up from the random backbone, no collapse."""

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch, timm) is not installed")
neighbors = pytest.importorskip("sklearn.neighbors")

from radiofm.train import TrainConfig, create_backbone, embed_tiles, load_backbone, train  # noqa: E402

SIZE = 32


def _stamps(count, rng):
    """Labelled 32 px stamps: 0 a point source, 1 a double (FRII-like), 2 an elongated jet.

    Random position, position angle, flux and noise; each stamp has the 2-98 % stretch.
    """
    y, x = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    labels = rng.integers(0, 3, count)
    stamps = np.empty((count, SIZE, SIZE), np.float32)
    for k, label in enumerate(labels):
        cx, cy = rng.uniform(10, 22, 2)
        pa = rng.uniform(0, np.pi)
        c, s = np.cos(pa), np.sin(pa)

        def blob(px, py, along, across, c=c, s=s):
            u = (x - px) * c + (y - py) * s
            v = -(x - px) * s + (y - py) * c
            return np.exp(-0.5 * ((u / along) ** 2 + (v / across) ** 2))

        if label == 0:
            image = blob(cx, cy, 1.5, 1.5)
        elif label == 1:
            half = rng.uniform(5, 8)
            image = blob(cx + half * c, cy + half * s, 1.5, 1.5) + blob(
                cx - half * c, cy - half * s, 1.5, 1.5)
        else:
            image = blob(cx, cy, 6.0, 1.2)
        image = image * rng.uniform(0.5, 1.0) + rng.normal(0, 0.05, image.shape)
        low, high = np.percentile(image, [2, 98])
        stamps[k] = np.clip((image - low) / (high - low), 0, 1)
    return stamps, labels


def _knn_accuracy(backbone, train_x, train_y, test_x, test_y):
    knn = neighbors.KNeighborsClassifier(10, metric="cosine")
    knn.fit(embed_tiles(backbone, train_x), train_y)
    return knn.score(embed_tiles(backbone, test_x), test_y)


def test_a_short_run_beats_the_random_backbone_without_collapse(tmp_path):
    rng = np.random.default_rng(0)
    train_x, train_y = _stamps(600, rng)
    test_x, test_y = _stamps(300, rng)
    np.save(tmp_path / "stamps.npy", train_x)
    config = TrainConfig.from_dict({
        "data": {"sources": [{"kind": "npy", "path": str(tmp_path / "stamps.npy")}],
                 "tile_size": SIZE},
        "model": {"arch": "resnet18", "out_dim": 1024, "hidden_dim": 256, "bottleneck_dim": 64,
                  "norm_last_layer": False, "drop_path_rate": 0.0},
        "crops": {"global_size": 32, "local_size": 16, "n_local": 2,
                  "global_scale": [0.5, 1.0], "local_scale": [0.3, 0.6]},
        "optim": {"epochs": 2, "steps_per_epoch": 50, "batch_size": 32, "lr": 0.004,
                  "warmup_epochs": 0.3, "freeze_last_layer": 0, "momentum_teacher": 0.99},
        "run": {"output": str(tmp_path / "run"), "checkpoint_every": 1000, "threads": 2},
    })
    output = train(config, progress=False)

    torch.manual_seed(config.run.seed)  # the student's (and teacher's) initial weights
    random = create_backbone("resnet18").eval()
    trained = load_backbone(output / "teacher_backbone.pt")
    before = _knn_accuracy(random, train_x, train_y, test_x, test_y)
    after = _knn_accuracy(trained, train_x, train_y, test_x, test_y)
    assert after >= before + 0.15, f"kNN accuracy {before:.2f} -> {after:.2f}"

    with open(output / "train_log.csv", newline="") as stream:
        last = list(csv.DictReader(stream))[-10:]
    assert np.mean([float(r["teacher_entropy"]) for r in last]) > 0.5  # not one prototype
    assert np.mean([float(r["mean_entropy"]) for r in last]) < 0.97  # not uniform
    features = embed_tiles(trained, test_x)
    assert features.std(axis=0).mean() > 0.05  # embeddings still spread across images
