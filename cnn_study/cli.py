"""The ``cnn-study`` command: list and inspect models, run experiments, show results.

Examples::

    cnn-study list
    cnn-study summary resnet20
    cnn-study run mnist_cnn --recipe improved
    cnn-study run lenet5 --quick --device cpu
    cnn-study evaluate runs/lenet5/improved/model.pt
    cnn-study results                  # the published full runs (--dir runs for your own)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .datasets import DATASETS, BatchLoader, DataNotFoundError
from .experiments import (
    PUBLISHED_RESULTS,
    RECIPES,
    export_weights,
    format_results,
    get_recipe,
    list_experiments,
    load_results,
    load_trained_model,
    run,
)
from .models import get_model_info, list_models, summary
from .training import evaluate, select_device


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def command_list(args: argparse.Namespace) -> None:
    print(f"{'model':<29}{'input':<11}{'classes':<9}{'experiments':<13}reference")
    for name in list_models(args.pattern):
        info = get_model_info(name)
        size = "x".join(map(str, info.input_size))
        experiments = ",".join(map(str, info.experiments))
        print(f"{name:<29}{size:<11}{info.num_classes:<9}{experiments:<13}{info.paper} ({info.year})")
    print("\nExperiments (cnn-study run NAME):")
    for recipe in list_experiments():
        print(f"  {recipe.experiment}  {recipe.name:<26} {recipe.title}  [{', '.join(RECIPES[recipe.name])}]")


def command_summary(args: argparse.Namespace) -> None:
    kwargs = {"base_weights": None} if args.name.endswith("_transfer") and not args.pretrained else {}
    print(summary(args.name, depth=args.depth, **kwargs))


def command_run(args: argparse.Namespace) -> None:
    recipe = get_recipe(args.experiment, args.recipe)
    result = run(recipe, out=args.out, data_root=args.data, device=args.device, epochs=args.epochs,
                 batch_size=args.batch_size, backbone=args.backbone, quick=args.quick, resume=args.resume,
                 download=args.download, quiet=args.quiet, compile_model=args.compile)  # fmt: skip
    metrics = result.metrics
    quick = ", quick" if args.quick else ""
    print(f"\n{recipe.title} ({recipe.recipe}{quick}): {metrics['model']} on {metrics['device']}")
    print(f"  test accuracy   {_percent(metrics['test_accuracy'])}  (study reported {recipe.seed_reported})")
    print(f"  train accuracy  {_percent(metrics['train_accuracy'])}")
    if metrics["val_accuracy"] is not None:
        print(f"  val accuracy    {_percent(metrics['val_accuracy'])}")
    if metrics["accuracy_before_fine_tuning"] is not None:
        print(f"  before fine-tuning {_percent(metrics['accuracy_before_fine_tuning'])}")
    took = f"{metrics['wall_seconds']:.0f} s"
    if args.resume:  # the call's wall time covers only the epochs after the checkpoint
        took = f"{metrics['epoch_seconds']:.0f} s of epochs in all, {took} in this resumed call"
    print(f"  {metrics['epochs']} epochs in {took}; results in {result.out_dir}")


def command_evaluate(args: argparse.Namespace) -> None:
    model, meta = load_trained_model(args.model_file)
    device = select_device(args.device)
    _, test = DATASETS[args.dataset or meta["dataset"]](args.data, download=args.download)
    image_size = model.input_size[-1] if meta["model"].endswith("_transfer") else None
    loader = BatchLoader(test, 500, device=device, image_size=image_size, mean=meta["mean"], std=meta["std"])
    result = evaluate(model.to(device), loader)
    print(f"{args.model_file} ({meta['model']}): {test.name} accuracy {result.accuracy:.2%}, loss {result.loss:.4f}")


def command_results(args: argparse.Namespace) -> None:
    results = load_results(args.dir)
    if not results:
        raise FileNotFoundError(f"No metrics.json files under {args.dir}; run an experiment first (cnn-study run ...).")
    print(format_results(results))


def command_export_weights(args: argparse.Namespace) -> None:
    path = export_weights(args.run_dir, args.name, **({"out_dir": args.out} if args.out else {}))
    print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cnn-study`` (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="cnn-study", description="List and inspect models, run the nine experiments, show their results."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="list the registered models and the nine experiments")
    listing.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'resnet*'")
    listing.set_defaults(handler=command_list)

    summarise = commands.add_parser("summary", help="print a model's torchinfo summary")
    summarise.add_argument("name", help="registered model name (see 'cnn-study list')")
    summarise.add_argument("--depth", type=int, default=3, help="nesting depth shown (default 3)")
    summarise.add_argument("--pretrained", action="store_true", help="transfer models: load the ImageNet base")
    summarise.set_defaults(handler=command_summary)

    running = commands.add_parser("run", help="train and evaluate one experiment recipe")
    running.add_argument("experiment", help=f"one of {', '.join(RECIPES)} (or 1-9)")
    running.add_argument("--recipe", default="improved", choices=sorted({name for r in RECIPES.values() for name in r}))
    running.add_argument("--epochs", type=int, help="override the recipe's epochs")
    running.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    running.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 or mps")
    running.add_argument("--backbone", choices=("vgg16", "efficientnet_lite0"),
                         help="transfer experiments: pretrained base (default vgg16)")  # fmt: skip
    running.add_argument("--quick", action="store_true", help="small subset and 1-2 epochs, for a fast check")
    running.add_argument("--out", type=Path, default=Path("runs"), help="results parent folder (default runs/)")
    running.add_argument("--data", type=Path, help="dataset folder (default $CNN_STUDY_DATA or the user cache)")
    running.add_argument("--download", action="store_true", help="download the dataset if it is not on disk")
    running.add_argument("--resume", action="store_true", help="continue from the results folder's checkpoint")
    running.add_argument("--quiet", action="store_true", help="no progress bars")
    running.add_argument("--compile", action=argparse.BooleanOptionalAction,
                         help="train through torch.compile (CUDA graphs on a GPU; slow first steps); default: on "
                              "CUDA for full runs of models trained from scratch")
    running.set_defaults(handler=command_run)

    evaluating = commands.add_parser("evaluate", help="evaluate a trained model file on a dataset's test split")
    evaluating.add_argument("model_file", type=Path, help="model.pt of a run, or a shipped weights file")
    evaluating.add_argument("--dataset", choices=sorted(DATASETS), help="default: the dataset it was trained on")
    evaluating.add_argument("--data", type=Path, help="dataset folder")
    evaluating.add_argument("--download", action="store_true", help="download the dataset if it is not on disk")
    evaluating.add_argument("--device", default="auto")
    evaluating.set_defaults(handler=command_evaluate)

    results = commands.add_parser("results", help="table of finished runs: study's number vs ours")
    results.add_argument("--dir", type=Path, default=PUBLISHED_RESULTS,
                         help="results folder, e.g. runs/ (default: the published full runs)")  # fmt: skip
    results.set_defaults(handler=command_results)

    exporting = commands.add_parser("export-weights", help="turn a finished run into shippable named weights")
    exporting.add_argument("run_dir", type=Path, help="e.g. runs/lenet5/improved")
    exporting.add_argument("--name", required=True, help="weights name, usually the dataset (mnist, cifar10)")
    exporting.add_argument("--out", type=Path, help="destination folder (default: the package's models/weights)")
    exporting.set_defaults(handler=command_export_weights)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 a user error with a message, 2 bad usage)."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, DataNotFoundError, ImportError, RuntimeError) as error:
        print(f"cnn-study: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
