"""The ``cnn-study`` command: list and inspect models, run experiments, show results.

Examples::

    cnn-study list
    cnn-study summary resnet20
    cnn-study run mnist_cnn --recipe improved
    cnn-study run lenet5 --quick --device cpu
    cnn-study evaluate runs/lenet5/improved/model.pt
    cnn-study results                  # the published full runs (--dir runs for your own)
    cnn-study reproduce --print        # the commands that repeat them
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from torch import nn

from . import __version__, distributed
from ._messages import command_line_messages
from .datasets import DATASETS, BatchLoader
from .experiments import run
from .files import read_json
from .models import TransferClassifier, get_model_info, is_transfer_model, list_models, load_trained_model, summary
from .recipes import BACKBONES, RECIPES, STUDY_BACKBONE, Recipe, experiments_using, get_recipe, list_experiments
from .results import (
    CHECKPOINTS,
    METRICS_KEYS,
    PUBLISHED_RESULTS,
    PUBLISHED_SEEDS,
    export_weights,
    format_results,
    load_results,
    reproduction_command,
    results_folder,
    run_precision,
    scan_results,
)
from .training import PRECISIONS, evaluate, extraction_precision, select_device


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def command_list(args: argparse.Namespace) -> None:
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"No model name matches {args.pattern!r}; `cnn-study list` shows all {len(list_models())}.")
    print(f"{'model':<29}{'input':<11}{'classes':<9}{'experiments':<13}reference")
    for name in names:
        info = get_model_info(name)
        size = "x".join(map(str, info.input_size))
        experiments = ",".join(map(str, experiments_using(name)))
        print(f"{name:<29}{size:<11}{info.num_classes:<9}{experiments:<13}{info.paper} ({info.year})")
    print("\nExperiments (cnn-study run NAME):")
    for recipe in list_experiments():
        print(f"  {recipe.experiment}  {recipe.name:<26} {recipe.title}  [{', '.join(RECIPES[recipe.name])}]")
        if recipe.assumed:
            print(f"{'':<32}seed: the study does not state {', '.join(recipe.assumed)} (assumed)")


def command_summary(args: argparse.Namespace) -> None:
    if args.pretrained and not is_transfer_model(args.name):
        raise ValueError(
            f"--pretrained loads a transfer model's ImageNet base, and {args.name} has none: it starts from "
            "random weights (its shipped trained weights leave the summary unchanged). Leave out --pretrained."
        )
    kwargs = {"base_weights": "imagenet"} if args.pretrained else {}
    print(summary(args.name, depth=args.depth, **kwargs))


def _recipe_to_run(args: argparse.Namespace) -> Recipe:
    """The recipe that ``cnn-study run`` runs: the experiment's, on the ``--backbone`` and ``--seed`` asked for."""
    recipe = get_recipe(args.experiment, args.recipe)
    if args.backbone is not None:
        recipe = recipe.on_backbone(args.backbone)
    return recipe if args.seed is None else replace(recipe, seed=args.seed)


def command_run(args: argparse.Namespace) -> None:
    recipe = _recipe_to_run(args)
    result = run(
        recipe,
        out=args.out,
        data_root=args.data,
        device=args.device,
        epochs=args.epochs,
        batch_size=args.batch_size,
        quick=args.quick,
        resume=args.resume,
        overwrite=args.overwrite,
        download=args.download,
        quiet=args.quiet,
        compile_model=args.compile,
        precision=args.precision,
    )
    if not distributed.is_main():  # under torchrun: the main rank reports for all
        return
    metrics = result.metrics
    quick = ", quick" if args.quick else ""
    print(f"\n{recipe.title} ({recipe.recipe}{quick}): {metrics['model']} on {metrics['device']}")
    print(f"  test accuracy   {_percent(metrics['test_accuracy'])}  (the study: {recipe.study_reported})")
    print(f"  train accuracy  {_percent(metrics['train_accuracy'])}")
    if metrics["val_accuracy"] is not None:
        print(f"  val accuracy    {_percent(metrics['val_accuracy'])}")
    if metrics["accuracy_before_fine_tuning"] is not None:
        print(f"  before fine-tuning {_percent(metrics['accuracy_before_fine_tuning'])}")
    took = f"{metrics['wall_seconds']:.0f} s"
    if args.resume:  # the call's wall time covers only the epochs after the checkpoint
        took = f"{metrics['epoch_seconds']:.0f} s of epochs in all, {took} in this resumed call"
    print(f"  {metrics['epochs']} epochs in {took}; results in {result.out_dir}")


def command_reproduce(args: argparse.Namespace) -> None:
    out = args.out.resolve()
    if out == PUBLISHED_RESULTS.resolve() or PUBLISHED_RESULTS.resolve() in out.parents:
        raise ValueError(f"{args.out} is the published results folder, the runs to compare with: choose another --out.")
    chosen = {get_recipe(experiment).name for experiment in args.experiments}  # "7" or "resnet"; refuses others
    folders = [PUBLISHED_RESULTS, PUBLISHED_SEEDS] if args.seeds else [PUBLISHED_RESULTS]
    published = sorted(
        (
            metrics
            for folder in folders
            for metrics in load_results(folder)
            if metrics["test_accuracy"] is not None and (not chosen or metrics["name"] in chosen)
        ),
        key=lambda metrics: (metrics["experiment"], metrics["recipe"], metrics["seed"]),
    )
    for metrics in [m for m in published if m["recipe"] not in RECIPES[m["name"]]]:  # made by a script of its own
        print(
            f"cnn-study: {metrics['name']} {metrics['recipe']!r} is no recipe of cnn-study run: not repeated.",
            file=sys.stderr,  # not among the commands --print lists
        )
        published.remove(metrics)
    options = ["--out", str(args.out)] + (["--device", args.device] if args.device != "auto" else [])
    options += ["--data", str(args.data)] if args.data else []
    options += [flag for flag, given in (("--download", args.download), ("--quiet", args.quiet)) if given]
    commands = [[*reproduction_command(metrics), *options] for metrics in published]
    if args.print_only:  # one line per run, to share among machines or GPUs
        print("\n".join(shlex.join([*_launcher(metrics), *command]) for command, metrics in zip(commands, published)))
        return
    parser = build_parser()
    left = []
    for index, (command, metrics) in enumerate(zip(commands, published), 1):
        if (metrics.get("world_size") or 1) != distributed.world_size():  # as many processes as it ran with
            left.append(shlex.join([*_launcher(metrics), *command]))
            print(f"[{index}/{len(commands)}] trained by {metrics['world_size']} processes: left for {left[-1]}")
            continue
        run_args = parser.parse_args(command)
        folder = results_folder(_recipe_to_run(run_args), args.out)
        if (folder / "metrics.json").is_file():
            _check_reproduced(folder, metrics, run_args.precision)
            print(f"[{index}/{len(commands)}] {folder} holds this run, finished: skipped")
            continue
        run_args.resume = any((folder / name).is_file() for name in CHECKPOINTS)  # continue a run cut short
        shown = shlex.join(["cnn-study", *command, *(["--resume"] if run_args.resume else [])])
        print(f"[{index}/{len(commands)}] {shown}", flush=True)
        try:
            command_run(run_args)
        except EXPECTED_ERRORS:
            print(f"cnn-study reproduce stopped at run {index} of {len(commands)}: {shown}", file=sys.stderr)
            raise
    done = len(commands) - len(left)
    print(f"\n{done} runs in {args.out}: `cnn-study results --dir {args.out}` prints their table.")
    if left:
        print(f"{len(left)} left for their own launch, as they ran: {'; '.join(left)}")


def _launcher(metrics: dict) -> list[str]:
    """How the run of ``metrics`` was started: ``cnn-study``, or ``torchrun`` with as many processes."""
    processes = metrics.get("world_size") or 1
    return ["cnn-study"] if processes == 1 else ["torchrun", "--nproc-per-node", str(processes), "-m", "cnn_study"]


def _check_reproduced(folder: Path, published: dict, precision: str) -> None:
    """Refuse to count the finished run in ``folder`` as the reproduction of ``published`` where it is not one:
    a damaged metrics file, a quick run, another precision or another number of epochs."""
    metrics = read_json(folder / "metrics.json", "metrics file", METRICS_KEYS)
    ran = {"quick": metrics.get("quick", False), "precision": run_precision(metrics), "epochs": metrics["epochs"]}
    wanted = {"quick": False, "precision": precision, "epochs": published["epochs"]}
    if ran != wanted:
        differences = ", ".join(f"{key} {ran[key]} instead of {wanted[key]}" for key in ran if ran[key] != wanted[key])
        raise FileExistsError(
            f"{folder} holds another run of this recipe ({differences}). Move it away, or repeat the published runs "
            "in another --out."
        )


def _first_names(names: Sequence[str], shown: int = 4) -> str:
    """The first ``shown`` of ``names``, and "..." where there are more.

    >>> _first_names(["cat", "dog"]), _first_names("0123456789")
    ('cat, dog', '0, 1, 2, 3, ...')
    """
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def command_evaluate(args: argparse.Namespace) -> None:
    model, meta = load_trained_model(args.model_file)
    device = select_device(args.device)
    dataset = args.dataset or meta["dataset"]
    if dataset not in DATASETS:
        raise ValueError(
            f"{args.model_file} was trained on {dataset!r}, which cnn-study cannot load; "
            f"name one with --dataset ({', '.join(sorted(DATASETS))})."
        )
    _, test = DATASETS[dataset](args.data, download=args.download)
    if list(test.classes) != list(meta["classes"]):
        raise ValueError(
            f"{args.model_file} tells apart {len(meta['classes'])} classes ({_first_names(meta['classes'])}) "
            f"and {test.name} has {len(test.classes)} ({_first_names(test.classes)}): its accuracy there would "
            "mean nothing. Evaluate it on the dataset it was trained on."
        )
    loader = BatchLoader.for_model(test, model, device=device)  # as `run` fed it: size, normalisation, layout
    if isinstance(model, TransferClassifier):  # inference only: run the base with its batch norms folded
        model = nn.Sequential(model.feature_extractor(folded=True), model.classifier_head())
    # By default the number is the run's: float32, as run measured it. --bfloat16 runs the base as feature
    # extraction does (extraction_precision): on a 2-core CPU with native bfloat16, experiment 6 in 13 s
    # instead of 24 s end to end with the same 98.60%, but experiment 8 at 85.70% instead of 86.00%
    # (benchmarks/evaluate_cli.py).
    precision = extraction_precision(device) if args.bfloat16 else contextlib.nullcontext()
    with precision:
        result = evaluate(model.to(device), loader, average_mirror=meta.get("test_mirror", False))
    how = ", each averaged with its mirror image" if meta.get("test_mirror") else ""
    base = f", base in {str(precision.fast_dtype).removeprefix('torch.')}" if hasattr(precision, "fast_dtype") else ""
    print(
        f"{args.model_file} ({meta['model']}): {test.name} accuracy {result.accuracy:.2%}, loss {result.loss:.4f}"
        f" ({len(test):,} images{how}{base})"
    )


def command_results(args: argparse.Namespace) -> None:
    if not args.dir.is_dir():
        raise FileNotFoundError(f"{args.dir} is not a folder; --dir takes the results folder of the runs, e.g. runs/.")
    if (args.dir / "metrics.json").is_file():
        raise ValueError(
            f"{args.dir} is one run's folder; --dir takes the results folder above its experiment's folder: "
            f"{args.dir.parent.parent}."
        )
    results, skipped = scan_results(args.dir)
    if skipped:
        print(f"cnn-study: skipped {len(skipped)} run folder(s), incomplete or damaged:", file=sys.stderr)
        for reason in skipped:
            print(f"  {reason}", file=sys.stderr)
    if not results:
        if any(args.dir.glob("*/metrics.json")):
            raise ValueError(
                f"{args.dir} is one experiment's folder; --dir takes the results folder above it: {args.dir.parent}."
            )
        below = sorted({path.parents[2] for path in args.dir.glob("*/*/*/metrics.json")})
        if below:
            raise FileNotFoundError(
                f"No run directly under {args.dir}: the results folder is one level down, --dir {below[0]}"
                f"{' (or ' + ', '.join(map(str, below[1:])) + ')' if len(below) > 1 else ''}."
            )
        unfinished = sorted({path.parent for path in args.dir.glob("*/*/checkpoint*.pt")})
        if unfinished:
            raise FileNotFoundError(
                f"No finished run under {args.dir}, and {len(unfinished)} unfinished one(s) ({unfinished[0]}"
                f"{', ...' if len(unfinished) > 1 else ''}): continue one with cnn-study run ... --resume."
            )
        raise FileNotFoundError(f"No metrics.json of a finished run under {args.dir}; run an experiment first.")
    if args.dir == PUBLISHED_RESULTS:
        print("The published runs, shipped with cnn-study (your own: cnn-study results --dir runs/).", file=sys.stderr)
    print(format_results(results))


def command_export_weights(args: argparse.Namespace) -> None:
    path = export_weights(
        args.run_dir, args.name, args.out, head_only=args.head_only, float16=args.float16, overwrite=args.overwrite
    )
    print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cnn-study`` (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="cnn-study", description="List and inspect models, run the ten experiments, show their results."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    debugging = argparse.ArgumentParser(add_help=False)
    debug_help = f"show the traceback of an error, too (or set {DEBUG_ENV}=1)"
    debugging.add_argument("--debug", action="store_true", help=debug_help)
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", parents=[debugging], help="list the models and the ten experiments")
    listing.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'resnet*'")
    listing.set_defaults(handler=command_list)

    summarise = commands.add_parser("summary", parents=[debugging], help="print a model's torchinfo summary")
    summarise.add_argument("name", help="registered model name (see 'cnn-study list')")
    summarise.add_argument("--depth", type=positive_int, default=3, help="nesting depth shown (default 3)")
    summarise.add_argument("--pretrained", action="store_true", help="transfer models: load the ImageNet base")
    summarise.set_defaults(handler=command_summary)

    running = commands.add_parser("run", parents=[debugging], help="train and evaluate one experiment recipe")
    running.add_argument("experiment", help=f"one of {', '.join(RECIPES)} (or 1-10)")
    running.add_argument("--recipe", default="improved", choices=sorted({name for r in RECIPES.values() for name in r}))
    running.add_argument("--epochs", type=positive_int, help="override the epochs of each of the recipe's stages")
    running.add_argument("--batch-size", type=positive_int, help="override the recipe's batch size")
    running.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 or mps")
    running.add_argument(
        "--backbone",
        choices=BACKBONES,
        help=f"transfer experiments: pretrained base (default {STUDY_BACKBONE}, the study's)",
    )
    running.add_argument(
        "--seed", type=int, help="seed of initialisation, data order and augmentation (default: the recipe's, 0)"
    )
    running.add_argument(
        "--quick",
        action="store_true",
        help="a class-balanced subset and a few epochs (the recipe's quick_* fields): minutes on a CPU",
    )
    running.add_argument("--out", type=Path, default=Path("runs"), help="results parent folder (default runs/)")
    running.add_argument("--data", type=Path, help="dataset folder (default $CNN_STUDY_DATA or the user cache)")
    running.add_argument("--download", action="store_true", help="download the dataset if it is not on disk")
    replacing = running.add_mutually_exclusive_group()
    replacing.add_argument("--resume", action="store_true", help="continue the run in the results folder")
    replacing.add_argument("--overwrite", action="store_true", help="replace the run in the results folder")
    running.add_argument("--quiet", action="store_true", help="no progress bars")
    running.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="train through torch.compile (CUDA graphs on a GPU; slow first steps); default: on "
        "CUDA for full runs of models trained from scratch",
    )
    running.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="precision of the training steps; default: bfloat16 on CUDA and on CPUs that compute it natively",
    )
    running.set_defaults(handler=command_run)

    reproducing = commands.add_parser(
        "reproduce",
        parents=[debugging],
        help="repeat the published runs, each as it ran, one after another",
        description="Repeat the published runs of the Results table, each with the settings it ran with; a run "
        "already finished in --out is skipped and one cut short is resumed, so the command can be run again "
        "until all are done. --print lists the commands instead, to share them among GPUs or machines.",
    )
    reproducing.add_argument("experiments", nargs="*", help="experiments to repeat, by name or number (default: all)")
    reproducing.add_argument("--seeds", action="store_true", help="also the runs over seeds (docs/results/seeds)")
    reproducing.add_argument(
        "--print", dest="print_only", action="store_true", help="print the cnn-study run commands, run none"
    )
    reproducing.add_argument("--out", type=Path, default=Path("runs"), help="results parent folder (default runs/)")
    reproducing.add_argument("--data", type=Path, help="dataset folder (default $CNN_STUDY_DATA or the user cache)")
    reproducing.add_argument("--download", action="store_true", help="download the datasets that are not on disk")
    reproducing.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 or mps")
    reproducing.add_argument("--quiet", action="store_true", help="no progress bars")
    reproducing.set_defaults(handler=command_reproduce)

    evaluating = commands.add_parser("evaluate", parents=[debugging], help="evaluate a model file on a test split")
    evaluating.add_argument("model_file", type=Path, help="model.pt of a run, or a shipped weights file")
    evaluating.add_argument("--dataset", choices=sorted(DATASETS), help="default: the dataset it was trained on")
    evaluating.add_argument("--data", type=Path, help="dataset folder")
    evaluating.add_argument("--download", action="store_true", help="download the dataset if it is not on disk")
    evaluating.add_argument("--device", default="auto")
    evaluating.add_argument(
        "--bfloat16",
        action="store_true",
        help="faster where the hardware has bfloat16 (CUDA, recent CPUs); may differ from the run's float32 number",
    )
    evaluating.set_defaults(handler=command_evaluate)

    results = commands.add_parser("results", parents=[debugging], help="table of finished runs: study's number vs ours")
    results.add_argument(
        "--dir",
        type=Path,
        default=PUBLISHED_RESULTS,
        help="results folder, e.g. runs/ (default: the published full runs)",
    )
    results.set_defaults(handler=command_results)

    exporting = commands.add_parser("export-weights", parents=[debugging], help="turn a run into shippable weights")
    exporting.add_argument("run_dir", type=Path, help="e.g. runs/lenet5/improved")
    exporting.add_argument("--name", required=True, help="weights name, usually the dataset (mnist, cifar10)")
    exporting.add_argument(
        "--out", type=Path, required=True, help="destination folder (cnn_study/models/weights in a checkout to ship it)"
    )
    exporting.add_argument(
        "--head-only", action="store_true", help="a transfer run with a frozen base: ship the head, not the base"
    )
    exporting.add_argument(
        "--float16", action="store_true", help="store the weights in half precision: half the size (check the accuracy)"
    )
    exporting.add_argument("--overwrite", action="store_true", help="replace a weights file of the same name in --out")
    exporting.set_defaults(handler=command_export_weights)
    return parser


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


#: Environment variable that makes every error show its traceback (like ``--debug``).
DEBUG_ENV = "CNN_STUDY_DEBUG"

#: Failures the package foresees and explains in its message: bad input, missing or corrupt files,
#: a full or read-only disk, a missing optional extra. Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (ValueError, OSError, ImportError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0 ok; 1 an expected failure, explained in one line ``cnn-study: error: ...``; 2 bad usage;
    130 interrupted (Ctrl-C; the SIGTERM of ``kill`` and SIGHUP end the process by their signal after the same
    clean-up). ``--debug`` shows the traceback of an expected failure too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        with command_line_messages(), _stop_signals_as_interrupts():
            args.handler(args)
    except KeyboardInterrupt as interruption:
        if distributed.is_main():  # the rank that holds the results folder says it once for all
            print(f"\ncnn-study: interrupted. {_how_to_continue(args, argv)}", file=sys.stderr)
        if isinstance(interruption, StoppedBySignal):  # cleaned up: now let the signal do what it does by default
            signal.raise_signal(interruption.signal_number)
        return 130
    except distributed.StoppedWithMainRank:
        return 1  # a rank of a torchrun launch, whose main rank has printed why
    except EXPECTED_ERRORS as error:
        if args.debug or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on"):
            traceback.print_exc()
        print(f"cnn-study: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0


class StoppedBySignal(KeyboardInterrupt):
    """A command stopped by SIGTERM or SIGHUP, raised where it runs so that it ends as Ctrl-C would."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


@contextlib.contextmanager
def _stop_signals_as_interrupts() -> Iterator[None]:
    """Treat ``kill`` (SIGTERM) and a closed terminal (SIGHUP) as Ctrl-C while a command runs.

    Their default action ends the process at once, before a run that ``--overwrite`` is replacing can give the
    old run back. As a `StoppedBySignal` they unwind it the way Ctrl-C does, cleanly; `main` then sends the
    signal again, to its default action. Only signals left at their default are taken: one that is ignored
    (``nohup``) stays ignored, and one a caller handles stays the caller's.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    stops = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    stops = [stop for stop in stops if signal.getsignal(stop) is signal.SIG_DFL]

    def interrupt(signal_number: int, frame: object) -> None:
        raise StoppedBySignal(signal_number)

    previous = {stop: signal.signal(stop, interrupt) for stop in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def _how_to_continue(args: argparse.Namespace, argv: list[str]) -> str:
    """For an interrupted run: where its last finished epoch is saved and the command that resumes it."""
    if args.handler is command_reproduce:
        return (
            "The runs it finished are kept, and so are the finished epochs of the one it was training; "
            f"the same command carries on: cnn-study {shlex.join(argv)}"
        )
    if args.handler is not command_run:
        return "Nothing was written."
    folder = results_folder(_recipe_to_run(args), args.out, quick=args.quick)
    if args.overwrite and (folder / "metrics.json").is_file():  # an interrupted run never has its metrics
        return f"No epoch of the new run had finished: the run it was to replace is kept in {folder}."
    if not (folder / "checkpoint.pt").is_file():
        return "No epoch had finished, so nothing was saved."
    again = [word for word in argv if word not in ("--overwrite", "--resume")]
    launcher = "cnn-study"
    if distributed.launched():  # resumed as it was started, by as many processes (the group may have ended)
        processes = int(os.environ["WORLD_SIZE"])
        per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", processes))
        launcher = f"torchrun --nproc-per-node {per_machine} -m cnn_study"
        if processes > per_machine:  # several machines: the same launch, with its rendezvous options
            launcher = f"torchrun --nnodes {processes // per_machine} --nproc-per-node {per_machine} ... -m cnn_study"
    return f"The finished epochs are saved in {folder}; continue with: {launcher} {shlex.join(again)} --resume"


if __name__ == "__main__":
    sys.exit(main())
