"""Tile sizes as people type them: ``"256px"``, ``"5 arcmin"``, or a bare number."""

import math

import astropy.units as u

__all__ = ["MAX_UNITLESS_TILES", "UnitlessPixels", "check_tile_count", "count_tiles",
           "parse_size"]

#: A size given without a unit is refused when it would make more tiles than this.
MAX_UNITLESS_TILES = 10_000


class UnitlessPixels(int):
    """A pixel count typed without ``px``: accepted unless it makes too many tiles."""


def parse_size(text):
    """Read a tile side or overlap: pixels (``"256px"``) or an angle (``"5 arcmin"``).

    Parameters
    ----------
    text : str
        ``"<n>px"`` or ``"<n> px"`` for pixels, any angle astropy parses, or a bare
        integer (returned as `UnitlessPixels`, which `check_tile_count` refuses when it
        would make more than `MAX_UNITLESS_TILES` tiles).

    Returns
    -------
    size : int or `~astropy.units.Quantity`

    Raises
    ------
    ValueError
        Neither pixels nor an angle.

    Examples
    --------
    >>> from radiofm.tiling import parse_size
    >>> parse_size("256px"), parse_size("5 arcmin"), type(parse_size("64")).__name__
    (256, <Quantity 5. arcmin>, 'UnitlessPixels')
    """
    text = str(text).strip()
    if text.isdigit():
        return UnitlessPixels(text)
    lowered = text.lower()
    for suffix in ("pixels", "pixel", "pix", "px"):
        if lowered.endswith(suffix) and lowered[: -len(suffix)].strip().isdigit():
            return int(lowered[: -len(suffix)])
    try:
        value = u.Quantity(text)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{text!r} is neither pixels (such as '256px') nor an angle (such "
                         "as '5 arcmin')") from error
    if not value.unit.is_equivalent(u.deg):
        raise ValueError(f"{text!r} is not an angle; give pixels ('256px') or an angle "
                         "('5 arcmin')")
    return value


def _pixels(value, pixel_scale):
    if isinstance(value, u.Quantity):
        return int(round(float(value / pixel_scale)))
    return int(value)


def count_tiles(shape, tile_size, overlap=0, *, pixel_scale=None):
    """How many tiles `tile_image` lays over an image of ``shape`` (edge ``"shift"``).

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) pixels.
    tile_size, overlap : int or `~astropy.units.Quantity`
        As for `tile_image`; angles need ``pixel_scale``.
    pixel_scale : `~astropy.units.Quantity`, optional
        Angle per pixel.

    Returns
    -------
    count : int
        0 when the image is smaller than one tile.

    Examples
    --------
    >>> from radiofm.tiling import count_tiles
    >>> count_tiles((2048, 2048), 5)
    168100
    """
    size, lap = _pixels(tile_size, pixel_scale), _pixels(overlap, pixel_scale)
    step = size - lap
    if size < 1 or step < 1:
        return 0
    per_axis = [0 if n < size else math.ceil((n - size) / step) + 1 for n in shape]
    return per_axis[0] * per_axis[1]


def check_tile_count(image, tile_size, overlap=0, *, limit=MAX_UNITLESS_TILES):
    """Refuse a unitless tile size that would make more than ``limit`` tiles.

    A bare number such as ``--tile-size 5`` means pixels; typed by mistake for arcmin it
    makes hundreds of thousands of tiles. Sizes typed with ``px`` or as angles pass.

    Parameters
    ----------
    image : `~radiofm.image.RadioImage`
        The image about to be tiled.
    tile_size, overlap : int or `~astropy.units.Quantity`
        As `parse_size` returns.
    limit : int
        Most tiles a unitless size may make.

    Raises
    ------
    ValueError
        ``tile_size`` is `UnitlessPixels` and makes more than ``limit`` tiles.
    """
    if not isinstance(tile_size, UnitlessPixels):
        return
    count = count_tiles(image.shape, tile_size, overlap, pixel_scale=image.pixel_scale)
    if count > limit:
        raise ValueError(
            f"tile size {int(tile_size)} without a unit makes {count} tiles of this "
            f"{image.shape[1]}x{image.shape[0]} image (more than {limit}); write "
            f"'{int(tile_size)}px' if you mean pixels, or an angle such as "
            f"'{int(tile_size)} arcmin'"
        )
