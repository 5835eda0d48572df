"""The ablation behind tutorial 10: experiment 10's recipe with one technique removed (or added) at a time.

Every variant trains the fast network on all 50,000 CIFAR-10 training images for the same short budget
(``--epochs``, 3 by default: about two minutes each on 2 CPU cores) and is tested on all 10,000 test
images, for each of ``--seeds``. Removing a technique barely changes the time an epoch takes, so a
fixed number of epochs is a fixed time budget (each run's ``epoch_seconds`` is in its ``metrics.json``).

Its base is experiment 10's recipe on the network of its first version, the model's defaults: widths (32, 128,
128), no identity initialisation (`NARROW`). The record below was made on it, and at that width a 3-epoch run
takes about two minutes; the recipe has since moved to widths (48, 192, 192) with identity initialisation and
to Muon for the convolution filters, for 10 epochs instead of 18, which reached more in about as long
(tutorial 10). The base here trains every parameter by SGD, as the recipe first did.

The variants, each the base but for one change:

* ``full``: the base as it is;
* ``no-whitening``: an ordinary trainable first layer instead of the frozen whitening transform;
* ``torch-batch-norm``: torch's batch-norm defaults (learned scale, momentum 0.1, eps 1e-5);
* ``no-label-smoothing``: plain cross-entropy;
* ``no-lookahead``: plain SGD, the model ends on its last step's weights;
* ``random-flip``: each image mirrored at random in every epoch instead of in alternation;
* ``no-test-mirror``: one view per test image instead of the average over the image and its mirror;
* ``identity-init``: one technique added instead: airbench's partial identity initialisation of the 3x3
  convolutions (``identity_init=True``), which the base leaves out (experiment 10's recipe now has it).

``--widths`` trains every variant at other widths (experiment 10's are ``48 192 192``, airbench94's
``64 256 256``) and ``--device`` picks the device, so that a lent GPU can try many budgets' accuracy quickly
(the CPU's time is then measured by ``benchmarks/fast_cifar.py``).

Results folders go to ``<out>/fast_cifar/<variant>[-seed<N>]/`` (read them with ``results.load_results``), and
one line per run is printed. The published record, ``cnn_study/results/fast_cifar_ablation/ablation_output.txt``,
is that printed output for seeds 0, 1 and 2, from three sessions: seeds 0 and 1 (but seed 1's
``no-test-mirror``), whose folders were lost, then ``--seeds 1 --only no-test-mirror`` and ``--seeds 2``, then
``--only full identity-init --seeds 0`` (seed 0's ``full`` once more), ``--only identity-init --seeds 1 2`` and
``--only identity-init --epochs 18 --seeds 0`` (the length of the first recipe); tutorial 10 reads it.

Usage::

    CNN_STUDY_DATA=... python scripts/fast_cifar_ablation.py --out runs/ablation \
        >> cnn_study/results/fast_cifar_ablation/ablation_output.txt
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from cnn_study import experiments, recipes
from cnn_study.datasets import CropFlip
from cnn_study.recipes import Recipe

#: The network the ablation was recorded on: experiment 10's first recipe trained the model's defaults.
NARROW = {"widths": (32, 128, 128), "identity_init": False}


def variants() -> dict[str, Recipe]:
    """The ablation's base (experiment 10's recipe on the `NARROW` network, all of it trained by SGD), the same
    with each technique removed alone, and with identity init added."""
    full = replace(recipes.get_recipe("fast_cifar"), model_kwargs=NARROW).with_stage(
        optimizer="sgd", muon_lr=None, muon_momentum=None
    )
    return {
        "full": full,
        "no-whitening": replace(full, model_kwargs={**NARROW, "whitening": False}),
        "torch-batch-norm": replace(full, model_kwargs={**NARROW, "fast_batch_norm": False}),
        "no-label-smoothing": full.with_stage(label_smoothing=0.0),
        "no-lookahead": full.with_stage(lookahead=False),
        "random-flip": replace(full, alternating_flip=False, augment=(CropFlip(2, flip=True),)),
        "no-test-mirror": replace(full, test_mirror=False),
        "identity-init": replace(full, model_kwargs={**NARROW, "identity_init": True}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results parent folder")
    parser.add_argument("--epochs", type=int, default=3, help="the budget of every variant (default 3)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", help="train only these variants")
    parser.add_argument("--widths", type=int, nargs=3, help="channels of the three groups (default: the model's)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, ...")
    arguments = parser.parse_args()
    for seed in arguments.seeds:
        for name, recipe in variants().items():
            if arguments.only and name not in arguments.only:
                continue
            if arguments.widths:
                recipe = replace(recipe, model_kwargs={**recipe.model_kwargs, "widths": tuple(arguments.widths)})
            result = experiments.run(
                replace(recipe, recipe=name),
                out=arguments.out,
                epochs=arguments.epochs,
                seed=seed,
                device=arguments.device,
                quiet=True,
            )
            print(f"{name} seed {seed}: {result.summary()}", flush=True)


if __name__ == "__main__":
    main()
