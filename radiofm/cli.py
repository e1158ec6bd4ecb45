"""The ``radiofm`` command line."""

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

EXAMPLE_SHAPE = (2048, 2048)
EXAMPLE_SEED = 2026


def main(argv=None):
    """Run the ``radiofm`` command line; returns the exit status.

    An error reaches the user as one line on stderr and exit status 2; ``--debug`` (anywhere
    on the line) or ``RADIOFM_DEBUG=1`` shows its traceback too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("RADIOFM_DEBUG", "").strip() not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    parser = _parser()
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also RADIOFM_DEBUG=1)")
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

    evaluation = commands.add_parser(
        "evaluate", help="run every downstream task on a model's embeddings, beside baselines",
        description="Evaluate frozen embeddings on every task (compact counts, FRI/FRII, "
        "morphology, similarity search, anomaly ranking, redshift) with probes fitted on the "
        "train splits, beside raw pixels, a random backbone and a supervised CNN. Writes "
        "report.ecsv, report.json, report.txt and one PNG per task.",
    )
    chosen = evaluation.add_mutually_exclusive_group(required=True)
    chosen.add_argument("model", nargs="?", help="random:ARCH, pixels, a training run folder "
                        "or checkpoint (.pt), or an exported .onnx model")
    chosen.add_argument("--model", dest="model_option", metavar="MODEL",
                        help="the same, as an option")
    evaluation.add_argument("-o", "--output", default="radiofm-evaluation",
                            help="report folder (default: radiofm-evaluation)")
    evaluation.add_argument("--tasks", default="all",
                            help="comma-separated tasks among counts, frii, crosssample, "
                            "morphology, similarity, anomaly, redshift (default: all)")
    evaluation.add_argument("--baselines", default="pixels,random,classical,supervised",
                            help="comma-separated baselines among pixels, random, classical "
                            "(island counter, shape measurements), supervised, or 'none' "
                            "(default: all four)")
    evaluation.add_argument("--limit", type=int,
                            help="at most this many items per split of each data set")
    evaluation.add_argument("--finder", choices=["auto", "bdsf", "photutils"], default="auto",
                            help="source finder for the FIRST compact counts (cached)")
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

    exporter = commands.add_parser(
        "export", help="export a trained model and its heads to ONNX (the train extra)",
        description="Load the teacher backbone of a radiofm train run, fit its numpy heads "
        "(Poisson counts, calibrated morphology, OOD references) and linear graph heads "
        "(radiofm.evaluate.fit_output_heads), and write one ONNX model with its metadata, "
        "after onnx.checker and a parity check against torch on real tiles.",
    )
    exporter.add_argument("checkpoint", help="run folder, teacher_backbone.pt or checkpoint.pt")
    exporter.add_argument("-o", "--output", help="ONNX file (default: RUN/NAME.onnx)")
    exporter.add_argument("--name", help="model name (default: the run folder's name)")
    exporter.add_argument("--input-size", type=int,
                          help="input side in pixels (default: the training global crop)")
    exporter.add_argument("--data", help="data root for the heads and the parity tiles "
                          "(default: $RADIOFM_DATA or ../shared/data)")
    exporter.add_argument("--tolerance", type=float, default=1e-4,
                          help="parity tolerance: max |onnx - torch| per output over "
                          "max(1, max |torch|) (default 1e-4)")
    exporter.add_argument("--pixel-scale-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                          help="pixel scales (arcsec) the model suits (default: half to twice "
                          "the training one)")
    exporter.add_argument("--beam-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                          help="beam FWHMs (arcsec) the model suits (default: unchecked)")
    exporter.add_argument("--views", type=int, choices=[1, 8], default=1,
                          help="8: the embedding is the mean over the tile's 8 rotations and "
                          "reflections, orientation-invariant at 8 times the cost (default 1)")
    exporter.add_argument("--quantize", action="store_true",
                          help="also write NAME-int8.onnx (dynamic int8 quantisation)")
    exporter.add_argument("--half-weights", action="store_true",
                          help="also write NAME-fp16.onnx: weights stored as float16 (half "
                          "the size), run in float32")
    exporter.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    exporter.set_defaults(run=_run_export)

    annotate = commands.add_parser(
        "annotate", help="find, count and classify sources with an ONNX model (no torch)",
        description="Run an exported model over an image: the tile table (OUT_tiles) with "
        "embeddings, predicted compact counts and out-of-distribution flags, and the source "
        "catalogue (OUT) with morphology classes: sources found in the image (pyBDSF if "
        "installed, else photutils) unless --catalog gives them. Table format from OUT's "
        "extension (.fits, .ecsv or .vot/.xml); DS9 ellipses coloured by class and a "
        "quick-look PNG beside it.",
    )
    picture = annotate.add_mutually_exclusive_group(required=True)
    picture.add_argument("image", nargs="?", help="FITS image (plain, .fits.fz or .fits.gz)")
    picture.add_argument("--example", action="store_true",
                         help="use the embedded default: a simulated MeerKAT-like field, "
                         "written beside OUT with its true source catalogue (for comparison)")
    annotate.add_argument("--catalog", help="source catalogue to classify (pyBDSF .srl, FITS, "
                          "ECSV...) instead of finding the sources")
    annotate.add_argument("--finder", choices=["auto", "bdsf", "photutils"], default="auto",
                          help="source finder without --catalog (default: pyBDSF if "
                          "installed and the image records a frequency, else photutils)")
    annotate.add_argument("-o", "--output", required=True,
                          help="output table: the annotated catalogue (the tiles go to "
                          "OUT_tiles)")
    annotate.add_argument("--model", default="default",
                          help="registered model name or .onnx file (default: default)")
    annotate.add_argument("--tile-size", type=_pixels_or_angle,
                          help="tile side in pixels or as an angle (default: the model's)")
    annotate.add_argument("--overlap", default="0", type=_pixels_or_angle,
                          help="overlap in pixels or as an angle (default 0)")
    annotate.add_argument("--hdu", help="HDU index or name (default: first image HDU)")
    annotate.add_argument("--plane", type=int,
                          help="plane of a cube with one non-degenerate axis")
    annotate.add_argument("--batch-size", type=int, default=64, help="tiles per model run")
    annotate.add_argument("--threads", type=int, help="onnxruntime threads (default: all)")
    annotate.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    annotate.set_defaults(run=_run_annotate)

    heads = commands.add_parser(
        "fit-heads", help="re-fit a model's numpy heads (counts, morphology, OOD) on its "
        "ONNX embeddings (no torch; writing needs the onnx package)",
        description="Embed the fit data with the model through onnxruntime, fit a Poisson "
        "count head, a temperature-calibrated morphology head and out-of-distribution "
        "references (radiofm.evaluate.fit_output_heads), and write a copy of the model with "
        "them in its 'heads' metadata.",
    )
    heads.add_argument("model", help="registered model name or .onnx file")
    heads.add_argument("-o", "--output", required=True, help="ONNX file to write")
    heads.add_argument("--data", help="data root (default: $RADIOFM_DATA or ../shared/data)")
    heads.add_argument("--finder", choices=["auto", "bdsf", "photutils"], default="auto",
                       help="source finder for the FIRST compact counts (cached)")
    heads.add_argument("--limit", type=int, help="at most this many items per split")
    heads.add_argument("--first-limit", type=int,
                       help="at most this many FIRST fields per split (default: --limit)")
    heads.add_argument("--cache", help="folder to cache embeddings in")
    heads.add_argument("--overwrite", action="store_true", help="replace an existing output")
    heads.set_defaults(run=_run_fit_heads)
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
    """Output paths ``<stem>_<suffix>`` in the output folder, refusing to overwrite, to write
    over an input, or to start when the folder cannot be written."""
    out = check_writable_folder(args.output)
    stem = Path(image_path).name.split(".fits")[0]
    paths = [out / f"{stem}_{suffix}" for suffix in suffixes]
    check_not_inputs(paths, [image_path, getattr(args, "catalog", None)])
    _check_free(paths, args.overwrite)
    return paths


def _write_atomically(write, path, overwrite):
    """Call ``write(partial)`` on a temporary file beside ``path``, then rename it."""
    with atomic_path(path, overwrite=overwrite) as partial:
        write(partial)


def _read_and_tile(args, image_path, **image_options):
    from .image import read_image
    from .tiling import tile_image

    hdu = int(args.hdu) if args.hdu is not None and args.hdu.isdigit() else args.hdu
    image = read_image(image_path, hdu=hdu, plane=args.plane, **image_options)
    log.info("%r", image)
    tiles = tile_image(image, args.tile_size, overlap=args.overlap, min_valid=args.min_valid,
                       edge=args.edge)
    return image, tiles


def _write_example(folder, overwrite):
    """Write the embedded default sky and its truth catalogue into ``folder``."""
    from .simulate import make_radio_sky

    check_writable_folder(folder)
    image_path, truth_path = folder / "example_sky.fits", folder / "example_truth.ecsv"
    _check_free([image_path, truth_path], overwrite)
    hdu, truth = make_radio_sky(EXAMPLE_SHAPE, seed=EXAMPLE_SEED, artefacts=True)
    _write_atomically(hdu.writeto, image_path, overwrite)
    _write_atomically(truth.write, truth_path, overwrite)
    log.info("simulated %d sources into %s", len(truth), image_path)
    return image_path, truth_path


def _run_tile(args):
    from .visualization import plot_tiles

    if args.example:
        image_path, _ = _write_example(Path(args.output), args.overwrite)
    else:
        image_path = Path(args.image)
    table_path, regions_path, png_path = _outputs(
        args, image_path, f"tiles.{args.format}", "tiles.reg", "quicklook.png")
    image, tiles = _read_and_tile(args, image_path)
    with image:
        _write_atomically(tiles.table.write, table_path, args.overwrite)
        _write_atomically(tiles.write_footprints, regions_path, args.overwrite)
        _write_atomically(lambda path: plot_tiles(tiles, path), png_path, args.overwrite)
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
        _write_atomically(counted.write, paths[0], args.overwrite)
        _write_atomically(tiles.write_footprints, paths[1], args.overwrite)
        tiles.table = counted
        _write_atomically(lambda path: plot_tiles(tiles, path, column="n_compact"), paths[2],
                          args.overwrite)
        _write_atomically(catalog.write, paths[3], args.overwrite)
        if args.coco:
            _write_atomically(lambda path: tiles_to_coco(tiles, catalog, path=path), paths[4],
                              args.overwrite)
    log.info("%d sources, %d counted in %d tiles -> %s", len(catalog),
             int(counted["n_compact"].sum()), len(tiles), ", ".join(str(p) for p in paths))
    return 0


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
                      limit=args.limit, finder=args.finder, seed=args.seed, views=args.views)
    print(format_report(report))
    log.info("report written to %s (%.0f s)", args.output, report.meta["SECONDS"])
    return 0


def _run_simulate(args):
    from .simulate import make_radio_sky

    path = Path(args.output)
    truth_path = path.with_name(path.name.split(".fits")[0] + "_truth.ecsv")
    if args.size < 1:
        raise ValueError(f"--size must be a positive number of pixels, got {args.size}")
    check_writable_folder(path.parent)
    _check_free([path, truth_path], args.overwrite)
    hdu, truth = make_radio_sky((args.size, args.size), seed=args.seed, noise=args.noise,
                                primary_beam=args.primary_beam, artefacts=args.artefacts)
    _write_atomically(hdu.writeto, path, args.overwrite)
    _write_atomically(truth.write, truth_path, args.overwrite)
    log.info("%d sources -> %s, %s", len(truth), path, truth_path)
    return 0


def _run_export(args):
    try:
        from .export import checkpoint_embedder, export_checkpoint
    except ImportError as error:
        raise ImportError(f"radiofm export needs the train extra ({error}): "
                          "pip install -c constraints.txt 'radiofm[train]'") from error
    from .train import find_checkpoint

    source = find_checkpoint(args.checkpoint)
    if args.output is not None:
        check_not_inputs([args.output], [source])
        check_writable_folder(Path(args.output).parent)

    from .evaluate import fit_output_heads, with_views

    # with_views checks the view count before the long head fit
    embedder = with_views(checkpoint_embedder(args.checkpoint, input_pixels=args.input_size),
                          args.views)
    log.info("fitting the numpy heads (counts, morphology, OOD) and the graph's linear heads "
             "on frozen embeddings")
    numpy_heads, heads = fit_output_heads(embedder, args.data, graph_heads=True)
    report = export_checkpoint(
        args.checkpoint, args.output, heads=heads, numpy_heads=numpy_heads, root=args.data,
        name=args.name,
        input_pixels=args.input_size, tolerance=args.tolerance, views=args.views,
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


TABLE_FORMATS = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".ecsv": "ascii.ecsv",
                 ".vot": "votable", ".xml": "votable", ".votable": "votable"}


def _table_format(path):
    name = path.name.lower().removesuffix(".gz")
    suffix = Path(name).suffix
    if suffix not in TABLE_FORMATS:
        raise ValueError(f"cannot tell the table format of {path}: use one of "
                         f"{', '.join(TABLE_FORMATS)}")
    return suffix, TABLE_FORMATS[suffix]


def _write_table(table, path, overwrite):
    """Write a table as FITS, ECSV or VOTable (sky columns as RA/Dec, meta as INFO); every
    column described, numeric ones with a unit; atomically."""
    from astropy.table import Table

    from .inference import describe_columns

    _, format = _table_format(path)
    table = describe_columns(Table(table, copy=True), units=True)
    with atomic_path(path, overwrite=overwrite) as partial:
        _write_table_to(table, partial, format)


def _write_table_to(table, path, format):
    if format != "votable":
        table.write(path, format=format, overwrite=True)
        return
    from astropy.coordinates import SkyCoord
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info
    from astropy.table import Table

    plain = Table(table, copy=False)
    for name in list(plain.colnames):
        if isinstance(table[name], SkyCoord):
            icrs = table[name].icrs
            index = plain.colnames.index(name)
            plain.remove_column(name)
            plain.add_column(icrs.dec.to(u.deg), name=f"{name}_dec", index=index)
            plain.add_column(icrs.ra.to(u.deg), name=f"{name}_ra", index=index)
    plain.meta = {}
    votable = from_table(plain)
    for key, value in table.meta.items():
        votable.get_first_table().infos.append(Info(name=key, value=str(value)))
    votable.to_xml(str(path))


def _run_annotate(args):
    from ._optional_deps import HAS_BDSF
    from .image import read_image
    from .inference import classify_morphology, count_sources, load_model
    from .sources import find_sources, read_catalog
    from .tiling import tile_image
    from .visualization import plot_tiles, source_regions

    out = Path(args.output)
    suffix, _ = _table_format(out)
    stem = out.name[: out.name.lower().rindex(suffix)]
    tiles_path = out.with_name(f"{stem}_tiles{out.name[len(stem):]}")
    regions_path = out.with_name(f"{stem}.reg")
    png_path = out.with_name(f"{stem}_quicklook.png")
    paths = [out, tiles_path, regions_path, png_path]
    model_file = args.model if Path(args.model).is_file() else None
    example = ([out.parent / "example_sky.fits", out.parent / "example_truth.ecsv"]
               if args.example else [])
    check_not_inputs(paths, [args.image, args.catalog, model_file, *example])
    check_writable_folder(out.parent)
    _check_free(paths, args.overwrite)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    model = load_model(args.model, threads=args.threads)
    image_path = args.image
    if args.example:
        image_path, _ = _write_example(out.parent, args.overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    hdu = int(args.hdu) if args.hdu is not None and args.hdu.isdigit() else args.hdu
    with read_image(image_path, hdu=hdu, plane=args.plane) as image:
        log.info("%r", image)
        tile_size = model.spec.tile_pixels(image) if args.tile_size is None else args.tile_size
        tiles = tile_image(image, tile_size, overlap=args.overlap)
        table = count_sources(tiles, model, batch_size=args.batch_size, embedding=True)
        table.meta["IMAGE"] = Path(image_path).name
        tiles.table = table
        if args.catalog:
            catalog = read_catalog(args.catalog, image=image)
        else:
            finder = args.finder
            if finder == "auto":
                finder = "bdsf" if HAS_BDSF and image.frequency is not None else "photutils"
            catalog = find_sources(image, finder)
        annotated = classify_morphology(catalog, image, model, batch_size=args.batch_size)
        annotated.meta["IMAGE"] = Path(image_path).name
        _write_table(annotated, out, args.overwrite)
        _write_table(table, tiles_path, args.overwrite)
        beam = None if image.beam is None else image.beam[0]
        regions = source_regions(annotated, beam=beam)
        _write_atomically(lambda path: regions.write(path, format="ds9", overwrite=True),
                          regions_path, args.overwrite)
        _write_atomically(lambda path: plot_tiles(tiles, path, column="n_compact_pred",
                                                  sources=annotated), png_path, args.overwrite)
    log.info("%d tiles (%d out of distribution) and %d sources annotated with %s -> %s",
             len(table), int(table["ood_flag"].sum()), len(annotated), model.name,
             ", ".join(str(p) for p in paths))
    return 0


def _run_fit_heads(args):
    from .evaluate import write_heads

    report = write_heads(args.model, args.output, root=args.data, finder=args.finder,
                         limit=args.limit, first_limit=args.first_limit, cache=args.cache,
                         overwrite=args.overwrite)
    log.info("wrote %s (heads: %s)", args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
