"""The numpy heads an exported model carries: counts, morphology and an OOD reference.

An ONNX model's graph gives the ``embedding``; everything read off it (the compact-source
count per tile, the morphology class of a source, how far a tile or stamp lies from the
training data) is a small numpy model stored as JSON in the ONNX metadata under ``heads``
(`HEADS_VERSION`). `parse_heads` reads and checks it, `Heads` applies it. Keeping the heads
out of the graph means they can be re-fitted on a shipped model's embeddings (``radiofm
fit-heads``) without its training checkpoint, and that no head needs torch.

Layout (every array a nested JSON list of floats)::

    {"heads_version": 6, "embedding_dim": D,
     "counts": {"kind": "poisson-glm", "mean": [F], "scale": [F], "coef": [F],
                "intercept": b, "max_log_rate": m, "dispersion": phi,
                "peak_level": l, "catalogues": [CATALOGUE, ...], "description": "...",
                "windows": w, "field_peaks": {"level": l, "range": [low, high]},
                "regimes": [{"name": "...", "beam_range_arcsec": [low, high],
                             "description": "...", "mean": [F], "scale": [F],
                             "coef": [F], "intercept": b, "max_log_rate": m,
                             "dispersion": phi, "peak_level": l,
                             "field_peaks": {...}, "catalogues": [CATALOGUE, ...]}, ...],
                ...},
     "morphology": {"kind": "multinomial-logistic", "mean": [D], "scale": [D],
                    "coef": [[D] x K], "intercept": [K], "temperature": T,
                    "classes": [K names], ...},
     "ood": {"tiles": REFERENCE, "stamps": REFERENCE,
             "noise_range": [low, high], "beam_range_arcsec": [low, high]},
     "fitted": {...provenance...}}

where a REFERENCE is ``{"mean": [D], "scale": [D], "components": [[D] x k],
"variances": [k], "residual_variance": r, "threshold": t}``: a PCA of the standardised
training embeddings; a score is the root mean squared whitened distance (k PCA
coordinates plus the residual), and scores above ``threshold`` are out of distribution.

The count head reads ``windows`` x ``windows`` windows of a tile (`radiofm.tiling.split_windows`)
and a tile's count is the sum of its windows' counts; version 2 added ``windows`` (version 1
heads, which have none, read whole tiles and are still read).

A count head may carry ``regimes`` (version 3): Poisson GLMs fitted on the training data of
one beam only (FIRST's 5.4", the simulated MeerKAT sky's 7.5"). An image whose beam lies in
a regime's ``beam_range_arcsec`` is counted by that regime's GLM; any other image, or one
whose beam is unknown, by the head fitted on every training tile (the top-level GLM).
Version 2 heads have no regimes and are still read.

Each count GLM may carry a ``dispersion`` (version 4): the ratio of the variance of a
tile's true count around its prediction to the prediction, measured on held-out training
tiles (a quasi-Poisson dispersion); every GLM of a head has one, or none has. It gives each
predicted count its uncertainty (`Heads.count_errors`). Version 3 heads have none, and
their counts no uncertainty.

A count GLM reads F = D features, the embedding, unless it has a ``peak_level`` (version
5): then it reads F = D + 4, the embedding followed by the `peak_features` of the
normalised input the embedding came from (its peaks and islands at or above
``peak_level``, in the input's units). What the pooled embedding of a window blurs, the
number of separate bright peaks in it, the pixels then say directly. Each GLM of a head
(the pooled one, each regime's) reads the peaks or not on its own.

A count GLM may carry ``catalogues`` (version 6), each CATALOGUE = ``{"finder": name,
"snr": [K], "probability": [K], "coef": [3], "dispersion": phi}`` for a distinct finder:
how its tile counts combine with a catalogue of the image that
`radiofm.sources.find_sources` made with that finder (`CatalogueCount`). Each of the
catalogue's sources that is compact by measurement counts with the probability,
interpolated in its measured peak S/N, that it is a source of the counted kind (a
finder's 5-sigma source is a true 5-sigma source about a third of the time: fainter
sources, far more numerous, scatter above the threshold); a tile's count is then
``coef[0] + coef[1] x`` the GLM's count ``+ coef[2] x`` the summed probabilities, with
coefficients >= 0, so never negative.

A CATALOGUE may carry (version 8) the ``crowding_range`` [low, high] of the fields it was
fitted on, in the catalogue's crowding (`radiofm.inference.catalogue_crowding`: its
sources compact by measurement per beam solid angle over the image's tiles); a catalogue
more than `CROWDING_TOLERANCE` beyond it is out of distribution. With a range it may carry
a fourth coefficient: ``+ coef[3] x`` the summed probabilities ``x`` the catalogue's
crowding. A finder merges
sources closer than about a beam, and the share merged grows with the number of sources
per beam: on simulated MeerKAT skies of 1.5 uJy/beam, 13 % of the true 5-sigma compact
sources share their catalogue source with another, against 6 % at 4 uJy/beam. Version 6
catalogues have three coefficients and no range; version 7 measured the crowding over every
detection, which a calibration artefact's spurious ones raise, and its ranges are refused.

A count GLM may carry (version 9) ``field_peaks`` = ``{"level": l, "range": [low, high]}``:
over each field it was fitted on, the median over the field's tiles of the tile's peaks at
or above ``l`` in its normalised inputs (summed over its windows; on the S/N stretch, its
5-sigma peaks), and the range of those medians over the fields. An image whose median lies
more than `FIELD_PEAKS_TOLERANCE` beyond it is more crowded or sparser than any training
field (a deeper or shallower one), where the GLM's count, read off the embedding, is biased:
`Heads.field_peaks_known`. On simulated 1.5 uJy/beam MeerKAT skies the count GLM fitted at
4 uJy/beam undercounted 41.5 true sources per tile by 8.3.

A CATALOGUE may carry (version 10) ``shared_probability`` [K]: the probability, at the same
S/N knots, for a compact source that shares its island with a source not compact by
measurement (`radiofm.inference.shares_island`): most such sources are pieces of a resolved
source, not compact sources of their own (on simulated MeerKAT skies 42-49 % of them are
true counted sources, against 86-87 % of the other compact sources). It comes with
``shared_coef`` [2]: the weight of such sources' summed probabilities, intercept and slope
in the catalogue's crowding (a piece is more often a compact source blended with its
neighbour the deeper and more crowded the field).
"""

import json

import numpy as np

from ._metadata import ModelMetadataError

__all__ = ["CROWDING_TOLERANCE", "FIELD_PEAKS_TOLERANCE", "HEADS_VERSION", "PEAK_FEATURES",
           "POOLED_COUNT_HEAD", "CatalogueCount", "Heads",
           "OodReference", "PoissonGlm", "input_noise", "parse_heads", "peak_features",
           "serialize_heads"]

#: Version of the heads layout above; bump when a key changes meaning.
HEADS_VERSION = 10
#: Heads versions this radiofm reads (1: no ``counts.windows``, whole tiles; 2: no
#: ``counts.regimes``; 3: no count ``dispersion``; 4: no count ``peak_level``; 5: no count
#: ``catalogues``; 6: no catalogue crowding range or coefficient; 7: the same, its crowding
#: having been measured over every detection; 8: no count ``field_peaks``; 9: no catalogue
#: ``shared_probability``).
READABLE_HEADS_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
#: What `peak_features` gives per input, in order: a count GLM with a ``peak_level`` reads
#: them after the embedding.
PEAK_FEATURES = ("peaks", "islands", "log(1 + peaks)", "log(1 + islands)")
#: Name of the count head fitted on every training tile, which counts images of any beam.
POOLED_COUNT_HEAD = "pooled"
#: A catalogue whose crowding lies beyond its combination's ``crowding_range`` by more than
#: this factor (below low / factor or above high x factor) is out of distribution.
CROWDING_TOLERANCE = 1.25
#: An image whose median peaks per tile lie beyond a count GLM's ``field_peaks`` range by
#: more than this factor (below low / factor or above high x factor) is out of distribution.
FIELD_PEAKS_TOLERANCE = 1.25
#: Morphology probabilities below this (after temperature scaling) make a source uncertain.
MIN_CONFIDENCE = 0.5

_GLM_KEYS = ("mean", "scale", "coef", "intercept", "max_log_rate")
_COUNT_KEYS = (*_GLM_KEYS, "description")
_MORPH_KEYS = ("mean", "scale", "coef", "intercept", "temperature", "classes")
_CATALOGUE_KEYS = ("finder", "snr", "probability", "coef", "dispersion")
_REFERENCE_KEYS = ("mean", "scale", "components", "variances", "residual_variance",
                   "threshold")


class _Invalid(Exception):
    pass


def _array(part, key, shape, where):
    try:
        value = np.asarray(part[key], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise _Invalid(f"{where}.{key} is not numeric ({error})") from None
    if value.shape != shape:
        raise _Invalid(f"{where}.{key} has shape {value.shape}, expected {shape}")
    if not np.isfinite(value).all():
        raise _Invalid(f"{where}.{key} holds non-finite values")
    return value


def _number(part, key, where, *, positive=False):
    value = _array(part, key, (), where)
    if positive and not value > 0:
        raise _Invalid(f"{where}.{key} must be positive, got {float(value)}")
    return float(value)


def _range(part, key, where):
    value = part.get(key)
    if value is None:
        return None
    value = _array(part, key, (2,), where)
    if not 0 <= value[0] <= value[1]:
        raise _Invalid(f"{where}.{key} must be [low, high] with 0 <= low <= high, got "
                       f"{value.tolist()}")
    return [float(v) for v in value]


def _require(part, keys, where):
    if not isinstance(part, dict):
        raise _Invalid(f"{where} must be an object, got {type(part).__name__}")
    missing = [key for key in keys if key not in part]
    if missing:
        raise _Invalid(f"{where} lacks {missing}")


class OodReference:
    """An out-of-distribution reference: PCA of standardised training embeddings.

    Parameters
    ----------
    part : dict
        ``mean``, ``scale``, ``components``, ``variances``, ``residual_variance`` and
        ``threshold`` (as `radiofm.evaluate.fit_output_heads` writes them).
    dim : int
        Embedding size.
    where : str
        Where the reference sits in the heads, for error messages.
    """

    def __init__(self, part, dim, where):
        _require(part, _REFERENCE_KEYS, where)
        self.mean = _array(part, "mean", (dim,), where)
        self.scale = _array(part, "scale", (dim,), where)
        if not (self.scale > 0).all():
            raise _Invalid(f"{where}.scale must be positive")
        components = np.asarray(part["components"], dtype=np.float64)
        if components.ndim != 2 or components.shape[1] != dim or not len(components):
            raise _Invalid(f"{where}.components has shape {components.shape}, expected "
                           f"(k, {dim}) with k >= 1")
        self.components = _array(part, "components", components.shape, where)
        self.variances = _array(part, "variances", (len(components),), where)
        if not (self.variances > 0).all():
            raise _Invalid(f"{where}.variances must be positive")
        self.residual_variance = _number(part, "residual_variance", where, positive=True)
        self.threshold = _number(part, "threshold", where, positive=True)
        self.raw = {key: part[key] for key in part}

    def score(self, embedding):
        z = (embedding - self.mean) / self.scale
        projected = z @ self.components.T
        residual = np.maximum((z * z).sum(axis=1) - (projected * projected).sum(axis=1), 0.0)
        whitened = (projected**2 / self.variances).sum(axis=1)
        return np.sqrt((whitened + residual / self.residual_variance)
                       / (len(self.variances) + 1))


class CatalogueCount:
    """How a count GLM's tile counts combine with a catalogue of the image (heads version 6;
    the crowding range and coefficient version 8; the shared-island curve and weight version
    10).

    Parameters
    ----------
    part : dict
        ``finder`` (the `radiofm.sources.find_sources` method the catalogue must come
        from), ``snr`` and ``probability`` (each (K,): the probability that a source compact
        by measurement is a source of the counted kind, at increasing measured peak S/N;
        interpolated between, held beyond the ends), ``coef`` (intercept, weight of the
        GLM's count, weight of the summed probabilities and, optionally, weight of the
        summed probabilities times the catalogue's crowding; each >= 0), ``dispersion``
        (variance of a tile's true count over the combined count) and, optionally,
        ``crowding_range`` (the crowding of the fields it was fitted on; needed by a
        fourth coefficient or a ``shared_coef`` slope), ``shared_probability`` ((K,), at the
        same S/N, for compact sources that share their island with a resolved source) and
        ``shared_coef`` (the weight of their summed probabilities: intercept, and slope in
        the crowding; each >= 0; the two together or neither, when such sources take
        ``probability`` and ``coef``), as `radiofm.evaluate.fit_output_heads` writes them.
    where : str
        Where it sits in the heads, for error messages.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.models import CatalogueCount
    >>> mix = CatalogueCount({"finder": "photutils", "snr": [5.0, 7.0],
    ...                       "probability": [0.3, 0.9], "coef": [0.5, 0.4, 0.6],
    ...                       "dispersion": 1.2}, "counts.catalogues[0]")
    >>> weights = mix.source_probabilities(np.array([5.0, 6.0, 20.0, 6.0]),
    ...                                    np.array([True, True, True, False]))
    >>> [round(float(w), 2) for w in weights]
    [0.3, 0.6, 0.9, 0.0]
    >>> [round(float(v), 2) for v in mix.combine(np.array([10.0]), np.array([8.0]))[0]]
    [9.3]

    A fourth coefficient adds the summed probabilities times the crowding (sources per
    beam solid angle), which makes up for the sources a finder merges in crowded fields:

    >>> crowded = CatalogueCount({"finder": "photutils", "snr": [5.0], "probability": [1.0],
    ...                           "coef": [0.0, 0.0, 1.0, 20.0], "dispersion": 1.0,
    ...                           "crowding_range": [0.005, 0.02]}, "c")
    >>> [round(float(v), 2) for v in crowded.combine(np.array([0.0]), np.array([10.0]),
    ...                                                crowding=0.01)[0]]
    [12.0]
    >>> crowded.crowding_known(0.01), crowded.crowding_known(0.05)
    (True, False)

    A compact source that shares its island with a resolved source (``shared``,
    `radiofm.inference.shares_island`) is more often a piece of that source; a combination
    with ``shared_probability`` weighs it by that curve instead, and sums such sources
    apart, weighed by ``shared_coef`` at the catalogue's crowding:

    >>> pieces = CatalogueCount({"finder": "photutils", "snr": [5.0, 7.0],
    ...                          "probability": [0.3, 0.9], "shared_probability": [0.1, 0.4],
    ...                          "coef": [0.5, 0.4, 0.6], "shared_coef": [0.2, 40.0],
    ...                          "crowding_range": [0.005, 0.02], "dispersion": 1.2}, "c")
    >>> weights = pieces.source_probabilities(np.array([6.0, 6.0]), np.array([True, True]),
    ...                                       shared=np.array([False, True]))
    >>> [round(float(w), 2) for w in weights]
    [0.6, 0.25]
    >>> [round(float(v), 2) for v in pieces.combine(np.array([10.0]), np.array([8.0]),
    ...                                               crowding=0.01,
    ...                                               shared_counts=np.array([2.0]))[0]]
    [10.5]
    """

    def __init__(self, part, where):
        _require(part, _CATALOGUE_KEYS, where)
        self.finder = part["finder"]
        if not isinstance(self.finder, str) or not self.finder:
            raise _Invalid(f"{where}.finder must name a source finder, got {self.finder!r}")
        shape = np.shape(part["snr"])
        self.snr = _array(part, "snr", shape, where)
        if len(shape) != 1 or not shape[0] or not (np.diff(self.snr) > 0).all():
            raise _Invalid(f"{where}.snr must be a non-empty increasing list")
        self.probability = _array(part, "probability", shape, where)
        #: whether compact sources sharing their island with a resolved one have a curve and
        #: a weight of their own
        self.reads_islands = "shared_probability" in part
        if self.reads_islands != ("shared_coef" in part):
            raise _Invalid(f"{where} needs both shared_probability and shared_coef, or "
                           "neither")
        self.shared_probability = (_array(part, "shared_probability", shape, where)
                                   if self.reads_islands else self.probability)
        for key, value in (("probability", self.probability),
                           ("shared_probability", self.shared_probability)):
            if not ((value >= 0) & (value <= 1)).all():
                raise _Invalid(f"{where}.{key} must lie in [0, 1]")
        self.shared_coef = (_array(part, "shared_coef", (2,), where) if self.reads_islands
                            else None)
        if self.reads_islands and not (self.shared_coef >= 0).all():
            raise _Invalid(f"{where}.shared_coef must be >= 0 (counts are never negative), "
                           f"got {self.shared_coef.tolist()}")
        terms = np.shape(part["coef"])
        self.coef = _array(part, "coef", terms if terms in ((3,), (4,)) else (3,), where)
        if not (self.coef >= 0).all():
            raise _Invalid(f"{where}.coef must be >= 0 (counts are never negative), got "
                           f"{self.coef.tolist()}")
        self.crowding_range = _range(part, "crowding_range", where)
        if ((self.reads_crowding or (self.reads_islands and self.shared_coef[1] > 0))
                and self.crowding_range is None):
            raise _Invalid(f"{where} weighs the crowding but has no crowding_range")
        self.dispersion = _number(part, "dispersion", where, positive=True)

    def source_probabilities(self, snr, compact, shared=None):
        """(N,) probability that each catalogue source is one the head counts: 0 for
        sources not compact by measurement or of unknown S/N; ``shared`` (N,) marks the
        compact sources that share their island with a resolved source, which take
        ``shared_probability``."""
        snr = np.asarray(snr, dtype=np.float64)
        known = np.asarray(compact, bool) & np.isfinite(snr)
        at = np.where(known, snr, 0.0)
        probability = np.interp(at, self.snr, self.probability)
        if shared is not None:
            probability = np.where(np.asarray(shared, bool),
                                   np.interp(at, self.snr, self.shared_probability),
                                   probability)
        return np.where(known, probability, 0.0)

    @property
    def reads_crowding(self):
        """Whether the combination reads the catalogue's crowding (a fourth coefficient)."""
        return len(self.coef) == 4

    def crowding_known(self, crowding):
        """Whether a catalogue of this ``crowding`` lies within `CROWDING_TOLERANCE` of the
        fields the combination was fitted on (always, for one without a
        ``crowding_range``)."""
        if self.crowding_range is None:
            return True
        low, high = self.crowding_range
        return bool(low / CROWDING_TOLERANCE <= crowding <= high * CROWDING_TOLERANCE)

    def combine(self, tile_counts, catalogue_counts, crowding=0.0, shared_counts=None):
        """Combined tile counts and their one-sigma errors (quasi-Poisson), each (N,)
        float32 >= 0, from the GLM's tile counts, the tiles' summed
        `source_probabilities` (of the compact sources that share no island with a resolved
        source, where ``shared_counts`` holds the others' and the combination
        `reads_islands`) and the catalogue's ``crowding`` (its sources per beam solid angle,
        `radiofm.inference.catalogue_crowding`, or one per tile; read only where
        `reads_crowding` or `reads_islands`)."""
        intercept, head, catalogue, crowded = (*self.coef, 0.0)[:4]
        crowding = np.asarray(crowding, np.float64)
        counts = (intercept + head * np.asarray(tile_counts, np.float64)
                  + (catalogue + crowded * crowding) * np.asarray(catalogue_counts, np.float64))
        if shared_counts is not None:
            if not self.reads_islands:
                raise ValueError("this combination has no weight of its own for the compact "
                                 "sources that share an island: sum them with the others")
            pieces, slope = self.shared_coef
            counts = counts + (pieces + slope * crowding) * np.asarray(shared_counts,
                                                                       np.float64)
        errors = np.sqrt(self.dispersion * np.maximum(counts, 0.0))
        return counts.astype(np.float32), errors.astype(np.float32)


class PoissonGlm:
    """One Poisson GLM (log link) on standardised embeddings: a count head's model.

    Parameters
    ----------
    part : dict
        ``mean``, ``scale``, ``coef`` (each (F,)), ``intercept``, ``max_log_rate`` (the
        cap of the log rate) and, optionally, ``dispersion`` (variance of a tile's count
        over its prediction), ``peak_level`` (the GLM also reads the inputs'
        `peak_features` at this level: F = D + 4, else F = D), ``field_peaks`` (the range
        of its training fields' median peaks per tile, at a level of its own) and
        ``catalogues`` (a list of `CatalogueCount` parts, one per finder), as
        `radiofm.evaluate.fit_output_heads` writes them.
    dim : int
        Embedding size D.
    where : str
        Where the GLM sits in the heads, for error messages.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.models import PoissonGlm
    >>> glm = PoissonGlm({"mean": [0.0], "scale": [1.0], "coef": [1.0], "intercept": 0.0,
    ...                   "max_log_rate": 2.0}, 1, "counts")
    >>> [round(float(v), 3) for v in glm.predict(np.array([[0.0], [5.0]]))]
    [1.0, 7.389]
    """

    def __init__(self, part, dim, where):
        _require(part, _GLM_KEYS, where)
        self.peak_level = (_number(part, "peak_level", where) if "peak_level" in part
                           else None)
        features = dim + (len(PEAK_FEATURES) if self.peak_level is not None else 0)
        self.mean, self.scale, self.coef = (_array(part, key, (features,), where)
                                            for key in ("mean", "scale", "coef"))
        if not (self.scale > 0).all():
            raise _Invalid(f"{where}.scale must be positive")
        self.intercept = _number(part, "intercept", where)
        self.max_log_rate = _number(part, "max_log_rate", where)
        self.dispersion = (_number(part, "dispersion", where, positive=True)
                           if "dispersion" in part else None)
        self.field_peaks = None  # (level, [low, high])
        if "field_peaks" in part:
            _require(part["field_peaks"], ("level", "range"), f"{where}.field_peaks")
            self.field_peaks = (
                _number(part["field_peaks"], "level", f"{where}.field_peaks", positive=True),
                _range(part["field_peaks"], "range", f"{where}.field_peaks"))
        catalogues = part.get("catalogues", [])
        if not isinstance(catalogues, list):
            raise _Invalid(f"{where}.catalogues must be a list, got "
                           f"{type(catalogues).__name__}")
        self.catalogues = {}
        for i, catalogue in enumerate(catalogues):
            parsed = CatalogueCount(catalogue, f"{where}.catalogues[{i}]")
            if parsed.finder in self.catalogues:
                raise _Invalid(f"{where}.catalogues has two for finder {parsed.finder!r}")
            self.catalogues[parsed.finder] = parsed

    def predict(self, x):
        """(N,) float32 expected counts of the (N, F) features ``x`` (the embeddings,
        followed by their inputs' `peak_features` when the GLM has a ``peak_level``),
        never negative."""
        eta = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        # beyond the training range the log-linear extrapolation explodes: cap it
        return np.exp(np.minimum(eta, self.max_log_rate)).astype(np.float32)


def _count_regimes(counts, dim, version):
    """The (name, beam range, description, GLM) of each regime of a count head."""
    regimes = counts.get("regimes", [])
    if regimes and version in (1, 2):
        raise _Invalid("counts.regimes needs heads version 3")
    if not isinstance(regimes, list):
        raise _Invalid(f"counts.regimes must be a list, got {type(regimes).__name__}")
    dispersed = [isinstance(part, dict) and "dispersion" in part
                 for part in [counts, *regimes]]
    if any(dispersed) and version in (1, 2, 3):
        raise _Invalid("a count dispersion needs heads version 4")
    if (any(isinstance(part, dict) and "peak_level" in part for part in [counts, *regimes])
            and version in (1, 2, 3, 4)):
        raise _Invalid("a count peak_level needs heads version 5")
    if (any(isinstance(part, dict) and "catalogues" in part for part in [counts, *regimes])
            and version in (1, 2, 3, 4, 5)):
        raise _Invalid("count catalogues need heads version 6")
    catalogues = [catalogue for part in [counts, *regimes]
                  if isinstance(part, dict) and isinstance(part.get("catalogues"), list)
                  for catalogue in part["catalogues"]]
    # a crowding coefficient needs a range (CatalogueCount), so the range marks both;
    # version 7 measured the crowding over every detection, inference now over compact ones
    if version in (1, 2, 3, 4, 5, 6, 7) and any(
            isinstance(catalogue, dict) and "crowding_range" in catalogue
            for catalogue in catalogues):
        raise _Invalid("a count catalogue's crowding coefficient or range needs heads "
                       "version 8 (version 7 measured the crowding over every detection: "
                       "re-fit the heads with `radiofm fit-heads`)")
    if version in (1, 2, 3, 4, 5, 6, 7, 8) and any(
            isinstance(part, dict) and "field_peaks" in part for part in [counts, *regimes]):
        raise _Invalid("a count field_peaks range needs heads version 9")
    if version in (1, 2, 3, 4, 5, 6, 7, 8, 9) and any(
            isinstance(catalogue, dict) and "shared_probability" in catalogue
            for catalogue in catalogues):
        raise _Invalid("a count catalogue's shared_probability needs heads version 10")
    if any(dispersed) and not all(dispersed):
        raise _Invalid("either every count GLM (counts and each of counts.regimes) has a "
                       "dispersion or none has")
    parsed = []
    for i, part in enumerate(regimes):
        where = f"counts.regimes[{i}]"
        _require(part, ("name", "beam_range_arcsec", "description"), where)
        name = part["name"]
        if not isinstance(name, str) or not name or name == POOLED_COUNT_HEAD:
            raise _Invalid(f"{where}.name must be a name other than {POOLED_COUNT_HEAD!r}, "
                           f"got {name!r}")
        beams = _range(part, "beam_range_arcsec", where)
        if beams is None or not beams[0] < beams[1]:
            raise _Invalid(f"{where}.beam_range_arcsec must be [low, high] with low < high")
        parsed.append((name, beams, str(part["description"]), PoissonGlm(part, dim, where)))
    parsed.sort(key=lambda regime: regime[1])
    for (first, (_, high), _, _), (second, (low, _), _, _) in zip(parsed, parsed[1:], strict=False):
        if low < high:
            raise _Invalid(f"the beam ranges of count regimes {first!r} and {second!r} "
                           "overlap")
    if len({regime[0] for regime in parsed}) != len(parsed):
        raise _Invalid("count regimes need distinct names")
    return parsed


class Heads:
    """Parsed, checked heads of an exported model (see `parse_heads`); apply them with
    `predict_counts`, `morphology_probabilities` and `ood_scores`.

    Attributes
    ----------
    embedding_dim : int
    classes : list of str
        Morphology classes, in probability order.
    temperature : float
        Divides the morphology logits (calibration).
    count_description : str
        What ``n_compact_pred`` counts.
    count_windows : int
        The count head reads ``count_windows`` x ``count_windows`` windows of each tile
        (`radiofm.tiling.split_windows`); see `predict_tile_counts`.
    count_regimes : dict
        Name -> beam range (FWHM, arcsec) of each count regime (see `count_regime`);
        empty when one head counts every image.
    count_reads_peaks : bool
        Some count GLM also reads the `peak_features` of its inputs (its ``peak_level``):
        `predict_counts` then needs the inputs.
    noise_range : list of float or None
        Range of the robust noise of normalised training inputs (see `input_noise`).
    beam_range_arcsec : list of float or None
        Beams (FWHM, arcsec) of the training images, widened.
    raw : dict
        The JSON-ready heads.
    """

    def __init__(self, raw, dim):
        self.raw = raw
        self.embedding_dim = dim
        counts, morph, ood = raw["counts"], raw["morphology"], raw["ood"]
        _require(counts, _COUNT_KEYS, "counts")
        self._pooled = PoissonGlm(counts, dim, "counts")
        self._regimes = _count_regimes(counts, dim, raw.get("heads_version"))
        self.count_reads_peaks = any(glm.peak_level is not None for glm in
                                     [self._pooled, *(regime[3] for regime in self._regimes)])
        self.count_regimes = {name: beams for name, beams, _, _ in self._regimes}
        if not isinstance(counts["description"], str) or not counts["description"]:
            raise _Invalid("counts.description must say what is counted")
        self.count_description = counts["description"]
        windows = counts.get("windows", 1)
        if not (isinstance(windows, int) and windows >= 1):
            raise _Invalid(f"counts.windows must be a positive integer, got {windows!r}")
        if raw.get("heads_version") == 1 and windows != 1:
            raise _Invalid("counts.windows needs heads version 2")
        self.count_windows = windows
        _require(morph, _MORPH_KEYS, "morphology")
        classes = morph["classes"]
        if not (isinstance(classes, list) and len(classes) >= 2
                and all(isinstance(c, str) and c for c in classes)
                and len(set(classes)) == len(classes)):
            raise _Invalid(f"morphology.classes must be >= 2 distinct names, got {classes!r}")
        self.classes = list(classes)
        k = len(classes)
        self._morph = {"mean": _array(morph, "mean", (dim,), "morphology"),
                       "scale": _array(morph, "scale", (dim,), "morphology"),
                       "coef": _array(morph, "coef", (k, dim), "morphology"),
                       "intercept": _array(morph, "intercept", (k,), "morphology")}
        if not (self._morph["scale"] > 0).all():
            raise _Invalid("morphology.scale must be positive")
        self.temperature = _number(morph, "temperature", "morphology", positive=True)
        _require(ood, ("tiles",), "ood")
        self._references = {name: OodReference(ood[name], dim, f"ood.{name}")
                            for name in ("tiles", "stamps") if name in ood}
        self.noise_range = _range(ood, "noise_range", "ood")
        self.beam_range_arcsec = _range(ood, "beam_range_arcsec", "ood")

    def __repr__(self):
        return (f"<Heads v{self.raw.get('heads_version')}: counts, morphology {self.classes} (T="
                f"{self.temperature:.3g}), OOD references {sorted(self._references)}>")

    def _embedding(self, embedding):
        embedding = np.asarray(embedding, dtype=np.float64)
        if embedding.ndim != 2 or embedding.shape[1] != self.embedding_dim:
            raise ValueError(f"heads take embeddings shaped (N, {self.embedding_dim}), got "
                             f"{embedding.shape}")
        return embedding

    def count_regime(self, beam_arcsec=None):
        """Which count head counts an image of this beam, and what it was fitted on.

        Parameters
        ----------
        beam_arcsec : float, optional
            The image's beam major axis (FWHM, arcsec); None when unknown.

        Returns
        -------
        name : str
            The regime whose ``beam_range_arcsec`` holds the beam, else `POOLED_COUNT_HEAD`
            (the head fitted on every training tile).
        description : str
            Its training data, for the count column's description.

        Examples
        --------
        >>> from radiofm.inference import load_model
        >>> heads = load_model("default").heads
        >>> heads.count_regime(5.4)[0], heads.count_regime(20.0)[0]
        ('FIRST', 'pooled')
        """
        if beam_arcsec is not None:
            for name, (low, high), description, _ in self._regimes:
                if low <= float(beam_arcsec) < high:
                    return name, description
        return POOLED_COUNT_HEAD, "every training tile, of any beam"

    def _count_model(self, beam_arcsec):
        name = self.count_regime(beam_arcsec)[0]
        return next((glm for regime, _, _, glm in self._regimes if regime == name),
                    self._pooled)

    def count_field_peaks(self, beam_arcsec=None):
        """The ``field_peaks`` of the count head that counts an image of this beam
        (`count_regime`): the peak level and the [low, high] range of its training fields'
        median peaks per tile, or None where it has none (heads before version 9, or a
        stretch whose pixels have no S/N meaning)."""
        return self._count_model(beam_arcsec).field_peaks

    def field_peaks_known(self, tile_peaks, beam_arcsec=None):
        """Whether an image holds as many peaks per tile as the fields its count head was
        fitted on.

        Parameters
        ----------
        tile_peaks : array-like
            (N,) each tile's peaks at the level of `count_field_peaks` (summed over its
            windows, `peak_features`).
        beam_arcsec : float, optional
            The image's beam (FWHM, arcsec): picks the count regime (`count_regime`).

        Returns
        -------
        known : bool
            False where the median over the tiles lies below the range's low /
            `FIELD_PEAKS_TOLERANCE` or above its high x `FIELD_PEAKS_TOLERANCE`; True
            without a range or without tiles.

        Examples
        --------
        >>> import numpy as np
        >>> from radiofm.models import Heads
        >>> glm = {"mean": [0.0], "scale": [1.0], "coef": [1.0], "intercept": 0.0,
        ...        "max_log_rate": 5.0, "description": "compact sources",
        ...        "field_peaks": {"level": 2.3, "range": [18.0, 24.0]}}
        >>> raw = {"heads_version": 9, "counts": glm,
        ...        "morphology": {"mean": [0.0], "scale": [1.0], "coef": [[1.0], [-1.0]],
        ...                       "intercept": [0.0, 0.0], "temperature": 1.0,
        ...                       "classes": ["a", "b"]},
        ...        "ood": {"tiles": {"mean": [0.0], "scale": [1.0], "components": [[1.0]],
        ...                          "variances": [1.0], "residual_variance": 1.0,
        ...                          "threshold": 3.0}}}
        >>> heads = Heads(raw, 1)
        >>> heads.field_peaks_known([19, 22, 41]), heads.field_peaks_known([38, 41, 45])
        (True, False)
        """
        field_peaks = self.count_field_peaks(beam_arcsec)
        tile_peaks = np.asarray(tile_peaks, np.float64)
        tile_peaks = tile_peaks[np.isfinite(tile_peaks)]
        if field_peaks is None or not len(tile_peaks):
            return True
        low, high = field_peaks[1]
        median = float(np.median(tile_peaks))
        return bool(low / FIELD_PEAKS_TOLERANCE <= median <= high * FIELD_PEAKS_TOLERANCE)

    def count_catalogues(self, beam_arcsec=None):
        """How the counts of an image of this beam combine with a catalogue of it: finder
        name -> `CatalogueCount` of the count head that counts it (`count_regime`), empty
        when that head has none."""
        return dict(self._count_model(beam_arcsec).catalogues)

    def predict_counts(self, embedding, beam_arcsec=None, inputs=None):
        """Expected compact-source count per input (Poisson GLM, log link): never negative.

        An input is a tile, or with `count_windows` > 1 one window of a tile (sum them with
        `predict_tile_counts`).

        Parameters
        ----------
        embedding : array-like
            (N, D) embeddings of the inputs the head reads.
        beam_arcsec : float, optional
            The image's beam (FWHM, arcsec): picks the count regime (`count_regime`).
        inputs : array-like, optional
            The (N, [1,] S, S) normalised inputs the embeddings came from; needed when the
            GLM that counts this beam reads their peaks (`count_reads_peaks`), ignored
            otherwise.

        Returns
        -------
        counts : `~numpy.ndarray`
            (N,) float32 >= 0 (NaN where the embedding is not finite).

        Raises
        ------
        ValueError
            The embedding is not (N, D), or the GLM reads the inputs' peaks and ``inputs``
            is missing or holds another number of inputs.
        """
        features = self._embedding(embedding)
        glm = self._count_model(beam_arcsec)
        if glm.peak_level is not None:
            if inputs is None:
                raise ValueError("this count head also reads the peaks of the normalised "
                                 "inputs (its peak_level): pass the inputs the embeddings "
                                 "came from")
            peaks = peak_features(inputs, glm.peak_level)
            if len(peaks) != len(features):
                raise ValueError(f"{len(peaks)} inputs for {len(features)} embeddings")
            features = np.concatenate([features, peaks], axis=1)
        return glm.predict(features)

    def predict_tile_counts(self, embedding, beam_arcsec=None, inputs=None):
        """Expected compact-source count per tile: the sum over its windows.

        Parameters
        ----------
        embedding : array-like
            (N * count_windows**2, D) embeddings of the windows of N tiles, each tile's
            windows together in `radiofm.tiling.split_windows` order (N x D tile
            embeddings when `count_windows` is 1).
        beam_arcsec : float, optional
            The image's beam (FWHM, arcsec): picks the count regime (`count_regime`).
        inputs : array-like, optional
            The normalised windows (or tiles) the embeddings came from, in the same order;
            needed when the GLM reads their peaks (`count_reads_peaks`).

        Returns
        -------
        counts : `~numpy.ndarray`
            (N,) float32 >= 0.
        """
        per_window = self.predict_counts(embedding, beam_arcsec, inputs)
        cells = self.count_windows ** 2
        if len(per_window) % cells:
            raise ValueError(f"{len(per_window)} window embeddings are not whole tiles of "
                             f"{cells} windows each")
        return per_window.reshape(-1, cells).sum(axis=1, dtype=np.float64).astype(np.float32)

    def count_errors(self, tile_counts, beam_arcsec=None):
        """The one-sigma scatter of true tile counts around their predictions, or None
        without a dispersion.

        The square root of the count head's dispersion times the prediction
        (quasi-Poisson): how far the true count of a tile lies from its prediction, given
        the tile, as measured on training tiles held out of a fit of the same head (the
        shipped head is then fitted on all of them). On data unlike the training tiles it
        is likely too small.

        Parameters
        ----------
        tile_counts : array-like
            (N,) predicted tile counts (`predict_tile_counts`).
        beam_arcsec : float, optional
            The image's beam (FWHM, arcsec): picks the count regime (`count_regime`), as
            for the counts.

        Returns
        -------
        errors : `~numpy.ndarray` or None
            (N,) float32, or None when the head carries no dispersion (heads before
            version 4).

        Examples
        --------
        >>> import numpy as np
        >>> from radiofm.models import Heads
        >>> glm = {"mean": [0.0], "scale": [1.0], "coef": [1.0], "intercept": 0.0,
        ...        "max_log_rate": 5.0}
        >>> raw = {"heads_version": 4, "counts": {**glm, "dispersion": 2.0,
        ...                                      "description": "compact sources"},
        ...        "morphology": {"mean": [0.0], "scale": [1.0], "coef": [[1.0], [-1.0]],
        ...                       "intercept": [0.0, 0.0], "temperature": 1.0,
        ...                       "classes": ["a", "b"]},
        ...        "ood": {"tiles": {"mean": [0.0], "scale": [1.0], "components": [[1.0]],
        ...                          "variances": [1.0], "residual_variance": 1.0,
        ...                          "threshold": 3.0}}}
        >>> Heads(raw, 1).count_errors(np.array([0.0, 8.0])).tolist()
        [0.0, 4.0]
        """
        dispersion = self._count_model(beam_arcsec).dispersion
        if dispersion is None:
            return None
        counts = np.asarray(tile_counts, dtype=np.float64)
        return np.sqrt(dispersion * np.maximum(counts, 0.0)).astype(np.float32)

    def morphology_logits(self, embedding):
        """(N, K) temperature-scaled logits of the morphology classes."""
        x = self._embedding(embedding)
        part = self._morph
        logits = ((x - part["mean"]) / part["scale"]) @ part["coef"].T + part["intercept"]
        return logits / self.temperature

    def morphology_probabilities(self, embedding):
        """Calibrated class probabilities (softmax of the temperature-scaled logits).

        Parameters
        ----------
        embedding : array-like
            (N, D) stamp embeddings.

        Returns
        -------
        probabilities : `~numpy.ndarray`
            (N, K) float32, rows summing to 1, classes in `classes` order.
        """
        logits = self.morphology_logits(embedding)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)

    def has_reference(self, which):
        """Whether an OOD reference ``which`` ("tiles" or "stamps") is present."""
        return which in self._references

    def ood_scores(self, embedding, which="tiles"):
        """Out-of-distribution score and flag of each embedding.

        Parameters
        ----------
        embedding : array-like
            (N, D) embeddings.
        which : {"tiles", "stamps"}
            The reference: training tiles (counts) or training source stamps (morphology).

        Returns
        -------
        score : `~numpy.ndarray`
            (N,) float32: root mean squared whitened distance to the training embeddings
            (about 1 for typical training items).
        flag : `~numpy.ndarray`
            (N,) bool: score above the threshold chosen on held-out in-distribution items.
        """
        if which not in self._references:
            raise ValueError(f"these heads have no {which!r} OOD reference; have "
                             f"{sorted(self._references)}")
        reference = self._references[which]
        score = reference.score(self._embedding(embedding))
        return score.astype(np.float32), ~(score <= reference.threshold)

    def threshold(self, which="tiles"):
        """The OOD score threshold of reference ``which``."""
        return self._references[which].threshold


def peak_features(inputs, level):
    """Peaks and islands at or above ``level`` in each normalised input: the pixel features
    a count GLM with a ``peak_level`` reads beside the embedding (`PEAK_FEATURES`).

    A peak is a pixel at or above ``level`` that equals the maximum of its 3 x 3
    neighbourhood; an island a 4-connected group of pixels at or above ``level``. On the
    S/N stretch (``normalization = "snr"``) ``level`` = arcsinh(5 / softening) marks 5-sigma
    pixels of the input: two blended sources make one island but two peaks, an extended
    source many peaks but one island, so the count GLM can weigh both.

    Parameters
    ----------
    inputs : array-like
        (N, S, S) or (N, 1, S, S) normalised inputs.
    level : float
        Threshold, in the inputs' units.

    Returns
    -------
    features : `~numpy.ndarray`
        (N, 4) float64: peaks, islands, log(1 + peaks), log(1 + islands).

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.models import peak_features
    >>> window = np.zeros((1, 16, 16))
    >>> window[0, 3, 3] = window[0, 3, 5] = 4.0  # two peaks, 2 pixels apart
    >>> window[0, 3, 4] = 3.0                     # joined into one island
    >>> window[0, 10, 10] = 1.0                   # below the level
    >>> peak_features(window, 2.0)[0, :2].tolist()
    [2.0, 1.0]
    """
    from scipy import ndimage

    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim == 4 and inputs.shape[1] == 1:
        inputs = inputs[:, 0]
    if inputs.ndim != 3:
        raise ValueError(f"peak features take (N, S, S) or (N, 1, S, S) inputs, got "
                         f"{inputs.shape}")
    counts = np.empty((len(inputs), 2))
    for k, image in enumerate(np.nan_to_num(inputs, nan=-np.inf)):
        bright = image >= level
        counts[k] = ((bright & (image == ndimage.maximum_filter(image, 3))).sum(),
                     ndimage.label(bright)[1])
    return np.concatenate([counts, np.log1p(counts)], axis=1)


def input_noise(inputs):
    """Robust noise of normalised model inputs: 1.4826 x the median absolute deviation.

    Parameters
    ----------
    inputs : array-like
        (N, ..., S, S) normalised inputs.

    Returns
    -------
    noise : `~numpy.ndarray`
        (N,) float32.
    """
    flat = np.asarray(inputs, dtype=np.float32).reshape(len(inputs), -1)
    median = np.median(flat, axis=1, keepdims=True)
    return (1.4826 * np.median(np.abs(flat - median), axis=1)).astype(np.float32)


def parse_heads(value, *, embedding_dim=None, class_names=None, source="model"):
    """Read and check a model's ``heads`` metadata.

    Parameters
    ----------
    value : str or dict
        The JSON string stored under ``heads`` in the ONNX metadata, or its parsed value.
    embedding_dim : int, optional
        The model's embedding size; heads of another size are refused.
    class_names : sequence of str, optional
        The model's class names; morphology classes must match them.
    source : str
        How to name the model in error messages.

    Returns
    -------
    heads : `Heads`

    Raises
    ------
    ModelMetadataError
        Unreadable JSON, another heads version, a missing key, a wrong shape or a
        non-finite number; the message says which and what to do.

    Examples
    --------
    >>> from radiofm.models import parse_heads
    >>> try:
    ...     parse_heads('{"heads_version": 99}')
    ... except ValueError as error:
    ...     print(str(error).split(".")[0])
    model: heads version 99 is not one this radiofm reads (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    """
    def fail(message):
        raise ModelMetadataError(
            f"{source}: {message}. Re-fit the heads with `radiofm fit-heads MODEL.onnx -o "
            "NEW.onnx` (radiofm.evaluate.fit_output_heads) or use the radiofm that wrote them")

    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as error:
            fail(f"heads metadata is not valid JSON ({error})")
    if not isinstance(value, dict):
        fail(f"heads metadata must be a JSON object, got {type(value).__name__}")
    version = value.get("heads_version")
    if version not in READABLE_HEADS_VERSIONS:
        readable = ", ".join(map(str, READABLE_HEADS_VERSIONS))
        raise ModelMetadataError(
            f"{source}: heads version {version!r} is not one this radiofm reads "
            f"({readable}). Re-fit the heads with `radiofm fit-heads MODEL.onnx -o "
            "NEW.onnx` or use the radiofm that wrote them")
    try:
        _require(value, ("embedding_dim", "counts", "morphology", "ood"), "heads")
        dim = value["embedding_dim"]
        if not isinstance(dim, int) or dim < 1:
            raise _Invalid(f"heads.embedding_dim must be a positive integer, got {dim!r}")
        if embedding_dim is not None and dim != int(embedding_dim):
            raise _Invalid(f"heads act on {dim}-d embeddings but the model gives "
                           f"{embedding_dim}-d ones")
        heads = Heads(value, dim)
    except _Invalid as error:
        fail(f"bad heads metadata: {error}")
    if class_names is not None and list(class_names) != heads.classes:
        fail(f"morphology classes {heads.classes} differ from the model's class_names "
             f"{list(class_names)}")
    return heads


def serialize_heads(heads):
    """The JSON string of heads (a dict in the layout of this module, or `Heads`), checked.

    Parameters
    ----------
    heads : dict or `Heads`
        The heads.

    Returns
    -------
    text : str
    """
    raw = heads.raw if isinstance(heads, Heads) else heads

    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, np.ndarray):
            return plain(value.tolist())
        if isinstance(value, np.floating | float):
            return float(f"{float(value):.7g}")
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.bool_):
            return bool(value)
        return value

    text = json.dumps(plain({"heads_version": HEADS_VERSION, **raw}), sort_keys=True,
                      separators=(",", ":"))
    parse_heads(text)
    return text
