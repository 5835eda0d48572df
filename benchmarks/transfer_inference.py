"""Frozen-base inference benchmark: feature extraction images/s and peak memory, old path against new.

The transfer experiments (6, 8, 9) spend their CPU time running a frozen ImageNet base over every
image: once per cached view for the head, and again for every evaluation. This measures, in one run
and for each base at the size the experiments feed it (VGG16 at 150 px, EfficientNet-Lite0 at 224 px
from photos stored at 150 px, as `cnn_study.datasets.dogs_vs_cats` keeps them):

* ``old``: what `run` did before: batches of 500 images, NCHW, float32;
* ``budget``: `BatchLoader.for_model` (the batch size of `inference_batch_size`, channels-last);
* ``budget+fold``: the same through ``feature_extractor(folded=True)`` (batch norms merged into the convolutions);
* ``budget+fold+bf16``: the same under bfloat16 autocast, what `extract_features` does by default on
  a CPU with native bfloat16 (`cnn_study.training.extraction_precision`) and on CUDA.

The first three rows run in float32, as the old path did.

Each row runs in a fresh process, so its peak RSS (`cnn_study.training.peak_memory`) is that path's own. Throughput is
also given as achieved GFLOP/s over this machine's float32 matmul GFLOP/s (2048 x 2048 ``torch.mm``,
measured at the start of the run). VGG16's base has random weights (no download): its shapes, FLOPs
and memory are those of the ImageNet one.

Usage::

    python benchmarks/transfer_inference.py [--images 500] [--bases efficientnet_lite0 vgg16]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import matmul_gflops, run_child
from torch.utils.flop_counter import FlopCounterMode

from cnn_study.datasets import BatchLoader, ImageData
from cnn_study.models import create_model
from cnn_study.training import cpu_has_native_bfloat16, extract_features, peak_memory

PATHS = ("old", "budget", "budget+fold", "budget+fold+bf16")
STORED_SIZE = 150  # Dogs vs Cats photos as the dataset keeps them in memory


def transfer_model(base: str) -> torch.nn.Module:
    kwargs = {} if base == "vgg16" else {"base_weights": "imagenet"}  # VGG16's download is not needed to time it
    return create_model(f"{base}_transfer", pooling="avg", **kwargs).eval()


def measure(base: str, path: str, images: int) -> dict[str, float]:
    """Extract features of ``images`` random photos by ``path``; images/s and peak RSS of this process."""
    torch.manual_seed(0)
    model = transfer_model(base)
    pixels = torch.randint(0, 256, (images, 3, STORED_SIZE, STORED_SIZE), dtype=torch.uint8)
    data = ImageData(pixels, torch.arange(images) % 2, ("cat", "dog"), (0.5,) * 3, (0.25,) * 3)
    if path == "old":
        spec = model.input_spec()
        loader = BatchLoader(data, 500, image_size=spec.size[-1], mean=spec.mean, std=spec.std)
        extractor = model.feature_extractor()
    else:
        loader = BatchLoader.for_model(data, model)
        extractor = model.feature_extractor(folded="fold" in path)
    precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in path)
    started = time.perf_counter()
    extract_features(extractor, loader, "cpu", quiet=True, precision=precision)
    seconds = time.perf_counter() - started
    return {"images_per_s": images / seconds, "batch_size": loader.batch_size, **peak_memory(torch.device("cpu"))}


def flops_per_image(base: str) -> float:
    model = transfer_model(base)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.feature_extractor()(torch.zeros(1, *model.input_size))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500, help="images per measurement (default 500)")
    parser.add_argument("--bases", nargs="+", default=["efficientnet_lite0", "vgg16"])
    parser.add_argument("--child", nargs=2, metavar=("BASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.images)))
        return

    peak = matmul_gflops(torch.device("cpu"))
    print(f"float32 matmul: {peak:.0f} GFLOP/s on {torch.get_num_threads()} threads; {args.images} images per row")
    if not cpu_has_native_bfloat16():  # extract_features stays in float32 here: the bf16 row is emulated
        print("this CPU has no native bfloat16: extract_features runs in float32 here, the bf16 row only emulates it")
    print()
    print(f"{'base':<20} {'path':<18} {'batch':>5} {'images/s':>9} {'of matmul':>9} {'peak RSS':>9} {'vs old':>7}")
    for base in args.bases:
        flops = flops_per_image(base)
        old = None
        for path in PATHS:
            row = json.loads(run_child([__file__, "--images", str(args.images), "--child", base, path]))
            old = old or row
            share = row["images_per_s"] * flops / 1e9 / peak
            print(
                f"{base:<20} {path:<18} {row['batch_size']:>5} {row['images_per_s']:>9.1f} {share:>9.1%} "
                f"{row['peak_rss_mb'] / 1024:>7.2f} GB {row['images_per_s'] / old['images_per_s']:>6.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
