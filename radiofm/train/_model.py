"""Backbones (timm, one input channel) and the DINO projection head."""

import difflib

import numpy as np
import timm
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ._checkpoint import backbone_state, find_checkpoint, read_checkpoint

__all__ = ["DINOHead", "MultiCropModel", "StagePooled", "create_backbone", "embed_tiles",
           "load_backbone", "read_run"]


def create_backbone(arch, *, patch_size=None, drop_path_rate=0.0, seed=None,
                    feature_stages=None, **timm_options):
    """A timm backbone for one-channel radio images, returning pooled features.

    Parameters
    ----------
    arch : str
        timm model name, e.g. ``"vit_tiny_patch16_224"``, ``"vit_small_patch16_224"``,
        ``"resnet18"``, ``"resnet50"``.
    patch_size : int, optional
        For ViTs: the patch size (8 or 16). ViTs are created with ``dynamic_img_size`` so
        that global and local crops of any size go through the same weights.
    drop_path_rate : float
        Stochastic depth.
    seed : int, optional
        Seed torch's generator with it before the weights are drawn (a reproducible
        random network, e.g. the random-init twin of the evaluation).
    feature_stages : sequence of int, optional
        Read the features out at these stages (`StagePooled`) instead of the backbone's
        own pooled output, e.g. the random-init twin of a model exported that way.
    **timm_options
        More keyword arguments for ``timm.create_model``.

    Returns
    -------
    backbone : `torch.nn.Module`
        ``backbone(x)`` maps (B, 1, H, W) to (B, ``backbone.num_features``).
    """
    check_arch(arch)
    options = {**timm_options, "pretrained": False, "num_classes": 0, "in_chans": 1}
    if arch.startswith(("vit", "deit")):
        options.update(dynamic_img_size=True, drop_path_rate=drop_path_rate)
        if patch_size:
            options["patch_size"] = patch_size
    elif drop_path_rate:
        options["drop_path_rate"] = drop_path_rate
    if seed is not None:
        torch.manual_seed(seed)
    backbone = timm.create_model(arch, **options)
    return StagePooled(backbone, feature_stages) if feature_stages else backbone


def check_arch(arch):
    """Raise ValueError, with the closest timm names, if ``arch`` is no timm model."""
    if not isinstance(arch, str) or not timm.is_model(arch):
        close = difflib.get_close_matches(str(arch), timm.list_models(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
        raise ValueError(f"unknown backbone architecture {arch!r}: not a timm model{hint}")


class StagePooled(nn.Module):
    """A backbone read out at several stages: the spatial mean of each stage's feature map,
    concatenated.

    The last stage of a CNN pools away where a source is and how many there are; earlier
    stages keep that detail at a finer scale, and a linear probe on their pooled features
    separates morphologies and counts better than one on the last stage alone (see
    ``configs/study-results/README.md``). Training is unchanged: the readout is chosen
    when a model is exported (``radiofm export --feature-stages``) and recorded in its
    metadata.

    Parameters
    ----------
    backbone : `torch.nn.Module`
        A timm backbone with ``feature_info`` and ``forward_intermediates`` (ResNets,
        ViTs), its weights already loaded.
    stages : sequence of int
        Indices into ``backbone.feature_info``; for a ResNet 0 is the stem and 1-4 are
        ``layer1``-``layer4``, for a ViT they are its blocks.

    Examples
    --------
    >>> import torch
    >>> from radiofm.train import StagePooled, create_backbone
    >>> readout = StagePooled(create_backbone("resnet18", seed=0), (2, 3, 4))
    >>> readout.num_features, readout(torch.zeros(2, 1, 64, 64)).shape
    (896, torch.Size([2, 896]))
    """

    def __init__(self, backbone, stages):
        super().__init__()
        info = getattr(backbone, "feature_info", None)
        if info is None or not hasattr(backbone, "forward_intermediates"):
            raise ValueError(f"{type(backbone).__name__} gives no intermediate features to "
                             "read out at stages")
        stages = tuple(int(stage) for stage in stages)
        if (not stages or len(set(stages)) != len(stages)
                or not all(0 <= stage < len(info) for stage in stages)):
            raise ValueError(f"feature stages must be distinct indices in 0..{len(info) - 1} "
                             f"({', '.join(part['module'] for part in info)}), got {stages!r}")
        self.backbone = backbone
        self.stages = tuple(sorted(stages))
        self.num_features = sum(info[stage]["num_chs"] for stage in self.stages)

    def forward(self, x):
        maps = self.backbone.forward_intermediates(x, indices=list(self.stages),
                                                   intermediates_only=True)
        return torch.cat([feature_map.mean((2, 3)) for feature_map in maps], dim=1)


class DINOHead(nn.Module):
    """DINO projection head: MLP, L2-normalised bottleneck, weight-normalised prototypes.

    Parameters
    ----------
    in_dim : int
        Backbone feature size.
    out_dim : int
        Number of prototypes (the softmax dimension).
    hidden_dim, bottleneck_dim : int
        MLP width and bottleneck size.
    norm_last_layer : bool
        Fix the last layer's weight norm to 1.
    """

    def __init__(self, in_dim, out_dim, hidden_dim=2048, bottleneck_dim=256,
                 norm_last_layer=True):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        original = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            original.fill_(1.0)
        original.requires_grad = not norm_last_layer

    def forward(self, x):
        x = nn.functional.normalize(self.mlp(x), dim=-1)
        return self.last_layer(x)


class MultiCropModel(nn.Module):
    """Backbone + head over a list of crops, one backbone pass per crop size.

    Parameters
    ----------
    backbone : `torch.nn.Module`
    head : `DINOHead`
    """

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops, *, with_features=False):
        """Head outputs of all crops, in order; with ``with_features`` also their features.

        Parameters
        ----------
        crops : list of `torch.Tensor`
            (B, 1, H, W) each; crops of one size must be adjacent.
        with_features : bool
            Also return the backbone features (the KoLeo term's input).

        Returns
        -------
        output : `torch.Tensor`
            (len(crops) * B, out_dim), or ``(output, features)`` with features
            (len(crops) * B, num_features).
        """
        features, start = [], 0
        sizes = [c.shape[-1] for c in crops]
        while start < len(crops):
            end = start
            while end < len(crops) and sizes[end] == sizes[start]:
                end += 1
            features.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        features = torch.cat(features)
        output = self.head(features)
        return (output, features) if with_features else output


def load_backbone(path, map_location="cpu"):
    """Rebuild the teacher backbone saved by `radiofm.train.train`.

    Parameters
    ----------
    path : str or path-like
        A run folder, ``teacher_backbone.pt`` (written when a run ends) or ``checkpoint.pt``
        (written during it); its sha256 is checked, then it is read with
        ``torch.load(weights_only=True)``.
    map_location : str
        Device for the weights.

    Returns
    -------
    backbone : `torch.nn.Module`
        In eval mode.

    Raises
    ------
    radiofm.train.CheckpointError
        A damaged, truncated or foreign file.
    """
    return read_run(path, map_location=map_location)[0]


def read_run(path, *, map_location="cpu"):
    """The teacher backbone of a run folder or checkpoint, with everything saved beside it.

    Parameters
    ----------
    path : str or path-like
        A run folder, ``teacher_backbone.pt`` or ``checkpoint.pt`` (see `load_backbone`).
    map_location : str
        Device for the weights.

    Returns
    -------
    backbone : `torch.nn.Module`
        In eval mode.
    state : dict
        The file's content (``config``, ``radiofm_version``, ``data``, weights), checksum
        verified.
    path : `~pathlib.Path`
        The file that was read.
    """
    path = find_checkpoint(path)
    state = read_checkpoint(path, map_location=map_location)
    model, weights = backbone_state(state, path)
    backbone = create_backbone(model["arch"], patch_size=model["patch_size"],
                               **model.get("timm_options", {}))
    backbone.load_state_dict(weights)
    return backbone.eval(), state, path


@torch.no_grad()
def embed_tiles(backbone, tiles, *, batch_size=64, device="cpu"):
    """Frozen embeddings of normalised tiles.

    Parameters
    ----------
    backbone : `torch.nn.Module`
        A backbone from `create_backbone` or `load_backbone`.
    tiles : array-like
        (N, H, W) or (N, 1, H, W) float pixels normalised as in training (e.g. the batches
        of `radiofm.tiling.TileSet.batches`).
    batch_size : int
        Tiles per forward pass.
    device : str
        torch device for the forward passes.

    Returns
    -------
    embedding : `numpy.ndarray`
        (N, D) float32.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    if tiles.ndim == 3:
        tiles = tiles[:, np.newaxis]
    backbone = backbone.to(device).eval()
    out = [backbone(torch.from_numpy(tiles[i : i + batch_size]).to(device)).float().cpu()
           for i in range(0, len(tiles), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, backbone.num_features), np.float32)
