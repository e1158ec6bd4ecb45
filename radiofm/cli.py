"""The ``radiofm`` command line.

The main job: ``radiofm annotate IMAGE... -o DIR`` embeds every tile of each image, predicts
its compact-source count and classifies the sources of a catalogue with an exported model
(no torch needed). Every ``-o`` is an output folder; files inside it are named after the
input image (``<image>_tiles.ecsv``, ``<image>_quicklook.png``, ...).
"""

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

import astropy.units as u

from . import __version__
from ._atomic import atomic_path, check_not_inputs, check_writable_folder

log = logging.getLogger("radiofm")

TABLE_CHOICES = ("ecsv", "fits", "votable", "parquet")


def main(argv=None):
    """Run the ``radiofm`` command line; returns the exit status.

    An error reaches the user as one line on stderr and exit status 2; ``--debug`` (anywhere
    on the line) or ``RADIOFM_DEBUG=1`` shows its traceback too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("RADIOFM_DEBUG", "").strip() not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not log.handlers:  # radiofm's own messages only; other libraries keep their settings
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as error:  # every error: one line, the traceback only when asked
        if debug:
            traceback.print_exc()
        log.error("%s", _one_line(error))
        return 2


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (not the one of the first call)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


#: Errors that describe bad input or environment; anything else is reported as internal.
_USER_ERRORS = (ValueError, TypeError, OSError, ImportError, u.UnitsError, FloatingPointError,
                KeyError, NotImplementedError)


def _one_line(error):
    text = " ".join(str(error.args[0] if isinstance(error, KeyError) and error.args
                        else error).split())
    if isinstance(error, _USER_ERRORS):
        return text or type(error).__name__
    return (f"internal error ({type(error).__name__}: {text}); rerun with --debug and report "
            "it")


def build_parser():
    """The argument parser of ``radiofm`` (also read by the docs' CLI reference)."""
    parser = argparse.ArgumentParser(
        prog="radiofm", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Foundation models for radio-astronomy survey pipelines.\n\n"
        "Main job: radiofm annotate IMAGE... -o DIR (embeddings, compact-source counts and\n"
        "morphology classes with the bundled model; no torch needed). Try it on a simulated\n"
        "field: radiofm annotate --example -o radiofm-example\n\n"
        "Every -o is an output folder; outputs are named after the input image.",
    )
    parser.add_argument("--version", action="version", version=f"radiofm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also RADIOFM_DEBUG=1)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for add in (_add_annotate, _add_similar, _add_outliers, _add_index, _add_tile, _add_label,
                _add_simulate, _add_train, _add_evaluate, _add_export, _add_fit_heads):
        add(commands)
    return parser


# -- shared options ---------------------------------------------------------------------------

def _size(text):
    from .tiling import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_output(parser, default="."):
    parser.add_argument("-o", "--output", default=default, metavar="DIR",
                        help=f"output folder, created if needed (default: {default})")


def _add_image_options(parser):
    parser.add_argument("--hdu", help="HDU index or extension name (default: first image HDU)")
    parser.add_argument("--plane", type=int, help="plane of a cube with one non-degenerate "
                        "extra axis")


def _add_grid_options(parser, *, default_size):
    parser.add_argument("--tile-size", type=_size, default=default_size,
                        help="tile side: pixels such as '256px', or an angle such as "
                        "'5 arcmin'; a bare number means pixels and is refused when it makes "
                        f"more than 10^4 tiles (default: {default_size}px)")
    parser.add_argument("--overlap", type=_size, default=0,
                        help="overlap of neighbouring tiles, pixels or an angle (default 0)")
    parser.add_argument("--min-valid", type=float, default=1.0,
                        help="smallest fraction of finite pixels a kept tile has (default 1)")


def _check_free(paths, overwrite):
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"would overwrite {', '.join(existing)}; pass --overwrite")


def _write_example(folder, overwrite):
    """Write the embedded default sky and its truth catalogue into ``folder``."""
    from .simulate import EXAMPLE_SEED, EXAMPLE_SHAPE, make_radio_sky

    folder = check_writable_folder(folder)
    image_path, truth_path = folder / "example_sky.fits", folder / "example_truth.ecsv"
    _check_free([image_path, truth_path], overwrite)
    hdu, truth = make_radio_sky(EXAMPLE_SHAPE, seed=EXAMPLE_SEED, artefacts=True)
    _write_atomically(hdu.writeto, image_path, overwrite)
    _write_atomically(truth.write, truth_path, overwrite)
    log.info("simulated %d sources into %s", len(truth), image_path)
    return image_path, truth_path


def _read_and_tile(args, image_path, **image_options):
    from .image import parse_hdu, read_image
    from .tiling import check_tile_count, tile_image

    image = read_image(image_path, hdu=parse_hdu(args.hdu), plane=args.plane, **image_options)
    try:
        log.info("%r", image)
        check_tile_count(image, args.tile_size, args.overlap)
        tiles = tile_image(image, args.tile_size, overlap=args.overlap,
                           min_valid=args.min_valid, edge=args.edge)
    except BaseException:
        image.close()
        raise
    return image, tiles


def _image_outputs(args, image_path, *suffixes):
    """``<output>/<image stem>_<suffix>`` paths, refusing to overwrite unless asked."""
    from .survey import image_stem

    stem = image_stem(image_path)
    out = check_writable_folder(args.output)
    paths = [out / f"{stem}_{suffix}" for suffix in suffixes]
    check_not_inputs(paths, [image_path, getattr(args, "catalog", None)])
    _check_free(paths, args.overwrite)
    return paths


def _write_atomically(write, path, overwrite):
    """Call ``write(partial)`` on a temporary file beside ``path``, then rename it."""
    with atomic_path(path, overwrite=overwrite) as partial:
        write(partial)


# -- annotate ---------------------------------------------------------------------------------

def _add_annotate(commands):
    annotate = commands.add_parser(
        "annotate", help="the main job: find, count and classify sources with a model (no "
        "torch)",
        description="Run an exported model over images: for each IMAGE, the tile table with "
        "embeddings, predicted compact counts and out-of-distribution flags "
        "(<image>_tiles.<format>), the sources found in the image (pyBDSF if installed, else "
        "photutils) or given by --catalog with morphology classes (<image>_sources.<format>), "
        "DS9 ellipses coloured by class (<image>.reg) and a quick-look PNG, every column "
        "described, all in the output folder, plus manifest.ecsv "
        "and the survey index (index/, for radiofm similar and outliers). Several images run "
        "on a Dask cluster (a local one by default, or --scheduler); a rerun skips images "
        "already done with the same model and input; a failing image is recorded and the "
        "others go on (exit status 1).",
    )
    chosen = annotate.add_mutually_exclusive_group(required=True)
    chosen.add_argument("images", nargs="*", default=[], metavar="IMAGE",
                        help="FITS images (plain, .fits.fz or .fits.gz)")
    chosen.add_argument("--from-list", metavar="FILE",
                        help="text file of images, one a line, each optionally followed by "
                        "its source catalogue")
    chosen.add_argument("--example", action="store_true",
                        help="use the embedded default: a simulated MeerKAT-like field, "
                        "written into the output folder with its true source catalogue (for "
                        "comparison)")
    _add_output(annotate)
    annotate.add_argument("--catalog", help="source catalogue to classify (pyBDSF .srl, FITS, "
                          "ECSV...) instead of finding the sources, for a single image")
    annotate.add_argument("--finder", choices=["auto", "bdsf", "photutils", "none"],
                          default="auto",
                          help="source finder without a catalogue (default: pyBDSF if "
                          "installed and the image records a frequency, else photutils); "
                          "none: the tiles only")
    annotate.add_argument("--model", default="default",
                          help="registered model name or .onnx file (default: default)")
    annotate.add_argument("--format", choices=TABLE_CHOICES, default="ecsv",
                          help="table format (default ecsv)")
    annotate.add_argument("--tile-size", type=_size,
                          help="tile side, pixels such as '64px' or an angle (default: the "
                          "model's tile angle, which its count head was fitted on)")
    annotate.add_argument("--overlap", type=_size, default=0,
                          help="overlap of neighbouring tiles, pixels or an angle (default 0)")
    _add_image_options(annotate)
    annotate.add_argument("--workers", type=int, metavar="N",
                          help="local Dask worker processes (default: one per CPU for several "
                          "images; 0 runs in this process, the default for one image)")
    annotate.add_argument("--scheduler", metavar="ADDRESS",
                          help="address of a running Dask scheduler (e.g. tcp://host:8786) "
                          "instead of a local cluster")
    annotate.add_argument("--block-tiles", type=_positive, default=1024,
                          help="images with more tiles are split into row blocks of this many "
                          "tiles, run as separate tasks (default 1024)")
    annotate.add_argument("--no-index", action="store_true",
                          help="do not add the tiles to the survey index")
    annotate.add_argument("--batch-size", type=int, default=64,
                          help="tiles per model run (default 64)")
    annotate.add_argument("--threads", type=int,
                          help="onnxruntime threads when running in this process (default: "
                          "all)")
    annotate.add_argument("--overwrite", action="store_true",
                          help="replace existing outputs (default: refuse, or skip images "
                          "already done with the same model and input)")
    annotate.set_defaults(run=_run_annotate)


def _run_annotate(args):
    from .survey import annotate_image, annotate_many, read_image_list

    images, catalogs = list(args.images), [args.catalog] * len(args.images)
    if args.from_list:
        images, catalogs = read_image_list(args.from_list)
    if args.example:
        from .inference import load_model

        load_model(args.model, threads=args.threads)  # a bad model fails before simulating
        image, _ = _write_example(args.output, args.overwrite)
        images, catalogs = [str(image)], [args.catalog]
    if args.catalog and len(images) > 1:
        raise ValueError("--catalog is for one image; list each image's catalogue in "
                         "--from-list FILE")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_writable_folder(args.output)
    model_file = args.model if Path(args.model).is_file() else None
    from .survey import output_paths

    for image, catalog in zip(images, catalogs, strict=True):
        check_not_inputs(list(output_paths(args.output, image, format=args.format).values()),
                         [image, catalog, model_file])
    if len(images) == 1 and args.workers in (None, 0) and not args.scheduler:
        summary = annotate_image(
            images[0], args.output, model=args.model, catalog=catalogs[0], finder=args.finder,
            tile_size=args.tile_size, overlap=args.overlap, hdu=args.hdu, plane=args.plane,
            format=args.format, overwrite=args.overwrite, batch_size=args.batch_size,
            threads=args.threads, index=None if args.no_index else _index_folder(args))
        log.info("%d tiles (%d out of distribution) and %d sources -> %s", summary["n_tiles"],
                 summary.get("n_ood", 0), summary["n_sources"], ", ".join(summary["outputs"]))
        return 0
    client = None
    if args.scheduler:
        from ._optional_deps import HAS_DISTRIBUTED, SURVEY_EXTRA_HINT

        if not HAS_DISTRIBUTED:
            raise ImportError(f"--scheduler needs Dask distributed: {SURVEY_EXTRA_HINT}")
        from distributed import Client

        client = Client(args.scheduler)
    try:
        manifest = annotate_many(
            images, args.output, model=args.model, catalogs=catalogs, finder=args.finder,
            client=client,
            n_workers=args.workers, tile_size=args.tile_size, overlap=args.overlap,
            hdu=args.hdu, plane=args.plane, format=args.format, overwrite=args.overwrite,
            block_tiles=args.block_tiles, batch_size=args.batch_size,
            index=not args.no_index)
    finally:
        if client is not None:
            client.close()
    return 1 if manifest.meta["N_FAILED"] else 0


def _index_folder(args):
    from ._optional_deps import HAS_PYARROW, SURVEY_EXTRA_HINT

    if not HAS_PYARROW:
        log.info("pyarrow is not installed, so no survey index (%s)", SURVEY_EXTRA_HINT)
        return None
    return Path(args.output) / "index"


# -- survey search ----------------------------------------------------------------------------

def _add_similar(commands):
    similar = commands.add_parser(
        "similar", help="tiles of a survey index most like a tile, a position or a cutout",
        description="Find the tiles of a survey index (radiofm annotate's index/ folder) "
        "most similar to a given tile, sky position or image cutout (cosine of embeddings), "
        "and write them as a table (similar.<format>) and a PNG mosaic (similar.png).",
    )
    similar.add_argument("index", help="survey index folder (OUTPUT/index of radiofm annotate)")
    query = similar.add_mutually_exclusive_group(required=True)
    query.add_argument("--tile", type=int, metavar="INDEX_ID",
                       help="an entry of the index (its index_id)")
    query.add_argument("--position", metavar="'RA DEC'",
                       help="a sky position astropy reads, e.g. '150.1 -30.2' (degrees) or "
                       "'10h00m24s -30d12m'; the nearest tile stands for it")
    query.add_argument("--cutout", metavar="FITS",
                       help="an image cutout, embedded whole with --model")
    similar.add_argument("-k", type=_positive, default=8,
                         help="how many tiles (default 8)")
    similar.add_argument("--model", default="default",
                         help="for --cutout: the model the index was built with")
    _add_search_outputs(similar)
    similar.set_defaults(run=_run_similar)


def _add_outliers(commands):
    outliers = commands.add_parser(
        "outliers", help="the most unusual tiles of a survey index",
        description="Rank the tiles of a survey index by the mean distance to their k "
        "nearest neighbours in embedding space, and write the top ones as a table "
        "(outliers.<format>) and a PNG mosaic (outliers.png).",
    )
    outliers.add_argument("index", help="survey index folder")
    outliers.add_argument("-n", type=_positive, default=16, help="how many tiles (default 16)")
    outliers.add_argument("-k", type=_positive, default=10,
                          help="neighbours averaged over (default 10)")
    _add_search_outputs(outliers)
    outliers.set_defaults(run=_run_outliers)


def _add_search_outputs(parser):
    _add_output(parser)
    parser.add_argument("--format", choices=TABLE_CHOICES, default="ecsv",
                        help="table format (default ecsv)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _write_matches(args, name, matches, title):
    from .survey import write_matches

    paths = write_matches(matches, args.output, name, format=args.format, title=title,
                          overwrite=args.overwrite)
    log.info("%d tiles -> %s", len(matches), ", ".join(str(p) for p in paths))


def _run_similar(args):
    from astropy.coordinates import SkyCoord

    from .survey import read_index, similar

    index = read_index(args.index)
    if args.position is not None:
        unit = "deg" if args.position.replace("-", "").replace(".", "").replace(
            " ", "").isdigit() else None
        to, what = SkyCoord(args.position, unit=unit), f"position {args.position}"
    elif args.cutout is not None:
        to, what = args.cutout, f"cutout {args.cutout}"
    else:
        to, what = args.tile, f"index entry {args.tile}"
    matches = similar(index, to, args.k, model=args.model)
    _write_matches(args, "similar", matches, f"{len(matches)} tiles most like {what}")
    return 0


def _run_outliers(args):
    from .survey import outliers, read_index

    ranked = outliers(read_index(args.index), args.n, k=args.k)
    _write_matches(args, "outliers", ranked, f"{len(ranked)} most unusual tiles")
    return 0


def _add_index(commands):
    index = commands.add_parser(
        "index", help="add annotated tile tables to a survey index",
        description="Add tile tables with embeddings (from radiofm annotate or embed_image) "
        "to a survey index folder: one Parquet part per image, nothing rewritten.",
    )
    index.add_argument("tables", nargs="+", metavar="TABLE", help="tile tables")
    index.add_argument("-o", "--output", required=True, metavar="DIR",
                       help="index folder (created if needed)")
    index.set_defaults(run=_run_index)


def _run_index(args):
    from .survey import add_to_index

    missing = [t for t in args.tables if not Path(t).is_file()]
    if missing:
        raise FileNotFoundError(f"no such table: {', '.join(missing)}")
    for table in args.tables:
        log.info("added %s", add_to_index(args.output, table))
    return 0


# -- tile and label ---------------------------------------------------------------------------

def _add_tile_outputs(parser):
    _add_output(parser)
    parser.add_argument("--edge", choices=["shift", "drop"], default="shift",
                        help="last partial row/column of tiles: shift it flush with the edge "
                        "(default) or drop it")
    _add_image_options(parser)
    parser.add_argument("--format", choices=TABLE_CHOICES, default="ecsv",
                        help="table format (default ecsv)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _add_tile(commands):
    tile = commands.add_parser(
        "tile", help="tile an image: tile table, DS9 footprints and a quick-look PNG",
        description="Tile a FITS image and write its tile table (<image>_tiles.<format>), "
        "the tile footprints as DS9 regions and a quick-look PNG into the output folder.",
    )
    source = tile.add_mutually_exclusive_group(required=True)
    source.add_argument("image", nargs="?", help="FITS image (plain, .fits.fz or .fits.gz)")
    source.add_argument("--example", action="store_true",
                        help="use the embedded default: a simulated MeerKAT-like field")
    _add_grid_options(tile, default_size=256)
    _add_tile_outputs(tile)
    tile.set_defaults(run=_run_tile)


def _run_tile(args):
    from .survey import TABLE_EXTENSIONS
    from .tiling import write_table
    from .visualization import plot_tiles

    ext = TABLE_EXTENSIONS[args.format]
    image_path = (_write_example(args.output, args.overwrite)[0] if args.example
                  else Path(args.image))
    table_path, regions_path, png_path = _image_outputs(
        args, image_path, f"tiles{ext}", "tiles.reg", "quicklook.png")
    image, tiles = _read_and_tile(args, image_path)
    with image:
        write_table(tiles.table, table_path, overwrite=args.overwrite)
        _write_atomically(tiles.write_footprints, regions_path, args.overwrite)
        _write_atomically(lambda path: plot_tiles(tiles, path), png_path, args.overwrite)
    log.info("%d tiles -> %s, %s, %s", len(tiles), table_path, regions_path, png_path)
    return 0


def _add_label(commands):
    label = commands.add_parser(
        "label", help="count catalogue sources per tile (running a finder if no catalogue)",
        description="Tile a FITS image, count the sources of a catalogue (or of pyBDSF / "
        "photutils run on the image) per tile, and write the tile table with the counts, "
        "the source catalogue, DS9 footprints and a quick-look PNG of the counts into the "
        "output folder.",
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
    _add_grid_options(label, default_size=256)
    _add_tile_outputs(label)
    label.set_defaults(run=_run_label)


def _run_label(args):
    from .catalogs import count_in_tiles, tiles_to_coco
    from .sources import find_sources, read_catalog
    from .tiling import write_table
    from .visualization import plot_tiles

    if args.catalog and not Path(args.catalog).is_file():
        raise FileNotFoundError(f"no such catalogue file: {args.catalog}")
    from .survey import TABLE_EXTENSIONS

    ext = TABLE_EXTENSIONS[args.format]
    suffixes = [f"tiles{ext}", "tiles.reg", "quicklook.png", f"sources{ext}"]
    if args.coco:
        suffixes.append("coco.json")
    paths = _image_outputs(args, args.image, *suffixes)
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
        write_table(counted, paths[0], overwrite=args.overwrite)
        _write_atomically(tiles.write_footprints, paths[1], args.overwrite)
        tiles.table = counted
        _write_atomically(lambda path: plot_tiles(tiles, path, column="n_compact"), paths[2],
                          args.overwrite)
        write_table(catalog, paths[3], overwrite=args.overwrite)
        if args.coco:
            _write_atomically(lambda path: tiles_to_coco(tiles, catalog, path=path), paths[4],
                              args.overwrite)
    log.info("%d sources, %d counted in %d tiles -> %s", len(catalog),
             int(counted["n_compact"].sum()), len(tiles), ", ".join(str(p) for p in paths))
    return 0


# -- simulate ---------------------------------------------------------------------------------

def _add_simulate(commands):
    simulate = commands.add_parser(
        "simulate", help="write a simulated MeerKAT-like field and its truth catalogue",
        description="Simulate a MeerKAT-like continuum field (compact sources from a realistic "
        "flux distribution, FRI/FRII/bent extended sources, beam-convolved noise, optional "
        "primary beam and artefacts) and write <name>.fits and its truth catalogue "
        "<name>_truth.ecsv into the output folder.",
    )
    _add_output(simulate)
    simulate.add_argument("--name", default="simulated_sky",
                          help="file name stem (default: simulated_sky)")
    simulate.add_argument("--size", type=int, default=4096,
                          help="pixels per side (default 4096)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    simulate.add_argument("--noise", type=float, default=4e-6,
                          help="noise rms in Jy/beam (default 4e-6)")
    simulate.add_argument("--primary-beam", action="store_true", help="apply MeerKAT's PB")
    simulate.add_argument("--artefacts", action="store_true", help="spokes on bright sources")
    simulate.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    simulate.set_defaults(run=_run_simulate)


def _run_simulate(args):
    from .simulate import make_radio_sky

    if args.size < 1:
        raise ValueError(f"--size must be a positive number of pixels, got {args.size}")
    folder = check_writable_folder(args.output)
    path, truth_path = folder / f"{args.name}.fits", folder / f"{args.name}_truth.ecsv"
    _check_free([path, truth_path], args.overwrite)
    hdu, truth = make_radio_sky((args.size, args.size), seed=args.seed, noise=args.noise,
                                primary_beam=args.primary_beam, artefacts=args.artefacts)
    _write_atomically(hdu.writeto, path, args.overwrite)
    _write_atomically(truth.write, truth_path, args.overwrite)
    log.info("%d sources -> %s, %s", len(truth), path, truth_path)
    return 0


# -- train, evaluate, export ------------------------------------------------------------------

def _add_train(commands):
    trainer = commands.add_parser(
        "train", help="pre-train a backbone with DINO (the train extra: torch, timm)",
        description="Pre-train a backbone with DINO from a TOML config (the run folder is the "
        "config's run.output). Several processes: torchrun --nproc_per_node N -m radiofm "
        "train CONFIG.",
    )
    trainer.add_argument("config", help="TOML training config")
    trainer.add_argument("--resume", action="store_true",
                         help="continue from the checkpoint in the config's run.output")
    trainer.add_argument("--stop-after", type=int,
                         help="stop (with a checkpoint) once the run has done this many steps, "
                         "counted from its start also when resuming")
    trainer.set_defaults(run=_run_train)


def _run_train(args):
    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after must be a positive number of steps, got "
                         f"{args.stop_after}")
    try:
        from .train import load_config, train
    except ImportError as error:
        raise ImportError(f"radiofm train needs the train extra ({error}): "
                          "pip install -c constraints.txt 'radiofm[train]'") from error
    output = train(load_config(args.config), resume=args.resume, stop_after=args.stop_after)
    log.info("training state in %s", output)
    return 0


def _add_evaluate(commands):
    evaluation = commands.add_parser(
        "evaluate", help="run every downstream task on a model's embeddings, beside baselines",
        description="Evaluate frozen embeddings on every task (compact counts, FRI/FRII, "
        "morphology, similarity search, anomaly ranking, redshift) with probes fitted on the "
        "train splits, beside raw pixels, a random backbone and a supervised CNN. Writes "
        "report.ecsv, report.json, report.txt and one PNG per task into the output folder.",
    )
    chosen = evaluation.add_mutually_exclusive_group(required=True)
    chosen.add_argument("model", nargs="?", help="random:ARCH, pixels, a training run folder "
                        "or checkpoint (.pt), or an exported .onnx model")
    chosen.add_argument("--model", dest="model_option", metavar="MODEL",
                        help="the same, as an option")
    _add_output(evaluation, "radiofm-evaluation")
    evaluation.add_argument("--tasks", default="all",
                            help="comma-separated tasks among counts, frii, crosssample, "
                            "morphology, similarity, anomaly, redshift (default: all)")
    evaluation.add_argument("--baselines", default="pixels,random,classical,supervised",
                            help="comma-separated baselines among pixels, random, classical "
                            "(island counter, shape measurements), supervised, or 'none' "
                            "(default: all four)")
    evaluation.add_argument("--reference", metavar="MODEL",
                            help="another model with the same stretch (e.g. the current "
                            "default), evaluated in the same run, with the model's paired "
                            "margins over it (feature set model-reference)")
    evaluation.add_argument("--limit", type=int,
                            help="at most this many items per split of each data set")
    evaluation.add_argument("--finder", choices=["auto", "bdsf", "photutils"], default="auto",
                            help="source finder for the FIRST compact counts (cached)")
    evaluation.add_argument("--count-windows", type=int, metavar="N",
                            help="also fit the counts on N x N windows of the simulated tiles "
                            "and score their per-tile sums, as a windowed count head counts; "
                            "1: leave these rows out (default: radiofm.evaluate.COUNT_WINDOWS)")
    evaluation.add_argument("--stamp-arcsec", type=float, metavar="ARCSEC",
                            help="the morphology task reads RadioGalaxyDataset's images cut "
                            "to their central ARCSEC, as a model whose head was fitted so "
                            "frames sources (default: the whole 540 arcsec images)")
    evaluation.add_argument("--data", help="data root (default: $RADIOFM_DATA or "
                            "../shared/data)")
    evaluation.add_argument("--seed", type=int, default=0,
                            help="seed of the random baseline and the CNN")
    evaluation.add_argument("--views", type=_view_counts,
                            help="view counts among 1, 2, 8: one (e.g. 8) averages every "
                            "feature set over that many rotations and reflections of each "
                            "stamp; several (e.g. 1,2,8) also report the model at each count "
                            "(default: what the model does, else 1)")
    evaluation.set_defaults(run=_run_evaluate)


def _view_counts(text):
    """``--views``: one view count, or several separated by commas, among 1, 2 and 8."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(count not in (1, 2, 8) for count in counts):
        raise argparse.ArgumentTypeError(f"expected view counts among 1, 2, 8 (e.g. 8 or "
                                         f"1,2,8), got {text!r}")
    return counts[0] if len(counts) == 1 else counts


def _run_evaluate(args):
    from .evaluate import TASKS, evaluate, format_report

    check_writable_folder(args.output)
    tasks = TASKS if args.tasks == "all" else [t for t in args.tasks.split(",") if t]
    baselines = [] if args.baselines == "none" else [b for b in args.baselines.split(",") if b]
    report = evaluate(args.model or args.model_option, root=args.data, output=args.output,
                      tasks=tasks, baselines=baselines,
                      limit=args.limit, finder=args.finder, seed=args.seed, views=args.views,
                      reference=args.reference, stamp_arcsec=args.stamp_arcsec,
                      **({} if args.count_windows is None else
                         {"count_windows": args.count_windows}))
    print(format_report(report))
    log.info("report written to %s (%.0f s)", args.output, report.meta["SECONDS"])
    return 0


def _add_export(commands):
    exporter = commands.add_parser(
        "export", help="export a trained model and its heads to ONNX (the train extra)",
        description="Load the teacher backbone of a radiofm train run, fit its numpy heads "
        "(Poisson counts, calibrated morphology, OOD references) and linear graph heads "
        "(radiofm.evaluate.fit_output_heads), and write one ONNX model NAME.onnx with its "
        "metadata into the output folder, after onnx.checker and a parity check against "
        "torch on real tiles.",
    )
    exporter.add_argument("checkpoint", help="run folder, teacher_backbone.pt or checkpoint.pt")
    exporter.add_argument("-o", "--output", metavar="DIR",
                          help="output folder (default: the run folder)")
    exporter.add_argument("--name", help="model name (default: the run folder's name)")
    exporter.add_argument("--input-size", type=int,
                          help="input side in pixels (default: the training global crop)")
    exporter.add_argument("--data", help="data root for the heads and the parity tiles "
                          "(default: $RADIOFM_DATA or ../shared/data)")
    exporter.add_argument("--tolerance", type=float, default=1e-4,
                          help="parity tolerance: max abs(onnx - torch) per output over "
                          "max(1, max abs(torch)) (default 1e-4)")
    exporter.add_argument("--pixel-scale-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                          help="pixel scales (arcsec) the model suits (default: half to twice "
                          "the training one)")
    exporter.add_argument("--beam-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                          help="beam FWHMs (arcsec) the model suits (default: unchecked)")
    exporter.add_argument("--feature-stages", type=int, nargs="+", metavar="STAGE",
                          help="read the embedding out at these backbone stages, the spatial "
                          "mean of each concatenated (timm feature_info indices; ResNet: 1-4 "
                          "are layer1-layer4); default: the backbone's own pooled output")
    exporter.add_argument("--views", type=int, choices=[1, 8], default=1,
                          help="8: the embedding is the mean over the tile's 8 rotations and "
                          "reflections, orientation-invariant at 8 times the cost (default 1)")
    exporter.add_argument("--quantize", action="store_true",
                          help="also write NAME-int8.onnx (dynamic int8 quantisation)")
    exporter.add_argument("--half-weights", action="store_true",
                          help="also write NAME-fp16.onnx: weights stored as float16 (half "
                          "the size), run in float32")
    exporter.add_argument("--finder", choices=["auto", "bdsf", "photutils"], default="auto",
                       help="source finder for the FIRST compact counts (cached)")
    exporter.add_argument("--cache", metavar="DIR",
                          help="folder to keep the heads' fit embeddings (keyed by the weights) "
                          "and the simulated skies' catalogues in, for a later export or "
                          "fit-heads (default: none kept)")
    _add_head_fit_options(exporter)
    exporter.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    exporter.set_defaults(run=_run_export)


def _add_head_fit_options(parser):
    """The heads' fit options, shared by export and fit-heads (defaults: those of
    radiofm.evaluate.fit_output_heads, which the CLI does not import to start)."""
    parser.add_argument("--count-windows", type=int, metavar="N",
                        help="the count head reads N x N windows of each tile and sums their "
                        "counts; 1: the whole tile (default: radiofm.evaluate.COUNT_WINDOWS)")
    parser.add_argument("--simulated-fields", type=int, metavar="N",
                        help="simulated skies without artefacts for the count head, 2/3 "
                        "train (default: radiofm.evaluate.SIMULATED_FIELDS)")
    parser.add_argument("--artefact-fields", type=int, metavar="N",
                        help="simulated skies with artefacts for the count head, 2/3 train "
                        "(default: radiofm.evaluate.ARTEFACT_FIELDS)")
    parser.add_argument("--depth-fields", type=int, metavar="N",
                        help="simulated skies with artefacts, each at a noise level of its "
                        "own, 2/3 train: they fit the catalogue combination's crowding "
                        "correction alone (default: radiofm.evaluate.DEPTH_FIELDS)")
    parser.add_argument("--embedding-counts-only", action="store_true",
                        help="the count head reads the embedding alone, not also each "
                        "window's 5-sigma peaks (a model on the S/N stretch reads both)")
    parser.add_argument("--stamp-arcsec", type=float, metavar="ARCSEC",
                        help="side of the morphology head's stamps, cut from the centre of "
                        "RadioGalaxyDataset's 540 arcsec images; inference frames sources by "
                        "it (default: radiofm.evaluate.MORPHOLOGY_STAMP_ARCSEC)")
    parser.add_argument("--catalogue-finders", nargs="+", choices=["photutils", "bdsf"],
                        metavar="FINDER",
                        help="finders (photutils, bdsf) whose catalogues the simulated "
                        "sky's count head learns to combine with, as annotate applies them "
                        "(default: photutils, and bdsf where pyBDSF is installed)")


def _head_fit_options(args):
    options = {"count_windows": args.count_windows, "simulated_fields": args.simulated_fields,
               "artefact_fields": args.artefact_fields, "depth_fields": args.depth_fields,
               "count_peaks": False if args.embedding_counts_only else None,
               "stamp_arcsec": args.stamp_arcsec,
               "catalogue_finders": args.catalogue_finders}
    return {key: value for key, value in options.items() if value is not None}


def _run_export(args):
    try:
        from .export import checkpoint_embedder, export_checkpoint
    except ImportError as error:
        raise ImportError(f"radiofm export needs the train extra ({error}): "
                          "pip install -c constraints.txt 'radiofm[train]'") from error
    from .train import find_checkpoint

    source = find_checkpoint(args.checkpoint)
    if args.output is not None:
        check_writable_folder(args.output)
        name = args.name or "model"
        check_not_inputs([Path(args.output) / f"{name}.onnx"], [source])
    from .evaluate import fit_output_heads, with_views

    # with_views checks the view count before the long head fit
    embedder = with_views(checkpoint_embedder(args.checkpoint, input_pixels=args.input_size,
                                              feature_stages=args.feature_stages), args.views)
    log.info("fitting the numpy heads (counts, morphology, OOD) and the graph's linear heads "
             "on frozen embeddings")
    numpy_heads, heads = fit_output_heads(embedder, args.data, finder=args.finder,
                                          graph_heads=True, cache=args.cache,
                                          **_head_fit_options(args))
    report = export_checkpoint(
        args.checkpoint, args.output, heads=heads, numpy_heads=numpy_heads, root=args.data,
        name=args.name,
        input_pixels=args.input_size, tolerance=args.tolerance, views=args.views,
        feature_stages=args.feature_stages,
        pixel_scale_range_arcsec=args.pixel_scale_range, beam_range_arcsec=args.beam_range,
        quantize=args.quantize, half_weights=args.half_weights, overwrite=args.overwrite,
    )
    worst = max(report["parity_max_abs_diff"].values())
    log.info("wrote %s (parity with torch: max abs diff %.3g on %s)", report["path"], worst,
             report["parity_source"])
    if "quantized_path" in report:
        log.info("wrote %s (int8; differences from torch: %s)", report["quantized_path"],
                 report["quantized_max_abs_diff"])
    if "half_path" in report:
        log.info("wrote %s (float16 weights; differences from torch: %s)", report["half_path"],
                 report["half_max_abs_diff"])
    return 0


def _add_fit_heads(commands):
    heads = commands.add_parser(
        "fit-heads", help="re-fit a model's numpy heads (counts, morphology, OOD) on its "
        "ONNX embeddings (no torch; writing needs the onnx package)",
        description="Embed the fit data with the model through onnxruntime, fit a Poisson "
        "count head, a temperature-calibrated morphology head and out-of-distribution "
        "references (radiofm.evaluate.fit_output_heads), and write a copy of the model with "
        "them in its 'heads' metadata as NAME.onnx in the output folder.",
    )
    heads.add_argument("model", help="registered model name or .onnx file")
    heads.add_argument("-o", "--output", required=True, metavar="DIR",
                       help="output folder (created if needed)")
    heads.add_argument("--name", help="file name stem (default: the model's name)")
    heads.add_argument("--data", help="data root (default: $RADIOFM_DATA or ../shared/data)")
    heads.add_argument("--finder", choices=["auto", "bdsf", "photutils"], default="auto",
                       help="source finder for the FIRST compact counts (cached)")
    heads.add_argument("--limit", type=int, help="at most this many items per split")
    heads.add_argument("--first-limit", type=int,
                       help="at most this many FIRST fields per split (default: --limit)")
    heads.add_argument("--cache", help="folder to cache embeddings in")
    _add_head_fit_options(heads)
    heads.add_argument("--box-pixels", type=int, metavar="N",
                       help="the copy measures its S/N stretch's background and noise in boxes "
                       "of N pixels, medians over the boxes (diffuse emission then leaves "
                       "them alone), and its heads are fitted that way (default: as the "
                       "model does)")
    heads.add_argument("--overwrite", action="store_true", help="replace an existing output")
    heads.set_defaults(run=_run_fit_heads)


def _run_fit_heads(args):
    from .evaluate import write_heads
    from .inference import load_model

    name = args.name or load_model(args.model, threads=1).name
    output = Path(args.output) / f"{name}.onnx"
    Path(args.output).mkdir(parents=True, exist_ok=True)
    report = write_heads(args.model, output, root=args.data, finder=args.finder,
                         limit=args.limit, first_limit=args.first_limit, cache=args.cache,
                         box_pixels=args.box_pixels, overwrite=args.overwrite,
                         **_head_fit_options(args))
    log.info("wrote %s (heads: %s)", output, report)
    return 0
