"""The ``radiofm`` command line."""

import argparse
import logging
import sys
from pathlib import Path

import astropy.units as u

from . import __version__

log = logging.getLogger("radiofm")

EXAMPLE_SHAPE = (2048, 2048)
EXAMPLE_SEED = 2026


def main(argv=None):
    """Run the ``radiofm`` command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, u.UnitsError) as error:
        log.error("%s", error)
        return 2


def _parser():
    parser = argparse.ArgumentParser(prog="radiofm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"radiofm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    tile = commands.add_parser(
        "tile", help="tile an image: tile table, DS9 footprints and a quick-look PNG",
        description="Tile a FITS image and write its tile table (ECSV or FITS), the tile "
        "footprints as DS9 regions and a quick-look PNG.",
    )
    source = tile.add_mutually_exclusive_group(required=True)
    source.add_argument("image", nargs="?", help="FITS image (plain, .fits.fz or .fits.gz)")
    source.add_argument("--example", action="store_true",
                        help="use the embedded default: a simulated MeerKAT-like field")
    tile.add_argument("-o", "--output", default=".", help="output folder (default: .)")
    tile.add_argument("--tile-size", default="256", type=_pixels_or_angle,
                      help="tile side in pixels, or an angle such as '5 arcmin' (default 256)")
    tile.add_argument("--overlap", default="0", type=_pixels_or_angle,
                      help="overlap in pixels or as an angle (default 0)")
    tile.add_argument("--min-valid", type=float, default=1.0,
                      help="smallest fraction of finite pixels a kept tile has (default 1)")
    tile.add_argument("--edge", choices=["shift", "drop"], default="shift",
                      help="last partial row/column of tiles: shift it flush with the edge "
                      "(default) or drop it")
    tile.add_argument("--hdu", help="HDU index or name (default: first image HDU)")
    tile.add_argument("--plane", type=int, help="plane of a cube with one non-degenerate axis")
    tile.add_argument("--format", choices=["ecsv", "fits"], default="ecsv",
                      help="tile table format (default ecsv)")
    tile.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    tile.set_defaults(run=_run_tile)

    simulate = commands.add_parser(
        "simulate", help="write a simulated MeerKAT-like field and its truth catalogue",
    )
    simulate.add_argument("output", help="FITS file to write; the truth goes beside it (.ecsv)")
    simulate.add_argument("--size", type=int, default=4096, help="pixels per side (4096)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed (0)")
    simulate.add_argument("--noise", type=float, default=4e-6, help="rms, Jy/beam (4e-6)")
    simulate.add_argument("--primary-beam", action="store_true", help="apply MeerKAT's PB")
    simulate.add_argument("--artefacts", action="store_true", help="spokes on bright sources")
    simulate.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    simulate.set_defaults(run=_run_simulate)
    return parser


def _pixels_or_angle(text):
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        value = u.Quantity(text)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"{text!r} is neither pixels nor an angle") from error
    if not value.unit.is_equivalent(u.deg):
        raise argparse.ArgumentTypeError(f"{text!r} is not an angle")
    return value


def _check_free(paths, overwrite):
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"would overwrite {', '.join(existing)}; pass --overwrite")


def _run_tile(args):
    from .image import read_image
    from .tiling import tile_image
    from .visualization import plot_tiles

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.example:
        from .simulate import make_radio_sky

        image_path = out / "example_sky.fits"
        _check_free([image_path], args.overwrite)
        hdu, truth = make_radio_sky(EXAMPLE_SHAPE, seed=EXAMPLE_SEED, artefacts=True)
        hdu.writeto(image_path, overwrite=args.overwrite)
        truth.write(out / "example_truth.ecsv", overwrite=True)
        log.info("simulated %d sources into %s", len(truth), image_path)
    else:
        image_path = Path(args.image)
    hdu = int(args.hdu) if args.hdu is not None and args.hdu.isdigit() else args.hdu
    stem = image_path.name.split(".fits")[0]
    outputs = [out / f"{stem}_tiles.{args.format}", out / f"{stem}_tiles.reg",
               out / f"{stem}_quicklook.png"]
    _check_free(outputs, args.overwrite)
    with read_image(image_path, hdu=hdu, plane=args.plane) as image:
        log.info("%r", image)
        tiles = tile_image(image, args.tile_size, overlap=args.overlap,
                           min_valid=args.min_valid, edge=args.edge)
        tiles.table.write(outputs[0], overwrite=args.overwrite)
        tiles.write_footprints(outputs[1], overwrite=args.overwrite)
        plot_tiles(tiles, outputs[2])
    log.info("%d tiles -> %s", len(tiles), ", ".join(str(p) for p in outputs))
    return 0


def _run_simulate(args):
    from .simulate import make_radio_sky

    path = Path(args.output)
    truth_path = path.with_name(path.name.split(".fits")[0] + "_truth.ecsv")
    _check_free([path, truth_path], args.overwrite)
    hdu, truth = make_radio_sky((args.size, args.size), seed=args.seed, noise=args.noise,
                                primary_beam=args.primary_beam, artefacts=args.artefacts)
    hdu.writeto(path, overwrite=args.overwrite)
    truth.write(truth_path, overwrite=args.overwrite)
    log.info("%d sources -> %s, %s", len(truth), path, truth_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
