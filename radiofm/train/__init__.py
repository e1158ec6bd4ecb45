"""DINO pre-training of radio backbones (torch and timm: the ``train`` extra).

`train` runs self-distillation with no labels on tiles from simulated skies, FITS folders,
the FIRST fields and the MGCLS cutouts (evaluation sources excluded by position), in one
process or many through ``torchrun``, with atomic checkpoints and exact resume.
`load_backbone` and `embed_tiles` give frozen embeddings from the trained teacher.
"""

from ._augment import RadioMultiCrop, stretch_snr
from ._checkpoint import (
    BACKBONE_FILE,
    CHECKPOINT_FILE,
    LOG_FILE,
    CheckpointError,
    backbone_state,
    find_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from ._config import (
    CENTERINGS,
    CropConfig,
    DataConfig,
    ModelConfig,
    MonitorConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    load_config,
)
from ._data import TileBank, build_tile_bank
from ._loss import DINOLoss, cosine_schedule, koleo_loss, sinkhorn_knopp
from ._model import (
    DINOHead,
    MultiCropModel,
    StagePooled,
    create_backbone,
    embed_tiles,
    load_backbone,
    read_run,
)
from ._monitor import MONITOR_COLUMNS, FeatureMonitor, monitor_carve
from ._supervised import train_small_cnn
from ._trainer import train

__all__ = [
    "CENTERINGS", "MONITOR_COLUMNS", "FeatureMonitor", "MonitorConfig", "monitor_carve",
    "stretch_snr",
    "BACKBONE_FILE", "CHECKPOINT_FILE", "LOG_FILE", "CheckpointError", "backbone_state",
    "find_checkpoint", "read_checkpoint", "save_checkpoint",
    "CropConfig", "DINOHead", "DINOLoss", "DataConfig", "ModelConfig", "MultiCropModel",
    "OptimConfig", "RadioMultiCrop", "RunConfig", "StagePooled", "TileBank", "TrainConfig",
    "build_tile_bank",
    "cosine_schedule", "create_backbone", "embed_tiles", "load_backbone", "load_config",
    "koleo_loss", "read_run", "sinkhorn_knopp", "train", "train_small_cnn",
]
