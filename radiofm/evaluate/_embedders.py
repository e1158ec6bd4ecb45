"""Embedding functions the harness compares: a trained model, a random one, raw pixels.

Every embedder maps normalised stamps (N, S, S) float32 at its ``input_size`` to features
(N, D) float32. `load_embedder` builds one from a text spec, so that the command line and
the Python API name models the same way.
"""

from pathlib import Path

import numpy as np

from ..models import VIEW_COUNTS, dihedral_views
from ..tiling import NormalizationSpec

__all__ = ["EVALUATION_VIEWS", "PixelEmbedder", "ViewAveraged", "load_embedder", "random_twin",
           "with_views"]


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


#: view counts the harness can average over: one view, the stamp and its mirror image, or
#: all 8 rotations and reflections (`radiofm.models.dihedral_views` order)
EVALUATION_VIEWS = {1: (0,), 2: (0, 4), 8: tuple(range(8))}


class ViewAveraged:
    """An embedder whose features are averaged over rotations and reflections of each stamp
    (`radiofm.models.dihedral_views`), as exported models with ``views=8`` do.

    Parameters
    ----------
    embedder
        Any embedder (``name``, ``input_size``, ``pca``, ``embed``); its other attributes
        are passed through.
    views : {2, 8}
        8: all rotations and reflections; 2: the stamp and its left-right mirror image (a
        cheaper approximation, for the embedding-cost study).
    """

    def __init__(self, embedder, views=VIEW_COUNTS[-1]):
        if getattr(embedder, "views", 1) != 1:
            raise ValueError(f"{embedder.name} already averages over {embedder.views} views")
        if views not in EVALUATION_VIEWS or views == 1:
            raise ValueError(f"ViewAveraged views must be 2 or 8, got {views!r}")
        self.embedder = embedder
        self.views = views

    def __getattr__(self, name):
        if name == "embedder":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.embedder, name)

    def __repr__(self):
        return f"<ViewAveraged {self.views} views of {self.embedder!r}>"

    def embed(self, stamps):
        """(N, S, S) stamps -> (N, D) float32 features, the mean over the views."""
        total = None
        views = dihedral_views(np.asarray(stamps, dtype=np.float32))
        for index in EVALUATION_VIEWS[self.views]:
            features = np.asarray(self.embedder.embed(np.ascontiguousarray(views[index])),
                                  np.float64)
            total = features if total is None else total + features
        return (total / self.views).astype(np.float32)


def with_views(embedder, views):
    """``embedder`` averaging over ``views`` views: wrapped, unless it already does.

    Parameters
    ----------
    embedder
        Any embedder; an exported model records its own ``views``.
    views : {1, 2, 8}
        Views the features should average over (see `EVALUATION_VIEWS`).

    Returns
    -------
    embedder
        ``embedder`` itself, `ViewAveraged` around it, or (for an exported model that
        averages 8 views in its graph) the model reading the embedding of each view.

    Raises
    ------
    ValueError
        ``views`` is not 1, 2 or 8, or the embedder averages over another number of views
        and cannot give single views.
    """
    own = getattr(embedder, "views", 1)
    if views == own:
        return embedder
    if views not in EVALUATION_VIEWS:
        raise ValueError(f"views must be one of {tuple(EVALUATION_VIEWS)}, got {views!r}")
    if own != 1:
        if hasattr(embedder, "with_views"):
            return embedder.with_views(views)
        raise ValueError(f"{embedder.name} averages over {own} views in its graph; it cannot be "
                         f"evaluated with {views}")
    return ViewAveraged(embedder, views)


class _OnnxEmbedder:
    """The ``embedding`` output of a radiofm ONNX model (no torch needed).

    A model that averages 8 views in its graph can also give the embedding of each view
    (`with_views`): the per-view tensor the graph averages is added as an output, so 1, 2
    and 8 views come from one run.
    """

    pca = None

    def __init__(self, path, batch_size=128):
        from ..inference import load_model

        self.path = path
        self.model = load_model(path)
        self.name = self.model.name
        self.metadata = self.model.metadata
        self.normalization = self.model.spec.normalization
        self.architecture = {key: self.model.metadata.get(key)
                             for key in ("arch", "patch_size", "timm_options", "feature_stages")}
        self.input_size = int(self.model.spec.input_pixels)
        self.views = int(self.model.spec.views)
        self.batch_size = batch_size
        self._per_view = None  # (session, output name), built on first use
        self._last = (None, None)

    def embed(self, stamps):
        """(N, S, S) stamps -> (N, D) float32 features."""
        stamps = np.asarray(stamps, dtype=np.float32)[:, None]
        parts = [self.model.run(stamps[start:start + self.batch_size])["embedding"]
                 for start in range(0, len(stamps), self.batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def with_views(self, views):
        """This model's embedding averaged over ``views`` of its own 8 (`EVALUATION_VIEWS`)."""
        if self.views != VIEW_COUNTS[-1]:
            raise ValueError(f"{self.name} averages over {self.views} views; only an 8-view "
                             "graph gives single views")
        return _GraphViews(self, views)

    def per_view(self, stamps):
        """(8, N, D) float32: the embedding of every view of each stamp (8-view graphs)."""
        if stamps is self._last[0]:
            return self._last[1]
        if self._per_view is None:
            self._per_view = _per_view_session(self.path, self.model)
        session, name = self._per_view
        parts = []
        batch = np.asarray(stamps, dtype=np.float32)[:, None]
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start:start + self.batch_size]
            (flat,) = session.run([name], {session.get_inputs()[0].name: chunk})
            parts.append(flat.reshape(self.views, len(chunk), -1))
        result = np.concatenate(parts, axis=1).astype(np.float32, copy=False)
        self._last = (stamps, result)
        return result


class _GraphViews:
    """An 8-view ONNX model read one, two or eight views at a time (`EVALUATION_VIEWS`)."""

    pca = None

    def __init__(self, model, views):
        self.model = model
        self.views = views
        self.name = f"{model.name} ({views} view{'s' if views > 1 else ''})"
        self.input_size = model.input_size
        self.normalization = model.normalization
        self.architecture = model.architecture

    def embed(self, stamps):
        """(N, S, S) stamps -> (N, D) float32, the mean over this object's views."""
        per_view = self.model.per_view(stamps)
        return per_view[list(EVALUATION_VIEWS[self.views])].mean(axis=0)


def _per_view_session(path, model):
    """An onnxruntime session of ``path`` that also outputs the per-view embeddings.

    The graph ends ``... -> Reshape(views, N, D) -> ReduceMean -> embedding``; the Reshape's
    input, (views * N, D) in `radiofm.models.dihedral_views` order, becomes an output.
    """
    import onnxruntime as ort

    try:
        import onnx
    except ImportError as error:
        raise ImportError("reading single views of an 8-view model needs the onnx package "
                          "(pip install onnx)") from error
    graph = onnx.load(str(path))
    producers = {output: node for node in graph.graph.node for output in node.output}
    mean = producers.get("embedding")
    reshape = producers.get(mean.input[0]) if mean is not None else None
    if mean is None or mean.op_type != "ReduceMean" or reshape is None or \
            reshape.op_type != "Reshape":
        raise ValueError(f"{path}: the embedding is not a mean over views; cannot read single "
                         "views from this graph")
    name = reshape.input[0]
    graph.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = getattr(model, "threads", None) or 0
    try:
        session = ort.InferenceSession(graph.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: onnxruntime cannot run the per-view graph ({error})") from error
    return session, name


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
    if not (path.is_dir() or path.is_file()):
        raise FileNotFoundError(
            f"no such model {text!r}: give random:ARCH, pixels, a training run folder, a "
            ".pt checkpoint or an .onnx file")
    from ..export import checkpoint_embedder

    return checkpoint_embedder(path, input_pixels=input_size, batch_size=batch_size)


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
    from ..export import TorchEmbedder
    from ..train import create_backbone

    options = {key: value for key, value in architecture.items() if value}
    arch, timm_options = options.pop("arch"), options.pop("timm_options", {})
    backbone = create_backbone(arch, seed=seed, **timm_options, **options)
    stages = options.get("feature_stages")
    name = f"random:{arch}" + (f" (stages {','.join(map(str, stages))})" if stages else "")
    return TorchEmbedder(backbone, input_size=input_size, normalization="percentile",
                         name=name, arch=arch, patch_size=options.get("patch_size"),
                         timm_options=timm_options, batch_size=batch_size, stretch_known=False)


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
