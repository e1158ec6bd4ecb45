"""A tiny exported model for the tests of radiofm.models, radiofm.inference and the CLI."""

from pathlib import Path

import numpy as np

from radiofm.models import HEADS_VERSION

#: The tiny model committed as a fixture (``scripts/make_test_model.py`` writes it), so the
#: inference tests run without torch.
TINY_MODEL = Path(__file__).parent / "data" / "tiny.onnx"
CLASSES = ["FRI", "FRII", "compact", "bent"]
INPUT_SIZE = 32
TILE_ARCSEC = 35.2  # 32 pixels of 1.1 arcsec, the pixels of the simulated skies
STAMP_ARCSEC = 44.0
#: Stage widths of the tiny backbone (timm's test_resnet has (32, 48, 48, 96)).
TINY_CHANNELS = (8, 16, 16, 96)


def tiny_heads(dim, *, seed=0, classes=CLASSES):
    """Random heads in the layout of radiofm.evaluate.fit_heads."""
    rng = np.random.default_rng(seed)
    return {
        "count": {"coef": rng.normal(0, 0.1, dim), "intercept": 2.0,
                  "tile_arcsec": TILE_ARCSEC},
        "morphology": {"coef": rng.normal(0, 0.1, (len(classes), dim)),
                       "intercept": rng.normal(0, 0.1, len(classes)), "classes": list(classes),
                       "stamp_arcsec": STAMP_ARCSEC},
    }


def tiny_backbone(seed=0):
    """timm's test_resnet with narrow stages (96 features, 0.16 M parameters), one channel."""
    import torch

    from radiofm.train import create_backbone

    torch.manual_seed(seed)
    return create_backbone("test_resnet", channels=TINY_CHANNELS).eval()


def random_tiles(count=8, seed=0):
    """Preprocessed-looking (N, 1, S, S) tiles in [0, 1]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (count, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)


def tiny_spec(**changes):
    """The contract of the tiny model: 32 px inputs, simulated-sky pixels, 2-98 % stretch."""
    from radiofm.models import ModelSpec

    values = dict(input_pixels=INPUT_SIZE, tile_arcsec=TILE_ARCSEC, stamp_arcsec=STAMP_ARCSEC,
                  pixel_scale_range_arcsec=(0.55, 2.2), beam_range_arcsec=None,
                  normalization="percentile", class_names=tuple(CLASSES))
    values.update(changes)
    return ModelSpec(**values)


def export_tiny_model(path, *, spec=None, **options):
    """Export the tiny backbone with random heads to ``path``; returns (backbone, heads, report)."""
    import torch

    from radiofm.export import export_model

    torch.set_num_threads(1)
    backbone = tiny_backbone()
    heads = tiny_heads(backbone.num_features)
    settings = dict(name="tiny", arch="test_resnet", timm_options={"channels": TINY_CHANNELS},
                    tiles=random_tiles(),
                    provenance={"train_config": {"model": {"arch": "test_resnet"}},
                                "data_summary": {"simulated": {"tiles": 0}}})
    settings.update(options)
    report = export_model(backbone, heads, path, spec=spec or tiny_spec(), **settings)
    return backbone, heads, report


def numpy_heads(dim, *, seed=0, classes=CLASSES, threshold=3.0, count_windows=1,
                count_regimes=(), count_dispersion=None, count_peak_level=None):
    """Random numpy heads in the layout of radiofm.models.Heads (a JSON-ready dict);
    ``count_regimes``: (name, [low, high] beam in arcsec, intercept) of each regime's count
    GLM, with the pooled head's weights, and optionally its dispersion as a fourth item;
    ``count_dispersion``: the pooled count GLM's (default: none); ``count_peak_level``: every
    count GLM also reads the inputs' peak features at this level, with weight 0.3 on the
    log of the number of peaks (default: the embedding alone)."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    coef = rng.normal(0, 0.1, dim)
    peaks = {}
    if count_peak_level is not None:
        coef = np.concatenate([coef, [0.0, 0.0, 0.3, 0.0]])
        peaks = {"peak_level": count_peak_level}
    features = len(coef)

    def reference():
        return {"mean": np.zeros(dim), "scale": np.ones(dim),
                "components": np.eye(dim)[:4], "variances": np.ones(4),
                "residual_variance": 1.0, "threshold": threshold}

    def dispersion(value):
        return {} if value is None else {"dispersion": value}

    return {
        "heads_version": HEADS_VERSION, "embedding_dim": dim,
        "counts": {"kind": "poisson-glm", "mean": np.zeros(features),
                   "scale": np.ones(features), "coef": coef, "intercept": 1.0,
                   "max_log_rate": 5.0,
                   "description": "compact sources with peak >= 5 sigma per tile",
                   "windows": count_windows, **dispersion(count_dispersion), **peaks,
                   "regimes": [{"name": name, "beam_range_arcsec": beams,
                                "description": f"{name} tiles", "mean": np.zeros(features),
                                "scale": np.ones(features), "coef": coef,
                                "intercept": intercept, **peaks,
                                "max_log_rate": 5.0, **dispersion(rest[0] if rest else None)}
                               for name, beams, intercept, *rest in count_regimes]},
        "morphology": {"kind": "multinomial-logistic", "mean": np.zeros(dim),
                       "scale": np.ones(dim), "coef": rng.normal(0, 0.1, (k, dim)),
                       "intercept": np.zeros(k), "temperature": 1.5, "classes": list(classes)},
        "ood": {"tiles": reference(), "stamps": reference(), "noise_range": [0.0, 10.0],
                "beam_range_arcsec": [1.0, 20.0]},
    }
