"""Training throughput benchmark: images/s and the share of the machine's peak FLOP/s a model reaches.

For each model it measures, in this one run:

* FLOPs per training image (forward + backward) with ``torch.utils.flop_counter``;
* training images/s in the NCHW and channels-last memory formats;
* with ``--compile``, training images/s of the faster layout under `torch.compile`
  (`cnn_study.training.compile_for_training`, compile time excluded);
* achieved GFLOP/s as a fraction of this machine's matmul GFLOP/s
  (2048 x 2048 ``torch.mm``), measured at the start of the run.

Training steps run in the precision the trainer uses by default
(`cnn_study.training.training_precision`: bfloat16 autocast on CUDA and on CPUs
with native bfloat16, float32 elsewhere) or the one ``--precision`` names, and the
matmul peak is measured in that precision too. Run it once per precision to compare.

Usage::

    python benchmarks/train_throughput.py [--steps 10] [--device cpu] [--compile] [--precision float32]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import matmul_gflops, synchronize
from torch.utils.flop_counter import FlopCounterMode

from cnn_study.models import create_model
from cnn_study.training import (
    PRECISIONS,
    autocast,
    compile_for_training,
    device_name,
    select_device,
    training_precision,
)

MODELS = {  # name: (create_model kwargs, batch size), as the improved recipes train them
    "mnist_cnn": ({}, 128),
    "fashion_cnn": ({}, 128),
    "lenet5": ({}, 128),
    "resnet20": ({}, 128),
    "alexnet_cifar": ({"batch_norm": True}, 128),
    "zfnet_cifar": ({"batch_norm": True}, 128),
    "fast_cifar": ({}, 512),
    "vgg16": ({"num_classes": 2}, 16),  # at 150 x 150, as in the transfer experiments
}


def training_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, precision: str
) -> None:
    with autocast(x.device, precision):
        logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def flops_per_image(name: str, kwargs: dict, shape: tuple[int, ...]) -> float:
    model = create_model(name, **kwargs)
    x, y = torch.randn(2, *shape), torch.zeros(2, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
    return counter.get_total_flops() / 2


def images_per_second(
    name: str,
    kwargs: dict,
    batch: int,
    shape: tuple[int, ...],
    device: torch.device,
    channels_last: bool,
    steps: int,
    precision: str,
    compiled: bool = False,
) -> float:
    torch.manual_seed(0)
    model = create_model(name, **kwargs).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step_model = compile_for_training(model, device) if compiled else model
    x = torch.randn(batch, *shape, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, model.num_classes, (batch,), device=device)
    for _ in range(3 if compiled else 1):  # warm-up (compiling, recording CUDA graphs)
        training_step(step_model, optimizer, x, y, precision)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        training_step(step_model, optimizer, x, y, precision)
    synchronize(device)
    return batch * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per measurement")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also measure the faster layout under torch.compile")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="default: all")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: the trainer's on this device")
    args = parser.parse_args()
    device = select_device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as `fit` trains there
    precision = args.precision or training_precision(device)
    peak = matmul_gflops(device, precision)
    print(f"{device_name(device)}, torch {torch.__version__}: 2048x2048 {precision} matmul {peak:,.0f} GFLOP/s\n")
    compiled_header = f"{'compiled':>10}" if args.compile else ""
    print(
        f"{'model':<15}{'input':>12}{'GFLOP/img':>11}{'img/s NCHW':>12}{'img/s NHWC':>12}{compiled_header}"
        f"{'GFLOP/s':>9}{'of peak':>9}"
    )
    for name in args.models:
        kwargs, batch = MODELS[name]
        shape = (3, 150, 150) if name == "vgg16" else create_model(name, **kwargs).input_size
        flops = flops_per_image(name, kwargs, shape)
        nchw, nhwc = (
            images_per_second(name, kwargs, batch, shape, device, layout, args.steps, precision)
            for layout in (False, True)
        )
        best, compiled_column = max(nchw, nhwc), ""
        if args.compile:
            compiled = images_per_second(
                name, kwargs, batch, shape, device, nhwc > nchw, args.steps, precision, compiled=True
            )
            best, compiled_column = max(best, compiled), f"{compiled:>10,.0f}"
        achieved = best * flops / 1e9
        print(
            f"{name:<15}{'x'.join(map(str, shape)):>12}{flops / 1e9:>11.3f}{nchw:>12,.0f}{nhwc:>12,.0f}"
            f"{compiled_column}{achieved:>9,.0f}{achieved / peak:>9.0%}"
        )


if __name__ == "__main__":
    main()
