"""Inference throughput and memory: onnxruntime beside torch eager, and a GEMM reference.

For each model (random weights and heads: the numbers are about speed, not quality):

- ``default``: the default model's architecture (ResNet-18, 64 px input, 64 px tiles, as in
  ``configs/default-resnet18.toml``; no trained default model is bundled yet);
- ``vit_small``: ViT-S/16 at 224 px; ``resnet50``: ResNet-50 at 224 px.

it exports the ONNX model (`radiofm.export.export_model`), then times on a simulated
SIZE x SIZE image (tiles of the input size, so nothing is resampled):

- ``ort``: `radiofm.inference.embed_image` end to end (tiling, reading, normalising,
  onnxruntime), at each batch size, and with the int8 model;
- ``torch``: the same tiles (`radiofm.models.ModelSpec.stream_tiles`) through the same weights and
  heads in torch eager (``torch.no_grad``), with the same thread count.

GFLOP/s are the model's FLOPs per tile (torch's FlopCounterMode: 2 per multiply-add)
times tiles/s, beside a float32 GEMM (torch.mm, 2048^2) measured in the same run with the
same threads. Peak RSS is measured in fresh subprocesses running `embed_image` on on-disk
images (SIZE^2 and BIG^2) with the default architecture.

Usage::

    python benchmarks/bench_inference.py [--size 4096] [--big 16384] [--threads N]
        [--models default,vit_small,resnet50] [--max-tiles 512] [--rss-tile 64]
        [--workdir DIR]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = {  # name: (timm arch, input size = tile size in pixels, options)
    "default": ("resnet18", 64, {}),
    "vit_small": ("vit_small_patch16_224", 224, {"patch_size": 16}),
    "resnet50": ("resnet50", 224, {}),
}


def write_image(path, size, strip=512):
    """Noise with point sources, written strip by strip (bounded memory)."""
    from astropy.io import fits

    from radiofm.tests.helpers import sky_header

    header = sky_header(size, size)
    header.insert("NAXIS", ("SIMPLE", True), after=False)
    header.insert("NAXIS", ("BITPIX", -32), after=False)
    stream = fits.StreamingHDU(path, header)
    rng = np.random.default_rng(0)
    for y0 in range(0, size, strip):
        block = rng.normal(0.0, 1e-5, (min(strip, size - y0), size)).astype(np.float32)
        ys, xs = rng.integers(0, block.shape[0], 200), rng.integers(0, size, 200)
        block[ys, xs] += rng.pareto(1.5, 200).astype(np.float32) * 1e-4
        stream.write(block)
    stream.close()


def gemm_gflops(threads, n=2048, repeats=5):
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def flops_per_tile(module, size):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(torch.zeros(1, 1, size, size))
    return counter.get_total_flops()


def export(name, folder):
    import torch

    from radiofm.export import export_model
    from radiofm.tests.model_helpers import tiny_heads, tiny_spec
    from radiofm.train import create_backbone

    arch, size, options = MODELS[name]
    torch.manual_seed(0)
    backbone = create_backbone(arch, **options).eval()
    heads = tiny_heads(backbone.num_features)
    heads["count"]["tile_arcsec"] = size * 1.1  # 1.1 arcsec pixels: tiles of `size` pixels
    heads["morphology"]["stamp_arcsec"] = size * 1.1
    path = folder / f"{name}.onnx"
    tiles = np.random.default_rng(0).uniform(0, 1, (4, 1, size, size)).astype(np.float32)
    spec = tiny_spec(input_pixels=size, tile_arcsec=size * 1.1, stamp_arcsec=size * 1.1)
    report = export_model(backbone, heads, path, spec=spec, name=name, arch=arch, tiles=tiles,
                          quantize=True, overwrite=True)
    return backbone, heads, report


def crop_for(image_path, size, tile, max_tiles, folder):
    """A square crop of the image with at most ``max_tiles`` tiles (written once)."""
    per_side = max(1, min(size // tile, int(np.sqrt(max_tiles))))
    side = per_side * tile
    if side == size:
        return image_path, per_side**2
    path = folder / f"crop{side}.fits"
    if not path.exists():
        from astropy.io import fits

        with fits.open(image_path, memmap=True) as hdul:
            header = hdul[0].header.copy()
            header["NAXIS1"] = header["NAXIS2"] = side
            fits.PrimaryHDU(np.array(hdul[0].data[:side, :side]), header).writeto(path)
    return path, per_side**2


def bench_model(name, image_path, size, args, folder, gemm):
    import torch

    from radiofm.export import ExportGraph
    from radiofm.export._export import _check_heads
    from radiofm.inference import clear_cache, embed_image, load_model
    from radiofm.tiling import tile_image

    backbone, heads, report = export(name, folder)
    tile = MODELS[name][1]
    path, n_tiles = crop_for(image_path, size, tile, args.max_tiles, folder)
    graph = ExportGraph(backbone, _check_heads(heads, backbone.num_features)).eval()
    flops = flops_per_tile(graph, tile)
    rows = []

    def record(engine, batch, seconds, note=""):
        rate = n_tiles / seconds
        rows.append((name, engine, batch, n_tiles, rate, flops * rate / 1e9,
                     100 * flops * rate / 1e9 / gemm, note))

    for batch in args.batch_sizes:
        clear_cache()
        load_model(report["path"], threads=args.threads)  # session creation not timed
        embed_image(path, report["path"], batch_size=batch, threads=args.threads,
                    progress=False)  # warm-up (page cache, allocator)
        seconds = _timed(lambda b=batch: embed_image(path, report["path"], batch_size=b,
                                                     threads=args.threads, progress=False))
        record("ort fp32", batch, seconds, "embed_image end to end")
    batch = args.batch_sizes[-1]
    clear_cache()
    load_model(report["quantized_path"], threads=args.threads)
    seconds = _timed(lambda: embed_image(path, report["quantized_path"], batch_size=batch,
                                         threads=args.threads, progress=False))
    diff = report["quantized_max_abs_diff"]
    record("ort int8", batch, seconds,
           f"max|d emb| {diff['embedding']:.2g}, class agreement "
           f"{diff['morph_class_agreement']:.2f} (parity tiles)")

    torch.set_num_threads(args.threads)
    tiles = tile_image(path, tile)
    spec = load_model(report["path"], threads=1).spec
    stretch = spec.fit_stretch(tiles.image)

    def torch_run():
        with torch.no_grad():
            for _, inputs in spec.stream_tiles(tiles, stretch, batch_size=batch):
                graph(torch.from_numpy(inputs))

    with torch.no_grad():
        graph(torch.zeros(2, 1, tile, tile))
    clear_cache()  # no idle onnxruntime threads beside torch's
    seconds = _timed(torch_run)
    record("torch eager", batch, seconds, "same tiles and preprocessing")
    return rows, report


def peak_rss_mb():
    """VmHWM of this process: unlike ru_maxrss it is not inherited across exec on Linux."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(image, model, tile):
    from radiofm.inference import embed_image

    start = time.perf_counter()
    table = embed_image(image, model, tile_size=tile, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"tiles": len(table), "seconds": seconds,
                      "peak_rss_mb": peak_rss_mb(),
                      "table_mb": table["embedding"].nbytes / 2**20}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--big", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--models", default="default,vit_small,resnet50")
    parser.add_argument("--batch-sizes", default="16,64")
    parser.add_argument("--max-tiles", type=int, default=1 << 30,
                        help="time a crop of the image with at most this many tiles")
    parser.add_argument("--rss-tile", type=int, default=64,
                        help="tile size (pixels, resampled to 64) of the peak-RSS runs")
    parser.add_argument("--workdir", help="folder for the images and models (default: temp)")
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], int(args.rss_child[2]))
        return
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="radiofm-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / f"noise{args.size}.fits"
    if not image.exists():
        write_image(image, args.size)
    gemm = gemm_gflops(args.threads)
    print(f"threads {args.threads}; float32 GEMM (torch.mm 2048^2): {gemm:.1f} GFLOP/s")
    print(f"{'model':10} {'engine':12} {'batch':>5} {'tiles':>6} {'tiles/s':>9} "
          f"{'GFLOP/s':>8} {'%GEMM':>6}  note")
    reports = {}
    for name in args.models.split(","):
        rows, reports[name] = bench_model(name, image, args.size, args, folder, gemm)
        for row in rows:
            print(f"{row[0]:10} {row[1]:12} {row[2]:5d} {row[3]:6d} {row[4]:9.1f} "
                  f"{row[5]:8.1f} {row[6]:6.1f}  {row[7]}", flush=True)
        eager = rows[-1][4]
        best = max(r[4] for r in rows if r[1] == "ort fp32")
        print(f"{name:10} ort fp32 / torch eager: {best / eager:.2f}x", flush=True)
    if "default" not in reports:
        reports["default"] = export("default", folder)[2]
    big = folder / f"noise{args.big}.fits"
    if not big.exists():
        write_image(big, args.big)
    print(f"peak RSS of embed_image (default architecture, {args.rss_tile} px tiles "
          "resampled to 64, fresh process):")
    for path in (image, big):
        result = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(path),
             str(reports["default"]["path"]), str(args.rss_tile)],
            capture_output=True, text=True, check=True)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        side = int(path.stem.removeprefix("noise"))
        print(f"  {side}^2 on disk ({side * side * 4 / 2**30:.2f} GiB): {figures['tiles']} "
              f"tiles in {figures['seconds']:.1f} s ({figures['tiles'] / figures['seconds']:.0f}"
              f" tiles/s), peak RSS {figures['peak_rss_mb']:.0f} MB (of which the embedding "
              f"column {figures['table_mb']:.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
