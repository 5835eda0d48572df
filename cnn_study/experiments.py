"""The nine experiments of the study as data, and `run` to carry one out.

Each experiment has up to two `Recipe` objects:

* ``seed``: as close to the original notebook as the study describes it
  (for example AlexNet with Adam at 1e-3 for 100 epochs and no augmentation,
  which overfits: 91% train, 53% validation);
* ``improved``: what a careful engineer does today with the same
  architecture: augmentation, batch normalisation, a learning-rate schedule,
  label smoothing, longer training where it pays.

`run` trains a recipe and writes ``<out>/<experiment>/<recipe>/`` with
``metrics.json``, ``history.json``, ``checkpoint.pt`` and the figures
``training_curves.png`` and ``confusion_matrix.png``.

Examples:
    >>> from cnn_study.experiments import get_recipe
    >>> get_recipe("lenet5", "seed").epochs
    10
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from . import __version__, visualize
from ._io import atomic_json_dump, atomic_torch_save, folder_lock, read_json, safe_torch_load
from ._messages import option
from .datasets import DATASETS, BatchLoader, CropFlip, Cutout, ImageData, Mirror, ShearZoomFlip, TrainTest
from .datasets.loader import Augmentation
from .models import create_model
from .models._registry import WEIGHTS_DIR
from .training import (
    Evaluation,
    History,
    TensorBatches,
    device_name,
    evaluate,
    extract_features,
    fit,
    load_checkpoint_meta,
    load_model_state,
    seed_everything,
    select_device,
)

BACKBONES = ("vgg16", "efficientnet_lite0")


@dataclass(frozen=True)
class FineTuning:
    """The second stage of experiment 9: unfreeze the base (its last block, or all of it) and train on.

    Attributes:
        epochs: Epochs of the second stage.
        optimizer: Optimizer name (see `make_optimizer`).
        lr: Its learning rate (small, so the pretrained features are only nudged).
        trainable: What learns in this stage: ``"last_block"`` or ``"all"``.
        schedule: Its learning-rate schedule (see `make_scheduler`); ``"onecycle"`` warms up, so the
            unfrozen block is not jolted by a full-size step on the first batches.
    """

    epochs: int = 10
    optimizer: str = "rmsprop"
    lr: float = 1e-5
    trainable: Literal["last_block", "all"] = "last_block"
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"


@dataclass(frozen=True)
class Recipe:
    """Everything that defines one training run of one experiment.

    Attributes:
        experiment: Number of the experiment in the study (1-9).
        name: Experiment key, e.g. ``"lenet5"``.
        title: One-line description.
        recipe: ``"seed"``, ``"improved"``, or a variant of ``improved`` named after
            what it changes (``"resnet56"``: the same recipe for a deeper ResNet).
        dataset: Key of `cnn_study.datasets.DATASETS`.
        model: Registry name of the model.
        model_kwargs: Extra keyword arguments for `cnn_study.models.create_model`.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"rmsprop"``.
        lr: Peak learning rate.
        momentum: Momentum for SGD (Nesterov when ``nesterov``).
        nesterov: Use Nesterov momentum with SGD.
        weight_decay: L2 penalty (decoupled for AdamW).
        schedule: ``"constant"``, ``"cosine"`` (annealed to zero) or ``"onecycle"``.
        epochs: Training epochs (of the first stage, for fine-tuning recipes).
        batch_size: Images per batch.
        augment: Whole-batch augmentations (see `cnn_study.datasets.augment`); with
            ``feature_cache`` they apply to the fine-tuning stage only (cached features use ``cached_views``).
        label_smoothing: Label smoothing of the training loss.
        validation_fraction: Share of the training set held out for validation;
            ``None`` evaluates on the test set after each epoch (for the curves
            only: no model selection, the last epoch is what is reported).
        feature_cache: Train a frozen base's head on features computed once.
        cached_views: Extra views of every training image whose features are cached too, each
            computed once: a fixed one (`cnn_study.datasets.Mirror`) or one random draw of an
            augmentation (`cnn_study.datasets.ShearZoomFlip`) per view. Augmentation that survives
            feature caching.
        test_mirror: Test-time augmentation for the reported test accuracy: average the outputs for
            every test image and its mirror image (``evaluate(..., average_mirror=True)``). The
            per-epoch curves stay single-view.
        fine_tuning: Second stage for experiment 9.
        seed_reported: What the original notebook reported.
        seed: Seed of initialisation, splitting, shuffling and augmentation.
        quick_per_class: Training images per class in ``--quick`` mode.
        quick_epochs: Epochs in ``--quick`` mode.
    """

    experiment: int
    name: str
    title: str
    recipe: str
    dataset: str
    model: str
    optimizer: str
    lr: float
    epochs: int
    batch_size: int
    seed_reported: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    augment: tuple[Augmentation, ...] = ()
    label_smoothing: float = 0.0
    validation_fraction: float | None = None
    feature_cache: bool = False
    cached_views: tuple[Augmentation, ...] = ()
    test_mirror: bool = False
    fine_tuning: FineTuning | None = None
    seed: int = 0
    quick_per_class: int = 200
    quick_epochs: int = 2

    @property
    def total_epochs(self) -> int:
        """Epochs of both stages together (what a finished run's history holds)."""
        return self.epochs + (self.fine_tuning.epochs if self.fine_tuning else 0)

    @property
    def is_transfer(self) -> bool:
        """Whether the model is a pretrained base with a new head."""
        return self.model.endswith("_transfer")


def _recipes() -> dict[str, dict[str, Recipe]]:
    mnist_seed = Recipe(1, "mnist_cnn", "A simple CNN on MNIST", "seed", "mnist", "mnist_cnn", "adam", 1e-3, 5, 128,
                        "97.93% test")  # fmt: skip
    fashion_seed = Recipe(2, "fashion_cnn", "A CNN on Fashion-MNIST", "seed", "fashion_mnist", "fashion_cnn", "adam",
                          1e-3, 10, 128, "80.57% test")  # fmt: skip
    lenet_seed = Recipe(3, "lenet5", "LeNet-5 on MNIST", "seed", "mnist", "lenet5", "adam", 1e-3, 10, 128,
                        "99.03% test", validation_fraction=0.2)  # fmt: skip
    alexnet_seed = Recipe(4, "alexnet", "AlexNet on CIFAR-10", "seed", "cifar10", "alexnet_cifar", "adam", 1e-3, 100,
                          128, "train 91.07% / val 53.24%", validation_fraction=0.2, quick_per_class=50, quick_epochs=1)  # fmt: skip
    zfnet_seed = Recipe(5, "zfnet", "ZFNet on CIFAR-10", "seed", "cifar10", "zfnet_cifar", "adam", 1e-3, 30, 128,
                        "80.7% test", validation_fraction=0.2, quick_per_class=50, quick_epochs=1)  # fmt: skip
    resnet_seed = Recipe(7, "resnet", "ResNet-20 on CIFAR-10", "seed", "cifar10", "resnet20", "sgd", 0.1, 50, 128,
                         "not reported", weight_decay=1e-4, schedule="cosine", augment=(CropFlip(4),),
                         quick_per_class=50, quick_epochs=1)  # fmt: skip
    transfer = dict(augment=(ShearZoomFlip(0.2, 0.2),), quick_per_class=40, quick_epochs=1)
    dogs_seed = Recipe(6, "vgg16_dogs_vs_cats", "VGG16 ImageNet transfer on Dogs vs Cats", "seed", "dogs_vs_cats",
                       "vgg16_transfer", "adam", 1e-4, 10, 32, "not reported", **transfer)  # fmt: skip
    features_seed = Recipe(8, "vgg16_feature_extraction", "VGG16 feature extraction on CIFAR-10 cats vs dogs", "seed",
                           "cifar10_cats_dogs", "vgg16_transfer", "adam", 1e-4, 10, 32,
                           "train 93.98% / val 91.94%", validation_fraction=0.2, **transfer)  # fmt: skip
    finetune_seed = Recipe(9, "vgg16_fine_tuning", "VGG16 fine-tuning on Dogs vs Cats", "seed", "dogs_vs_cats",
                           "vgg16_transfer", "rmsprop", 2e-5, 10, 32, "82.92% -> 97.95%",
                           fine_tuning=FineTuning(10, "rmsprop", 1e-5), **transfer)  # fmt: skip

    improved = dict(recipe="improved", schedule="onecycle", label_smoothing=0.1)
    cifar_improved = dict(improved, optimizer="sgd", lr=0.1, nesterov=True, weight_decay=5e-4,
                          augment=(CropFlip(4), Cutout(8)), validation_fraction=None)  # fmt: skip
    head_on_cached_features = dict(recipe="improved", optimizer="adamw", lr=1e-3, weight_decay=1e-2, epochs=30,
                                   batch_size=64, augment=(), feature_cache=True, cached_views=(Mirror(),),
                                   schedule="cosine",
                                   model_kwargs={"pooling": "avg", "dropout": 0.5})  # fmt: skip
    return {
        "mnist_cnn": {
            "seed": mnist_seed,
            "improved": replace(mnist_seed, **improved, optimizer="adamw", lr=3e-3, weight_decay=1e-2, epochs=6,
                                augment=(CropFlip(2, flip=False),)),
        },
        "fashion_cnn": {
            "seed": fashion_seed,
            "improved": replace(fashion_seed, **improved, optimizer="adamw", lr=3e-3, weight_decay=5e-2, epochs=20,
                                augment=(CropFlip(2),)),
        },
        "lenet5": {
            "seed": lenet_seed,
            "improved": replace(lenet_seed, **improved, optimizer="adamw", lr=5e-3, weight_decay=1e-2, epochs=20,
                                augment=(CropFlip(2, flip=False),), validation_fraction=None),
        },
        "alexnet": {
            "seed": alexnet_seed,
            "improved": replace(alexnet_seed, **dict(cifar_improved, lr=0.05, epochs=40, model_kwargs={"batch_norm": True})),
        },
        "zfnet": {
            "seed": zfnet_seed,
            "improved": replace(zfnet_seed, **dict(cifar_improved, lr=0.05, epochs=40, model_kwargs={"batch_norm": True})),
        },
        "vgg16_dogs_vs_cats": {
            "seed": dogs_seed,
            "improved": replace(dogs_seed, **head_on_cached_features),
        },
        "resnet": {
            "seed": resnet_seed,
            "improved": replace(resnet_seed, **cifar_improved, epochs=100),
            # 160 epochs: about the paper's training length (64k iterations of 128 images, ~164 epochs of 50k)
            "resnet56": replace(resnet_seed, **dict(cifar_improved, recipe="resnet56", lr=0.2), model="resnet56",
                                title="ResNet-56 on CIFAR-10", epochs=160, batch_size=256,
                                quick_per_class=120),  # quick mode: 4+ one-cycle steps at batch 256
        },
        "vgg16_feature_extraction": {
            "seed": features_seed,
            # six cached views and a mirror-averaged test: chosen on a validation split (scripts/select_head.py)
            "improved": replace(features_seed, **dict(head_on_cached_features, validation_fraction=None,
                                                      cached_views=(Mirror(), *[ShearZoomFlip()] * 4),
                                                      test_mirror=True)),
        },
        "vgg16_fine_tuning": {
            "seed": finetune_seed,
            # the head as in experiment 6 (cached features), then the whole base with augmentation, warmed up, and
            # a mirror-averaged test: chosen by 5-fold cross-validation on the training images
            # (scripts/cross_validate.py), against the last block alone, a 1e-4 peak and a one-view test
            "improved": replace(finetune_seed, **dict(head_on_cached_features, augment=(ShearZoomFlip(),),
                                                      fine_tuning=FineTuning(5, "adamw", 3e-5, "all", "onecycle"),
                                                      test_mirror=True,
                                                      quick_per_class=128)),  # quick mode: 4 one-cycle steps of 64
        },
    }


#: All recipes: ``RECIPES[experiment][recipe]``.
RECIPES: dict[str, dict[str, Recipe]] = _recipes()


def list_experiments() -> list[Recipe]:
    """The ``seed`` recipe of each experiment, in the study's order."""
    return sorted((recipes["seed"] for recipes in RECIPES.values()), key=lambda recipe: recipe.experiment)


def get_recipe(experiment: str, recipe: str = "improved") -> Recipe:
    """Look up a recipe by experiment key (or number) and recipe name.

    Args:
        experiment: Experiment key such as ``"lenet5"``, or its number ``"3"``.
        recipe: ``"seed"`` or ``"improved"``.

    Raises:
        ValueError: Unknown experiment or recipe; the message lists the valid ones.
    """
    by_number = {str(r.experiment): r.name for r in list_experiments()}
    key = by_number.get(str(experiment), experiment)
    if key not in RECIPES:
        close = difflib.get_close_matches(str(experiment).replace("-", "_").lower(), RECIPES, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown experiment {experiment!r}.{hint} Choose one of: {', '.join(RECIPES)} (or 1-9).")
    if recipe not in RECIPES[key]:
        raise ValueError(f"Experiment {key} has no recipe {recipe!r}; it has {', '.join(RECIPES[key])}.")
    return RECIPES[key][recipe]


def make_optimizer(name: str, parameters: Any, lr: float, *, momentum: float = 0.9, nesterov: bool = False,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:  # fmt: skip
    """Build an optimizer by name: ``adam``, ``adamw``, ``sgd`` or ``rmsprop``.

    Args:
        name: Optimizer name.
        parameters: Parameters (or parameter groups) to optimise.
        lr: Learning rate.
        momentum: Momentum (SGD).
        nesterov: Nesterov momentum (SGD).
        weight_decay: Weight decay.
    """
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}; use adam, adamw, sgd or rmsprop.")


def make_scheduler(
    schedule: str, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Build a per-batch learning-rate schedule: ``constant``, ``cosine`` or ``onecycle``.

    Args:
        schedule: Schedule name.
        optimizer: The optimizer whose learning rate it drives.
        total_steps: Number of batches the schedule spans.
    """
    if schedule == "constant":
        return None
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if schedule == "onecycle":
        if total_steps < 4:
            raise ValueError(f"The one-cycle schedule needs at least 4 steps, got {total_steps}; train longer.")
        peak = optimizer.param_groups[0]["lr"]
        warmup = max(0.25, 2 / total_steps)  # at least two warm-up steps, even in quick runs
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=warmup)
    raise ValueError(f"Unknown schedule {schedule!r}; use constant, cosine or onecycle.")


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


def compiles_by_default(recipe: Recipe, device: torch.device, quick: bool = False) -> bool:
    """Whether `run` compiles ``recipe`` when not told: on CUDA, for full runs of models trained from scratch.

    On an H100, CUDA graphs train ResNet-20 at 44,000 images/s against 11,800 eager, and the ResNet-20
    ``seed`` recipe took 130 s instead of about 260 s, compiling (36 s) included (``docs/results.md``).
    A quick run is too short to repay compiling, a transfer recipe's head trains on cached features
    in seconds, and on a CPU compiling pays for ResNet-20 only. Compiling on CUDA needs Triton.

    >>> compiles_by_default(get_recipe("resnet"), torch.device("cpu"))
    False
    """
    full_run_from_scratch = not quick and not recipe.is_transfer
    return device.type == "cuda" and full_run_from_scratch and importlib.util.find_spec("triton") is not None


def _transfer_model_name(recipe: Recipe, backbone: str | None) -> str:
    if not recipe.is_transfer or backbone is None:
        return recipe.model
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}.")
    return f"{backbone}_transfer"


#: What a finished run leaves in its results folder. `run` writes ``metrics.json`` last, so a folder
#: that has it holds the others too.
RUN_FILES = ("model.pt", "history.json", "training_curves.png", "confusion_matrix.png", "metrics.json")
#: The checkpoints of the two training stages, for ``resume``.
CHECKPOINTS = ("checkpoint.pt", "checkpoint_fine_tuning.pt")


def results_folder(
    recipe: Recipe, out: str | Path = "runs", *, backbone: str | None = None, quick: bool = False
) -> Path:
    """Where `run` writes a recipe's results: ``out/<experiment>/<recipe>[-<backbone>][-quick]``.

    A quick run never writes where the full run lives, and a transfer run on a base other than the
    recipe's (``backbone``) gets a folder of its own.

    Args:
        recipe: The recipe.
        out: Parent folder of all runs.
        backbone: The transfer base chosen for the run (see `run`).
        quick: A ``--quick`` run.

    Examples:
        >>> results_folder(get_recipe("lenet5"), "runs", quick=True).as_posix()
        'runs/lenet5/improved-quick'
        >>> results_folder(get_recipe("9", "seed"), "runs", backbone="efficientnet_lite0").as_posix()
        'runs/vgg16_fine_tuning/seed-efficientnet_lite0'
    """
    name = recipe.recipe
    if _transfer_model_name(recipe, backbone) != recipe.model:
        name += f"-{backbone}"
    return Path(out) / recipe.name / (f"{name}-quick" if quick else name)


def _check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
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
    backbone: str | None = None,
    quick: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    download: bool = False,
    quiet: bool = False,
    compile_model: bool | None = None,
) -> RunResult:
    """Train and evaluate one recipe, and write its results folder.

    The results folder (`results_folder`) is locked while the run writes into it. A folder that
    already holds a run (finished, or a checkpoint) is never replaced silently: ``resume`` continues
    it, with the settings it was started with, and ``overwrite`` starts it again. ``metrics.json`` is
    written last, so a folder that has it holds the whole run.

    Args:
        recipe: What to run (see `get_recipe`).
        out: Parent folder; results go to ``out/<experiment>/<recipe>/`` (see `results_folder`).
        data_root: Dataset folder; defaults to ``$CNN_STUDY_DATA`` or the user cache.
        data: Train on ``data.train`` and report on ``data.test`` instead of the recipe's dataset
            (a cross-validation fold, for example: ``ImageData.folds``); ``quick`` then only shortens training.
        device: Device override (``"cpu"``, ``"cuda"``, ``"mps"``); chosen automatically by default.
        epochs: Override the recipe's epochs.
        batch_size: Override the recipe's batch size.
        backbone: For transfer experiments: ``"vgg16"`` (the default, downloads
            ImageNet weights) or ``"efficientnet_lite0"`` (offline extra).
        quick: The small documented budget for tests and the docs build:
            ``recipe.quick_per_class`` training images per class, a quarter of
            that per class for evaluation, and ``recipe.quick_epochs`` epochs.
        resume: Continue from the checkpoint in the results folder.
        overwrite: Replace the run the results folder holds.
        download: Download the dataset if it is not on disk.
        quiet: Hide progress bars.
        compile_model: Train through `torch.compile` (see `cnn_study.training.compile_for_training`);
            ``None`` decides by `compiles_by_default`.

    Returns:
        The trained model, history, metrics and the results folder.

    Raises:
        ValueError: ``epochs`` or ``batch_size`` is not positive, both ``resume`` and ``overwrite`` are
            set, or ``resume`` meets a checkpoint made with other settings.
        FileExistsError: The results folder holds a run and neither ``resume`` nor ``overwrite`` is set.
        FileNotFoundError: ``resume`` finds no checkpoint, or the dataset is not on disk.
        OSError: The results folder cannot be written, or another process is writing into it.
    """
    started = time.perf_counter()
    _check_positive(epochs=epochs, batch_size=batch_size)
    if resume and overwrite:
        raise ValueError(f"{option('resume')} continues a run and {option('overwrite')} replaces it; choose one.")
    if quick:
        recipe = replace(recipe, epochs=recipe.quick_epochs,
                         fine_tuning=recipe.fine_tuning and replace(recipe.fine_tuning, epochs=recipe.quick_epochs))  # fmt: skip
    recipe = replace(recipe, epochs=epochs or recipe.epochs, batch_size=batch_size or recipe.batch_size)
    model_name = _transfer_model_name(recipe, backbone)
    out_dir = results_folder(recipe, out, backbone=backbone, quick=quick)
    settings = {
        "experiment": recipe.name,
        "recipe": recipe.recipe,
        "model": model_name,
        "quick": quick,
        "recipe_settings": _recipe_settings(recipe),
    }
    with folder_lock(out_dir):
        _prepare_results_folder(out_dir, settings, resume=resume, overwrite=overwrite)
        device = select_device(device)
        if compile_model is None:
            compile_model = compiles_by_default(recipe, device, quick)
        seed_everything(recipe.seed)
        model = create_model(model_name, **recipe.model_kwargs)
        data = TrainTest(*(data or _load_data(recipe, data_root, quick, download)))
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
            started=started,
        )


def _prepare_results_folder(out_dir: Path, settings: dict[str, Any], *, resume: bool, overwrite: bool) -> None:
    """Refuse to replace a run silently, or to resume one with other settings; clear the folder for a new run."""
    finished = (out_dir / "metrics.json").is_file()
    checkpoint = out_dir / CHECKPOINTS[0]
    if resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"Nothing to resume in {out_dir}: it holds no {checkpoint.name}. "
                f"Start the run without {option('resume')}."
            )
        differences = _settings_differences(load_checkpoint_meta(checkpoint).get("settings", {}), settings)
        if differences:
            raise ValueError(
                f"Cannot resume the run in {out_dir} with other settings than it was started with: "
                f"{'; '.join(differences)}. Resume with its settings, or start again with {option('overwrite')}."
            )
        return
    if (finished or any((out_dir / name).is_file() for name in CHECKPOINTS)) and not overwrite:
        held = "a finished run" if finished else "an unfinished run (a checkpoint)"
        raise FileExistsError(
            f"{out_dir} already holds {held}. Add {option('resume')} to continue it or {option('overwrite')} "
            f"to replace it, or choose another {option('out')}."
        )
    for name in (*RUN_FILES, *CHECKPOINTS, "unfinished.json"):
        (out_dir / name).unlink(missing_ok=True)


def _settings_differences(recorded: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key: X in the checkpoint, Y now"`` for every (nested) setting that differs."""
    recorded, current = json.loads(json.dumps(recorded)), json.loads(json.dumps(current))  # tuples as lists
    differences = []
    for key in sorted(recorded.keys() | current.keys()):
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += _settings_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences.append(f"{prefix}{key} {old!r} in the checkpoint, {new!r} now")
    return differences


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
    started: float,
) -> RunResult:
    """Train ``model`` by ``recipe`` on ``data``, evaluate it and write the results folder (metrics last)."""
    (train_data, test_data), model_name, quick = data, settings["model"], settings["quick"]
    val_data = None
    if recipe.validation_fraction is not None:
        train_data, val_data = train_data.split(recipe.validation_fraction, seed=recipe.seed)

    image_size = model.input_size[-1] if recipe.is_transfer else None
    norm = {"mean": model.mean, "std": model.std} if recipe.is_transfer else {}
    channels_last = device.type in ("cpu", "cuda")

    def loader(data: ImageData, train: bool, augment: tuple[Augmentation, ...] | None = None,
               seed: int = recipe.seed) -> BatchLoader:  # fmt: skip
        augment = augment if augment is not None else recipe.augment if train else ()
        return BatchLoader(data, recipe.batch_size if train else 500, shuffle=train, augment=augment,
                           device=device, seed=seed, image_size=image_size, channels_last=channels_last,
                           **norm)  # fmt: skip

    monitor = loader(val_data if val_data is not None else test_data, train=False)
    meta = {
        "model": model_name,
        "model_kwargs": recipe.model_kwargs,
        "classes": list(train_data.classes),
        "mean": list(norm.get("mean", train_data.mean)),
        "std": list(norm.get("std", train_data.std)),
        "device": device_name(device),
        "settings": settings,  # what the run was started with: resume refuses other settings
    }
    checkpoint = out_dir / CHECKPOINTS[0]
    common = dict(device=device, checkpoint=checkpoint, resume=resume, meta=meta, quiet=quiet,
                  compile_model=compile_model)  # fmt: skip

    if recipe.feature_cache:
        views = [loader(train_data, False, augment=())]
        views += [loader(train_data, False, augment=(view,), seed=recipe.seed + number)  # random views differ
                  for number, view in enumerate(recipe.cached_views, start=1)]
        history = _fit_head_on_features(model, recipe, views, monitor, **common)
    else:
        history = _fit_stage(model, recipe, recipe.optimizer, recipe.lr, recipe.epochs, loader(train_data, True),
                             monitor, **common)  # fmt: skip
    test_loader = loader(test_data, False)
    evaluate_on_test = partial(evaluate, model, test_loader, device, average_mirror=recipe.test_mirror)
    first_stage = evaluate_on_test()
    if recipe.fine_tuning is not None:
        model.set_trainable(recipe.fine_tuning.trainable)
        stage = recipe.fine_tuning
        history = _fit_stage(model, replace(recipe, schedule=stage.schedule), stage.optimizer, stage.lr,
                             recipe.total_epochs, loader(train_data, True), monitor, history=history,
                             **dict(common, checkpoint=out_dir / CHECKPOINTS[1]))  # fmt: skip
    final = evaluate_on_test() if recipe.fine_tuning else first_stage

    metrics = {
        "experiment": recipe.experiment,
        "name": recipe.name,
        "title": recipe.title,
        "recipe": recipe.recipe,
        "quick": quick,
        "model": model_name,
        "dataset": recipe.dataset,
        "train_size": len(train_data),
        "test_size": len(test_data),
        "epochs": len(history),
        "test_accuracy": final.accuracy,
        "test_loss": final.loss,
        "train_accuracy": history.epochs[-1].train_accuracy,
        "val_accuracy": history.epochs[-1].val_accuracy if val_data is not None else None,
        "accuracy_before_fine_tuning": first_stage.accuracy if recipe.fine_tuning else None,
        "seed_reported": recipe.seed_reported,
        "seed": recipe.seed,
        "device": device_name(device),
        "compiled": compile_model,
        "torch": torch.__version__,
        "cnn_study": __version__,
        "python": platform.python_version(),
        "wall_seconds": round(time.perf_counter() - started, 1),  # of this call: a resumed run's last part
        "epoch_seconds": round(sum(epoch.seconds for epoch in history.epochs), 1),  # every epoch, resumed ones too
        "recipe_settings": _recipe_settings(recipe),
    }
    model_meta = dict(meta, num_classes=model.num_classes, dataset=recipe.dataset, test_accuracy=final.accuracy,
                      recipe=f"cnn-study run {recipe.name} --recipe {recipe.recipe} ({len(history)} epochs"
                      f"{', quick' if quick else ''})")  # fmt: skip
    atomic_torch_save({"state_dict": model.state_dict(), "meta": model_meta}, out_dir / "model.pt")
    atomic_json_dump(history.to_dict(), out_dir / "history.json")
    _save_figures(history, final, train_data.classes, out_dir, f"{recipe.title} ({recipe.recipe})")
    atomic_json_dump(metrics, out_dir / "metrics.json")  # last: a folder with metrics holds the whole run
    return RunResult(model, history, metrics, out_dir, test_loader)


def _load_data(
    recipe: Recipe, data_root: str | Path | None, quick: bool, download: bool
) -> tuple[ImageData, ImageData]:
    train, test = DATASETS[recipe.dataset](data_root, download=download)
    if quick:
        train = train.sample(recipe.quick_per_class, seed=recipe.seed)
        test = test.sample(max(recipe.quick_per_class // 4, 10), seed=recipe.seed)
    return train, test


def _fit_stage(model: nn.Module, recipe: Recipe, optimizer_name: str, lr: float, epochs: int, train: BatchLoader,
               monitor: BatchLoader, history: History | None = None, **common: Any) -> History:  # fmt: skip
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = make_optimizer(optimizer_name, trainable, lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                               weight_decay=recipe.weight_decay)  # fmt: skip
    done = len(history) if history is not None else 0
    scheduler = make_scheduler(recipe.schedule, optimizer, (epochs - done) * len(train))
    stage = fit(model, train, epochs=epochs - done, optimizer=optimizer, scheduler=scheduler, val_loader=monitor,
                label_smoothing=recipe.label_smoothing, **common)  # fmt: skip
    return stage if history is None else history.followed_by(stage)


def _fit_head_on_features(model: nn.Module, recipe: Recipe, views: list[BatchLoader], monitor: BatchLoader,
                          **common: Any) -> History:  # fmt: skip
    """Feature extraction, fast path: run the frozen base once per image and view, then train only the head.

    The head's first layer (global average pooling, or the identity before a
    flatten) has no parameters, so its output is cached instead of the base's:
    for a 7x7 feature map, average pooling makes the cache 49 times smaller.
    """
    device, quiet = common["device"], common["quiet"]
    extractor, trainable_head = nn.Sequential(model.base, model.head[0]), model.head[1:]
    extracted = [extract_features(extractor, view, device, quiet) for view in views]
    features, labels = torch.cat([f for f, _ in extracted]), torch.cat([y for _, y in extracted])
    train_features = TensorBatches(features, labels, recipe.batch_size, shuffle=True, seed=recipe.seed)
    monitor_features = TensorBatches(*extract_features(extractor, monitor, device, quiet), 500)
    return _fit_stage(trainable_head, recipe, recipe.optimizer, recipe.lr, recipe.epochs, train_features,
                      monitor_features, **common)  # fmt: skip


def _recipe_settings(recipe: Recipe) -> dict[str, Any]:
    settings = asdict(replace(recipe, augment=(), cached_views=()))
    settings["augment"] = [repr(augmentation) for augmentation in recipe.augment]
    settings["cached_views"] = [repr(view) for view in recipe.cached_views]
    return settings


def _save_figures(history: History, evaluation: Evaluation, classes: tuple[str, ...], out_dir: Path,
                  title: str) -> None:  # fmt: skip
    for name, figure in (
        ("training_curves.png", visualize.training_curves(history, title=title)),
        ("confusion_matrix.png", visualize.confusion_matrix(evaluation.labels, evaluation.predictions, classes)),
    ):
        visualize.save_figure(figure, out_dir / name)


#: Results of the full runs behind the documentation, shipped with the package
#: (``docs/results`` in the repository points here).
PUBLISHED_RESULTS = Path(__file__).parent / "results"


def load_results(folder: str | Path = PUBLISHED_RESULTS) -> list[dict[str, Any]]:
    """Read every complete run below ``folder``, in experiment order.

    A finished run contributes its ``metrics.json`` (as written by `run`). A
    run stopped before its last epoch has no metrics; if its folder holds an
    ``unfinished.json`` (see ``scripts/partial_histories.py``) it contributes a
    row with ``test_accuracy=None`` and the epochs it reached, so that it is
    reported as unfinished rather than left out. Folders that are not complete
    runs are skipped with a warning; `scan_results` says which and why.

    Args:
        folder: A results folder such as ``runs``; defaults to the published full runs.
    """
    results, skipped = scan_results(folder)
    for reason in skipped:
        warnings.warn(f"Skipped {reason}", stacklevel=2)
    return results


#: The keys every ``metrics.json`` row needs for the results table.
METRICS_KEYS = (
    "experiment",
    "name",
    "recipe",
    "quick",
    "model",
    "seed_reported",
    "test_accuracy",
    "epochs",
    "device",
)


def scan_results(folder: str | Path = PUBLISHED_RESULTS) -> tuple[list[dict[str, Any]], list[str]]:
    """The complete runs below ``folder`` (as `load_results`), and why each other run folder was skipped.

    A run is complete when its ``metrics.json`` (written last) is readable and has `METRICS_KEYS`,
    and its ``history.json`` is there.

    Args:
        folder: A results folder such as ``runs``.

    Returns:
        ``(rows, skipped)``: metrics dicts in experiment order, and one ``"<folder> (<reason>)"`` per skipped folder.
    """
    results, skipped = [], []
    for path in sorted(Path(folder).glob("*/*/metrics.json")):
        try:
            metrics = read_json(path, "metrics file", METRICS_KEYS)
        except ValueError as error:
            skipped.append(f"{path.parent} ({error})")
            continue
        if not path.with_name("history.json").is_file():
            skipped.append(f"{path.parent} (metrics.json but no history.json: the run stopped while writing)")
            continue
        results.append(metrics)
    for path in sorted(Path(folder).glob("*/*/unfinished.json")):
        if not path.with_name("metrics.json").exists():
            try:
                results.append(_unfinished_row(read_json(path, "record of an unfinished run", UNFINISHED_KEYS)))
            except ValueError as error:
                skipped.append(f"{path.parent} ({error})")
    return sorted(results, key=lambda metrics: (metrics["experiment"], metrics["recipe"])), skipped


#: The keys of ``unfinished.json`` (written by ``scripts/partial_histories.py``).
UNFINISHED_KEYS = ("experiment", "recipe", "quick", "epochs_reached", "epochs_planned", "device")


def _unfinished_row(record: dict[str, Any]) -> dict[str, Any]:
    recipe = get_recipe(record["experiment"], record["recipe"])
    return {"experiment": recipe.experiment, "name": recipe.name, "title": recipe.title, "recipe": recipe.recipe,
            "quick": record["quick"], "model": recipe.model, "seed_reported": recipe.seed_reported,
            "test_accuracy": None, "epochs": record["epochs_reached"], "epochs_planned": record["epochs_planned"],
            "device": record["device"]}  # fmt: skip


def format_results(results: list[dict[str, Any]], markdown: bool = False) -> str:
    """A table of runs: experiment, the study's number, ours, recipe, model, epochs, device.

    Args:
        results: Metrics dicts, as returned by `load_results`.
        markdown: Return a Markdown table instead of aligned plain text.

    Examples:
        >>> print(format_results([{"experiment": 3, "name": "lenet5", "seed_reported": "99.03% test",
        ...     "test_accuracy": 0.9949, "recipe": "improved", "quick": False, "model": "lenet5", "epochs": 20,
        ...     "device": "cpu"}, {"experiment": 7, "name": "resnet", "seed_reported": "not reported",
        ...     "test_accuracy": None, "recipe": "improved", "quick": False, "model": "resnet20", "epochs": 66,
        ...     "epochs_planned": 100, "device": "cuda"}]))
        #  experiment  study reported  ours (test)  recipe    model     epochs     device
        -  ----------  --------------  -----------  --------  --------  ---------  ------
        3  lenet5      99.03% test     99.49%       improved  lenet5    20         cpu
        7  resnet      not reported    unfinished   improved  resnet20  66 of 100  cuda
    """
    header = ["#", "experiment", "study reported", "ours (test)", "recipe", "model", "epochs", "device"]
    rows = [[str(m["experiment"]), m["name"], m["seed_reported"], _accuracy_cell(m),
             m["recipe"] + (" (quick)" if m["quick"] else ""), m["model"], _epochs_cell(m), m["device"]]
            for m in results]  # fmt: skip
    if markdown:
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join("| " + " | ".join(row) + " |" for row in lines)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _accuracy_cell(metrics: dict[str, Any]) -> str:
    return "unfinished" if metrics["test_accuracy"] is None else f"{metrics['test_accuracy']:.2%}"


def _epochs_cell(metrics: dict[str, Any]) -> str:
    planned = metrics.get("epochs_planned")
    return f"{metrics['epochs']} of {planned}" if planned else str(metrics["epochs"])


def load_history(experiment: str, recipe: str = "improved", folder: str | Path = PUBLISHED_RESULTS) -> History:
    """Read the ``history.json`` of one run (by default a published full run).

    Args:
        experiment: Experiment key, e.g. ``"lenet5"``.
        recipe: ``"seed"`` or ``"improved"``.
        folder: Results folder.

    Raises:
        FileNotFoundError: That run has no results in ``folder``.
    """
    path = Path(folder) / experiment / recipe / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"No results for {experiment} ({recipe}) in {folder}; run: cnn-study run {experiment} "
                                f"--recipe {recipe}")  # fmt: skip
    return History.from_dict(json.loads(path.read_text()))


def published_histories(experiment: str, folder: str | Path = PUBLISHED_RESULTS) -> dict[str, History]:
    """Histories of the published full runs of one experiment, by recipe (empty if none was run).

    Args:
        experiment: Experiment key, e.g. ``"lenet5"``.
        folder: Results folder.
    """
    return {
        path.parent.name: History.from_dict(json.loads(path.read_text()))
        for path in sorted(Path(folder).glob(f"{experiment}/*/history.json"))
    }


def export_weights(run_dir: str | Path, name: str, out_dir: str | Path = WEIGHTS_DIR) -> Path:
    """Turn a finished run's ``model.pt`` into shippable weights ``<model>-<name>.pt``.

    The file holds ``{"state_dict", "meta"}``; ``meta`` records the classes, the
    normalisation, the test accuracy and the recipe (torchvision-style), so that
    ``create_model(model, weights=name)`` knows what it loads.

    Args:
        run_dir: A results folder written by `run`.
        name: Weights name, usually the dataset (``"mnist"``).
        out_dir: Destination folder; defaults to the package's ``models/weights``.

    Raises:
        ValueError: The run was a ``--quick`` run.
    """
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics["quick"]:
        raise ValueError(f"{run_dir} is a --quick run; export weights from a full run.")
    trained = load_trained_model_file(run_dir / "model.pt")
    path = Path(out_dir) / f"{metrics['model']}-{name}.pt"
    return atomic_torch_save(trained, path)


def load_trained_model_file(path: str | Path) -> dict[str, Any]:
    """Read a ``model.pt`` written by `run` (or a shipped weights file): ``{"state_dict", "meta"}``.

    Raises:
        ValueError: The file has no state dict and metadata, or its metadata lacks one of `MODEL_META_KEYS`.
    """
    content = safe_torch_load(path, "trained model file")
    if not isinstance(content, dict) or not {"state_dict", "meta"} <= content.keys():
        raise ValueError(f"{path} is not a trained model file (model.pt from cnn-study run, or shipped weights).")
    missing = [key for key in MODEL_META_KEYS if key not in content["meta"]]
    if missing:
        raise ValueError(f"{path} is not a complete trained model file: its metadata lacks {', '.join(missing)}.")
    return content


#: What the metadata of a ``model.pt`` must hold to rebuild and evaluate the model.
MODEL_META_KEYS = ("model", "num_classes", "classes", "mean", "std", "dataset")


def load_trained_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a ``model.pt`` (or shipped weights file) and return it with its metadata.

    Args:
        path: The file.
    """
    content = load_trained_model_file(path)
    meta = content["meta"]
    kwargs = dict(meta.get("model_kwargs", {}))
    if meta["model"].endswith("_transfer"):
        kwargs["base_weights"] = None  # the file holds the trained base too
    model = create_model(meta["model"], num_classes=meta["num_classes"], **kwargs)
    load_model_state(model, content["state_dict"], path)
    return model.eval(), meta
