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
    if not log.handlers:  # radiofm's own messages only; other libraries keep their settings
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, ImportError, u.UnitsError) as error:
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
    _add_tiling_options(tile)
    tile.set_defaults(run=_run_tile)

    label = commands.add_parser(
        "label", help="count catalogue sources per tile (running a finder if no catalogue)",
        description="Tile a FITS image, count the sources of a catalogue (or of pyBDSF / "
        "photutils run on the image) per tile, and write the tile table with the counts, "
        "the source catalogue, DS9 footprints and a quick-look PNG of the counts.",
    )
    label.add_argument("image", help="FITS image (plain, .fits.fz or .fits.gz)")
    found = label.add_mutually_exclusive_group()
    found.add_argument("--catalog", help="source catalogue (pyBDSF .srl/.gaul, FITS, ECSV...)")
    found.add_argument("--finder", choices=["auto", "bdsf", "photutils"], default="auto",
                       help="source finder when no catalogue is given (default: pyBDSF if "
                       "installed, else photutils)")
    label.add_argument("--beam", type=float, help="beam FWHM in arcsec if the image has none")
    label.add_argument("--frequency", type=float, help="frequency in GHz if the image has none")
    label.add_argument("--select", default="compact",
                       help="sources to count: 'compact' (S_Code S, default), 'all', or "
                       "S_Code values such as 'S,C'")
    label.add_argument("--coco", action="store_true",
                       help="also write the sources in each tile as COCO JSON boxes")
    _add_tiling_options(label)
    label.set_defaults(run=_run_label)

    trainer = commands.add_parser(
        "train", help="pre-train a backbone with DINO (the train extra: torch, timm)",
        description="Pre-train a backbone with DINO from a TOML config. Several processes: "
        "torchrun --nproc_per_node N -m radiofm train CONFIG.",
    )
    trainer.add_argument("config", help="TOML training config")
    trainer.add_argument("--resume", action="store_true",
                         help="continue from the checkpoint in the config's run.output")
    trainer.add_argument("--stop-after", type=int,
                         help="stop (with a checkpoint) after this many steps")
    trainer.set_defaults(run=_run_train)

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


def _add_tiling_options(parser):
    parser.add_argument("-o", "--output", default=".", help="output folder (default: .)")
    parser.add_argument("--tile-size", default="256", type=_pixels_or_angle,
                        help="tile side in pixels, or an angle such as '5 arcmin' (default 256)")
    parser.add_argument("--overlap", default="0", type=_pixels_or_angle,
                        help="overlap in pixels or as an angle (default 0)")
    parser.add_argument("--min-valid", type=float, default=1.0,
                        help="smallest fraction of finite pixels a kept tile has (default 1)")
    parser.add_argument("--edge", choices=["shift", "drop"], default="shift",
                        help="last partial row/column of tiles: shift it flush with the edge "
                        "(default) or drop it")
    parser.add_argument("--hdu", help="HDU index or name (default: first image HDU)")
    parser.add_argument("--plane", type=int,
                        help="plane of a cube with one non-degenerate axis")
    parser.add_argument("--format", choices=["ecsv", "fits"], default="ecsv",
                        help="table format (default ecsv)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


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


def _outputs(args, image_path, *suffixes):
    """Output paths ``<stem>_<suffix>`` in the output folder, refusing to overwrite."""
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(image_path).name.split(".fits")[0]
    paths = [out / f"{stem}_{suffix}" for suffix in suffixes]
    _check_free(paths, args.overwrite)
    return paths


def _read_and_tile(args, image_path, **image_options):
    from .image import read_image
    from .tiling import tile_image

    hdu = int(args.hdu) if args.hdu is not None and args.hdu.isdigit() else args.hdu
    image = read_image(image_path, hdu=hdu, plane=args.plane, **image_options)
    log.info("%r", image)
    tiles = tile_image(image, args.tile_size, overlap=args.overlap, min_valid=args.min_valid,
                       edge=args.edge)
    return image, tiles


def _run_tile(args):
    from .visualization import plot_tiles

    if args.example:
        from .simulate import make_radio_sky

        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        image_path, truth_path = out / "example_sky.fits", out / "example_truth.ecsv"
        _check_free([image_path, truth_path], args.overwrite)
        hdu, truth = make_radio_sky(EXAMPLE_SHAPE, seed=EXAMPLE_SEED, artefacts=True)
        hdu.writeto(image_path, overwrite=args.overwrite)
        truth.write(truth_path, overwrite=args.overwrite)
        log.info("simulated %d sources into %s", len(truth), image_path)
    else:
        image_path = Path(args.image)
    table_path, regions_path, png_path = _outputs(
        args, image_path, f"tiles.{args.format}", "tiles.reg", "quicklook.png")
    image, tiles = _read_and_tile(args, image_path)
    with image:
        tiles.table.write(table_path, overwrite=args.overwrite)
        tiles.write_footprints(regions_path, overwrite=args.overwrite)
        plot_tiles(tiles, png_path)
    log.info("%d tiles -> %s, %s, %s", len(tiles), table_path, regions_path, png_path)
    return 0


def _run_label(args):
    from .catalogs import count_in_tiles, tiles_to_coco
    from .sources import find_sources, read_catalog
    from .visualization import plot_tiles

    suffixes = [f"tiles.{args.format}", "tiles.reg", "quicklook.png", f"sources.{args.format}"]
    if args.coco:
        suffixes.append("coco.json")
    paths = _outputs(args, args.image, *suffixes)
    options = {}
    if args.beam is not None:
        options["beam"] = args.beam * u.arcsec
    if args.frequency is not None:
        options["frequency"] = args.frequency * u.GHz
    image, tiles = _read_and_tile(args, args.image, **options)
    with image:
        if args.catalog:
            catalog = read_catalog(args.catalog, image=image)
        else:
            catalog = find_sources(image, args.finder)
        select = args.select if args.select in ("compact", "all") else tuple(
            code.strip() for code in args.select.split(","))
        counted = count_in_tiles(catalog, tiles, select=select)
        counted.write(paths[0], overwrite=args.overwrite)
        tiles.write_footprints(paths[1], overwrite=args.overwrite)
        tiles.table = counted
        plot_tiles(tiles, paths[2], column="n_compact")
        catalog.write(paths[3], overwrite=args.overwrite)
        if args.coco:
            tiles_to_coco(tiles, catalog, path=paths[4])
    log.info("%d sources, %d counted in %d tiles -> %s", len(catalog),
             int(counted["n_compact"].sum()), len(tiles), ", ".join(str(p) for p in paths))
    return 0


def _run_train(args):
    try:
        from .train import load_config, train
    except ImportError as error:
        raise ImportError(f"radiofm train needs the train extra ({error}): "
                          "pip install -c constraints.txt 'radiofm[train]'") from error
    output = train(load_config(args.config), resume=args.resume, stop_after=args.stop_after)
    log.info("training state in %s", output)
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
