"""Scaling benchmark: training images/s of `cnn_study.training.fit` on one process against N ranks.

For each model it measures, in this one run, one epoch of ``fit`` over the same random images, with the
same global batch and optimizer:

* one process, using every thread torch gives it (what ``cnn-study run`` does);
* ``--ranks`` processes on this machine, joined as ``torchrun`` joins them (gloo on a CPU, NCCL on GPUs),
  each with its share of the threads (on a CPU) or its own GPU;

and prints both rates and their ratio. On a CPU the ranks share the same cores, so the ratio measures
the cost of the distributed machinery (gradient all-reduce, per-rank batch overhead), not more
hardware; on a machine with several GPUs it measures scaling.

Usage::

    python benchmarks/distributed_scaling.py [--ranks 2] [--images 2560] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.multiprocessing as mp

from cnn_study import distributed
from cnn_study.models import create_model
from cnn_study.training import TensorBatches, device_name, fit, select_device

MODELS = {"lenet5": 128, "resnet20": 128}  # name: global batch size


def _train(name: str, batch: int, images: int, device: torch.device) -> float:
    """Images/s of one epoch of ``fit`` (after one warm-up epoch), on this process's share of the batches."""
    torch.manual_seed(0)
    model = create_model(name)
    inputs = torch.randn(images, *model.input_size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, model.num_classes, (images,))
    loader = TensorBatches(inputs, labels, batch, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = fit(model, loader, epochs=2, optimizer=optimizer, device=device, quiet=True)
    return images / history.epochs[-1].seconds


def _rank(rank: int, ranks: int, port: int, device_type: str, threads: int, jobs, results) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(ranks), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(threads)
    with distributed.process_group(torch.device(device_type)) as device:
        for name, batch, images in jobs:
            rate = _train(name, batch, images, device)
            if distributed.is_main():
                results.put((name, rate))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, default=2, help="processes of the distributed run (default 2)")
    parser.add_argument("--images", type=int, default=2560, help="images per timed epoch (default 2560)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="default: all")
    args = parser.parse_args()
    device = select_device(args.device)
    if device.type == "cuda" and args.ranks > torch.cuda.device_count():  # before the one-process part, not after
        raise SystemExit(f"--ranks {args.ranks} needs one GPU each; this machine has {torch.cuda.device_count()}.")
    threads = torch.get_num_threads()
    jobs = [(name, MODELS[name], args.images) for name in args.models]
    single = {name: _train(name, batch, images, device) for name, batch, images in jobs}

    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    per_rank = max(1, threads // args.ranks) if device.type == "cpu" else threads
    mp.start_processes(
        _rank,
        args=(args.ranks, _free_port(), device.type, per_rank, jobs, results),
        nprocs=args.ranks,
        start_method="spawn",
    )
    together = dict(results.get() for _ in jobs)

    print(f"{device_name(device)}, torch {torch.__version__}; one process: {threads} threads")
    print(f"{args.ranks} ranks: {per_rank} thread(s) each" if device.type == "cpu" else f"{args.ranks} ranks")
    print(f"\n{'model':<10}{'batch':>7}{'1 process img/s':>17}{f'{args.ranks} ranks img/s':>17}{'ratio':>8}")
    for name, batch, _ in jobs:
        print(
            f"{name:<10}{batch:>7}{single[name]:>17,.0f}{together[name]:>17,.0f}{together[name] / single[name]:>8.2f}"
        )


if __name__ == "__main__":
    main()
