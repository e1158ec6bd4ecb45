"""Annotating a whole survey on a Dask cluster: one task per image, row blocks for mosaics."""

import logging
import os
import time
from pathlib import Path

import numpy as np
from astropy.table import QTable
from tqdm.auto import tqdm

from .._optional_deps import HAS_DISTRIBUTED, SURVEY_EXTRA_HINT
from ..inference import load_model
from ..models import locate_model
from ..tiling import write_table
from ._annotate import finish, image_stem, output_paths, plan, read_marker, run_rows

__all__ = ["BLOCK_TILES", "annotate_many", "read_image_list"]

log = logging.getLogger("radiofm")

#: Images with more tiles than this are split into blocks of rows of this many tiles.
BLOCK_TILES = 1024
MANIFEST = "manifest.ecsv"


def read_image_list(path):
    """Images (and optional catalogues) listed in a text file, one image a line.

    Each line holds an image path, optionally followed by whitespace and its catalogue;
    blank lines and lines starting with ``#`` are skipped. Relative paths are relative to
    the list's folder.

    Returns
    -------
    images : list of str
    catalogs : list of str or None
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image list: {path}")
    images, catalogs = [], []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) > 2:
            raise ValueError(f"{path}: a line holds an image and at most a catalogue, got "
                             f"{line!r}")
        resolved = [str(path.parent / p) if not os.path.isabs(p) else p for p in parts]
        images.append(resolved[0])
        catalogs.append(resolved[1] if len(resolved) == 2 else None)
    if not images:
        raise ValueError(f"{path} lists no images")
    return images, catalogs


def _check_inputs(images, catalogs):
    """Refuse missing files and images whose outputs would collide, before any work."""
    missing = [str(p) for p in images if not Path(p).is_file()]
    missing += [str(c) for c in catalogs if c is not None and not Path(c).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        raise FileNotFoundError(f"no such file: {shown}")
    stems = {}
    for image in images:
        stems.setdefault(image_stem(image), []).append(str(image))
    clashes = [names for names in stems.values() if len(names) > 1]
    if clashes:
        raise ValueError(f"images with the same name would write the same outputs: "
                         f"{clashes[0]}; rename them or annotate them into different folders")


def _start_client(n_workers):
    if not HAS_DISTRIBUTED:
        raise ImportError(f"annotating on a cluster needs Dask distributed: {SURVEY_EXTRA_HINT} "
                          "(or n_workers=0, --workers 0: one image after the other here)")
    from distributed import Client, LocalCluster

    n_workers = n_workers or len(os.sched_getaffinity(0))
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    log.info("started a local Dask cluster of %d worker processes", n_workers)
    return Client(cluster), cluster


class _Record:
    """The manifest and the progress display."""

    def __init__(self, total, progress):
        self.rows = []
        self.bar = tqdm(total=total, unit="image", disable=None if progress else True)
        self.total = total

    def add(self, image, status, *, error="", summary=None, seconds=0.0, model_sha=""):
        summary = summary or {}
        row = {"image": str(image), "status": status, "error": error,
               "n_tiles": int(summary.get("n_tiles", 0)),
               "n_sources": int(summary.get("n_sources", 0)),
               "seconds": float(summary.get("seconds", seconds)),
               "model_sha": summary.get("model_sha", model_sha)}
        self.rows.append(row)
        self.bar.update()
        message = (f"[{len(self.rows)}/{self.total}] {image}: {status}"
                   + (f" ({row['n_tiles']} tiles, {row['n_sources']} sources, "
                      f"{row['seconds']:.1f} s)" if status != "failed" else f": {error}"))
        if status == "failed":
            log.error("%s", message)
        elif self.bar.disable:
            log.info("%s", message)
        else:
            log.debug("%s", message)

    def table(self):
        table = QTable(rows=self.rows, names=["image", "status", "error", "n_tiles",
                                              "n_sources", "seconds", "model_sha"],
                       dtype=[str, str, str, np.int64, np.int64, np.float64, str])
        return table


def annotate_many(images, output_dir, *, model="default", catalogs=None, finder="auto",
                  client=None, n_workers=None, tile_size=None, overlap=0, min_valid=1.0, hdu=None,
                  plane=None, format="ecsv", overwrite=False, resume=True,
                  block_tiles=BLOCK_TILES, batch_size=64, index=True, progress=True):
    """Annotate many images on a Dask cluster, resumably, into one output folder.

    Each image is a task (an image of more than ``block_tiles`` tiles is split into blocks
    of tile rows, so a mosaic spreads over workers too with flat memory per worker) writing
    the outputs of `annotate_image` atomically, and adding its tiles to the survey index
    ``output_dir/index`` (`add_to_index`). A failing image is recorded in the manifest with
    its error; the others go on. A rerun skips the images whose outputs exist with the same
    model and input (sha256 of both).

    Parameters
    ----------
    images : sequence of str or path-like
        FITS images (paths the workers can read).
    output_dir : str or path-like
        Output folder; the manifest goes to ``output_dir/manifest.ecsv``.
    model : str or path-like
        Registered model name or .onnx file (as for `~radiofm.inference.load_model`).
    catalogs : sequence of (str or None), optional
        One source catalogue (or None: find the sources) per image, classified with the
        model.
    finder : {"auto", "bdsf", "photutils", "none"}
        Source finder for images without a catalogue (see `annotate_image`); ``"none"``
        annotates their tiles only.
    client : `distributed.Client`, optional
        An existing cluster's client (LocalCluster, dask-jobqueue's SLURMCluster, ...).
        Default: a `distributed.LocalCluster` of ``n_workers`` single-thread processes,
        closed at the end.
    n_workers : int, optional
        Workers of the local cluster (default: one per CPU). 0 runs every image in this
        process, one after the other, without Dask.
    tile_size, overlap, min_valid, hdu, plane, format, batch_size
        As for `annotate_image`.
    overwrite : bool
        Replace outputs of images that are not skipped.
    resume : bool
        Skip images already done with this model and input.
    block_tiles : int
        Tiles per task for large images.
    index : bool
        Add every image's tiles to the survey index ``output_dir/index`` (needs pyarrow).
    progress : bool
        A progress bar on a terminal; otherwise (and always in logs) one line per image.

    Returns
    -------
    manifest : `~astropy.table.QTable`
        One row per image: ``image``, ``status`` (``done``, ``skipped`` or ``failed``),
        ``error``, ``n_tiles``, ``n_sources``, ``seconds``, ``model_sha``; also written to
        ``output_dir/manifest.ecsv``. ``meta["N_FAILED"]`` counts the failures.

    Examples
    --------
    On a laptop (a local cluster, one worker per core)::

        from radiofm.survey import annotate_many
        manifest = annotate_many(["a.fits", "b.fits"], "annotations/")

    On SLURM through dask-jobqueue::

        from dask_jobqueue import SLURMCluster
        from distributed import Client
        cluster = SLURMCluster(cores=8, processes=8, memory="32GB", walltime="02:00:00")
        cluster.scale(jobs=4)
        manifest = annotate_many(paths, "annotations/", client=Client(cluster))
    """
    images = [str(p) for p in images]
    if not images:
        raise ValueError("no images to annotate")
    catalogs = [None] * len(images) if catalogs is None else [
        None if c is None else str(c) for c in catalogs]
    if len(catalogs) != len(images):
        raise ValueError(f"{len(catalogs)} catalogues for {len(images)} images; give one "
                         "(or None) per image")
    from ._annotate import FINDERS

    if finder not in FINDERS:
        raise ValueError(f"finder must be one of {FINDERS}, got {finder!r}")
    if block_tiles < 1:
        raise ValueError(f"block_tiles must be at least 1, got {block_tiles}")
    output_paths(output_dir, images[0], format=format)  # checks the format
    _check_inputs(images, catalogs)
    if index:
        from ._index import check_index_support

        check_index_support()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_model(model, threads=1)  # a bad model fails here, before any work
    # A registered model travels by name, so each worker checks its file against the
    # registry's sha256; any other model by its path (checked by its weights_sha256).
    registered = isinstance(model, str | os.PathLike) and locate_model(model)[2] is not None
    model_ref = loaded.name if registered else str(loaded.path)
    index_dir = output_dir / "index" if index else None
    if not overwrite:
        _check_free(images, catalogs, output_dir, format, resume, loaded.sha256, finder)
    options = dict(finder=finder, tile_size=tile_size, overlap=overlap, min_valid=min_valid,
                   hdu=hdu, plane=plane)
    finish_options = dict(format=format, overwrite=overwrite or resume, batch_size=batch_size,
                          index=index_dir)
    record = _Record(len(images), progress)
    started = time.perf_counter()
    try:
        if n_workers == 0 and client is None:
            _run_inline(images, catalogs, model_ref, output_dir, record, resume, options,
                        finish_options, block_tiles)
        else:
            own = None
            if client is None:
                client, own = _start_client(n_workers)
            try:
                _run_dask(client, images, catalogs, model_ref, output_dir, record, resume,
                          options, finish_options, block_tiles)
            finally:
                if own is not None:
                    client.close()
                    own.close()
    finally:
        record.bar.close()
        manifest = record.table()
        failed = int((manifest["status"] == "failed").sum())
        manifest.meta.update(MODEL=loaded.name, MODELSHA=loaded.sha256, N_FAILED=failed,
                             SECONDS=round(time.perf_counter() - started, 3))
        write_table(manifest, output_dir / MANIFEST, overwrite=True)
    counts = {s: int((manifest["status"] == s).sum()) for s in ("done", "skipped", "failed")}
    (log.warning if failed else log.info)(
        "%d images: %d done, %d skipped (done before), %d failed, in %.0f s -> %s",
        len(images), counts["done"], counts["skipped"], failed, manifest.meta["SECONDS"],
        output_dir / MANIFEST)
    return manifest


def _check_free(images, catalogs, output_dir, format, resume, model_sha, finder):
    """Refuse to overwrite outputs that a resume would not skip (checked before any work)."""
    existing = []
    for image, catalog in zip(images, catalogs, strict=True):
        paths = output_paths(output_dir, image, format=format,
                             catalog=catalog is not None or finder != "none")
        marker = read_marker(output_dir, image) if resume else None
        if marker and marker.get("model_sha") == model_sha:
            continue  # the worker compares the input checksum and skips or redoes it
        existing += [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise FileExistsError(f"would overwrite {', '.join(existing[:3])}"
                              f"{' and more' if len(existing) > 3 else ''}; pass --overwrite")


def _blocks(n, block_tiles):
    return [(start, min(start + block_tiles, n)) for start in range(0, n, block_tiles)]


def _run_inline(images, catalogs, model, output_dir, record, resume, options, finish_options,
                block_tiles):
    for image, catalog in zip(images, catalogs, strict=True):
        begun = time.perf_counter()
        try:
            decided = plan(image, model, output_dir=output_dir, catalog=catalog,
                           resume=resume, **options)
            if isinstance(decided, dict):
                record.add(image, "skipped", summary=decided)
                continue
            blocks = [run_rows(decided, model, a, b, batch_size=finish_options["batch_size"],
                               progress=record.bar.disable is False)
                      for a, b in _blocks(len(decided), block_tiles)]
            summary = finish(decided, model, blocks, output_dir, **finish_options)
            record.add(image, "done", summary=summary)
        except Exception as error:  # one bad image must not stop the survey
            log.debug("%s failed", image, exc_info=True)
            record.add(image, "failed", error=f"{type(error).__name__}: {error}",
                       seconds=time.perf_counter() - begun)


def _run_dask(client, images, catalogs, model, output_dir, record, resume, options,
              finish_options, block_tiles):
    from distributed import as_completed

    log.info("annotating %d images on %s", len(images), client)
    jobs, pending = {}, []
    for image, catalog in zip(images, catalogs, strict=True):
        future = client.submit(plan, image, model, output_dir=output_dir, catalog=catalog,
                               resume=resume, pure=False, **options)
        jobs[future.key] = ("plan", image, time.perf_counter())
        pending.append(future)
    futures = as_completed(pending)
    del pending
    for future in futures:
        stage, image, begun = jobs.pop(future.key)
        try:
            result = future.result()
        except Exception as error:  # recorded; the other images go on
            record.add(image, "failed", error=f"{type(error).__name__}: {error}",
                       seconds=time.perf_counter() - begun)
            continue
        finally:
            future.release()
        if stage == "finish":
            record.add(image, "done", summary=result)
        elif isinstance(result, dict):
            record.add(image, "skipped", summary=result)
        else:
            blocks = [client.submit(run_rows, result, model, a, b, pure=False,
                                    batch_size=finish_options["batch_size"])
                      for a, b in _blocks(len(result), block_tiles)]
            done = client.submit(finish, result, model, blocks, output_dir, pure=False,
                                 **finish_options)
            jobs[done.key] = ("finish", image, begun)
            futures.add(done)

