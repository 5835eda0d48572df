"""Small-scale studies behind tutorials 4 and 7: one change at a time, on a subset a CPU trains in minutes.

Each study trains a few variants of one recipe with `cnn_study.experiments.run` on the same seeded
subset of CIFAR-10 and writes ordinary results folders, ``<out>/<experiment>/<variant>/``; the
published ones are in ``cnn_study/results/small_scale`` (the package reads them with
``results.load_results(results.PUBLISHED_RESULTS / "small_scale")``). No variant has a validation split:
the held-out curves are measured on the test subset, and every number is a small-scale one (its
training- and test-set sizes are in ``metrics.json``), evidence about the effect of one change, not a
CIFAR-10 result.

* ``alexnet`` (tutorial 4): on 500 training images, the study's seed recipe (Adam 1e-3, no augmentation,
  no batch normalisation), which learns them slowly; the same with batch normalisation, which memorises
  them within 30 epochs; three variants of that one, each with one more change the improved recipe makes;
  and the improved recipe itself.
* ``resnet`` (tutorial 7): the degradation problem of He et al. (2016, Fig. 6): plain and residual
  networks of 20 and 56 layers, identical but for the ``+ x`` of every block, trained by the seed
  recipe on 1,000 images, in batches of 32 at a learning rate of 0.025 (the recipe's 0.1 for 128,
  scaled linearly) so that 20 epochs make 640 steps instead of 160.

Usage::

    CNN_STUDY_DATA=... python scripts/small_scale_studies.py alexnet --out cnn_study/results/small_scale
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from cnn_study import datasets, experiments, recipes
from cnn_study.datasets import CropFlip, Cutout, TrainTest
from cnn_study.recipes import Recipe


def alexnet_variants() -> dict[str, Recipe]:
    """The seed recipe without a validation split, with batch normalisation, then one more change per variant."""
    seed = replace(recipes.get_recipe("alexnet", "seed"), validation_fraction=None)
    batch_norm = replace(seed, model_kwargs={"batch_norm": True})
    return {
        "seed": seed,
        "batch-norm": batch_norm,
        "batch-norm+augmentation": replace(batch_norm, augment=(CropFlip(padding=4, flip=True), Cutout(size=8))),
        "batch-norm+label-smoothing": batch_norm.with_stage(label_smoothing=0.1),
        "batch-norm+weight-decay": batch_norm.with_stage(optimizer="adamw", weight_decay=0.05),
        "improved": recipes.get_recipe("alexnet", "improved"),
    }


def resnet_variants() -> dict[str, Recipe]:
    """The seed recipe, in batches of 32, on plain and residual networks of 20 and 56 layers."""
    seed = replace(recipes.get_recipe("resnet", "seed"), batch_size=32).with_stage(lr=0.025)
    return {
        f"{kind}{depth}": replace(seed, model=f"resnet{depth}", model_kwargs={"shortcuts": kind == "resnet"})
        for depth in (20, 56)
        for kind in ("plain", "resnet")
    }


STUDIES = {
    # study: (variants, training images per class, test images per class, epochs)
    "alexnet": (alexnet_variants, 50, 50, 30),
    "resnet": (resnet_variants, 100, 50, 20),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--out", type=Path, required=True, help="results parent folder")
    parser.add_argument("--only", nargs="*", help="train only these variants")
    arguments = parser.parse_args()
    variants, train_per_class, test_per_class, epochs = STUDIES[arguments.study]
    train, test = datasets.cifar10()
    subset = TrainTest(train.sample(train_per_class, seed=0), test.sample(test_per_class, seed=0))
    for name, recipe in variants().items():
        if arguments.only and name not in arguments.only:
            continue
        result = experiments.run(replace(recipe, recipe=name), out=arguments.out, data=subset, epochs=epochs)
        print(f"{name}: {result.summary()}", flush=True)


if __name__ == "__main__":
    main()
