"""`run`: train one recipe of the ten experiments and write its results folder.

The recipes are data (`cnn_study.recipes`); the results folder and its files are described in
`cnn_study.results`. A run goes:

1. `run` checks its arguments, locks the results folder and refuses to replace a run silently (with
   ``overwrite``, the run it replaces is set aside until the new run's first checkpoint: `REPLACED`);
2. it seeds everything, builds the model and loads the data (`_load_data`; photos of varying sizes decoded
   at the recipe's ``image_size``);
3. `_train_and_report` splits the data and feeds the model through `BatchLoader.for_model` (`_Batches`: the
   model's own input size and normalisation), then trains it stage by stage (`Recipe.stages`, each saying what
   learns: a transfer model freezes and unfreezes its base by it) with `cnn_study.training.fit_stage`, or, for
   a cached-features recipe's first stage, which trains the head alone, with
   `cnn_study.training.fit_head_on_features` on the transfer model's cut points, and evaluates it on the test set
   after each stage;
4. `_write_run` writes ``model.pt`` (its metadata shares the metrics' model, dataset and accuracy),
   ``history.json``, the figures and, last, ``metrics.json``.

Examples:
    >>> from cnn_study.recipes import get_recipe
    >>> compiles_by_default(get_recipe("resnet"), torch.device("cpu"))
    False
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, distributed, visualize
from ._messages import option
from .datasets import DATASETS, BatchLoader, ImageData, TrainTest, training_micro_batch_size
from .datasets.loader import Augmentation
from .files import atomic_json_dump, folder_lock
from .models import save_trained_model
from .recipes import Recipe
from .results import CHECKPOINTS, RUN_FILES, results_folder
from .training import (
    Evaluation,
    History,
    Precision,
    autocast,
    device_name,
    evaluate,
    fit_head_on_features,
    fit_stage,
    load_checkpoint_meta,
    peak_memory,
    seed_everything,
    select_device,
    training_precision,
)


@dataclass
class RunResult:
    """What `run` returns: the trained model, its history, the metrics and where they were written.

    ``test_loader`` holds the test batches the metrics were measured on, prepared as the model expects
    them, so that the model can be evaluated on them again (with test-time augmentation, for example).
    """

    model: nn.Module
    history: History
    metrics: dict[str, Any]
    out_dir: Path
    test_loader: BatchLoader

    def summary(self) -> str:
        """One line that says what the test accuracy was measured on: run kind, model, test-set size, chance.

        A quick run trains on a subset for a few epochs and tests on a subset: its accuracy shows the network
        learning, not what the recipe reaches. The line says so, and names the chance level (always answering
        the commonest test class) to read it against.
        """
        m = self.metrics
        labels = self.test_loader.data.labels
        chance = torch.bincount(labels).max().item() / len(labels)
        kind = "quick run (a subset: not the recipe's result)" if m["quick"] else "run"
        accuracy = f"{m['test_accuracy']:.2%}"
        if m["accuracy_before_fine_tuning"] is not None:
            accuracy = f"{m['accuracy_before_fine_tuning']:.2%} after the head stage, {accuracy} after fine-tuning"
        return (
            f"{kind}, {m['model']}, {m['epochs']} epoch(s) on {m['train_size']:,} training images: "
            f"test accuracy {accuracy} on {m['test_size']:,} test images (chance {chance:.0%})"
        )


def compiles_by_default(recipe: Recipe, device: torch.device, quick: bool = False) -> bool:
    """Whether `run` compiles ``recipe`` when not told: on CUDA, for full runs of models trained from scratch.

    On an H100, CUDA graphs train ResNet-20 at 44,000 images/s against 11,800 eager, and the ResNet-20
    ``seed`` recipe took 130 s instead of about 260 s, compiling (36 s) included (``docs/results.md``).
    A quick run is too short to repay compiling, a transfer recipe's head trains on cached features
    in seconds, and on a CPU compiling pays for ResNet-20 only. Compiling on CUDA needs Triton.

    """
    full_run_from_scratch = not quick and not recipe.is_transfer
    return device.type == "cuda" and full_run_from_scratch and importlib.util.find_spec("triton") is not None


def _is_whole(value: object, minimum: int) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and not _is_whole(value, 1):
            raise ValueError(f"{name} must be a positive whole number, got {value!r}.")


def run(
    recipe: Recipe,
    *,
    out: str | Path = "runs",
    data_root: str | Path | None = None,
    data: TrainTest | None = None,
    device: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    quick: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    download: bool = False,
    quiet: bool = False,
    compile_model: bool | None = None,
    precision: Precision | None = None,
) -> RunResult:
    """Train and evaluate one recipe, and write its results folder.

    The results folder (`cnn_study.results.results_folder`) is locked while the run writes into it. A folder that
    already holds a run (finished, or a checkpoint) is never replaced silently: ``resume`` continues
    an unfinished one, with the settings it was started with, and ``overwrite`` starts it again.
    ``metrics.json`` is written last, so a folder that has it holds the whole run.

    Args:
        recipe: What to run (see `cnn_study.recipes.get_recipe`; a transfer recipe on another pretrained base:
            `cnn_study.recipes.Recipe.on_backbone`).
        out: Parent folder; results go to ``out/<experiment>/<recipe>/`` (see `cnn_study.results.results_folder`).
        data_root: Dataset folder; defaults to ``$CNN_STUDY_DATA`` or the user cache.
        data: Train on ``data.train`` and report on ``data.test`` instead of the recipe's dataset
            (a cross-validation fold, for example: ``ImageData.folds``); ``quick`` then only shortens training.
        device: Device override (``"cpu"``, ``"cuda"``, ``"mps"``); chosen automatically by default.
        epochs: Override the epochs of each of the recipe's stages.
        batch_size: Override the recipe's batch size.
        seed: Override the recipe's seed (initialisation, data order, augmentation); a run with another
            seed than 0 writes to a folder of its own (``...-seed<N>``), so that seeds can be compared.
        quick: The recipe's small budget for a lesson, the tests and the docs build (`Recipe.quick`):
            ``recipe.quick_per_class`` training images per class, a quarter of that per class for
            evaluation, ``recipe.quick_epochs`` epochs, and ``recipe.quick_augment`` where it is set.
        resume: Continue the unfinished run in the results folder from its checkpoint.
        overwrite: Replace the run the results folder holds.
        download: Download the dataset if it is not on disk.
        quiet: Hide progress bars.
        compile_model: Train through `torch.compile` (see `cnn_study.training.compile_for_training`);
            ``None`` decides by `compiles_by_default`.
        precision: ``"bfloat16"`` or ``"float32"`` training steps; ``None`` decides by
            `cnn_study.training.training_precision` (bfloat16 on CUDA and on CPUs that have it).
            Test accuracies are measured in `cnn_study.training.mixed_precision` either way.

    Returns:
        The trained model, history, metrics and the results folder.

    Raises:
        ValueError: ``epochs`` or ``batch_size`` is not positive, the seed is not a whole number from 0, both
            ``resume`` and ``overwrite`` are set, or ``resume`` meets a checkpoint made with other settings.
        FileExistsError: The results folder holds a run and neither ``resume`` nor ``overwrite`` is set.
        FileNotFoundError: ``resume`` finds no checkpoint, or the dataset is not on disk.
        OSError: The results folder cannot be written, or another process is writing into it.
    """
    started = time.perf_counter()
    _check_positive(epochs=epochs, batch_size=batch_size)
    if resume and overwrite:
        raise ValueError(f"{option('resume')} continues a run and {option('overwrite')} replaces it; choose one.")
    if quick:
        recipe = recipe.quick()
    if epochs:
        recipe = recipe.with_epochs(epochs)
    recipe = replace(recipe, batch_size=batch_size or recipe.batch_size, seed=recipe.seed if seed is None else seed)
    if not _is_whole(recipe.seed, 0) or recipe.seed >= 2**32:  # numpy's seeds end there
        raise ValueError(f"seed must be a whole number from 0 to 2**32 - 1, got {recipe.seed!r}.")
    out_dir = results_folder(recipe, out, quick=quick)
    settings = {
        "experiment": recipe.name,
        "recipe": recipe.recipe,
        "model": recipe.model,
        "quick": quick,
        "recipe_settings": recipe.settings(),
    }
    device = select_device(device)
    with distributed.process_group(device) as device, _main_rank_holds(folder_lock(out_dir)):
        if precision is None and resume:  # on another machine too, a run resumes in the precision it started in
            precision = _recorded_precision(out_dir / CHECKPOINTS[0])
        precision = precision or training_precision(device)
        autocast(device, precision)  # refuses an unknown precision before any data is loaded
        settings["precision"] = precision  # a resumed run trains on in the precision it started in
        distributed.on_main_rank(
            partial(_prepare_results_folder, out_dir, settings, resume=resume, overwrite=overwrite)
        )
        with _keeping_the_replaced_run(out_dir):
            if compile_model is None:
                compile_model = compiles_by_default(recipe, device, quick)
            seed_everything(recipe.seed)
            # the main rank first: it downloads and caches, and it alone reports a missing dataset or weights file
            model = distributed.main_rank_first(recipe.create_model)
            data = TrainTest(
                *(data or distributed.main_rank_first(partial(_load_data, recipe, data_root, quick, download)))
            )
            return _train_and_report(
                recipe,
                model,
                data,
                out_dir,
                settings,
                device=device,
                resume=resume,
                quiet=quiet,
                compile_model=compile_model,
                precision=precision,
                started=started,
            )


def _main_rank_holds(lock: contextlib.AbstractContextManager) -> contextlib.AbstractContextManager:
    """``lock`` on the main rank, which alone writes the results folder; nothing on the other ranks."""
    return lock if distributed.is_main() else contextlib.nullcontext()


#: The subfolder where ``overwrite`` keeps the run it replaces, until the new run has written its first
#: checkpoint: a new run that fails before (missing data, a bad device, Ctrl-C in its first epoch, a kill)
#: gives the old run back.
REPLACED = ".replaced"


def _settle_replaced_run(out_dir: Path) -> None:
    """Drop the run set aside in ``out_dir/.replaced`` if the new run has a checkpoint; otherwise put it back."""
    replaced = out_dir / REPLACED
    if not replaced.is_dir():
        return
    if not (out_dir / CHECKPOINTS[0]).is_file():
        for kept in replaced.iterdir():
            kept.replace(out_dir / kept.name)
    shutil.rmtree(replaced)


@contextlib.contextmanager
def _keeping_the_replaced_run(out_dir: Path) -> Iterator[None]:
    """On the main rank: settle the run that ``overwrite`` set aside, however the block ends."""
    try:
        yield
    finally:
        if distributed.is_main():
            _settle_replaced_run(out_dir)


def _prepare_results_folder(out_dir: Path, settings: dict[str, Any], *, resume: bool, overwrite: bool) -> None:
    """Refuse to replace a run silently, or to resume one with other settings or another number of
    processes; set aside the run that ``overwrite`` replaces (`REPLACED`)."""
    _settle_replaced_run(out_dir)  # left by a run that was killed: give the old run back, or drop it
    finished = (out_dir / "metrics.json").is_file()
    checkpoint = out_dir / CHECKPOINTS[0]
    if resume:
        if finished:
            raise FileExistsError(
                f"{out_dir} already holds a finished run: there is nothing to resume. Add {option('overwrite')} to "
                f"train it again, or choose another {option('out')}."
            )
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"Nothing to resume in {out_dir}: it holds no {checkpoint.name}. "
                f"Start the run without {option('resume')}."
            )
        try:
            recorded = load_checkpoint_meta(checkpoint)
        except ValueError as error:
            raise ValueError(
                f"{error} It cannot be resumed: start the run again with {option('overwrite')}."
            ) from error
        started_with = recorded.get("world_size", 1)
        if started_with != distributed.world_size():
            launch = f"torchrun --nproc-per-node {started_with} -m cnn_study" if started_with > 1 else "cnn-study"
            raise ValueError(
                f"The run in {out_dir} was trained by {started_with} process(es) and this call has "
                f"{distributed.world_size()}; resume it as it was started: {launch} run ... {option('resume')}."
            )
        started = recorded.get("settings", {})
        # a checkpoint written before the precision was recorded is not compared on it
        compared = {key: value for key, value in settings.items() if key in started or key not in _RECORDED_SINCE}
        differences = _settings_differences(started, compared)
        if differences:
            raise ValueError(
                f"Cannot resume the run in {out_dir} with other settings than it was started with: "
                f"{'; '.join(differences)}. Resume with its settings, or start again with {option('overwrite')}."
            )
        return
    if finished and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a finished run. Add {option('overwrite')} to replace it, or choose another "
            f"{option('out')}."
        )
    if any((out_dir / name).is_file() for name in CHECKPOINTS) and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds an unfinished run (a checkpoint). Add {option('resume')} to continue it or "
            f"{option('overwrite')} to replace it, or choose another {option('out')}."
        )
    held = [out_dir / name for name in (*RUN_FILES, *CHECKPOINTS, "unfinished.json") if (out_dir / name).is_file()]
    if held:
        (out_dir / REPLACED).mkdir()
        for path in held:
            path.replace(out_dir / REPLACED / path.name)


def _recorded_precision(checkpoint: Path) -> Precision | None:
    """The precision the run of ``checkpoint`` started in; ``None`` if not recorded or not readable (resuming it
    then says what is wrong)."""
    try:
        return load_checkpoint_meta(checkpoint).get("settings", {}).get("precision")
    except (OSError, ValueError):
        return None


#: Settings a checkpoint records that older checkpoints lack: they resume without that comparison.
_RECORDED_SINCE = ("precision",)


def _settings_differences(recorded: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key X in the checkpoint, Y now"`` for every (nested) setting that differs; the items of two lists of one
    length are compared one by one (``recipe_settings.stages.0.epochs``)."""
    recorded, current = json.loads(json.dumps(recorded)), json.loads(json.dumps(current))  # tuples as lists
    differences = []
    for key in sorted(recorded.keys() | current.keys()):
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            old, new = dict(enumerate(old)), dict(enumerate(new))
        if isinstance(old, dict) and isinstance(new, dict):
            differences += _settings_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences.append(f"{prefix}{key} {old!r} in the checkpoint, {new!r} now")
    return differences


@dataclass
class _Batches:
    """The data of one run, split and fed as its model expects (`BatchLoader.for_model`: the model's input size
    and normalisation).

    Without a validation split the epochs are watched on the test set: a curve to look at, never a choice
    (no early stopping, no model selection: the last epoch is what the run reports).
    """

    recipe: Recipe
    model: nn.Module
    device: torch.device
    train: ImageData
    validation: ImageData | None
    test: ImageData

    @classmethod
    def split(cls, recipe: Recipe, model: nn.Module, data: TrainTest, device: torch.device) -> _Batches:
        """Hold out the recipe's validation fraction of ``data.train`` (seeded), if it has one."""
        train, validation = data.train, None
        if recipe.validation_fraction is not None:
            train, validation = train.split(recipe.validation_fraction, seed=recipe.seed)
        return cls(recipe, model, device, train, validation, data.test)

    @property
    def held_out(self) -> str:
        """What the epochs watch: ``"val"`` (a validation split) or ``"test"``."""
        return "test" if self.validation is None else "val"

    def training(self) -> BatchLoader:
        """The training images in the recipe's batches, shuffled and augmented."""
        return BatchLoader.for_model(
            self.train,
            self.model,
            self.recipe.batch_size,
            device=self.device,
            shuffle=True,
            augment=self.recipe.augment,
            seed=self.recipe.seed,
            alternating_flip=self.recipe.alternating_flip,
        )

    def inference(self, data: ImageData, augment: tuple[Augmentation, ...] = (), seed_offset: int = 0) -> BatchLoader:
        """``data`` in inference batches, in order; a random ``augment`` seeded by ``seed_offset``."""
        return BatchLoader.for_model(
            data, self.model, device=self.device, augment=augment, seed=self.recipe.seed + seed_offset
        )

    def monitor(self) -> BatchLoader:
        """The held-out batches the epochs are watched on."""
        return self.inference(self.test if self.validation is None else self.validation)

    def cached_views(self) -> list[BatchLoader]:
        """The training images as they are and in each of the recipe's ``cached_views``, each random view seeded
        differently."""
        views = enumerate(self.recipe.cached_views, start=1)
        return [self.inference(self.train), *(self.inference(self.train, (view,), number) for number, view in views)]

    def initialisation(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Up to 5,000 plain training images, sampled only if the model reads them (`fast_cifar`'s whitening)."""
        yield from self.inference(self.train.sample(5000 // len(self.train.classes), seed=self.recipe.seed))


def _train_and_report(
    recipe: Recipe,
    model: nn.Module,
    data: TrainTest,
    out_dir: Path,
    settings: dict[str, Any],
    *,
    device: torch.device,
    resume: bool,
    quiet: bool,
    compile_model: bool,
    precision: Precision,
    started: float,
) -> RunResult:
    """Train ``model`` by ``recipe`` on ``data``, stage by stage, evaluate it on the test set after each stage and
    write the results folder (metrics last)."""
    batches = _Batches.split(recipe, model, data, device)
    model.initialise_from_data(batches.initialisation())
    spec = model.input_spec()
    meta = {
        "model": recipe.model,
        "model_kwargs": recipe.model_kwargs,
        "classes": list(batches.train.classes),
        "mean": list(spec.mean or batches.train.mean),
        "std": list(spec.std or batches.train.std),
        "device": device_name(device),
        "world_size": distributed.world_size(),  # resume refuses another number of processes
        "settings": settings,  # what the run was started with: resume refuses other settings
    }
    fit_options = {
        "device": device,
        "resume": resume,
        "meta": meta,
        "quiet": quiet,
        "compile_model": compile_model,
        "precision": precision,
        "held_out": batches.held_out,
    }
    # A transfer model's batch norms never train (TransferClassifier.train), so its batch gradient can be summed
    # over chunks, in far less memory; a model trained from scratch needs each whole batch's statistics.
    micro_batch_size = training_micro_batch_size(spec.size, device) if recipe.is_transfer else None
    monitor, test_loader = batches.monitor(), batches.inference(batches.test)
    history, evaluations = None, []
    for number, stage in enumerate(recipe.stages):
        checkpoint = out_dir / CHECKPOINTS[number]
        if recipe.is_transfer:
            model.set_trainable(stage.trainable)
        if number == 0 and recipe.feature_cache:  # a frozen base (its first stage trains the head on cached features)
            history = fit_head_on_features(
                model.feature_extractor(folded=True),  # a frozen copy: batch norms folded into its convolutions
                model.classifier_head(),
                batches.cached_views(),
                monitor,
                stage,
                batch_size=recipe.batch_size,
                seed=recipe.seed,
                checkpoint=checkpoint,
                **fit_options,
            )
        else:
            history = fit_stage(
                model,
                batches.training(),
                stage,
                val_loader=monitor,
                history=history,
                checkpoint=checkpoint,
                micro_batch_size=micro_batch_size,
                **fit_options,
            )
        evaluations.append(evaluate(model, test_loader, device, average_mirror=recipe.test_mirror))
    final = evaluations[-1]
    metrics = {
        "experiment": recipe.experiment,
        "name": recipe.name,
        "title": recipe.title,
        "recipe": recipe.recipe,
        "quick": settings["quick"],
        "model": recipe.model,
        "dataset": recipe.dataset,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "train_size": len(batches.train),
        "test_size": len(batches.test),
        "epochs": len(history),
        "test_accuracy": final.accuracy,
        "test_loss": final.loss,
        "train_accuracy": history.epochs[-1].train_accuracy,
        "val_accuracy": history.epochs[-1].val_accuracy if batches.validation is not None else None,
        "accuracy_before_fine_tuning": evaluations[0].accuracy if len(evaluations) > 1 else None,
        "seed_reported": recipe.study_reported,
        "seed": recipe.seed,
        "device": device_name(device),
        "world_size": distributed.world_size(),  # processes that trained together (torchrun), each on `device`
        "compiled": compile_model,
        "precision": precision,  # of the training steps; test accuracy in float32 on a CPU, bfloat16 on CUDA
        "held_out": batches.held_out,  # what the epochs watched: "val" (a validation split) or "test"
        "torch": torch.__version__,
        "cnn_study": __version__,
        "python": platform.python_version(),
        "wall_seconds": round(time.perf_counter() - started, 1),  # of this call: a resumed run's last part
        "epoch_seconds": round(sum(epoch.seconds for epoch in history.epochs), 1),  # every epoch, resumed ones too
        **peak_memory(device),
        "recipe_settings": recipe.settings(),
    }
    if distributed.is_main():  # the other ranks of a torchrun launch have trained the same model
        _write_run(recipe, model, meta, metrics, history, final, out_dir)
    return RunResult(model, history, metrics, out_dir, test_loader)


def _write_run(
    recipe: Recipe,
    model: nn.Module,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    history: History,
    final: Evaluation,
    out_dir: Path,
) -> None:
    """Write the results folder: the model file, whose metadata takes what it shares with the metrics from
    them, the history, the figures and, last, ``metrics.json``: a folder with metrics holds the whole run."""
    quick = ", quick" if metrics["quick"] else ""
    model_meta = dict(
        meta,
        num_classes=model.num_classes,
        dataset=metrics["dataset"],
        test_accuracy=metrics["test_accuracy"],
        test_mirror=recipe.test_mirror,  # test_accuracy averaged each image with its mirror image
        recipe=f"{recipe.command()} ({metrics['epochs']} epochs{quick})",
    )
    save_trained_model(model, model_meta, out_dir / "model.pt")
    atomic_json_dump(history.to_dict(), out_dir / "history.json")
    title = f"{metrics['title']} ({metrics['recipe']})"
    _save_figures(history, final, tuple(meta["classes"]), out_dir, title, metrics["held_out"])
    atomic_json_dump(metrics, out_dir / "metrics.json")


def _load_data(recipe: Recipe, data_root: str | Path | None, quick: bool, download: bool) -> TrainTest:
    decoded_at = {} if recipe.image_size is None else {"image_size": recipe.image_size}
    train, test = DATASETS[recipe.dataset](data_root, download=download, **decoded_at)
    if quick:
        train = train.sample(recipe.quick_per_class, seed=recipe.seed)
        test = test.sample(max(recipe.quick_per_class // 4, 10), seed=recipe.seed)
    return TrainTest(train, test)


def _save_figures(
    history: History, evaluation: Evaluation, classes: tuple[str, ...], out_dir: Path, title: str, held_out: str
) -> None:
    curves = visualize.training_curves(history, title=title, held_out="validation" if held_out == "val" else "test")
    for name, figure in (
        ("training_curves.png", curves),
        ("confusion_matrix.png", visualize.confusion_matrix(evaluation.labels, evaluation.predictions, classes)),
    ):
        visualize.save_figure(figure, out_dir / name)
