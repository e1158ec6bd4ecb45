"""Export of trained backbones to ONNX (torch and timm: the ``train`` extra).

`export_model` writes one ONNX graph per model: the backbone with its compact-source count
regressor and morphology classifier, a dynamic batch axis, and in its metadata the model's
`radiofm.models.ModelSpec` (input, tiles, stamps, stretch, views, classes) and the training
provenance. The graph must pass ``onnx.checker`` and match torch on real tiles before it is
written. `export_checkpoint` does the same for a `radiofm.train` run and heads fitted on its
teacher (`checkpoint_embedder`); `model_spec` builds the spec of such a run.
"""

from ._export import (
    PARITY_TOLERANCE,
    ExportGraph,
    TorchEmbedder,
    checkpoint_embedder,
    export_checkpoint,
    export_model,
    load_checkpoint,
    model_spec,
    parity_tiles,
)

__all__ = [
    "PARITY_TOLERANCE", "ExportGraph", "TorchEmbedder", "checkpoint_embedder",
    "export_checkpoint", "export_model", "load_checkpoint", "model_spec", "parity_tiles",
]
