"""Data pipeline benchmark: the in-memory batch loader against torchvision's per-sample DataLoader.

Prints, measured in this one run on this machine:

1. loader throughput (images/s) for MNIST (normalise) and CIFAR-10 (normalise +
   random crop + flip), for :class:`cnn_study.datasets.BatchLoader` and for
   ``torch.utils.data.DataLoader`` over a torchvision dataset with 0 and 2
   workers, and the ratio;
2. a training run of the MNIST CNN and of ResNet-20 with each loader, with
   images/s and the share of the time spent waiting for data;
3. peak resident memory of a process that holds CIFAR-10 in memory and runs one augmented epoch over it,
   next to that of a process that only imports the package.

Usage::

    CNN_STUDY_DATA=/path/to/data python benchmarks/data_pipeline.py [--batches 60]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterable

import torch
import torchvision
from common import run_child
from torch.utils.data import DataLoader
from torchvision import transforms

from cnn_study.datasets import BatchLoader, CropFlip, cifar10, data_root, mnist
from cnn_study.datasets.catalog import CIFAR10_MEAN, CIFAR10_STD, MNIST_MEAN, MNIST_STD
from cnn_study.models import create_model

BATCH = 128


def throughput(loader: Iterable, batches: int) -> float:
    """Images per second to produce ``batches`` batches (after one warm-up batch)."""
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    images = sum(len(x) for x, _ in itertools.islice(iterator, batches))
    return images / (time.perf_counter() - started)


def train_steps(model: torch.nn.Module, loader: Iterable, batches: int, channels_last: bool) -> tuple[float, float]:
    """Train for ``batches`` steps; return (images/s, share of time spent waiting for the loader)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    iterator = iter(loader)
    waiting = computing = 0.0
    images = 0
    for step in range(batches + 1):
        tick = time.perf_counter()
        x, y = next(iterator)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        tock = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done = time.perf_counter()
        if step:  # the first step warms up
            waiting, computing, images = waiting + tock - tick, computing + done - tock, images + len(x)
    return images / (waiting + computing), waiting / (waiting + computing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=60, help="batches timed per measurement")
    args = parser.parse_args()
    root = data_root()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data in {root}\n")

    mnist_train, _ = mnist()
    cifar_train, _ = cifar10()  # torchvision's lossless copy where it is there, else an image-folder export
    mnist_baseline_set = torchvision.datasets.MNIST(
        root,
        train=True,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)]),
    )
    crop_flip = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    # the baseline reads the same copy as cifar10() above: decoded in memory, or decoded per sample from files
    if (root / "cifar-10-batches-py").is_dir():
        cifar_baseline_set = torchvision.datasets.CIFAR10(root, train=True, transform=crop_flip)
    else:
        folder = next(root / name / "train" for name in ("cifar10", "cifar10-jpeg") if (root / name / "train").is_dir())
        cifar_baseline_set = torchvision.datasets.ImageFolder(folder, transform=crop_flip)
    print(f"CIFAR-10 baseline: torchvision {type(cifar_baseline_set).__name__} ({cifar_baseline_set.root})\n")

    loaders = {
        "MNIST": (
            BatchLoader(mnist_train, BATCH, shuffle=True),
            lambda workers: DataLoader(mnist_baseline_set, BATCH, shuffle=True, num_workers=workers),
        ),
        "CIFAR-10 crop+flip": (
            BatchLoader(cifar_train, BATCH, shuffle=True, augment=[CropFlip(4)]),
            lambda workers: DataLoader(cifar_baseline_set, BATCH, shuffle=True, num_workers=workers),
        ),
    }
    print("1. Loader throughput (images/s)")
    print(
        f"{'dataset':<20}{'BatchLoader':>14}{'DataLoader w=0':>16}{'DataLoader w=2':>16}{'ratio w=0':>11}"
        f"{'ratio w=2':>11}"
    )
    for name, (ours, baseline) in loaders.items():
        fast = throughput(ours, args.batches)
        slow0, slow2 = (throughput(baseline(workers), args.batches) for workers in (0, 2))
        print(f"{name:<20}{fast:>14,.0f}{slow0:>16,.0f}{slow2:>16,.0f}{fast / slow0:>10.1f}x{fast / slow2:>10.1f}x")

    print("\n2. Training steps with each loader (batch 128)")
    print(f"{'model / loader':<36}{'images/s':>10}{'waiting for data':>18}")
    runs = {
        "mnist_cnn": (loaders["MNIST"], False),
        "resnet20": (loaders["CIFAR-10 crop+flip"], True),
    }
    for model_name, ((ours, baseline), channels_last) in runs.items():
        for label, loader in (("BatchLoader", ours), ("DataLoader w=0", baseline(0)), ("DataLoader w=2", baseline(2))):
            torch.manual_seed(0)
            speed, wait = train_steps(create_model(model_name), loader, args.batches // 2, channels_last)
            print(f"{model_name + ' / ' + label:<36}{speed:>10,.0f}{wait:>17.1%}")

    print("\n3. Peak resident memory")
    for label, code in (("import torch and cnn_study only", ""), ("+ CIFAR-10 in memory, one crop+flip epoch", EPOCH)):
        print(f"{label:<44}{peak_memory_mb(code):>8,.0f} MB")


EPOCH = """
from cnn_study.datasets import BatchLoader, CropFlip, cifar10
train, test = cifar10()
for batch, labels in BatchLoader(train, 128, shuffle=True, augment=[CropFlip(4)]):
    pass
"""


def peak_memory_mb(code: str) -> float:
    """Peak resident memory (MB) of a fresh Python process that imports the package and runs ``code``: its own
    (`cnn_study.training.peak_memory`; ``getrusage`` would count this process's memory too)."""
    script = (
        f"import torch, cnn_study.datasets\nfrom cnn_study.training import peak_memory\n{code}\n"
        'print(peak_memory(torch.device("cpu"))["peak_rss_mb"])'
    )
    return float(run_child(["-c", script]).split()[-1])


if __name__ == "__main__":
    main()
