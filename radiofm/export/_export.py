"""Export a trained backbone and its heads to one ONNX graph, checked against torch."""

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from .._atomic import atomic_path
from ..datasets import data_root
from ..image import read_image
from ..models import (
    NORMALIZATION_VERSION,
    OUTPUTS,
    VIEW_COUNTS,
    ModelSpec,
    graph_sha256,
    serialize_heads,
    serialize_metadata,
)
from ..tiling import NormalizationSpec, tile_image
from ..train import StagePooled, embed_tiles, read_run

__all__ = ["ExportGraph", "TorchEmbedder", "checkpoint_embedder", "export_checkpoint",
           "export_model", "load_checkpoint", "model_spec", "parity_tiles"]

log = logging.getLogger("radiofm")

#: Default parity tolerance: for each output, max |onnxruntime - torch| divided by
#: max(1, max |torch|) over the parity tiles. float32 reordering gives about 1e-6.
PARITY_TOLERANCE = 1e-4
#: Default accepted pixel scales, as factors of the native pixel scales of the images the
#: heads were fitted on (``heads["count"]["pixel_scales_arcsec"]``).
PIXEL_SCALE_FACTORS = (0.5, 2.0)
#: ``half_weights`` stores tensors of at least this many values as float16. Smaller ones
#: (norm parameters, the heads, whose folded weights can reach 1e3 and would shift the
#: logits by whole units) stay float32 at no cost to the file size.
HALF_MIN_VALUES = 4096


class ExportGraph(nn.Module):
    """Backbone plus the linear count head and the morphology classifier, as exported.

    Parameters
    ----------
    backbone : `torch.nn.Module`
        Maps (B, 1, S, S) to (B, D).
    heads : dict
        Checked heads (see `export_model`).
    views : {1, 8}
        8: the embedding is the mean over the tile's rotations by 90 degrees and their mirror
        images, in the order of `radiofm.models.dihedral_views`, so it does not depend on
        the tile's orientation.
    """

    def __init__(self, backbone, heads, views=1):
        super().__init__()
        if views not in VIEW_COUNTS:
            raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views!r}")
        self.views = views
        self.backbone = backbone
        count, morph = heads["count"], heads["morphology"]
        dim = count["coef"].shape[0]
        self.count = nn.Linear(dim, 1)
        self.morphology = nn.Linear(dim, len(morph["classes"]))
        with torch.no_grad():
            self.count.weight.copy_(torch.as_tensor(count["coef"][None], dtype=torch.float32))
            self.count.bias.fill_(float(count["intercept"]))
            self.morphology.weight.copy_(torch.as_tensor(morph["coef"], dtype=torch.float32))
            self.morphology.bias.copy_(torch.as_tensor(morph["intercept"], dtype=torch.float32))

    def forward(self, tiles):
        if self.views == 1:
            embedding = self.backbone(tiles)
        else:
            turns = [torch.rot90(tiles, k, dims=(2, 3)) for k in range(4)]
            views = torch.cat(turns + [turn.flip(3) for turn in turns])
            dim = self.count.in_features
            embedding = self.backbone(views).reshape(self.views, -1, dim).mean(0)
        return embedding, self.count(embedding)[:, 0], self.morphology(embedding)


def model_spec(config, heads, *, input_pixels=None, views=1, pixel_scale_range_arcsec=None,
               beam_range_arcsec=None):
    """The `~radiofm.models.ModelSpec` of a trained backbone with fitted heads.

    Parameters
    ----------
    config : dict
        The training config (`radiofm.train.TrainConfig.to_dict`): its stretch, and its
        global crop size as the default input side.
    heads : dict
        Fitted heads (see `export_model`): their tile and stamp angles, classes and the
        native pixel scales they were fitted on.
    input_pixels : int, optional
        Input side; default: the global crop size of training.
    views : {1, 8}
        Views the embedding averages over.
    pixel_scale_range_arcsec, beam_range_arcsec : (float, float), optional
        Image pixel scales and beam FWHMs the model suits. Default pixel scales: half the
        finest to twice the coarsest native pixel scale the heads were fitted on; default
        beams: unchecked.

    Returns
    -------
    spec : `~radiofm.models.ModelSpec`
    """
    count, morph = heads["count"], heads["morphology"]
    if pixel_scale_range_arcsec is None:
        native = count.get("pixel_scales_arcsec") or []
        if not native:
            raise ValueError("the heads do not record the pixel scales they were fitted on; "
                             "pass pixel_scale_range_arcsec (--pixel-scale-range)")
        pixel_scale_range_arcsec = (min(native) * PIXEL_SCALE_FACTORS[0],
                                    max(native) * PIXEL_SCALE_FACTORS[1])
    return ModelSpec(
        input_pixels=int(input_pixels or config["crops"]["global_size"]),
        tile_arcsec=float(count["tile_arcsec"]), stamp_arcsec=float(morph["stamp_arcsec"]),
        pixel_scale_range_arcsec=pixel_scale_range_arcsec,
        beam_range_arcsec=beam_range_arcsec, normalization=config["data"]["normalization"],
        views=views, class_names=tuple(morph["classes"]),
    )


def _check_heads_match(heads, spec):
    """Refuse heads fitted for other tiles, stamps or classes than the spec says."""
    problems = []
    if not np.isclose(heads["count"]["tile_arcsec"], spec.tile_arcsec):
        problems.append(f"count head tiles are {heads['count']['tile_arcsec']} arcsec, the "
                        f"spec's {spec.tile_arcsec}")
    if not np.isclose(heads["morphology"]["stamp_arcsec"], spec.stamp_arcsec):
        problems.append(f"morphology stamps are {heads['morphology']['stamp_arcsec']} arcsec, "
                        f"the spec's {spec.stamp_arcsec}")
    if tuple(heads["morphology"]["classes"]) != spec.class_names:
        problems.append(f"classes {heads['morphology']['classes']} differ from the spec's "
                        f"{list(spec.class_names)}")
    if problems:
        raise ValueError(f"heads do not match the model spec: {'; '.join(problems)}; build "
                         "the spec from the heads with radiofm.export.model_spec")


def _check_heads(heads, dim):
    """Heads as float arrays with their shapes checked against the embedding size."""
    if not isinstance(heads, dict) or not {"count", "morphology"} <= set(heads):
        raise ValueError("heads must be a dict with 'count' and 'morphology' entries, as "
                         "radiofm.evaluate.fit_heads returns")
    count, morph = heads["count"], heads["morphology"]
    try:
        count_coef = np.asarray(count["coef"], dtype=np.float64)
        morph_coef = np.asarray(morph["coef"], dtype=np.float64)
        morph_intercept = np.asarray(morph["intercept"], dtype=np.float64)
        classes = [str(name) for name in morph["classes"]]
        checked = {
            "count": {"coef": count_coef, "intercept": float(count["intercept"]),
                      "tile_arcsec": float(count["tile_arcsec"]),
                      "pixel_scales_arcsec": [float(v) for v in
                                              count.get("pixel_scales_arcsec", [])]},
            "morphology": {"coef": morph_coef, "intercept": morph_intercept,
                           "classes": classes, "stamp_arcsec": float(morph["stamp_arcsec"])},
        }
    except KeyError as error:
        raise ValueError(f"heads lack {error.args[0]!r}: count needs coef, intercept, "
                         "tile_arcsec; morphology needs coef, intercept, classes, "
                         "stamp_arcsec") from None
    k = len(classes)
    problems = []
    if count_coef.shape != (dim,):
        problems.append(f"count coef is {count_coef.shape}, expected ({dim},)")
    if morph_coef.shape != (k, dim):
        problems.append(f"morphology coef is {morph_coef.shape}, expected ({k}, {dim}) for "
                        f"{k} classes")
    if morph_intercept.shape != (k,):
        problems.append(f"morphology intercept is {morph_intercept.shape}, expected ({k},)")
    if k < 2 or len(set(classes)) != k:
        problems.append(f"need at least two distinct class names, got {classes}")
    numbers = [count_coef, morph_coef, morph_intercept, checked["count"]["intercept"]]
    if not all(np.isfinite(n).all() for n in numbers):
        problems.append("head coefficients must be finite")
    for key, value in (("tile_arcsec", checked["count"]["tile_arcsec"]),
                       ("stamp_arcsec", checked["morphology"]["stamp_arcsec"])):
        if not (np.isfinite(value) and value > 0):
            problems.append(f"{key} must be a positive angle in arcsec, got {value}")
    if problems:
        raise ValueError("bad heads for a backbone with embedding size "
                         f"{dim}: {'; '.join(problems)}")
    return checked


class TorchEmbedder:
    """A torch backbone as an embedder for `radiofm.evaluate.fit_heads`.

    ``embed(stamps)`` maps (N, S, S) stamps prepared as `radiofm.models.ModelSpec.prepare`
    does to (N, D) float32; ``run(tiles)`` gives ``{"embedding": ...}`` for (B, 1, S, S)
    tiles, as `radiofm.inference.OnnxModel.run` does.

    Parameters
    ----------
    backbone : `torch.nn.Module`
    input_size : int
        The input side S.
    normalization : `~radiofm.tiling.NormalizationSpec`, str or dict
        The stretch the backbone was trained with.
    name, arch : str
    batch_size : int
        Tiles per forward pass.
    patch_size : int, optional
        ViT patch size (for a random twin of the architecture).
    timm_options : dict, optional
        More ``timm.create_model`` options of the backbone (likewise). The stages a
        `radiofm.train.StagePooled` backbone reads out at are taken from it.
    stretch_known : bool
        False for a backbone that was never trained (a random twin): its ``normalization``
        is then None and the evaluation harness feeds it the model's stretch.

    Attributes
    ----------
    weights_sha256 : str
        sha256 of the backbone's parameters and buffers, which caches of its embeddings
        are keyed by (``sha256``, a file's digest, is None: there is no exported file).
    """

    pca = None  # the evaluation harness reduces raw-pixel baselines only

    def __init__(self, backbone, *, input_size, normalization, name, arch, batch_size=64,
                 patch_size=None, timm_options=None, stretch_known=True):
        self.backbone = backbone.eval()
        self.architecture = {"arch": arch, "patch_size": patch_size,
                             "timm_options": timm_options or {},
                             "feature_stages": _feature_stages(backbone)}
        self.input_size = int(input_size)
        self.normalization = (NormalizationSpec.from_value(normalization) if stretch_known
                              else None)
        self.name = name
        self.sha256 = None
        self.weights_sha256 = _weights_sha256(self.backbone)
        self.batch_size = batch_size

    def __repr__(self):
        return (f"<TorchEmbedder {self.name!r} {self.architecture['arch']}, "
                f"input {self.input_size}>")

    def run(self, tiles):
        """``{"embedding": (B, D) float32}`` of preprocessed (B, 1, S, S) tiles."""
        tiles = np.asarray(tiles, dtype=np.float32)
        if tiles.ndim == 3:
            tiles = tiles[:, None]
        if tiles.shape[1:] != (1, self.input_size, self.input_size):
            raise ValueError(f"expected tiles shaped (B, 1, {self.input_size}, "
                             f"{self.input_size}), got {tiles.shape}")
        return {"embedding": embed_tiles(self.backbone, tiles, batch_size=self.batch_size)}

    def embed(self, stamps):
        """(N, S, S) or (N, 1, S, S) preprocessed stamps -> (N, D) float32."""
        return self.run(stamps)["embedding"]


def _weights_sha256(backbone):
    """sha256 of a backbone's parameters and buffers (names, shapes, values): what caches of
    its embeddings are keyed by, so a resumed run or another readout is embedded again."""
    digest = hashlib.sha256()
    for key, value in backbone.state_dict().items():
        value = value.detach().cpu().contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _feature_stages(backbone):
    """The stages a `radiofm.train.StagePooled` backbone reads out at (a list), else None."""
    return list(backbone.stages) if isinstance(backbone, StagePooled) else None


def load_checkpoint(checkpoint):
    """The teacher backbone of a training run and what it was trained with.

    Parameters
    ----------
    checkpoint : str or path-like
        A run folder of `radiofm.train.train`, its ``teacher_backbone.pt`` (preferred in a
        folder) or its ``checkpoint.pt`` (the teacher of the last checkpoint).

    Returns
    -------
    backbone : `torch.nn.Module`
        In eval mode.
    info : dict
        ``config`` (the training config dict), ``data_summary``, ``arch``, ``name`` (the
        run folder's name) and ``radiofm_version`` of training.
    """
    backbone, saved, path = read_run(checkpoint)
    config = saved["config"]
    data = saved.get("data", "{}")
    info = {
        "config": config, "data_summary": json.loads(data) if isinstance(data, str) else data,
        "arch": config["model"]["arch"], "name": path.parent.name or "radiofm-model",
        "radiofm_version": saved.get("radiofm_version", "unknown"), "path": path,
    }
    return backbone, info


def parity_tiles(spec, *, root=None, count=64):
    """Real tiles, prepared for a model, for the export's parity check.

    FIRST fields (MiraBest training split) from ``root/first_fields`` when present, else a
    simulated MeerKAT-like field (`radiofm.simulate.make_radio_sky`).

    Parameters
    ----------
    spec : `~radiofm.models.ModelSpec`
        The model's contract: tile angle, stretch and input size.
    root : str or path-like, optional
        Data root (default ``$RADIOFM_DATA``, else ``../shared/data``).
    count : int
        Tiles wanted.

    Returns
    -------
    tiles : `~numpy.ndarray`
        (N, 1, S, S) float32, N <= count.
    source : str
        What they were cut from.
    """
    try:
        folder = data_root(root) / "first_fields"
    except FileNotFoundError:
        folder = None
    images, source = [], ""
    if folder is not None and (folder / "manifest.csv").is_file():
        from astropy.table import Table

        manifest = Table.read(folder / "manifest.csv", format="ascii.csv")
        files = [folder / f for f, s in zip(manifest["file"], manifest["mirabest_split"],
                                            strict=True) if s == "train"][:16]
        images = [f for f in files if f.is_file()]
        source = f"FIRST fields in {folder}"
    if not images:
        from ..simulate import make_radio_sky

        hdu, _ = make_radio_sky((512, 512), seed=1)
        images = [hdu]
        source = "a simulated 512x512 MeerKAT-like field"
    batches = []
    for item in images:
        with read_image(item) as image:
            tiles = tile_image(image, min(spec.tile_pixels(image), *image.shape))
            stretch = spec.fit_stretch(image)
            batches.extend(inputs for _, inputs in spec.stream_tiles(tiles, stretch,
                                                                     batch_size=count,
                                                                     threads=1))
        if sum(len(b) for b in batches) >= count:
            break
    return np.concatenate(batches)[:count], source


def _reference_outputs(graph, tiles, batch_size=32):
    with torch.no_grad():
        parts = [graph(torch.from_numpy(tiles[i : i + batch_size]))
                 for i in range(0, len(tiles), batch_size)]
    return {name: torch.cat([p[k] for p in parts]).numpy() for k, name in enumerate(OUTPUTS)}


def _session_outputs(model_bytes, tiles, batch_size=32):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    parts = [session.run(list(OUTPUTS), {"tiles": tiles[i : i + batch_size]})
             for i in range(0, len(tiles), batch_size)]
    return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(OUTPUTS)}


def _differences(reference, outputs):
    """Max abs difference per output, and the same scaled by max(1, max |reference|)."""
    raw = {k: float(np.abs(outputs[k] - reference[k]).max()) for k in OUTPUTS}
    scaled = {k: raw[k] / max(1.0, float(np.abs(reference[k]).max())) for k in OUTPUTS}
    return raw, scaled


def export_model(backbone, heads, path, *, spec, name, arch, patch_size=None, timm_options=None,
                 provenance=None, tiles=None, root=None, tolerance=PARITY_TOLERANCE,
                 quantize=False, half_weights=False, overwrite=False, numpy_heads=None):
    """Write one ONNX graph (backbone + count and morphology heads) with its metadata.

    The graph takes ``tiles`` (batch, 1, S, S) float32 with a dynamic batch axis and gives
    ``embedding`` (batch, D), ``n_compact`` (batch,) and ``morph_logits`` (batch, K). Before
    the file is written the graph passes ``onnx.checker`` (full check) and a parity check:
    onnxruntime and torch run on real tiles, and for each output the max abs difference
    divided by ``max(1, max |torch output|)`` must not exceed ``tolerance``.

    Parameters
    ----------
    backbone : `torch.nn.Module`
        Maps (B, 1, S, S) to (B, D), with ``num_features`` = D. The stages a
        `radiofm.train.StagePooled` backbone reads out at are recorded in the metadata
        (``feature_stages``), so that a random twin is read out the same way.
    heads : dict
        ``{"count": {"coef": (D,), "intercept": float, "tile_arcsec": float},
        "morphology": {"coef": (K, D), "intercept": (K,), "classes": [K names],
        "stamp_arcsec": float}}`` acting on the raw embedding, as
        `radiofm.evaluate.fit_heads` returns; their tile and stamp angles and classes must
        be the spec's.
    path : str or path-like
        The .onnx file to write.
    spec : `~radiofm.models.ModelSpec`
        The model's contract (see `model_spec`), written into its metadata. With
        ``views=8`` the embedding is the mean over the tile's 8 rotations and reflections
        (`ExportGraph`), and the heads must have been fitted on embeddings averaged the
        same way.
    name, arch : str
        Model name and timm architecture.
    patch_size : int, optional
        ViT patch size, recorded so that a random twin of the architecture can be built.
    timm_options : dict, optional
        More ``timm.create_model`` options of the backbone, recorded likewise.
    provenance : dict, optional
        ``train_config`` and ``data_summary`` recorded in the metadata.
    tiles : array-like, optional
        Prepared (N, 1, S, S) parity tiles; default: `parity_tiles`.
    root : str or path-like, optional
        Data root for the default parity tiles.
    tolerance : float
        Parity tolerance (see above).
    quantize : bool
        Also write ``<stem>-int8.onnx``: dynamic int8 quantisation of the MatMul/Gemm and
        Conv weights, its differences from the float32 graph recorded in its metadata.
    half_weights : bool
        Also write ``<stem>-fp16.onnx``: the weights stored as float16 (half the file) and cast
        back to float32 once, when onnxruntime loads the graph, so it runs at float32 speed
        and a tile's outputs stay independent of its batch. Its differences from torch are
        recorded in its metadata.
    overwrite : bool
        Replace existing files.
    numpy_heads : dict, optional
        The numpy heads inference applies (`radiofm.models.Heads`: Poisson counts,
        calibrated morphology, OOD references), as `radiofm.evaluate.fit_output_heads`
        returns; written to the ``heads`` metadata. The graph's own heads then only serve
        radiofm versions that read no numpy heads.

    Returns
    -------
    report : dict
        ``path``, ``parity_max_abs_diff`` (per output), ``parity_source`` and, with
        ``quantize``, ``quantized_path`` and ``quantized_max_abs_diff``; with
        ``half_weights``, ``half_path`` and ``half_max_abs_diff``.

    Raises
    ------
    ValueError
        Bad heads or options, or the parity check failed (nothing is written).
    """
    path = Path(path)
    targets = ([path] + ([_quantized_path(path)] if quantize else [])
               + ([_half_path(path)] if half_weights else []))
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"would overwrite {', '.join(existing)}; pass overwrite=True "
                              "(--overwrite)")
    dim = int(backbone.num_features)
    heads = _check_heads(heads, dim)
    _check_heads_match(heads, spec)
    input_size = spec.input_pixels
    if tiles is None:
        tiles, source = parity_tiles(spec, root=root)
    else:
        tiles, source = np.asarray(tiles, dtype=np.float32), "tiles given to export_model"
        if tiles.ndim != 4 or tiles.shape[1:] != (1, input_size, input_size):
            raise ValueError(f"parity tiles must be (N, 1, {input_size}, {input_size}), got "
                             f"{tiles.shape}")
    if len(tiles) < 2:
        raise ValueError("the parity check needs at least 2 tiles")
    graph = ExportGraph(backbone, heads, spec.views).eval()
    log.info("exporting %s (%s, input %d px, embedding %d) to ONNX", name, arch, input_size, dim)
    program = torch.onnx.export(
        graph, (torch.from_numpy(tiles[:2].copy()),), None, dynamo=True, verbose=False,
        input_names=["tiles"], output_names=list(OUTPUTS),
        dynamic_shapes={"tiles": {0: torch.export.Dim("batch")}},
    )
    proto = program.model_proto
    reference = _reference_outputs(graph, tiles)
    raw, scaled = _differences(reference, _session_outputs(proto.SerializeToString(), tiles))
    log.info("parity on %d tiles (%s): max abs diff %s", len(tiles), source, raw)
    worst = max(scaled, key=scaled.get)
    if scaled[worst] > tolerance:
        raise ValueError(
            f"ONNX parity check failed on {len(tiles)} tiles ({source}): {worst} differs from "
            f"torch by {raw[worst]:.3g} ({scaled[worst]:.3g} of its scale), above the "
            f"tolerance {tolerance:g}; nothing written"
        )
    provenance = provenance or {}
    metadata = {
        **spec.to_metadata(), "name": name, "arch": arch, "patch_size": patch_size,
        "timm_options": timm_options or {}, "embedding_dim": dim,
        "feature_stages": _feature_stages(backbone),
        "normalization_version": NORMALIZATION_VERSION,
        "train_config": provenance.get("train_config", {}),
        "data_summary": provenance.get("data_summary", {}),
        "parity_max_abs_diff": max(raw.values()), "parity_tolerance": float(tolerance),
        "quantization": "none", "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if numpy_heads is not None:
        metadata["heads"] = json.loads(serialize_heads(numpy_heads))
    _set_metadata(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    _save(proto, path)
    report = {"path": path, "parity_max_abs_diff": raw, "parity_source": source}
    if quantize:
        report.update(_quantize(path, metadata, tiles, reference))
    if half_weights:
        report.update(_write_half_weights(proto, path, metadata, tiles, reference))
    return report


def _set_metadata(proto, metadata):
    del proto.metadata_props[:]
    # The sha256 of this very graph (nodes and weights), checked by radiofm.inference.load_model.
    weights = graph_sha256(proto.SerializeToString())
    onnx.helper.set_model_props(proto, serialize_metadata({**metadata,
                                                           "weights_sha256": weights}))
    proto.producer_name = "radiofm"
    proto.doc_string = (f"radiofm model {metadata['name']}: {metadata['arch']} backbone with a "
                        "compact-source count head and a morphology classifier")


def _save(proto, path):
    with atomic_path(path, overwrite=True) as partial:
        onnx.save_model(proto, partial)


def _quantized_path(path):
    return path.with_name(path.name.removesuffix(".onnx") + "-int8.onnx")


def _quantize(path, metadata, tiles, reference):
    """Dynamic int8 quantisation of the exported file; differences recorded, not checked."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = _quantized_path(path)
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "model-prepared.onnx"
        partial = Path(folder) / "model-int8.onnx"
        quant_pre_process(path, prepared)
        quantize_dynamic(prepared, partial, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "Conv"])
        proto = onnx.load(partial)
    quantized = _compared(reference, _session_outputs(proto.SerializeToString(), tiles))
    log.info("int8 model differs from torch by %s", quantized)
    _set_metadata(proto, {**metadata, "quantization": "int8-dynamic",
                          "quantized_max_abs_diff": quantized})
    onnx.checker.check_model(proto, full_check=True)
    _save(proto, target)
    return {"quantized_path": target, "quantized_max_abs_diff": quantized}


def _half_path(path):
    return path.with_name(path.name.removesuffix(".onnx") + "-fp16.onnx")


def _compared(reference, outputs):
    """Max abs differences per output plus the share of tiles whose morphology class agrees."""
    raw, _ = _differences(reference, outputs)
    agreement = float((outputs["morph_logits"].argmax(1)
                       == reference["morph_logits"].argmax(1)).mean())
    return {**raw, "morph_class_agreement": agreement}


def _halve_weights(proto):
    """A copy of ``proto`` whose float32 initializers are stored as float16 behind a Cast.

    Tensors with values beyond float16's range, and tensors of fewer than `HALF_MIN_VALUES`
    values, stay float32. onnxruntime folds the Casts into float32 constants when it loads
    the graph.
    """
    halved = onnx.ModelProto()
    halved.CopyFrom(proto)
    graph = halved.graph
    casts = []
    for initializer in graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        values = onnx.numpy_helper.to_array(initializer)
        if values.size < HALF_MIN_VALUES or np.abs(values).max() >= np.finfo(np.float16).max:
            continue
        name = initializer.name
        initializer.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float16),
                                                          f"{name}__fp16"))
        casts.append(onnx.helper.make_node("Cast", [initializer.name], [name],
                                           to=onnx.TensorProto.FLOAT, name=f"{name}__cast"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return halved


def _write_half_weights(proto, path, metadata, tiles, reference):
    """Write the float16-weight copy of the exported graph; differences recorded, not checked."""
    halved = _halve_weights(proto)
    differences = _compared(reference, _session_outputs(halved.SerializeToString(), tiles))
    log.info("float16-weight model differs from torch by %s", differences)
    _set_metadata(halved, {**metadata, "quantization": "fp16-weights",
                           "quantized_max_abs_diff": differences})
    onnx.checker.check_model(halved, full_check=True)
    target = _half_path(path)
    _save(halved, target)
    return {"half_path": target, "half_max_abs_diff": differences}


def checkpoint_embedder(checkpoint, *, input_pixels=None, feature_stages=None, batch_size=64):
    """The teacher backbone of a training run as an embedder, e.g. to fit its heads.

    Parameters
    ----------
    checkpoint : str or path-like
        Run folder, ``teacher_backbone.pt`` or ``checkpoint.pt`` (see `load_checkpoint`).
    input_pixels : int, optional
        Input side; default: the global crop size of training.
    feature_stages : sequence of int, optional
        Read the features out at these stages (`radiofm.train.StagePooled`); default: the
        backbone's own pooled output.
    batch_size : int
        Tiles per forward pass.

    Returns
    -------
    embedder : `TorchEmbedder`
        With the run's stretch (all its options) and architecture.
    """
    backbone, info = load_checkpoint(checkpoint)
    config = info["config"]
    model = config["model"]
    if feature_stages:
        backbone = StagePooled(backbone, feature_stages)
    return TorchEmbedder(backbone, input_size=int(input_pixels or config["crops"]["global_size"]),
                         normalization=config["data"]["normalization"],
                         name=f"{info['name']}/{info['path'].name}", arch=info["arch"],
                         patch_size=model.get("patch_size"),
                         timm_options=model.get("timm_options") or {}, batch_size=batch_size)


def export_checkpoint(checkpoint, path=None, *, heads, name=None, input_pixels=None, views=1,
                      feature_stages=None, pixel_scale_range_arcsec=None, beam_range_arcsec=None,
                      **options):
    """Export a `radiofm.train` run with fitted heads: its teacher, spec and provenance.

    Parameters
    ----------
    checkpoint : str or path-like
        Run folder, ``teacher_backbone.pt`` or ``checkpoint.pt`` (see `load_checkpoint`).
    path : str or path-like, optional
        Output folder (the model goes to ``<path>/<name>.onnx``) or ``.onnx`` file;
        default: the run folder.
    heads : dict
        Heads fitted on this run's embeddings (see `export_model`; ``radiofm export`` fits
        them with `radiofm.evaluate.fit_heads` on `checkpoint_embedder`).
    name : str, optional
        Model name; default: the run folder's name.
    input_pixels, views, pixel_scale_range_arcsec, beam_range_arcsec
        As for `model_spec`.
    feature_stages : sequence of int, optional
        Read the embedding out at these stages of the backbone (`radiofm.train.StagePooled`;
        the heads must have been fitted on the same readout, see `checkpoint_embedder`).
    **options
        More keyword arguments for `export_model` (``quantize``, ``half_weights``,
        ``tolerance``, ``tiles``, ``root``, ``overwrite``).

    Returns
    -------
    report : dict
        As `export_model` returns.
    """
    backbone, info = load_checkpoint(checkpoint)
    if feature_stages:
        backbone = StagePooled(backbone, feature_stages)
    config = info["config"]
    name = name or info["name"]
    spec = model_spec(config, heads, input_pixels=input_pixels, views=views,
                      pixel_scale_range_arcsec=pixel_scale_range_arcsec,
                      beam_range_arcsec=beam_range_arcsec)
    folder = Path(path) if path is not None else info["path"].parent
    path = folder if folder.suffix == ".onnx" else folder / f"{name}.onnx"
    provenance = {"train_config": config,
                  "data_summary": {**info["data_summary"],
                                   "trained_with_radiofm": info["radiofm_version"]}}
    return export_model(backbone, heads, path, spec=spec, name=name, arch=info["arch"],
                        patch_size=config["model"].get("patch_size"),
                        timm_options=config["model"].get("timm_options") or {},
                        provenance=provenance, **options)
