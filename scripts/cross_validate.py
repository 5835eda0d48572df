"""Choose a fine-tuning recipe's second stage by cross-validation on the training images, never on the test set.

Experiment 9 fine-tunes on 2,000 training images and is judged on 1,000 test images, where one image is
0.1 points. A 20% validation split (400 images) cannot tell such settings apart; cross-validation holds
out every training image once (`cnn_study.datasets.ImageData.folds`), so each candidate is judged on all
2,000. Every fold runs the recipe exactly as ``cnn-study run`` does (`cnn_study.experiments.run` with
``data=``), once per combination of the fine-tuning settings given, and scores it on the held-out part
with one view and averaged with the mirror image (``Recipe.test_mirror``). Each finished run is appended
to ``--results`` at once, so an interrupted call keeps what it measured.

The rule that picks the winner is fixed before anything is measured: the highest mean held-out accuracy
over all folds; ties go to the candidate closest to the recipe's own settings, then to the order of the
grid, and to the one-view test before the mirror-averaged one. ``--final-out`` then runs the winner once
on the whole training set and reports it on the test set, with nothing else chosen after seeing a test number.

Usage::

    CNN_STUDY_DATA=../shared/data python scripts/cross_validate.py vgg16_fine_tuning \\
        --backbone efficientnet_lite0 --trainable last_block all --lr 3e-5 1e-4 --epochs 5 10 \\
        --results cv.json --final-out runs
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from cnn_study.datasets import DATASETS, TrainTest
from cnn_study.experiments import run
from cnn_study.files import atomic_json_dump
from cnn_study.recipes import BACKBONES, STUDY_BACKBONE, Recipe, get_recipe
from cnn_study.results import summarise_cross_validation
from cnn_study.training import evaluate

#: The stage whose settings are cross-validated: the second, fine-tuning, after the head's.
FINE_TUNING = 1


def candidates(recipe: Recipe, args: argparse.Namespace) -> list[Recipe]:
    """Every combination of the fine-tuning settings given, the closest to the recipe's own settings first."""
    own = recipe.stages[FINE_TUNING]
    grid = [
        replace(recipe.with_stage(FINE_TUNING, trainable=trainable, lr=lr, epochs=epochs), test_mirror=False)
        for trainable, lr, epochs in itertools.product(
            args.trainable or [own.trainable], args.lr or [own.lr], args.epochs or [own.epochs]
        )
    ]

    def settings_changed(candidate: Recipe) -> int:
        stage = candidate.stages[FINE_TUNING]
        return (stage.trainable != own.trainable) + (stage.lr != own.lr) + (stage.epochs != own.epochs)

    return sorted(grid, key=settings_changed)  # stable: in grid order among equally close ones


def describe(recipe: Recipe) -> str:
    """The fine-tuning settings of ``recipe`` in a few words."""
    stage = recipe.stages[FINE_TUNING]
    return f"{stage.trainable} lr {stage.lr:g} {stage.epochs} epochs"


def held_out_accuracies(recipe: Recipe, fold: TrainTest, args: argparse.Namespace) -> dict[str, float]:
    """Run ``recipe`` on one fold; its held-out accuracy before and after fine-tuning, and mirror-averaged."""
    if args.head_epochs:
        recipe = recipe.with_stage(0, epochs=args.head_epochs)
    with tempfile.TemporaryDirectory() as scratch:
        result = run(recipe, data=fold, out=scratch, device=args.device, quiet=True)
    return {
        "before_fine_tuning": result.metrics["accuracy_before_fine_tuning"],
        "accuracy": result.metrics["test_accuracy"],
        "mirror_averaged": evaluate(result.model, result.test_loader, average_mirror=True).accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", help="an experiment whose improved recipe has a fine-tuning stage")
    parser.add_argument("--backbone", default=STUDY_BACKBONE, choices=BACKBONES, help="the pretrained base")
    parser.add_argument("--device", help="cpu, cuda or mps (chosen automatically by default)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--trainable", nargs="+", choices=("last_block", "all"))
    parser.add_argument("--lr", type=float, nargs="+", help="peak learning rates of the fine-tuning stage")
    parser.add_argument("--epochs", type=int, nargs="+", help="epochs of the fine-tuning stage")
    parser.add_argument("--head-epochs", type=int, help="shorten the head's stage (a rehearsal)")
    parser.add_argument(
        "--per-class",
        type=int,
        help="use this many training images per class, and a --quick final run (a rehearsal)",
    )
    parser.add_argument("--results", type=Path, required=True, help="JSON file for every fold's accuracies")
    parser.add_argument("--final-out", type=Path, help="run the winner on the whole training set, results here")
    args = parser.parse_args()

    recipe = get_recipe(args.experiment).on_backbone(args.backbone)
    if len(recipe.stages) <= FINE_TUNING:
        raise SystemExit(f"{recipe.name}'s improved recipe has no fine-tuning stage to cross-validate.")
    training = DATASETS[recipe.dataset](None).train
    if args.per_class:
        training = training.sample(args.per_class, seed=recipe.seed)
    grid = candidates(recipe, args)
    rows = []
    for fold_number, fold in enumerate(training.folds(args.folds, seed=recipe.seed), start=1):
        for candidate in grid:  # fold by fold: an interrupted call still compares every candidate on the same folds
            started = time.perf_counter()
            row = {
                "fold": fold_number,
                "settings": describe(candidate),
                **held_out_accuracies(candidate, TrainTest(*fold), args),
                "seconds": round(time.perf_counter() - started, 1),
            }
            rows.append(row)
            atomic_json_dump(rows, args.results)
            print(
                f"fold {fold_number}  {row['settings']:<30}  head {row['before_fine_tuning']:.2%}  "
                f"fine-tuned {row['accuracy']:.2%}  mirror-averaged {row['mirror_averaged']:.2%}  "
                f"({row['seconds']} s)",
                flush=True,
            )

    print(f"\nmean held-out accuracy over {args.folds} folds ({len(training):,} images, each held out once)")
    summary = summarise_cross_validation(rows)
    scores = []
    for candidate in grid:
        for test_mirror, key in ((False, "accuracy"), (True, "mirror_averaged")):
            mean = summary.means[describe(candidate)][key]
            scores.append((mean, replace(candidate, test_mirror=test_mirror)))
            print(f"  {describe(candidate):<30}  {'mirror-averaged' if test_mirror else 'one view':<15}  {mean:.2%}")
    print(f"  {'head only (no fine-tuning)':<30}  {'one view':<15}  {summary.head_only:.2%}")
    best_score, best = max(scores, key=lambda scored: scored[0])  # the first of equals: closest to the recipe
    print(f"\nwinner: {describe(best)}{', mirror-averaged test' if best.test_mirror else ''} ({best_score:.2%})")
    if args.final_out:
        final = run(
            best,
            out=args.final_out,
            device=args.device,
            quiet=True,
            quick=args.per_class is not None,
        )  # a rehearsal's final run is a --quick one (a one-cycle stage needs the quick budget's steps)
        print(
            f"{best.name} with the winner on the whole training set: test accuracy "
            f"{final.metrics['test_accuracy']:.2%} ({final.metrics['accuracy_before_fine_tuning']:.2%} "
            f"before fine-tuning), results in {final.out_dir}"
        )


if __name__ == "__main__":
    main()
