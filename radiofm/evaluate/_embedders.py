"""Embedding functions the harness compares: a trained model, a random one, raw pixels.

Every embedder maps normalised stamps (N, S, S) float32 at its ``input_size`` to features
(N, D) float32. `load_embedder` builds one from a text spec, so that the command line and
the Python API name models the same way.
"""

from pathlib import Path

import numpy as np

from ..models import VIEW_COUNTS, dihedral_views
from ..tiling import NormalizationSpec

__all__ = ["PixelEmbedder", "ViewAveraged", "load_embedder", "random_twin", "with_views"]


class PixelEmbedder:
    """Raw-pixel baseline: the stamp itself, flattened (the probes reduce it with PCA).

    Parameters
    ----------
    input_size : int
        Side of the stamps in pixels.
    n_components : int
        PCA components the probes fit on each task's training data.
    """

    def __init__(self, input_size=32, n_components=64):
        self.name = f"pixels{input_size}"
        self.input_size = int(input_size)
        self.pca = int(n_components)

    def embed(self, stamps):
        """(N, S, S) stamps -> (N, S*S) float32 features."""
        stamps = np.asarray(stamps, dtype=np.float32)
        return stamps.reshape(len(stamps), -1)


class ViewAveraged:
    """An embedder whose features are averaged over the 8 rotations and reflections of each
    stamp (`radiofm.models.dihedral_views`), as exported models with ``views=8`` do.

    Parameters
    ----------
    embedder
        Any embedder (``name``, ``input_size``, ``pca``, ``embed``); its other attributes
        are passed through.
    """

    views = VIEW_COUNTS[-1]

    def __init__(self, embedder):
        if getattr(embedder, "views", 1) != 1:
            raise ValueError(f"{embedder.name} already averages over {embedder.views} views")
        self.embedder = embedder

    def __getattr__(self, name):
        if name == "embedder":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.embedder, name)

    def __repr__(self):
        return f"<ViewAveraged {self.views} views of {self.embedder!r}>"

    def embed(self, stamps):
        """(N, S, S) stamps -> (N, D) float32 features, the mean over the views."""
        total = None
        for view in dihedral_views(np.asarray(stamps, dtype=np.float32)):
            features = np.asarray(self.embedder.embed(np.ascontiguousarray(view)), np.float64)
            total = features if total is None else total + features
        return (total / self.views).astype(np.float32)


def with_views(embedder, views):
    """``embedder`` averaging over ``views`` views: wrapped, unless it already does.

    Parameters
    ----------
    embedder
        Any embedder; an exported model records its own ``views``.
    views : {1, 8}
        Views the features should average over.

    Returns
    -------
    embedder
        ``embedder`` itself, or `ViewAveraged` around it.

    Raises
    ------
    ValueError
        ``views`` is not 1 or 8, or the embedder averages over another number of views (an
        exported model's graph).
    """
    own = getattr(embedder, "views", 1)
    if views == own:
        return embedder
    if views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views!r}")
    if own != 1:
        raise ValueError(f"{embedder.name} averages over {own} views in its graph; it cannot be "
                         f"evaluated with {views}")
    return ViewAveraged(embedder)


class _TorchEmbedder:
    """A torch backbone run in eval mode on CPU (or the given device)."""

    pca = None
    normalization = None  # a checkpoint sets its training stretch

    def __init__(self, backbone, name, input_size, architecture, batch_size=128):
        self.backbone = backbone.eval()
        self.name = name
        self.architecture = architecture
        self.input_size = int(input_size)
        self.batch_size = batch_size

    def embed(self, stamps):
        """(N, S, S) stamps -> (N, D) float32 features."""
        from ..train import embed_tiles

        stamps = np.asarray(stamps, dtype=np.float32)[:, None]
        return embed_tiles(self.backbone, stamps, batch_size=self.batch_size)


class _OnnxEmbedder:
    """The ``embedding`` output of a radiofm ONNX model (no torch needed)."""

    pca = None

    def __init__(self, path, batch_size=128):
        from ..inference import load_model

        self.model = load_model(path)
        self.name = self.model.name
        self.normalization = self.model.spec.normalization
        self.architecture = {key: self.model.metadata.get(key)
                             for key in ("arch", "patch_size", "timm_options")}
        self.input_size = int(self.model.spec.input_pixels)
        self.views = int(self.model.spec.views)
        self.batch_size = batch_size

    def embed(self, stamps):
        """(N, S, S) stamps -> (N, D) float32 features."""
        stamps = np.asarray(stamps, dtype=np.float32)[:, None]
        parts = [self.model.run(stamps[start:start + self.batch_size])["embedding"]
                 for start in range(0, len(stamps), self.batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)


def load_embedder(spec, *, input_size=None, seed=0, batch_size=128):
    """An embedder from a text spec.

    Parameters
    ----------
    spec : str or path-like
        ``"random:ARCH"`` (a randomly initialised timm backbone, e.g. ``random:resnet18``),
        ``"pixels"`` (raw pixels; `PixelEmbedder`), a training run folder or checkpoint
        (``teacher_backbone.pt`` or ``checkpoint.pt`` of `radiofm.train`), or an ``.onnx``
        file written by `radiofm.export`.
    input_size : int, optional
        Stamp side for random and pixel embedders (64 and 32 by default) and for
        checkpoints that do not record one (their training crop size otherwise).
    seed : int
        Seed of the random initialisation.
    batch_size : int
        Stamps per forward pass.

    Returns
    -------
    embedder
        An object with ``name``, ``input_size``, ``pca`` and ``embed(stamps)``.
    """
    text = str(spec)
    if text.startswith("pixels"):
        return PixelEmbedder(input_size or 32)
    if text.startswith("random:"):
        return _random_backbone({"arch": text.split(":", 1)[1]}, input_size or 64, seed,
                                batch_size)
    path = Path(text).expanduser()
    if path.suffix == ".onnx":
        if not path.is_file():
            raise FileNotFoundError(f"no such ONNX model: {path}")
        return _OnnxEmbedder(path, batch_size)
    if path.is_dir():
        finished = path / "teacher_backbone.pt"
        path = finished if finished.is_file() else path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no such model {text!r}: give random:ARCH, pixels, a training run folder, a "
            ".pt checkpoint or an .onnx file")
    import torch

    from ..train import load_backbone

    backbone = load_backbone(path)
    config = torch.load(path, map_location="cpu", weights_only=True).get("config") or {}
    normalization = config.get("data", {}).get("normalization")
    size = input_size or config.get("crops", {}).get("global_size", 64)
    model = config.get("model", {})
    architecture = {key: model.get(key) for key in ("arch", "patch_size", "timm_options")}
    embedder = _TorchEmbedder(backbone, f"{path.parent.name}/{path.name}", size, architecture,
                              batch_size)
    if normalization is not None:
        embedder.normalization = NormalizationSpec.from_value(normalization)
    return embedder


def normalization_of(embedder):
    """The stretch an embedder's model was trained with, with all its options.

    Parameters
    ----------
    embedder
        Any embedder; ONNX models and checkpoints record their stretch, others get the
        2-98 % percentile stretch.

    Returns
    -------
    spec : `~radiofm.tiling.NormalizationSpec`
    """
    spec = getattr(embedder, "normalization", None)
    if spec is None and getattr(embedder, "metadata", None):
        spec = embedder.metadata["normalization"]
    return NormalizationSpec.from_value(spec or "percentile")


def _random_backbone(architecture, input_size, seed, batch_size):
    import torch

    from ..train import create_backbone

    torch.manual_seed(seed)
    options = {key: value for key, value in architecture.items() if value}
    backbone = create_backbone(options.pop("arch"), **options.pop("timm_options", {}),
                               **options)
    return _TorchEmbedder(backbone, f"random:{architecture['arch']}", input_size, architecture,
                          batch_size)


def random_twin(embedder, seed=0, batch_size=128):
    """A randomly initialised backbone with the architecture and input size of ``embedder``.

    Parameters
    ----------
    embedder
        A torch or ONNX embedder from `load_embedder`.
    seed : int
        Seed of the initialisation.
    batch_size : int
        Stamps per forward pass.

    Returns
    -------
    twin : embedder or None
        None when the architecture is unknown.
    """
    architecture = getattr(embedder, "architecture", None)
    if not architecture or not architecture.get("arch"):
        return None
    return _random_backbone(architecture, embedder.input_size, seed, batch_size)
