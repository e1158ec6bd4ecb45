"""Export of trained backbones to ONNX (torch and timm: the ``train`` extra).

`export_model` writes one ONNX graph per model: the backbone with its compact-source count
regressor and morphology classifier, a dynamic batch axis, and in its metadata the
preprocessing, the scales the model suits, the class names and the training provenance.
The graph must pass ``onnx.checker`` and match torch on real tiles before it is written.
`export_checkpoint` does the same for a `radiofm.train` run, fitting the heads with
``radiofm.evaluate.fit_heads``.
"""

from ._export import (
    PARITY_TOLERANCE,
    ExportGraph,
    TorchEmbedder,
    export_checkpoint,
    export_model,
    load_checkpoint,
    parity_tiles,
)

__all__ = [
    "PARITY_TOLERANCE", "ExportGraph", "TorchEmbedder", "export_checkpoint", "export_model",
    "load_checkpoint", "parity_tiles",
]
