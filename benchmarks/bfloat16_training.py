"""bfloat16 against float32 training: accuracy over seeds and training images/s, for every model trained from scratch.

For each experiment it runs the ``improved`` recipe through `cnn_study.experiments.run` on the same
seeded subset of the training set, for a shortened budget, once per seed and precision
(``run(..., precision=...)``, eagerly: no compilation in the timed epochs), and measures the test accuracy
on a fixed test subset (in float32 on a CPU, in bfloat16 autocast on CUDA, as `run` reports it) and the
images/s of the training epochs (each epoch's time includes its pass over the test subset). It prints,
per model, the mean and standard deviation over the seeds in each precision, the difference of the means,
whether it lies within one standard deviation (the larger of the two), and the speed ratio. Speeds come
from the same runs, so run it on an otherwise idle machine.

Usage::

    python benchmarks/bfloat16_training.py [--seeds 0 1 2] [--json results.json] [--experiments lenet5 resnet]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import replace

import torch

from cnn_study.datasets import DATASETS, TrainTest
from cnn_study.experiments import run
from cnn_study.recipes import get_recipe
from cnn_study.training import device_name, select_device

#: experiment: (training images per class, epochs) of the shortened budget; 2,000 test images each.
BUDGETS = {
    "mnist_cnn": (1000, 3),
    "fashion_cnn": (1000, 3),
    "lenet5": (1000, 3),
    "resnet": (1000, 4),
    "alexnet": (500, 4),
    "zfnet": (500, 4),
    "fast_cifar": (2000, 4),  # its quick budget: at 1,000 per class (80 steps) seeds spread by 7 points
}
TEST_PER_CLASS = 200


def measure(experiment: str, seeds: list[int], device: torch.device) -> dict[str, list[dict[str, float]]]:
    per_class, epochs = BUDGETS[experiment]
    recipe = get_recipe(experiment)
    train, test = DATASETS[recipe.dataset]()
    data = TrainTest(train.sample(per_class, seed=0), test.sample(TEST_PER_CLASS, seed=0))
    runs: dict[str, list[dict[str, float]]] = {"float32": [], "bfloat16": []}
    with tempfile.TemporaryDirectory() as out:
        for seed in seeds:
            for precision in runs:
                result = run(
                    replace(recipe, seed=seed),
                    out=out,
                    data=data,
                    epochs=epochs,
                    device=str(device),
                    precision=precision,
                    compile_model=False,
                    quiet=True,
                    overwrite=True,
                )
                metrics = result.metrics
                images_per_second = metrics["train_size"] * metrics["epochs"] / metrics["epoch_seconds"]
                runs[precision].append({"accuracy": metrics["test_accuracy"], "images_per_second": images_per_second})
                print(f"  {experiment} seed {seed} {precision}: {metrics['test_accuracy']:.2%}", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiments", nargs="+", choices=list(BUDGETS), default=list(BUDGETS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write every run's numbers to this file")
    args = parser.parse_args()
    device = select_device(args.device)
    print(f"{device_name(device)}, torch {torch.__version__}, seeds {args.seeds}")
    results = {experiment: measure(experiment, args.seeds, device) for experiment in args.experiments}

    print(
        f"\n{'experiment':<12}{'budget':>14}{'float32':>17}{'bfloat16':>17}{'difference':>12}{'holds':>7}"
        f"{'fp32 img/s':>12}{'bf16 img/s':>12}{'ratio':>7}"
    )
    for experiment, runs in results.items():
        per_class, epochs = BUDGETS[experiment]
        accuracy = {p: [r["accuracy"] * 100 for r in runs[p]] for p in runs}
        speed = {p: statistics.mean(r["images_per_second"] for r in runs[p]) for p in runs}
        mean = {p: statistics.mean(accuracy[p]) for p in runs}
        spread = {p: statistics.stdev(accuracy[p]) if len(accuracy[p]) > 1 else 0.0 for p in runs}
        difference = mean["bfloat16"] - mean["float32"]
        holds = abs(difference) <= max(spread.values())
        cells = [f"{mean[p]:.2f} ± {spread[p]:.2f}" for p in ("float32", "bfloat16")]
        print(
            f"{experiment:<12}{f'{per_class}/class x{epochs}':>14}{cells[0]:>17}{cells[1]:>17}{difference:>+12.2f}"
            f"{'yes' if holds else 'no':>7}{speed['float32']:>12,.0f}{speed['bfloat16']:>12,.0f}"
            f"{speed['bfloat16'] / speed['float32']:>7.2f}"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"device": device_name(device), "torch": torch.__version__, "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
