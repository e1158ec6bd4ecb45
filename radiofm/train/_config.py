"""Training configuration: every hyper-parameter, with defaults, read from TOML."""

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..tiling import NormalizationSpec

__all__ = ["MonitorConfig", "TrainConfig", "load_config"]


@dataclass
class DataConfig:
    """What the model trains on.

    Attributes
    ----------
    sources : list of dict
        Each ``{"kind": ..., "weight": ...}`` plus options. Kinds: ``"simulated"``
        (``fields``, ``size``, ``seed``), ``"npy"`` (``path``: normalised (N, T, T) tiles),
        ``"fits"`` (``path``: a folder of FITS images),
        ``"first"`` (the FIRST fields of the data root), ``"mgcls"`` (the MGCLS cutouts of
        the data root) and ``"mirabest"`` (MiraBest's TRAIN stamps, less the monitor's; never
        its test batch). Weights set each kind's share of the samples, whatever its size.
        Image sources (``"fits"``, ``"first"``) take ``tile_pixels``: cut tiles of that many
        image pixels and resample them to ``tile_size`` (default: no resampling), and
        ``overlap``: pixels shared by neighbouring tiles (default 0; half of ``tile_pixels``
        on a FIRST field adds the tile centred on its source).
    root : str
        The shared data folder (default: ``$RADIOFM_DATA`` or ``../shared/data``).
    tile_size : int
        Side of the tiles crops are cut from, in pixels.
    normalization : str or dict
        A `~radiofm.tiling.NormalizationSpec` value: ``"percentile"``, ``"snr"`` or
        ``{method = "snr", softening = 1.0, ...}``, fitted per parent image. With "snr" the
        bank keeps tiles as signal-to-noise (before the arcsinh) so the processing
        augmentations can re-clip and re-noise them; the crops then go through the same
        `~radiofm.tiling.normalize`.
    """

    sources: list = field(default_factory=lambda: [{"kind": "simulated", "weight": 1.0}])
    root: str = ""
    tile_size: int = 128
    normalization: str | dict = "percentile"

    @property
    def spec(self):
        """The normalisation as a `~radiofm.tiling.NormalizationSpec`."""
        return NormalizationSpec.from_value(self.normalization)


@dataclass
class ModelConfig:
    """Backbone and DINO head.

    Attributes
    ----------
    arch : str
        Any timm model name (created with ``in_chans=1``, ``num_classes=0``).
    patch_size : int
        For ViTs: the patch size (8 or 16); ignored otherwise.
    out_dim, hidden_dim, bottleneck_dim : int
        DINO head: prototypes, MLP width, bottleneck.
    norm_last_layer : bool
        Fix the weight-normalised last layer's norm to 1 (DINO's default for stability).
    drop_path_rate : float
        Stochastic depth of the student.
    timm_options : dict
        More keyword arguments for ``timm.create_model`` (e.g. ``depth`` of a ViT).
    """

    arch: str = "vit_tiny_patch16_224"
    patch_size: int = 8
    out_dim: int = 4096
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = True
    drop_path_rate: float = 0.1
    timm_options: dict = field(default_factory=dict)


@dataclass
class CropConfig:
    """Multi-crop radio augmentation (no colour jitter, no solarisation).

    Attributes
    ----------
    global_size, local_size : int
        Crop sides in pixels after resizing.
    n_local : int
        Local crops per image (2 global crops always).
    global_scale, local_scale : list of float
        Fraction of the tile area each crop covers, as a range.
    area_average : bool
        A crop whose pixels are larger than the tile's (a shrink) first smooths the tile
        with a Gaussian of the pixel-area width, as inference's area-averaging resampling
        (`radiofm.tiling.resample_tiles`) does; without it a shrunk crop samples the tile
        bilinearly and keeps its noise per pixel. Only tiles kept larger than the crops
        (``data.tile_size`` above ``global_size``) shrink much.
    blur_sigma : list of float
        Gaussian blur sigma range in pixels of the crop (beam-like smoothing); 0 disables.
    blur_probability : float
    noise_snr : list of float
        Additive Gaussian noise: the crop's peak over the noise sigma, drawn log-uniformly.
    noise_probability : float
    stretch : list of float
        Intensity stretch ``sign(x) |x|^gamma`` with gamma drawn log-uniformly.
        ``noise_snr``, ``noise_probability`` and ``stretch`` act on "percentile" tiles only;
        "snr" tiles take the processing augmentations below instead (all off by default).
    clip_probability : float
        "snr": set every pixel below a clip level to 0, as stamp makers did.
    clip_sigma : list of float
        Range of that clip level, in noise sigma (uniform).
    renoise_probability : float
        "snr": add noise of ``renoise_sigma`` times the tile's noise (log-uniform), correlated
        over a Gaussian of ``noise_beam`` pixels (sigma, uniform; 0 is white), then divide
        by the new noise, as a refit stretch would: a noisier survey.
    renoise_sigma, noise_beam : list of float
    snr_scale : list of float
        "snr": multiply the S/N by a factor drawn log-uniformly (a noise estimate that is off,
        or another softening of the stretch).
    """

    global_size: int = 64
    local_size: int = 32
    n_local: int = 4
    global_scale: list = field(default_factory=lambda: [0.4, 1.0])
    local_scale: list = field(default_factory=lambda: [0.05, 0.4])
    area_average: bool = False
    blur_sigma: list = field(default_factory=lambda: [0.1, 1.5])
    blur_probability: float = 0.5
    noise_snr: list = field(default_factory=lambda: [5.0, 100.0])
    noise_probability: float = 0.5
    stretch: list = field(default_factory=lambda: [0.7, 1.4])
    clip_probability: float = 0.0
    clip_sigma: list = field(default_factory=lambda: [2.0, 5.0])
    renoise_probability: float = 0.0
    renoise_sigma: list = field(default_factory=lambda: [0.3, 3.0])
    noise_beam: list = field(default_factory=lambda: [0.0, 2.0])
    snr_scale: list = field(default_factory=lambda: [1.0, 1.0])


@dataclass
class MonitorConfig:
    """The frozen-feature monitor written into the training log (see `FeatureMonitor`).

    Attributes
    ----------
    every : int
        Steps between evaluations (0: off). It runs before step 0 (the random network),
        every ``every`` steps, and after the last step.
    mirabest_fit, mirabest_valid : int
        MBFRConfident TRAIN stamps that fit and score the probes (a fixed carve; the
        test batch is never read). The ``"mirabest"`` training source leaves them out.
    count_fields : int
        Simulated 1024-px fields whose 270-arcsec tiles give the count R^2 (two thirds
        fit a ridge, the rest score it).
    k : int
        Neighbours of the kNN probe.
    """

    every: int = 0
    mirabest_fit: int = 300
    mirabest_valid: int = 150
    count_fields: int = 9
    k: int = 10


@dataclass
class OptimConfig:
    """Optimiser and schedules (per step, cosine).

    Attributes
    ----------
    epochs, steps_per_epoch, batch_size : int
        ``batch_size`` is per process; an epoch is a fixed number of steps.
    lr, min_lr : float
        Peak learning rate for a total batch of 256 (scaled linearly) and the final one.
    warmup_epochs : float
    weight_decay, weight_decay_end : float
    clip_grad : float
        Gradient norm clipping (0 disables).
    freeze_last_layer : int
        Epochs during which the head's last layer is not updated.
    momentum_teacher : float
        EMA momentum at the start; it rises to 1 on a cosine.
    teacher_temp, warmup_teacher_temp : float
    warmup_teacher_temp_epochs : int
    student_temp, center_momentum : float
    centering : str
        How the teacher is kept from collapsing (`radiofm.train.CENTERINGS`): ``"ema"``
        (DINO: an EMA centre of ``center_momentum`` is subtracted from its logits) or
        ``"sinkhorn"`` (DINOv2: `radiofm.train.sinkhorn_knopp` balances each step's batch
        over the prototypes).
    sinkhorn_iterations : int
        Normalisation rounds with ``centering = "sinkhorn"``.
    koleo_weight : float
        Weight of the KoLeo spread term (`koleo_loss`) on the student's backbone features of
        each global crop, added to the DINO loss; 0 (the default) leaves it out. DINOv2 uses
        0.1.
    """

    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 32
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_epochs: float = 1.0
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0
    freeze_last_layer: int = 1
    momentum_teacher: float = 0.996
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    student_temp: float = 0.1
    center_momentum: float = 0.9
    centering: str = "ema"
    sinkhorn_iterations: int = 3
    koleo_weight: float = 0.0


@dataclass
class RunConfig:
    """Where and how the run goes.

    Attributes
    ----------
    output : str
        Folder for checkpoints, the teacher backbone and the log.
    checkpoint_every : int
        Steps between checkpoints (one is always written at the end).
    seed : int
        Every random draw is a function of (seed, step, process), so resumed runs repeat.
    device : str
        ``"auto"`` (CUDA if present), ``"cpu"`` or ``"cuda"``.
    threads : int
        torch CPU threads (0: torch's default).
    amp : bool
        bfloat16 autocast and channels-last on GPU (ignored on CPU).
    """

    output: str = "radiofm-dino"
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    amp: bool = True


@dataclass
class TrainConfig:
    """The whole configuration: ``[data]``, ``[model]``, ``[crops]``, ``[optim]``, ``[run]``,
    ``[monitor]``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    def to_dict(self):
        """Plain nested dict (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build from a nested dict, refusing unknown sections and keys."""
        sections = {f.name: f.type for f in fields(cls)}
        unknown = set(values) - set(sections)
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; known: "
                             f"{sorted(sections)}")
        built = {}
        for name, kind in sections.items():
            given = dict(values.get(name, {}))
            known = {f.name for f in fields(kind)}
            extra = set(given) - known
            if extra:
                raise ValueError(f"unknown keys {sorted(extra)} in [{name}]; known: "
                                 f"{sorted(known)}")
            for item in fields(kind):
                if item.name in given:
                    _check_type(name, item, given[item.name])
            built[name] = kind(**given)
        config = cls(**built)
        config.validate()
        return config

    def validate(self):
        """Raise ValueError on values no run could use."""
        o, c = self.optim, self.crops
        checks = [
            (o.epochs >= 1 and o.steps_per_epoch >= 1, "epochs and steps_per_epoch must be >= 1"),
            (o.batch_size >= 2, "batch_size must be >= 2 (centering needs a batch)"),
            (0 < o.momentum_teacher < 1, "momentum_teacher must be in (0, 1)"),
            (c.local_size <= c.global_size <= self.data.tile_size,
             "need local_size <= global_size <= data.tile_size"),
            (c.n_local >= 0, "n_local must be >= 0"),
            (all(_is_range(r) for r in (c.clip_sigma, c.renoise_sigma, c.noise_beam,
                                         c.snr_scale)),
             "clip_sigma, renoise_sigma, noise_beam and snr_scale must be [low, high] with "
             "0 <= low <= high"),
            (min(c.renoise_sigma) > 0 and min(c.snr_scale) > 0,
             "renoise_sigma and snr_scale must be positive (drawn log-uniformly)"),
            (all(0 <= p <= 1 for p in (c.clip_probability, c.renoise_probability)),
             "clip_probability and renoise_probability must be in [0, 1]"),
            (self.monitor.every >= 0 and self.monitor.mirabest_fit >= 10
             and self.monitor.mirabest_valid >= 10 and self.monitor.count_fields >= 2
             and self.monitor.k >= 1,
             "monitor: every >= 0, mirabest_fit and mirabest_valid >= 10, count_fields >= 2, "
             "k >= 1"),
            (bool(self.data.sources), "data.sources must list at least one source"),
            (self.run.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.run.seed >= 0, f"run.seed must be >= 0, got {self.run.seed}"),
            (self.run.threads >= 0, f"run.threads must be >= 0, got {self.run.threads}"),
            (self.run.device in DEVICES, f"run.device must be one of {DEVICES}, got "
             f"{self.run.device!r}"),
            (o.lr > 0, f"lr must be > 0, got {o.lr}"),
            (o.koleo_weight >= 0, f"koleo_weight must be >= 0, got {o.koleo_weight}"),
            (o.centering in CENTERINGS, f"optim.centering must be one of {CENTERINGS}, got "
             f"{o.centering!r}"),
            (o.sinkhorn_iterations >= 1,
             f"sinkhorn_iterations must be >= 1, got {o.sinkhorn_iterations}"),
        ]
        for index, source in enumerate(self.data.sources):
            if not isinstance(source, dict) or "kind" not in source:
                raise ValueError(f"bad training config: data.sources[{index}] must be a table "
                                 f"with a 'kind', got {source!r}")
            weight = source.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
                    weight > 0):
                raise ValueError(f"bad training config: data.sources[{index}].weight must be "
                                 f"a positive number, got {weight!r}")
        from ._model import check_arch

        try:
            check_arch(self.model.arch)
        except ValueError as error:
            raise ValueError(f"bad training config: [model] {error}") from None
        for ok, message in checks:
            if not ok:
                raise ValueError(f"bad training config: {message}")
        try:
            NormalizationSpec.from_value(self.data.normalization)
        except ValueError as error:
            raise ValueError(f"bad training config: data.normalization: {error}") from None


#: The devices `radiofm.train.train` runs on.
DEVICES = ("auto", "cpu", "cuda")
#: How the teacher is kept from collapsing (``optim.centering``): DINO's EMA centre, or
#: DINOv2's Sinkhorn-Knopp balancing of the batch over the prototypes
#: (`radiofm.train.sinkhorn_knopp`).
CENTERINGS = ("ema", "sinkhorn")
_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          list: "a list (an array in TOML)", dict: "a table"}


def _check_type(section, item, value):
    """Refuse a config value whose type does not match the field's, naming the key."""
    wanted = item.type
    if wanted is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif wanted is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, wanted)
    if not ok:
        raise TypeError(f"bad training config: [{section}] {item.name} must be "
                        f"{_TYPES.get(wanted, wanted.__name__)}, got {value!r} "
                        f"({type(value).__name__})")


def _is_range(values):
    return (isinstance(values, list | tuple) and len(values) == 2
            and 0 <= float(values[0]) <= float(values[1]))


def load_config(path):
    """Read a TOML training config; missing keys take their defaults.

    Parameters
    ----------
    path : str or path-like
        The TOML file.

    Returns
    -------
    config : `TrainConfig`

    Raises
    ------
    TypeError
        A value of the wrong type (a string where a number belongs, a float number of
        epochs, ``sources`` given as a table instead of a list...), naming the key.
    ValueError
        An unknown section or key, or a value no run could use.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such training config: {path}")
    with open(path, "rb") as stream:
        try:
            values = tomllib.load(stream)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path} is not valid TOML: {error}") from error
    return TrainConfig.from_dict(values)
