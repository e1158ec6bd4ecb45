"""onnxruntime sessions for exported models, cached per file and thread count."""

import hashlib
import logging
import os
import threading

import numpy as np
import onnxruntime as ort

from ..models import (
    DEFAULT_MODEL,
    OUTPUTS,
    ModelMetadataError,
    check_sha256,
    graph_sha256,
    locate_model,
    parse_heads,
    parse_metadata,
)

__all__ = ["OnnxModel", "load_model"]

log = logging.getLogger("radiofm")

#: Graph outputs read when the model carries numpy heads (its ``heads`` metadata): the
#: backbone's embedding only; older graphs' folded heads are then ignored.
EMBEDDING_ONLY = ("embedding",)
#: Storage kinds whose outputs for a tile do not depend on the other tiles of its batch:
#: float32 and float16-stored weights. Others (dynamic int8) run one tile at a time.
BATCH_INDEPENDENT = ("none", "fp16-weights")

_CACHE = {}
_CACHE_LOCK = threading.Lock()


def load_model(model=DEFAULT_MODEL, *, threads=None, registry=None):
    """An exported model, ready to run (sessions are cached per file and thread count).

    Parameters
    ----------
    model : str, path-like or `OnnxModel`
        ``"default"``, a name in the bundled registry (its sha256 is checked), or the path
        of an ``.onnx`` file written by `radiofm.export`. An `OnnxModel` is returned as is.
    threads : int, optional
        onnxruntime intra-op threads; default ``$RADIOFM_THREADS`` if set, else all CPUs
        this process may use.
    registry : `~radiofm.models.ModelRegistry`, optional
        Where names are looked up (default: the models bundled with radiofm).

    Returns
    -------
    model : `OnnxModel`

    Raises
    ------
    ValueError
        No such registered model (or no default model yet), a registered file whose sha256
        does not match, a file whose graph does not match its ``weights_sha256`` metadata,
        or a file without radiofm's metadata or whose metadata contradicts its graph.
    FileNotFoundError
        No such file.
    """
    if isinstance(model, OnnxModel):
        return model
    path, name, expected = locate_model(model, registry=registry)
    threads = _threads(threads)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, threads)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    loaded = OnnxModel(path, name=name, threads=threads, expected_sha256=expected)
    with _CACHE_LOCK:
        return _CACHE.setdefault(key, loaded)


def clear_cache():
    """Forget every cached session (e.g. to free memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _threads(threads):
    if threads is None:
        text = os.environ.get("RADIOFM_THREADS", "").strip()
        if text:
            try:
                threads = int(text)
            except ValueError:
                raise ValueError(f"RADIOFM_THREADS must be a whole number of threads, got "
                                 f"{text!r}; unset it to use all CPUs") from None
            if threads < 1:
                raise ValueError(f"RADIOFM_THREADS must be at least 1, got {threads}")
        else:
            threads = len(os.sched_getaffinity(0))
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer):
        raise TypeError(f"threads must be a whole number, got {threads!r}")
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return threads


class OnnxModel:
    """One exported model in an onnxruntime session. Made by `load_model`.

    Attributes
    ----------
    path : `~pathlib.Path`
    name : str
        Registered name, or the file's stem.
    sha256 : str
        Of the file.
    metadata : dict
        Parsed metadata (see `radiofm.models.parse_metadata`).
    spec : `~radiofm.models.ModelSpec`
        The model's contract: input side, tile and stamp angles, stretch, views, classes.
    class_names : list of str
        Morphology classes, in ``morph_logits`` order.
    heads : `~radiofm.models.Heads` or None
        The numpy heads of the ``heads`` metadata (counts, calibrated morphology, OOD
        references); None for older models, whose graph outputs its linear heads.
    outputs : tuple of str
        The graph outputs `run` returns.
    threads : int
    """

    def __init__(self, path, *, name, threads, expected_sha256=None):
        self.path = path
        self.name = name
        self.threads = threads
        # One read: the bytes hashed are the bytes onnxruntime runs.
        content = path.read_bytes()
        self.sha256 = hashlib.sha256(content).hexdigest()
        check_sha256(self.sha256, expected_sha256, path, name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(content, options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(f"{path} is not a model onnxruntime can load: {first}") from None
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = parse_metadata(props, source=str(path))
        stored = self.metadata.get("weights_sha256")
        if stored is not None:
            actual = graph_sha256(content, source=str(path))
            if actual != stored:
                raise ValueError(
                    f"{path}: its weights have sha256 {actual}, but its metadata records "
                    f"{stored}; the file was changed or damaged after export. Refusing to "
                    "load it: export the model again or restore the file"
                )
        elif expected_sha256 is None:
            log.warning("%s carries no weights_sha256 (exported before radiofm recorded it): "
                        "its weights cannot be verified", path)
        self.spec = self.metadata["spec"]
        self.class_names = list(self.spec.class_names)
        self.heads = (parse_heads(self.metadata["heads"], source=str(path))
                      if "heads" in self.metadata else None)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if self.heads is not None and "embedding" in outputs:
            self.outputs = EMBEDDING_ONLY
        elif set(outputs) == set(OUTPUTS):
            self.outputs = OUTPUTS
        else:
            self.outputs = None
        if inputs != ["tiles"] or self.outputs is None:
            raise ValueError(f"{path}: expected input 'tiles' and outputs {OUTPUTS} (or "
                             f"'embedding' with heads metadata), got {inputs} and {outputs}")
        self._check_graph()
        log.debug("loaded %s (%s, sha256 %s, %d threads)", name, path, self.sha256[:12], threads)

    def _check_graph(self):
        """Refuse metadata that contradicts the graph's own input and output shapes."""
        expected = {
            "tiles": (None, 1, self.spec.input_pixels, self.spec.input_pixels),
            "embedding": (None, int(self.metadata["embedding_dim"])),
            "n_compact": (None,),
            "morph_logits": (None, len(self.class_names)),
        }
        what = {"tiles": "input_pixels", "embedding": "embedding_dim",
                "morph_logits": "class_names"}
        problems = []
        used = [node for node in self.session.get_outputs() if node.name in self.outputs]
        for node in list(self.session.get_inputs()) + used:  # heads models ignore the rest
            want = expected[node.name]
            shape = node.shape
            if shape is None:
                continue
            if len(shape) != len(want):
                problems.append(f"{node.name} has {len(shape)} axes, expected {len(want)}")
                continue
            for axis, (have, need) in enumerate(zip(shape, want, strict=True)):
                if need is not None and isinstance(have, int) and have != need:
                    problems.append(f"{node.name} axis {axis} is {have} in the graph but "
                                    f"{need} by its metadata {what.get(node.name, '')}".rstrip())
        if problems:
            raise ModelMetadataError(f"{self.path}: metadata and graph disagree: "
                                     f"{'; '.join(problems)}; export the model again")

    def __repr__(self):
        return (f"<OnnxModel {self.name!r} {self.metadata['arch']}, "
                f"input {self.spec.input_pixels} px, "
                f"embedding {self.metadata['embedding_dim']}, sha256 {self.sha256[:12]}>")

    def run(self, tiles):
        """Run the model on normalised, resampled tiles.

        Parameters
        ----------
        tiles : array-like
            (B, 1, S, S) or (B, S, S) with S = ``spec.input_pixels``, prepared as
            `radiofm.models.ModelSpec.prepare` does.

        Returns
        -------
        outputs : dict of `~numpy.ndarray`
            ``embedding`` (B, D) float32, and for models without numpy heads the graph's
            ``n_compact`` (B,) and ``morph_logits`` (B, K).

        Notes
        -----
        A dynamically quantised (int8) model takes each activation's scale from its whole
        input, so it is run one tile at a time: a tile's outputs never depend on the other
        tiles of the batch. float32 and float16-weight models run in batches.
        """
        tiles = np.asarray(tiles, dtype=np.float32)
        if tiles.ndim == 3:
            tiles = tiles[:, None]
        size = self.spec.input_pixels
        if tiles.ndim != 4 or tiles.shape[1:] != (1, size, size):
            raise ValueError(f"model {self.name!r} takes tiles shaped (B, 1, {size}, {size}); "
                             f"got {tiles.shape}. Prepare them with its spec.prepare")
        if len(tiles) == 0:
            dims = {"embedding": (0, self.metadata["embedding_dim"]), "n_compact": (0,),
                    "morph_logits": (0, len(self.class_names))}
            return {key: np.zeros(dims[key], np.float32) for key in self.outputs}
        names = list(self.outputs)
        if self.metadata.get("quantization", "none") in BATCH_INDEPENDENT:
            values = self.session.run(names, {"tiles": np.ascontiguousarray(tiles)})
            return dict(zip(names, values, strict=True))
        # Dynamic int8 takes each activation's scale from the whole batch: a tile's outputs
        # would depend on its neighbours, so quantised models see one tile at a time.
        parts = [self.session.run(names, {"tiles": np.ascontiguousarray(tile[None])})
                 for tile in tiles]
        return {key: np.concatenate([part[k] for part in parts])
                for k, key in enumerate(names)}
