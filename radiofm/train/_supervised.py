"""A supervised baseline for the evaluation harness: a small CNN trained on a task's own train
split (torch code, so it lives with the trainer)."""

import numpy as np

__all__ = ["train_small_cnn"]


def train_small_cnn(train_x, train_y, n_classes, *, epochs=30, batch_size=64, lr=2e-3, seed=0,
                    threads=None):
    """Train a four-block CNN classifier with flips and quarter-turn augmentation.

    Parameters
    ----------
    train_x : `~numpy.ndarray`
        (N, S, S) normalised stamps.
    train_y : `~numpy.ndarray`
        Class indices.
    n_classes : int
        Number of classes.
    epochs : int
        Passes over the training stamps.
    batch_size : int
        Stamps per step.
    lr : float
        AdamW learning rate (cosine decay to 0).
    seed : int
        Seed of the initialisation and the augmentation.
    threads : int, optional
        torch CPU threads.

    Returns
    -------
    predict : callable
        ``predict(stamps)`` -> (N, n_classes) class probabilities.
    """
    import torch
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    def block(inputs, outputs):
        return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs),
                nn.ReLU(inplace=True), nn.MaxPool2d(2)]

    model = nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64), *block(64, 64),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                          nn.Linear(64, n_classes))
    steps = epochs * max(1, int(np.ceil(len(train_x) / batch_size)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    x_all = torch.from_numpy(np.asarray(train_x, dtype=np.float32))[:, None]
    y_all = torch.from_numpy(np.asarray(train_y, dtype=np.int64))

    @torch.no_grad()
    def predict(stamps):
        model.eval()
        x = torch.from_numpy(np.asarray(stamps, dtype=np.float32))[:, None]
        return torch.cat([model(x[i:i + 256]).softmax(1) for i in range(0, len(x), 256)]).numpy()

    for _ in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x_all)))
        for start in range(0, len(order), batch_size):
            ids = order[start:start + batch_size]
            x = torch.rot90(x_all[ids], int(rng.integers(4)), dims=(2, 3))
            if rng.random() < 0.5:
                x = torch.flip(x, dims=(3,))
            loss = nn.functional.cross_entropy(model(x), y_all[ids])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return predict
