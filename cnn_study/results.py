"""Results folders: where `cnn_study.experiments.run` writes, and reading, checking and tabulating them.

A run writes ``<out>/<experiment>/<recipe>[-<backbone>][-quick]/`` (`results_folder`) with the files
`RUN_FILES`, ``metrics.json`` last, so a folder that has it holds the whole run. While it trains, it
keeps the checkpoints `CHECKPOINTS` there. `load_results` and `format_results` turn a tree of such
folders into the table of the Results page and ``cnn-study results``; the study's numbers in that
table come from `cnn_study.recipes.STUDY_REPORTED`.

Examples:
    >>> from cnn_study.recipes import get_recipe
    >>> results_folder(get_recipe("lenet5"), "runs", quick=True).as_posix()
    'runs/lenet5/improved-quick'
"""

from __future__ import annotations

import json
import re
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._messages import option
from .files import atomic_json_dump, read_json, state_dict_sha256
from .models import builder_kwargs, create_model, is_transfer_model, load_trained_model_file, write_model_file
from .recipes import STUDY_BACKBONE, STUDY_REPORTED, Recipe, get_recipe
from .training import History, load_checkpoint

#: Results of the full runs behind the documentation, shipped with the package
#: (``docs/results`` in the repository points here).
PUBLISHED_RESULTS = Path(__file__).parent / "results"
#: Published full runs of a recipe with other seeds than the recipe's 0 (seed 0 is in `PUBLISHED_RESULTS`),
#: as ``seeds/<experiment>/<recipe>-seed<N>/`` (`runs_over_seeds`; the Results page's spreads: `SEED_SPREADS`).
PUBLISHED_SEEDS = PUBLISHED_RESULTS / "seeds"

#: What a finished run leaves in its results folder. `run` writes ``metrics.json`` last, so a folder
#: that has it holds the others too.
RUN_FILES = ("model.pt", "history.json", "training_curves.png", "confusion_matrix.png", "metrics.json")
#: The checkpoints of a recipe's training stages (one, or a head stage then a fine-tuning stage), for ``resume``.
CHECKPOINTS = ("checkpoint.pt", "checkpoint_fine_tuning.pt")

#: The keys every ``metrics.json`` row needs for the results table.
METRICS_KEYS = ("experiment", "name", "recipe", "quick", "model", "test_accuracy", "epochs", "device")
#: The keys of ``unfinished.json`` (written by `record_unfinished_runs`).
UNFINISHED_KEYS = ("experiment", "recipe", "model", "quick", "epochs_reached", "epochs_planned", "device")


def results_folder(recipe: Recipe, out: str | Path = "runs", *, quick: bool = False) -> Path:
    """Where `run` writes a recipe's results: ``out/<experiment>/<recipe>[-<backbone>][-seed<N>][-quick]``.

    A quick run never writes where the full run lives; a transfer recipe on another base than the
    study's (`cnn_study.recipes.Recipe.on_backbone`) and a run with another seed than the recipe's 0 get
    folders of their own.

    Args:
        recipe: The recipe, with its base and seed.
        out: Parent folder of all runs.
        quick: A ``--quick`` run.

    Examples:
        >>> results_folder(get_recipe("9", "seed").on_backbone("efficientnet_lite0"), "runs").as_posix()
        'runs/vgg16_fine_tuning/seed-efficientnet_lite0'
        >>> from dataclasses import replace
        >>> results_folder(replace(get_recipe("fast_cifar"), seed=2)).as_posix()
        'runs/fast_cifar/improved-seed2'
    """
    name = recipe.recipe
    if recipe.backbone not in (None, STUDY_BACKBONE):
        name += f"-{recipe.backbone}"
    if recipe.seed != 0:
        name += f"-seed{recipe.seed}"
    return Path(out) / recipe.name / (f"{name}-quick" if quick else name)


def load_results(folder: str | Path = PUBLISHED_RESULTS) -> list[dict[str, Any]]:
    """Read every complete run below ``folder``, in experiment order.

    A finished run contributes its ``metrics.json`` (as written by `run`). A
    run stopped before its last epoch has no metrics; if its folder holds an
    ``unfinished.json`` (see `record_unfinished_runs`) it contributes a
    row with ``test_accuracy=None`` and the epochs it reached, so that it is
    reported as unfinished rather than left out. Folders that are not complete
    runs are skipped with a warning; `scan_results` says which and why.

    Args:
        folder: A results folder such as ``runs``; defaults to the published full runs.
    """
    return [metrics for metrics, _ in _complete_runs(folder)]


def scan_results(folder: str | Path = PUBLISHED_RESULTS) -> tuple[list[dict[str, Any]], list[str]]:
    """The complete runs below ``folder`` (as `load_results`), and why each other run folder was skipped.

    A run is complete when its ``metrics.json`` (written last) is readable and has `METRICS_KEYS`,
    and its ``history.json`` is there.

    Args:
        folder: A results folder such as ``runs``.

    Returns:
        ``(rows, skipped)``: metrics dicts in experiment order, and one ``"<folder> (<reason>)"`` per skipped folder.
    """
    runs, skipped = _scan(folder)
    return [metrics for metrics, _ in runs], skipped


def _scan(folder: str | Path) -> tuple[list[tuple[dict[str, Any], Path]], list[str]]:
    """`scan_results`, each row with the folder it was read from."""
    runs, skipped = [], []
    for path in sorted(Path(folder).glob("*/*/metrics.json")):
        try:
            metrics = read_json(path, "metrics file", METRICS_KEYS)
        except ValueError as error:
            skipped.append(f"{path.parent} ({error})")
            continue
        damage = _damaged_values(metrics)
        if damage:
            skipped.append(f"{path.parent} ({path} is damaged: {damage})")
            continue
        if not path.with_name("history.json").is_file():
            skipped.append(f"{path.parent} (metrics.json but no history.json: the run stopped while writing)")
            continue
        runs.append((metrics, path.parent))
    for path in sorted(Path(folder).glob("*/*/unfinished.json")):
        if not path.with_name("metrics.json").exists():
            try:
                record = read_json(path, "record of an unfinished run", UNFINISHED_KEYS)
                runs.append((_unfinished_row(record), path.parent))
            except ValueError as error:
                skipped.append(f"{path.parent} ({error})")
    return sorted(runs, key=lambda run: (run[0]["experiment"], run[0]["recipe"])), skipped


#: The numbers a metrics row may hold, as ``key: (low, high)``, each also allowed to be ``None`` or absent.
_NUMBER_RANGES = {
    "test_accuracy": (0.0, 1.0),
    "train_accuracy": (0.0, 1.0),
    "val_accuracy": (0.0, 1.0),
    "wall_seconds": (0.0, float("inf")),
    "epoch_seconds": (0.0, float("inf")),
    "peak_rss_mb": (0.0, float("inf")),
    "peak_cuda_mb": (0.0, float("inf")),
}
#: The kind of every other value a metrics row must have (`METRICS_KEYS`).
_KINDS = {
    "name": str,
    "recipe": str,
    "quick": bool,
    "model": str,
    "epochs": int,
    "device": str,
    "seed": int,
    "world_size": int,
}
_KIND_NAMES = {str: "a string", bool: "a bool", int: "a whole number"}


def _damaged_values(metrics: dict[str, Any]) -> str | None:
    """What in a metrics row cannot be what `run` wrote, in words, or ``None``.

    >>> _damaged_values({"experiment": 42, "test_accuracy": 0.9}), _damaged_values({"experiment": 3, "epochs": 20})
    ('experiment 42 is not one of 1-10', None)
    >>> _damaged_values({"experiment": 3, "test_accuracy": "high", "wall_seconds": -1})
    "test_accuracy 'high' is not a number from 0 to 1; wall_seconds -1 is not a number from 0 to inf"
    """
    problems = []
    if type(metrics.get("experiment")) is not int or metrics["experiment"] not in STUDY_REPORTED:
        problems.append(f"experiment {metrics.get('experiment')!r} is not one of 1-{max(STUDY_REPORTED)}")
    for key, kind in _KINDS.items():
        if key in metrics and type(metrics[key]) is not kind:
            problems.append(f"{key} {metrics[key]!r} is not {_KIND_NAMES[kind]}")
    for key, (low, high) in _NUMBER_RANGES.items():
        value = metrics.get(key)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (is_number and low <= value <= high):
            problems.append(f"{key} {value!r} is not a number from {low:g} to {high:g}")
    return "; ".join(problems) or None


def published_runs(
    experiment: str | None = None, folder: str | Path = PUBLISHED_RESULTS
) -> list[tuple[dict[str, Any], History]]:
    """The complete runs below ``folder`` (of one ``experiment``, or all), as ``(metrics, history)`` read side by
    side from each run's folder, in experiment order: what ran is in the metrics row (its model names the base of
    a transfer run), never rebuilt from a folder's name.

    Args:
        experiment: Experiment key, e.g. ``"vgg16_fine_tuning"``; ``None`` for every experiment.
        folder: Results folder; defaults to the published full runs.

    Examples:
        >>> [(metrics["recipe"], metrics["model"]) for metrics, _ in published_runs("vgg16_fine_tuning")]
        [('improved', 'efficientnet_lite0_transfer'), ('seed', 'efficientnet_lite0_transfer')]
    """
    return [
        (metrics, History.from_dict(json.loads((run_dir / "history.json").read_text())))
        for metrics, run_dir in _complete_runs(folder)
        if experiment is None or metrics["name"] == experiment
    ]


def _complete_runs(folder: str | Path) -> list[tuple[dict[str, Any], Path]]:
    """`_scan`, with a warning (at the caller of the public reader) for every folder it skipped."""
    runs, skipped = _scan(folder)
    for reason in skipped:
        warnings.warn(f"Skipped {reason}", stacklevel=3)
    return runs


def _unfinished_row(record: dict[str, Any]) -> dict[str, Any]:
    if "number" in record:
        number, title = record["number"], record["title"]
    else:  # recorded before the record kept the experiment's number and title: a registered recipe
        recipe = get_recipe(record["experiment"], record["recipe"])
        number, title = recipe.experiment, recipe.title
    return {
        "experiment": number,
        "name": record["experiment"],
        "title": title,
        "recipe": record["recipe"],
        "quick": record["quick"],
        "model": record["model"],
        "test_accuracy": None,
        "epochs": record["epochs_reached"],
        "epochs_planned": record["epochs_planned"],
        "device": record["device"],
        "seed": record.get("seed", 0),
        "world_size": record.get("world_size", 1),
        "held_out": record.get("held_out"),
    }


def record_unfinished_runs(folder: str | Path) -> list[Path]:
    """Keep the finished epochs of every run below ``folder`` that stopped before its last epoch.

    A run stopped early (out of time on a lent GPU, say) writes no ``metrics.json``, but its checkpoints
    hold the history of every finished epoch (``checkpoint.pt``, then ``checkpoint_fine_tuning.pt`` for a
    run stopped while fine-tuning). For each such run this writes that history as ``history.json`` and an
    ``unfinished.json`` (epochs reached, and planned by the recipe as the run started it: its quick budget or
    ``--epochs`` included; seed, device, processes), which `load_results` reports as an unfinished row. A
    run of a recipe that is not registered (a script's variant) is recorded as well. A run that has finished
    loses any stale ``unfinished.json``.

    Args:
        folder: A results folder such as ``runs``.

    Returns:
        The run folders recorded as unfinished.
    """
    recorded = []
    for checkpoint in sorted(Path(folder).glob(f"*/*/{CHECKPOINTS[0]}")):
        run_dir = checkpoint.parent
        if (run_dir / "metrics.json").exists():
            (run_dir / "unfinished.json").unlink(missing_ok=True)
            continue
        state = load_checkpoint(checkpoint)
        history = History.from_dict(state["history"])
        fine_tuning = run_dir / CHECKPOINTS[1]
        if fine_tuning.exists():
            history = history.followed_by(History.from_dict(load_checkpoint(fine_tuning)["history"]))
        settings = state["meta"]["settings"]  # what `run` started the folder with (its name may add -quick)
        ran = settings.get("recipe_settings") or _registered_settings(settings)  # the recipe as it was run
        record = {
            "experiment": ran["name"],
            "recipe": ran["recipe"],
            "number": ran["experiment"],
            "title": ran["title"],
            "model": settings["model"],  # the recipe's, or on another base
            "quick": settings["quick"],
            "seed": ran.get("seed", 0),  # recipe settings recorded before seeds were chosen lack it
            "epochs_reached": len(history),
            "epochs_planned": sum(stage["epochs"] for stage in ran["stages"]),
            "device": state["meta"].get("device", "unknown"),
            "world_size": state["meta"].get("world_size", 1),
            "held_out": "val" if ran.get("validation_fraction") else "test",  # what its epochs watched
        }
        atomic_json_dump(history.to_dict(), run_dir / "history.json")
        atomic_json_dump(record, run_dir / "unfinished.json")
        recorded.append(run_dir)
    return recorded


def _registered_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings of the registered recipe a checkpoint names, for checkpoints that predate recording them."""
    recipe = get_recipe(settings["experiment"], settings["recipe"])
    return (recipe.quick() if settings["quick"] else recipe).settings()


def _device_cell(metrics: dict[str, Any]) -> str:
    """The device, with the number of processes that trained on one each when there were several."""
    processes = metrics.get("world_size", 1)  # runs made before it was recorded had one
    return f"{processes} x {metrics['device']}" if processes > 1 else metrics["device"]


def format_results(results: list[dict[str, Any]], markdown: bool = False) -> str:
    """A table of runs: experiment, the study's number (`STUDY_REPORTED`), ours, recipe, model, epochs, device
    (``2 x cuda``: two processes under ``torchrun``), wall time and peak memory (what a machine needs to repeat
    the run: the process's peak RSS, or GPU memory on CUDA; ``-`` for runs made before it was recorded).

    Args:
        results: Metrics dicts, as returned by `load_results`.
        markdown: Return a Markdown table instead of aligned plain text.

    Examples:
        >>> print(format_results([{"experiment": 3, "name": "lenet5", "test_accuracy": 0.9949, "recipe": "improved",
        ...     "quick": False, "model": "lenet5", "epochs": 20, "device": "cpu", "wall_seconds": 272.4,
        ...     "peak_rss_mb": 1180.0}, {"experiment": 7, "name": "resnet", "test_accuracy": None, "recipe": "improved",
        ...     "quick": False, "model": "resnet20", "epochs": 66, "epochs_planned": 100, "device": "cuda",
        ...     "world_size": 2}]))
        #  experiment  study reported  ours (test)  recipe    model     epochs     device    time     memory
        -  ----------  --------------  -----------  --------  --------  ---------  --------  -------  ------
        3  lenet5      99.03%          99.49%       improved  lenet5    20         cpu       4.5 min  1.2 GB
        7  resnet      not reported    unfinished   improved  resnet20  66 of 100  2 x cuda  -        -
    """
    header = [
        "#",
        "experiment",
        "study reported",
        "ours (test)",
        "recipe",
        "model",
        "epochs",
        "device",
        "time",
        "memory",
    ]
    rows = [
        [
            str(m["experiment"]),
            m["name"],
            STUDY_REPORTED[m["experiment"]],
            _accuracy_cell(m),
            _recipe_cell(m),
            m["model"],
            _epochs_cell(m),
            _device_cell(m),
            _time_cell(run_seconds(m)),
            _memory_cell(m),
        ]
        for m in results
    ]
    if markdown:
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join("| " + " | ".join(row) + " |" for row in lines)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _recipe_cell(metrics: dict[str, Any]) -> str:
    """The recipe, with the seed where it is not the recipe's 0 and ``(quick)`` for a quick run.

    >>> _recipe_cell({"recipe": "improved", "seed": 2, "quick": True}), _recipe_cell({"recipe": "seed", "quick": False})
    ('improved, seed 2 (quick)', 'seed')
    """
    seed = metrics.get("seed", 0)
    return metrics["recipe"] + (f", seed {seed}" if seed else "") + (" (quick)" if metrics["quick"] else "")


def _accuracy_cell(metrics: dict[str, Any]) -> str:
    return "unfinished" if metrics["test_accuracy"] is None else f"{metrics['test_accuracy']:.2%}"


def run_seconds(metrics: dict[str, Any]) -> float | None:
    """How long a run took: the larger of its wall time and the sum of its epochs' times.

    ``wall_seconds`` covers the whole call, feature extraction and evaluation included, but only the last
    call of a resumed run; ``epoch_seconds`` covers every epoch, resumed ones too, but nothing else.

    >>> run_seconds({"wall_seconds": 77.0, "epoch_seconds": 4.0}), run_seconds({"wall_seconds": 600.0})
    (77.0, 600.0)
    """
    times = [metrics.get(key) for key in ("wall_seconds", "epoch_seconds") if metrics.get(key) is not None]
    return max(times) if times else None


def _time_cell(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _memory_cell(metrics: dict[str, Any]) -> str:
    if metrics.get("peak_cuda_mb") is not None:
        return f"{metrics['peak_cuda_mb'] / 1024:.1f} GB GPU"
    if metrics.get("peak_rss_mb") is not None:
        return f"{metrics['peak_rss_mb'] / 1024:.1f} GB"
    return "-"


def _epochs_cell(metrics: dict[str, Any]) -> str:
    planned = metrics.get("epochs_planned")
    return f"{metrics['epochs']} of {planned}" if planned else str(metrics["epochs"])


def load_history(experiment: str, recipe: str = "improved", folder: str | Path = PUBLISHED_RESULTS) -> History:
    """Read the ``history.json`` of one run (by default a published full run).

    Args:
        experiment: Experiment key, e.g. ``"lenet5"``.
        recipe: The name of its results folder: ``"seed"``, ``"improved"``, ``"improved-efficientnet_lite0"``, ...
        folder: Results folder.

    Raises:
        FileNotFoundError: That run has no results in ``folder``.
    """
    path = Path(folder) / experiment / recipe / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"No results for {experiment} ({recipe}) in {folder}; run: {_command_for(path.parent)}")
    return History.from_dict(json.loads(path.read_text()))


def _command_for(run_dir: Path) -> str:
    """The ``cnn-study run`` command whose results go to ``run_dir`` (`results_folder` read backwards).

    >>> _command_for(Path("runs/vgg16_fine_tuning/improved-efficientnet_lite0-seed2-quick"))
    'cnn-study run vgg16_fine_tuning --recipe improved --backbone efficientnet_lite0 --seed 2 --quick --out runs'
    """
    parts = re.fullmatch(
        r"(?P<recipe>[^-]+)(?:-(?P<backbone>.+?))??(?:-seed(?P<seed>\d+))?(?P<quick>-quick)?", run_dir.name
    )
    if parts is None:  # not a folder name that `run` gives
        return f"cnn-study run {run_dir.parent.name}"
    command = f"cnn-study run {run_dir.parent.name} --recipe {parts['recipe']}"
    if parts["backbone"]:
        command += f" --backbone {parts['backbone']}"
    if parts["seed"]:
        command += f" --seed {parts['seed']}"
    if parts["quick"]:
        command += " --quick"
    out = run_dir.parent.parent
    return command if out.resolve() == PUBLISHED_RESULTS.resolve() else f"{command} --out {out}"


def reproduction_command(metrics: dict[str, Any]) -> list[str]:
    """The ``cnn-study`` arguments that repeat a finished run as it ran (``run`` and its options).

    Beside the experiment, recipe, base and seed, it names the precision and compilation the run trained with,
    where the defaults may have changed since: a run that records no ``precision`` predates bfloat16 on CPUs,
    so it trained in float32 on a CPU and in bfloat16 autocast on CUDA; one that records no ``compiled`` ran
    eagerly.

    Examples:
        >>> lenet5 = {"name": "lenet5", "recipe": "seed", "model": "lenet5", "seed": 0, "device": "cpu (2 threads)"}
        >>> " ".join(reproduction_command(lenet5))
        'run lenet5 --recipe seed --precision float32 --no-compile'
        >>> transfer = {"name": "vgg16_dogs_vs_cats", "recipe": "improved", "model": "efficientnet_lite0_transfer",
        ...             "seed": 2, "device": "cpu", "precision": "bfloat16", "compiled": False}
        >>> " ".join(reproduction_command(transfer)[4:])
        '--backbone efficientnet_lite0 --seed 2 --precision bfloat16 --no-compile'
    """
    command = ["run", metrics["name"], "--recipe", metrics["recipe"]]
    backbone = metrics["model"].removesuffix("_transfer")
    if is_transfer_model(metrics["model"]) and backbone != STUDY_BACKBONE:
        command += ["--backbone", backbone]
    if metrics.get("seed", 0) != 0:
        command += ["--seed", str(metrics["seed"])]
    return [*command, "--precision", run_precision(metrics), "--compile" if metrics.get("compiled") else "--no-compile"]


def run_precision(metrics: dict[str, Any]) -> str:
    """The precision a finished run trained in: recorded, or for runs made before it was recorded (before
    bfloat16 training on CPUs), float32 on a CPU and bfloat16 autocast on CUDA.

    >>> run_precision({"device": "cpu (2 threads)"}), run_precision({"device": "NVIDIA H100 80GB HBM3"})
    ('float32', 'bfloat16')
    """
    on_cpu = str(metrics.get("device", "cpu")).startswith("cpu")
    return metrics.get("precision") or ("float32" if on_cpu else "bfloat16")


def published_histories(experiment: str, folder: str | Path = PUBLISHED_RESULTS) -> dict[str, History]:
    """Histories of the published full runs of one experiment, by results folder name (empty if none was run).

    Args:
        experiment: Experiment key, e.g. ``"lenet5"``.
        folder: Results folder.
    """
    return {
        path.parent.name: History.from_dict(json.loads(path.read_text()))
        for path in sorted(Path(folder).glob(f"{experiment}/*/history.json"))
    }


def runs_over_seeds(experiment: str, recipe: str = "improved") -> list[tuple[dict[str, Any], History]]:
    """The published full runs of one recipe over all its seeds, as ``(metrics, history)`` in seed order.

    Seed 0 is the run in `PUBLISHED_RESULTS`; the others are in `PUBLISHED_SEEDS`
    (``cnn-study run <experiment> --recipe <recipe> --seed N --out <PUBLISHED_SEEDS>``).

    Examples:
        >>> [metrics["seed"] for metrics, _ in runs_over_seeds("fast_cifar")]
        [0, 1, 2]
    """
    runs = [
        run
        for folder in (PUBLISHED_RESULTS, PUBLISHED_SEEDS)
        for run in published_runs(experiment, folder)
        if run[0]["recipe"] == recipe
    ]
    return sorted(runs, key=lambda run: run[0]["seed"])


#: The recipes published over several seeds (`runs_over_seeds`), as ``(experiment, recipe)``.
SEED_SPREADS = (
    ("mnist_cnn", "improved"),
    ("fashion_cnn", "improved"),
    ("lenet5", "improved"),
    ("fast_cifar", "improved"),
)


def format_seed_spreads(recipes: Sequence[tuple[str, str]] = SEED_SPREADS) -> str:
    """A Markdown table of each recipe's test accuracy over its published seeds: mean, standard deviation,
    range, and the seeds, next to what the study reported.

    A difference between two recipes smaller than a few of their standard deviations is not evidence.

    Examples:
        >>> print(format_seed_spreads([("fast_cifar", "improved")]).splitlines()[2])
        | 10 | fast_cifar | improved | 3 (0, 1, 2) | 90.14% | 0.13 | 89.99% to 90.22% | not in the study |
    """
    rows = [
        "| # | experiment | recipe | seeds | mean test accuracy | standard deviation (points) | range | the study |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for experiment, recipe in recipes:
        runs = [metrics for metrics, _ in runs_over_seeds(experiment, recipe)]
        accuracies = [100 * metrics["test_accuracy"] for metrics in runs]
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else float("nan")
        seeds = ", ".join(str(metrics["seed"]) for metrics in runs)
        rows.append(
            f"| {runs[0]['experiment']} | {experiment} | {recipe} | {len(runs)} ({seeds}) "
            f"| {statistics.mean(accuracies):.2f}% | {spread:.2f} | {min(accuracies):.2f}% to {max(accuracies):.2f}% "
            f"| {get_recipe(experiment, recipe).study_reported} |"
        )
    return "\n".join(rows)


def published_held_out(experiment: str, folder: str | Path = PUBLISHED_RESULTS) -> dict[str, str]:
    """What each published run of one experiment measured its per-epoch held-out curve on, by results folder
    name: ``"validation"`` for a recipe with a validation split, else ``"test"`` (what `run` monitors then).

    Pass it as ``held_out`` to `cnn_study.visualize.training_curves` with `published_histories`.

    Args:
        experiment: Experiment key, e.g. ``"lenet5"``.
        folder: Results folder.

    Examples:
        >>> published_held_out("lenet5")
        {'improved': 'test', 'seed': 'validation'}
    """
    held_out = {
        path.parent.name: held_out_curve(read_json(path, "metrics file", METRICS_KEYS))
        for path in sorted(Path(folder).glob(f"{experiment}/*/metrics.json"))
    }
    for path in sorted(Path(folder).glob(f"{experiment}/*/unfinished.json")):  # their histories are published too
        record = read_json(path, "record of an unfinished run", UNFINISHED_KEYS)
        held_out.setdefault(path.parent.name, held_out_curve(record))
    return held_out


def held_out_curve(metrics: dict[str, Any]) -> str:
    """What a run's per-epoch held-out curve measured, as `cnn_study.visualize.training_curves` names it:
    ``"validation"`` for a recipe with a validation split, else ``"test"`` (what `run` monitors then).

    >>> held_out_curve({"held_out": "val"}), held_out_curve({"val_accuracy": None}), held_out_curve({"val_accuracy": 1})
    ('validation', 'test', 'validation')
    """
    if metrics.get("held_out") is not None:  # recorded: "val" or "test"; older runs tell by their validation accuracy
        return "validation" if metrics["held_out"] == "val" else "test"
    return "test" if metrics.get("val_accuracy") is None else "validation"


def export_weights(
    run_dir: str | Path,
    name: str,
    out_dir: str | Path,
    *,
    head_only: bool = False,
    float16: bool = False,
    overwrite: bool = False,
) -> Path:
    """Turn a finished run's ``model.pt`` into shippable weights ``<out_dir>/<model>-<name>.pt``.

    The file holds ``{"state_dict", "meta"}``; ``meta`` records the classes, the normalisation, the test
    accuracy, the recipe (torchvision-style), the builder's keyword arguments and the SHA-256 of the
    parameters (`cnn_study.files.state_dict_sha256`, checked when the file is loaded), so that
    ``create_model(model, weights=name)`` knows what it loads once the file is in the package's
    ``cnn_study/models/weights/``.

    Args:
        run_dir: A results folder written by `run`.
        name: Weights name, usually the dataset (``"mnist"``).
        out_dir: Destination folder.
        head_only: For a transfer model whose base stayed frozen: keep only the head (``meta["parts"]`` is
            ``"head"``). Loading puts it on the base weights the model's builder loads, which must be the
            ones it was trained on; this is checked here, tensor by tensor.
        float16: Store floating-point tensors in half precision (``meta["storage"]`` is ``"float16"``), half
            the size; loading copies them into the model's float32 parameters. Check that the shipped file
            still reaches the run's accuracy (``tests/test_weights.py`` does for every shipped file).
        overwrite: Replace a weights file of the same model and name in ``out_dir``; without it, one is refused.

    Raises:
        ValueError: The run was a ``--quick`` run, ``head_only`` and the run's base differs from the
            builder's (it was fine-tuned, or trained on other base weights), ``out_dir`` is a file, or the
            weights file exists and ``overwrite`` is not set; ``run_dir`` is a file (``model.pt`` itself).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.]*", name):
        raise ValueError(
            f"The weights name {name!r} is not a plain name: use letters, digits, '_' and '.' "
            "(usually the dataset, e.g. mnist)."
        )
    if run_dir.is_file():
        raise ValueError(f"{run_dir} is a file, not a results folder: pass its folder, {run_dir.parent}.")
    if not (run_dir / "metrics.json").is_file() and any(run_dir.glob("checkpoint*.pt")):
        raise FileNotFoundError(
            f"{run_dir} holds an unfinished run (a checkpoint, no metrics.json): finish it first "
            "(cnn-study run ... --resume), then export its weights."
        )
    metrics = read_json(run_dir / "metrics.json", "metrics file", METRICS_KEYS)
    if metrics["quick"]:
        raise ValueError(f"{run_dir} is a --quick run; export weights from a full run.")
    target = out_dir / f"{metrics['model']}-{name}.pt"
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; the weights go into a folder: choose another one.")
    if target.exists() and not overwrite:
        raise ValueError(
            f"{target} already exists; choose another name or folder, or add {option('overwrite')} to replace it."
        )
    trained = load_trained_model_file(run_dir / "model.pt")
    state_dict, meta = trained["state_dict"], dict(trained["meta"])
    if head_only and not is_transfer_model(meta["model"]):
        raise ValueError(
            f"{run_dir} trained {meta['model']} from scratch: it has no pretrained base to leave out. "
            f"Export the whole model (without {option('head_only')})."
        )
    if head_only:
        # the model the head alone will be loaded into (the registry rebuilds it so): its ImageNet base
        built = create_model(meta["model"], num_classes=meta["num_classes"], **builder_kwargs(meta, head_only=True))
        changed = [
            key for key, value in built.base.state_dict().items() if not torch.equal(value, state_dict[f"base.{key}"])
        ]
        if changed:
            raise ValueError(
                f"{run_dir}: the trained base differs from the one {meta['model']} builds ({len(changed)} tensors, "
                f"e.g. {changed[0]}); export the whole model (head_only=False)."
            )
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith("base.")}
    if float16:
        state_dict = {key: value.half() if value.is_floating_point() else value for key, value in state_dict.items()}
    meta.update(
        parts="head" if head_only else "all",
        storage="float16" if float16 else "float32",
        sha256=state_dict_sha256(state_dict),
    )
    return write_model_file(state_dict, meta, target)


@dataclass(frozen=True)
class CrossValidation:
    """The summary of a cross-validation record (``cross_validation.json`` of ``scripts/cross_validate.py``).

    Attributes:
        folds: Number of folds in the record.
        means: Mean held-out accuracy per candidate (its settings in words), in the record's order:
            ``{"accuracy": ..., "mirror_averaged": ..., "before_fine_tuning": ...}``.
        head_only: Mean held-out accuracy of the head stage alone, over every row.
    """

    folds: int
    means: dict[str, dict[str, float]]
    head_only: float


def summarise_cross_validation(rows: list[dict[str, Any]]) -> CrossValidation:
    """Average a cross-validation record, one row per fold and candidate, over the folds.

    Examples:
        >>> rows = [
        ...     {"fold": 1, "settings": "all", "accuracy": 0.98, "mirror_averaged": 0.99, "before_fine_tuning": 0.97},
        ...     {"fold": 2, "settings": "all", "accuracy": 0.96, "mirror_averaged": 0.97, "before_fine_tuning": 0.95},
        ... ]
        >>> summary = summarise_cross_validation(rows)
        >>> summary.folds, round(summary.means["all"]["accuracy"], 4), round(summary.head_only, 4)
        (2, 0.97, 0.96)
    """
    keys = ("accuracy", "mirror_averaged", "before_fine_tuning")
    means = {}
    for settings in dict.fromkeys(row["settings"] for row in rows):
        mine = [row for row in rows if row["settings"] == settings]
        means[settings] = {key: sum(row[key] for row in mine) / len(mine) for key in keys}
    head_only = sum(row["before_fine_tuning"] for row in rows) / len(rows)
    return CrossValidation(len({row["fold"] for row in rows}), means, head_only)
