"""One image, annotated and written: the unit of work of the CLI and of `annotate_many`.

An image goes through three steps so that a large one can be spread over workers: `plan`
(read the header, lay the tile grid, check the resume marker), `run_rows` (the model on one
block of tile rows; any number of these run at once) and `finish` (assemble the tile table,
classify the catalogue, write every output atomically, then the resume marker).
"""

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from .._atomic import atomic_path
from .._optional_deps import HAS_BDSF
from ..catalogs import count_in_tiles
from ..image import read_image
from ..inference import (
    add_catalogue_counts,
    classify_morphology,
    count_sources,
    describe_columns,
    load_model,
)
from ..models import file_sha256
from ..simulate import COUNT_SNR
from ..sources import find_sources, read_catalog
from ..tiling import TileSet, check_tile_count, tile_image, write_table

__all__ = ["FINDERS", "TABLE_EXTENSIONS", "ImagePlan", "annotate_image", "finish", "image_stem",
           "model_tile_size", "output_paths", "plan", "run_rows"]

log = logging.getLogger("radiofm")

#: ``format`` names of `annotate_image` and `annotate_many` and their file extensions.
TABLE_EXTENSIONS = {"ecsv": ".ecsv", "fits": ".fits", "votable": ".vot", "parquet": ".parquet"}
#: Source finders of `annotate_image`; ``"none"`` writes the tiles only.
FINDERS = ("auto", "bdsf", "photutils", "none")
#: Folder (inside the output folder) of the per-image resume markers.
MARKERS = ".radiofm-done"


def image_stem(path):
    """The name outputs of an image start with: its file name without ``.fits*``."""
    name = Path(path).name
    return name.split(".fits")[0] if ".fits" in name.lower() else Path(name).stem


def output_paths(output_dir, image, *, format="ecsv", catalog=True):
    """The files `annotate_image` writes for one image.

    Parameters
    ----------
    output_dir : path-like
        The output folder.
    image : path-like
        The image file.
    format : {"ecsv", "fits", "votable", "parquet"}
        Table format.
    catalog : bool
        Whether sources are annotated too (found, or from a catalogue).

    Returns
    -------
    paths : dict
        ``tiles``, ``regions``, ``quicklook`` and, with a catalogue, ``sources``.
    """
    if format not in TABLE_EXTENSIONS:
        raise ValueError(f"format must be one of {list(TABLE_EXTENSIONS)}, got {format!r}")
    folder, stem, ext = Path(output_dir), image_stem(image), TABLE_EXTENSIONS[format]
    paths = {"tiles": folder / f"{stem}_tiles{ext}", "regions": folder / f"{stem}.reg",
             "quicklook": folder / f"{stem}_quicklook.png"}
    if catalog:
        paths["sources"] = folder / f"{stem}_sources{ext}"
    return paths


def model_tile_size(model, image):
    """The model's tile side in this image's pixels (`~radiofm.models.ModelSpec.tile_pixels`)."""
    return model.spec.tile_pixels(image)


@dataclass
class ImagePlan:
    """What `plan` decided for one image; small and picklable (sent to workers)."""

    image: str
    hdu: object
    plane: object
    catalog: str | None
    finder: str
    tile_size: int
    overlap: int
    min_valid: float
    x_min: np.ndarray
    y_min: np.ndarray
    valid: np.ndarray
    input_sha: str
    model_sha: str
    started: float = field(default_factory=time.perf_counter)

    def __len__(self):
        return len(self.x_min)

    def tiles(self, image, rows=slice(None)):
        """The `~radiofm.tiling.TileSet` of these rows over the opened image."""
        return TileSet(image, self.x_min[rows], self.y_min[rows], self.valid[rows],
                       size=self.tile_size, overlap=self.overlap, min_valid=self.min_valid,
                       edge="shift")


def _marker_path(output_dir, image):
    return Path(output_dir) / MARKERS / f"{image_stem(image)}.json"


def read_marker(output_dir, image):
    """The resume marker of an image (a dict), or None."""
    try:
        return json.loads(_marker_path(output_dir, image).read_text())
    except (OSError, ValueError):
        return None


def _open(image, hdu, plane):
    return read_image(image, hdu=hdu, plane=plane)


def plan(image, model, *, output_dir=None, catalog=None, finder="auto", tile_size=None,
         overlap=0, min_valid=1.0, hdu=None, plane=None, resume=True):
    """Lay the tile grid of one image, or return the resume marker if it is already done.

    Returns
    -------
    plan : `ImagePlan` or dict
        A dict (the marker written by `finish`) when ``resume`` and the image's outputs exist
        with the same model sha256 and input sha256.
    """
    model = load_model(model, threads=1) if not hasattr(model, "sha256") else model
    input_sha = file_sha256(image)
    if resume and output_dir is not None:
        marker = read_marker(output_dir, image)
        if (marker and marker["model_sha"] == model.sha256 and marker["input_sha"] == input_sha
                and all(Path(p).exists() for p in marker["outputs"])):
            return marker
    with _open(image, hdu, plane) as radio:
        size = model_tile_size(model, radio) if tile_size is None else tile_size
        check_tile_count(radio, size, overlap)
        tiles = tile_image(radio, size, overlap=overlap, min_valid=min_valid)
        table = tiles.table
        return ImagePlan(
            image=str(image), hdu=hdu, plane=plane,
            catalog=None if catalog is None else str(catalog), finder=finder,
            tile_size=tiles.tile_size,
            overlap=tiles.overlap, min_valid=min_valid,
            x_min=np.asarray(table["x_min"]), y_min=np.asarray(table["y_min"]),
            valid=np.asarray(table["valid_fraction"]), input_sha=input_sha,
            model_sha=model.sha256,
        )


def run_rows(image_plan, model, start, stop, *, batch_size=64, threads=1, progress=False):
    """The model's outputs for tile rows ``start:stop`` of a plan.

    The normalisation is fitted on the whole image (a bounded sample of rows), so every
    block of an image gets the same stretch.

    Returns
    -------
    outputs : `~astropy.table.Table`
        The columns `~radiofm.inference.count_sources` adds (``n_compact_pred``, masked on
        out-of-distribution tiles, ``embedding``, the out-of-distribution flags...) with
        their masks, units and descriptions, and its ``meta``.
    """
    model = load_model(model, threads=threads)
    if model.sha256 != image_plan.model_sha:
        raise ValueError(f"model {model.name!r} changed while {image_plan.image} was annotated")
    with _open(image_plan.image, image_plan.hdu, image_plan.plane) as radio:
        tiles = image_plan.tiles(radio, slice(start, stop))
        table = count_sources(tiles, model, batch_size=batch_size, threads=threads,
                              progress=progress, embedding=True)
    grid = set(tiles.table.colnames)
    return Table(table[[c for c in table.colnames if c not in grid]], copy=True)


def finish(image_plan, model, blocks, output_dir, *, format="ecsv", overwrite=False,
           threads=1, batch_size=64, index=None, progress=False):
    """Assemble an image's tile table from its row blocks and write every output.

    Returns
    -------
    summary : dict
        ``image``, ``n_tiles``, ``n_sources``, ``seconds``, ``model_sha``, ``input_sha``,
        ``outputs`` (also written as the image's resume marker).
    """
    from ..visualization import plot_tiles, source_regions

    model = load_model(model, threads=threads)
    with_sources = image_plan.catalog is not None or image_plan.finder != "none"
    paths = output_paths(output_dir, image_plan.image, format=format, catalog=with_sources)
    name = Path(image_plan.image).name
    with _open(image_plan.image, image_plan.hdu, image_plan.plane) as radio:
        tiles = image_plan.tiles(radio)
        table = tiles.table
        outputs = vstack(blocks, metadata_conflicts="silent")  # keeps masks and units
        for column in outputs.colnames:
            table[column] = outputs[column]
        table.meta.update(blocks[0].meta)
        table.meta["IMAGE"] = name
        table.meta["INPUTSHA"] = image_plan.input_sha
        sources = None
        if with_sources:
            finder = None  # the user's own catalogue
            if image_plan.catalog is not None:
                catalog = read_catalog(image_plan.catalog, image=radio)
            else:
                finder = image_plan.finder
                if finder == "auto":
                    finder = "bdsf" if HAS_BDSF and radio.frequency is not None else "photutils"
                catalog = find_sources(radio, finder)
            sources = classify_morphology(catalog, radio, model, batch_size=batch_size,
                                          threads=threads, progress=progress)
            sources.meta["IMAGE"] = name
            table["n_compact"] = count_measured_compact(sources, tiles)
            table["n_compact"].info.description = (
                f"measured: sources found in the tile that are Compact by measurement (shape "
                f"consistent with the beam) with peak S/N >= {COUNT_SNR:g}")
            add_catalogue_counts(table, sources, tiles, model, finder, radio.beam)
            write_table(describe_columns(Table(sources, copy=True), units=True),
                        paths["sources"], overwrite=overwrite)
            beam = None if radio.beam is None else radio.beam[0]
            regions = source_regions(sources, beam=beam)
        else:
            regions = tiles.footprints()
        write_table(describe_columns(Table(table, copy=True), units=True), paths["tiles"],
                    overwrite=overwrite)
        with atomic_path(paths["regions"], overwrite=overwrite) as partial:
            regions.write(partial, format="ds9", overwrite=True)
        with atomic_path(paths["quicklook"], overwrite=overwrite) as partial:
            plot_tiles(tiles, partial, column="n_compact_pred", sources=sources)
    if index is not None:
        from ._index import add_to_index

        add_to_index(index, table, name=image_stem(image_plan.image), image=image_plan.image)
    summary = {"image": str(image_plan.image), "n_tiles": len(table),
               "n_ood": int(np.sum(table["ood_flag"])) if "ood_flag" in table.colnames else 0,
               "n_sources": 0 if sources is None else len(sources),
               "seconds": round(time.perf_counter() - image_plan.started, 3),
               "model_sha": image_plan.model_sha, "input_sha": image_plan.input_sha,
               "outputs": [str(p) for p in paths.values()]}
    marker = _marker_path(output_dir, image_plan.image)
    with atomic_path(marker, overwrite=True) as partial:
        partial.write_text(json.dumps(summary))
    return summary


def count_measured_compact(sources, tiles, *, snr=COUNT_SNR):
    """The measured compact-source count of every tile, from a classified catalogue.

    A measurement beside the model's prediction (``n_compact_pred``): sources that
    `~radiofm.inference.classify_morphology` found Compact by measurement (shape consistent
    with the beam) with peak S/N at least ``snr``.

    Parameters
    ----------
    sources : `~astropy.table.Table`
        A catalogue classified by `~radiofm.inference.classify_morphology` (``morph_class``
        and ``snr`` columns).
    tiles : `~radiofm.tiling.TileSet`
        The tiles.
    snr : float
        Smallest peak S/N counted (the S/N of the simulated count label, which the count
        heads and the evaluation use).

    Returns
    -------
    counts : `~numpy.ndarray`
        (N tiles,) int.
    """
    compact = ((np.asarray(sources["morph_class"]) == "Compact")
               & (np.nan_to_num(np.asarray(sources["snr"], float)) >= snr))
    return np.asarray(count_in_tiles(sources, tiles, select=compact)["n_compact"])


def annotate_image(image, output_dir, *, model="default", catalog=None, finder="auto",
                   tile_size=None, overlap=0, min_valid=1.0, hdu=None, plane=None, format="ecsv",
                   overwrite=False, resume=False, batch_size=64, threads=None, index=None,
                   progress=True):
    """Annotate one image with a model and write its outputs into a folder.

    Writes ``<stem>_tiles.<ext>`` (the tile table with ``embedding``, ``n_compact_pred``
    and the out-of-distribution flags), ``<stem>_sources.<ext>`` (the sources found in
    the image, or the given catalogue, with ``morph_class`` and ``morph_prob``),
    ``<stem>.reg`` (DS9 ellipses of the sources coloured by class; the tile footprints with
    ``finder="none"``) and ``<stem>_quicklook.png``, every column described. Every file is
    written to a temporary name and renamed when complete.

    Parameters
    ----------
    image : str or path-like
        FITS image.
    output_dir : str or path-like
        Output folder (created if needed).
    model : str, path-like or `~radiofm.inference.OnnxModel`
        As for `~radiofm.inference.embed_image`.
    catalog : str or path-like, optional
        Source catalogue to classify (anything `~radiofm.sources.read_catalog` reads)
        instead of finding the sources.
    finder : {"auto", "bdsf", "photutils", "none"}
        Source finder without a catalogue (``"auto"``: pyBDSF if installed and the image
        records a frequency, else photutils); ``"none"`` annotates the tiles only.
    tile_size, overlap : int or `~astropy.units.Quantity`, optional
        Tile side (default: the model's) and overlap; a `~radiofm.tiling.UnitlessPixels`
        size making more than 10^4 tiles is refused.
    min_valid : float
        Keep tiles with at least this fraction of finite pixels.
    hdu, plane
        As for `~radiofm.image.read_image`.
    format : {"ecsv", "fits", "votable", "parquet"}
        Table format.
    overwrite : bool
        Replace existing outputs.
    resume : bool
        Return the previous summary without work when the outputs exist for the same model
        and input (sha256 of both).
    batch_size, threads, progress
        As for `~radiofm.inference.embed_image`.
    index : path-like, optional
        Survey index folder to add the tiles to (see `add_to_index`).

    Returns
    -------
    summary : dict
        ``image``, ``n_tiles``, ``n_sources``, ``seconds``, ``model_sha``, ``input_sha``
        and ``outputs``.
    """
    started = time.perf_counter()
    loaded = load_model(model, threads=threads)
    if finder not in FINDERS:
        raise ValueError(f"finder must be one of {FINDERS}, got {finder!r}")
    paths = output_paths(output_dir, image, format=format,
                         catalog=catalog is not None or finder != "none")
    if not overwrite and not resume:
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing:
            raise FileExistsError(f"would overwrite {', '.join(existing)}; pass --overwrite")
    if catalog is not None and not Path(catalog).is_file():
        raise FileNotFoundError(f"no such catalogue file: {catalog}")
    decided = plan(image, loaded, output_dir=output_dir, catalog=catalog, finder=finder,
                   tile_size=tile_size,
                   overlap=overlap, min_valid=min_valid, hdu=hdu, plane=plane, resume=resume)
    if isinstance(decided, dict):
        log.info("%s: done before with this model and input, skipped", image)
        return decided
    decided.started = started
    block = run_rows(decided, loaded, 0, len(decided), batch_size=batch_size,
                     threads=loaded.threads, progress=progress)
    return finish(decided, loaded, [block], output_dir, format=format,
                  overwrite=overwrite or resume, threads=loaded.threads,
                  batch_size=batch_size, index=index, progress=progress)
