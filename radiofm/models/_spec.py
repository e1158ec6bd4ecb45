"""`ModelSpec`: the one owner of what a model expects of its input and what it returns."""

import os
import warnings
from dataclasses import dataclass, replace

import astropy.units as u
import numpy as np
from astropy.utils.exceptions import AstropyUserWarning

from ..tiling import NormalizationSpec, prepare_tiles

__all__ = ["OUTPUTS", "REFUSE_FACTOR", "VIEW_COUNTS", "ModelMismatchWarning", "ModelSpec",
           "dihedral_views"]

#: Graph outputs of an exported model, in order.
OUTPUTS = ("embedding", "n_compact", "morph_logits")
#: Views a model's embedding may average over: the tile itself, or its 8 rotations by
#: multiples of 90 degrees and their mirror images (`dihedral_views`).
VIEW_COUNTS = (1, 8)
#: Pixel scales more than this factor outside a model's range are refused, not warned about.
REFUSE_FACTOR = 4.0


class ModelMismatchWarning(AstropyUserWarning):
    """An image lies outside what a model was trained on (pixel scale, beam, tile size)."""


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects of its input and what it returns: its contract.

    Training configs give the normalisation and input size, `radiofm.export` writes the
    whole spec into the model's metadata (`to_metadata`), and inference, evaluation and the
    CLI read it back (`from_metadata`). Every tile and stamp size in image pixels, every
    stretch and every model input is derived here, nowhere else.

    Parameters
    ----------
    input_pixels : int
        Side S of the (batch, 1, S, S) input of the network.
    tile_arcsec : float
        Side on the sky of the tiles the count head was fitted on (and the default tile of
        `radiofm.inference.embed_image`).
    stamp_arcsec : float
        Side on the sky of the stamps the morphology head was fitted on.
    pixel_scale_range_arcsec : (float, float)
        Image pixel scales the model suits.
    beam_range_arcsec : (float, float) or None
        Beam FWHMs the model suits (None: unchecked).
    normalization : `~radiofm.tiling.NormalizationSpec`, str or dict
        The stretch and all its options, fitted once per parent image.
    class_names : tuple of str
        Morphology classes, in the order of the ``morph_logits`` output.
    views : {1, 8}
        8: the embedding is the mean over the 8 `dihedral_views` of each input.
    outputs : tuple of str
        Graph output names.

    Examples
    --------
    >>> import astropy.units as u
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from radiofm.image import read_image
    >>> from radiofm.models import ModelSpec
    >>> spec = ModelSpec(input_pixels=64, tile_arcsec=270.0, stamp_arcsec=540.0,
    ...                  pixel_scale_range_arcsec=(0.9, 3.6), beam_range_arcsec=None,
    ...                  normalization="snr", class_names=("FRI", "FRII"))
    >>> header = fits.Header({"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN",
    ...                       "CDELT1": -1.8 / 3600, "CDELT2": 1.8 / 3600})
    >>> image = read_image((np.random.default_rng(0).normal(size=(300, 300)), header))
    >>> spec.tile_pixels(image), spec.stamp_pixels(image)
    (150, 300)
    >>> spec.prepare(np.zeros((2, 150, 150)), spec.fit_stretch(image)).shape
    (2, 1, 64, 64)
    """

    input_pixels: int
    tile_arcsec: float
    stamp_arcsec: float
    pixel_scale_range_arcsec: tuple
    beam_range_arcsec: tuple | None
    normalization: NormalizationSpec
    class_names: tuple
    views: int = 1
    outputs: tuple = OUTPUTS

    def __post_init__(self):
        # Normalise the stored forms (JSON lists, names, dicts) once, then check.
        object.__setattr__(self, "normalization",
                           NormalizationSpec.from_value(self.normalization))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "pixel_scale_range_arcsec",
                           _range(self.pixel_scale_range_arcsec, "pixel_scale_range_arcsec"))
        if self.beam_range_arcsec is not None:
            object.__setattr__(self, "beam_range_arcsec",
                               _range(self.beam_range_arcsec, "beam_range_arcsec"))
        if not (isinstance(self.input_pixels, int | np.integer) and self.input_pixels >= 2):
            raise ValueError(f"input_pixels must be an integer >= 2, got {self.input_pixels!r}")
        for name in ("tile_arcsec", "stamp_arcsec"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive angle in arcsec, got {value!r}")
        if self.views not in VIEW_COUNTS:
            raise ValueError(f"views must be one of {VIEW_COUNTS}, got {self.views!r}")
        names = self.class_names
        if not (names and len(set(names)) == len(names)
                and all(isinstance(n, str) and n for n in names)):
            raise ValueError(f"class_names must be distinct non-empty strings, got {names!r}")
        if "embedding" not in self.outputs:
            raise ValueError(f"outputs must include 'embedding', got {self.outputs!r}")

    # -- metadata -------------------------------------------------------------------------

    #: The metadata keys this spec owns.
    METADATA_KEYS = ("input_pixels", "tile_arcsec", "stamp_arcsec", "pixel_scale_range_arcsec",
                     "beam_range_arcsec", "normalization", "views", "class_names", "outputs")

    def to_metadata(self):
        """The spec as model-metadata values (JSON-ready), keyed as `METADATA_KEYS`."""
        return {
            "input_pixels": int(self.input_pixels), "tile_arcsec": float(self.tile_arcsec),
            "stamp_arcsec": float(self.stamp_arcsec),
            "pixel_scale_range_arcsec": list(self.pixel_scale_range_arcsec),
            "beam_range_arcsec": (None if self.beam_range_arcsec is None
                                  else list(self.beam_range_arcsec)),
            "normalization": self.normalization.to_dict(), "views": int(self.views),
            "class_names": list(self.class_names), "outputs": list(self.outputs),
        }

    @classmethod
    def from_metadata(cls, metadata):
        """The spec recorded in parsed model metadata (`radiofm.models.parse_metadata`).

        Parameters
        ----------
        metadata : dict
            Parsed metadata; keys other than `METADATA_KEYS` are ignored.

        Returns
        -------
        spec : `ModelSpec`
        """
        values = {key: metadata[key] for key in cls.METADATA_KEYS if key in metadata}
        return cls(**values)

    def with_options(self, **changes):
        """A copy with some fields changed (e.g. ``views``), checked like a new spec."""
        return replace(self, **changes)

    # -- geometry -------------------------------------------------------------------------

    def tile_pixels(self, image):
        """Side of the model's tiles (`tile_arcsec`) in the pixels of ``image``.

        Parameters
        ----------
        image : `~radiofm.image.RadioImage`
            The image the tiles are cut from.

        Returns
        -------
        pixels : int
            At least 2.
        """
        return max(2, image.angle_to_pixels(self.tile_arcsec * u.arcsec))

    def stamp_pixels(self, image):
        """Side of the model's morphology stamps (`stamp_arcsec`) in the pixels of ``image``.

        Parameters
        ----------
        image : `~radiofm.image.RadioImage`
            The image the stamps are cut from.

        Returns
        -------
        pixels : int
            At least 2.
        """
        return max(2, image.angle_to_pixels(self.stamp_arcsec * u.arcsec))

    def check_image(self, image, *, model="model"):
        """Warn or refuse when an image does not fit the pixel-scale and beam ranges.

        Parameters
        ----------
        image : `~radiofm.image.RadioImage`
            The image to run the model on.
        model : str
            The model's name, for messages.

        Raises
        ------
        ValueError
            The pixel scale is more than `REFUSE_FACTOR` outside the range.
        """
        scale = float(image.pixel_scale.to_value(u.arcsec))
        low, high = self.pixel_scale_range_arcsec
        if not low / REFUSE_FACTOR <= scale <= high * REFUSE_FACTOR:
            raise ValueError(
                f"image {image.source} has {scale:.3g} arcsec pixels, far outside the "
                f"{low:.3g}-{high:.3g} arcsec model {model!r} was made for; its tiles would be "
                "resampled beyond recognition. Use a model trained at this resolution"
            )
        if not low <= scale <= high:
            warnings.warn(
                f"image {image.source} has {scale:.3g} arcsec pixels, outside the {low:.3g}-"
                f"{high:.3g} arcsec model {model!r} was made for; results may be unreliable",
                ModelMismatchWarning, stacklevel=3,
            )
        beams = self.beam_range_arcsec
        if beams is not None and image.beam is not None:
            major = float(image.beam[0].to_value(u.arcsec))
            if not beams[0] <= major <= beams[1]:
                warnings.warn(
                    f"image {image.source} has a {major:.3g} arcsec beam, outside the "
                    f"{beams[0]:.3g}-{beams[1]:.3g} arcsec model {model!r} was made for; "
                    "results may be unreliable", ModelMismatchWarning, stacklevel=3,
                )

    # -- pixels ---------------------------------------------------------------------------

    def fit_stretch(self, image):
        """The model's normalisation fitted on one parent image (the whole field).

        Parameters
        ----------
        image : array or anything `~radiofm.image.read_image` accepts
            The parent image.

        Returns
        -------
        stretch : `~radiofm.tiling.Normalization`
        """
        return self.normalization.fit(image)

    def prepare(self, raw, stretch):
        """Model inputs from raw tiles or stamps: resample to `input_pixels`, then stretch.

        Parameters
        ----------
        raw : array-like
            (N, H, H) pixels in the image's unit; NaN marks blank pixels.
        stretch : `~radiofm.tiling.Normalization`
            From `fit_stretch` on the parent image.

        Returns
        -------
        inputs : `~numpy.ndarray`
            (N, 1, S, S) float32.
        """
        return prepare_tiles(raw, stretch, self.input_pixels)[:, None]

    def stream_tiles(self, tiles, stretch, *, batch_size=64, windows=1, threads=None,
                     progress=False):
        """Stream the tiles of a `~radiofm.tiling.TileSet` as model inputs, in batches.

        Tiles are read in row bands with bounded memory whatever the image size
        (`radiofm.tiling.TileSet.batches`), resampled and stretched as `prepare` does.

        Parameters
        ----------
        tiles : `~radiofm.tiling.TileSet`
            The tiles and their image.
        stretch : `~radiofm.tiling.Normalization`
            Fitted on the parent image.
        batch_size : int
            Tiles per batch (the last may be smaller).
        windows : int
            Cut each tile into ``windows`` x ``windows`` windows first (a windowed count
            head's inputs, `radiofm.tiling.split_windows`), each resampled to
            `input_pixels`.
        threads : int, optional
            Batches prepared at once (default: 2, or 1 on a one-CPU machine).
        progress : bool
            Show a progress bar.

        Yields
        ------
        tile_ids : `~numpy.ndarray`
            (B,) rows of ``tiles.table``.
        inputs : `~numpy.ndarray`
            (B * windows**2, 1, S, S) float32.
        """
        if threads is None:
            threads = min(2, len(os.sched_getaffinity(0)))
        yield from tiles.batches(batch_size, normalization=stretch, size=self.input_pixels,
                                 windows=windows, threads=threads, progress=progress)


def _range(value, name):
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be [low, high], got {value!r}") from None
    if not (np.isfinite([low, high]).all() and 0 < low <= high):
        raise ValueError(f"{name} must be [low, high] with 0 < low <= high, got {value!r}")
    return (low, high)


def dihedral_views(stamps):
    """The 8 views of square stamps under rotations by 90 degrees and reflection.

    A radio source has no preferred orientation on the sky, so a model's embedding averaged
    over these views depends on the source, not on how it is turned (exported models with
    ``views=8`` do this inside their graph).

    Parameters
    ----------
    stamps : `~numpy.ndarray`
        (..., S, S).

    Returns
    -------
    views : list of `~numpy.ndarray`
        Rotations by 0, 90, 180 and 270 degrees, then the same mirrored left-right.
    """
    stamps = np.asarray(stamps)
    if stamps.ndim < 2 or stamps.shape[-1] != stamps.shape[-2]:
        raise ValueError(f"dihedral views need square stamps (..., S, S); got {stamps.shape}")
    turns = [np.rot90(stamps, k, axes=(-2, -1)) for k in range(4)]
    return turns + [turn[..., ::-1] for turn in turns]
