"""Checks for the tutorials' exercises: ``check(name, answer)`` says whether an answer is right.

Each tutorial ends with two exercises. The learner computes an answer (by hand, or with a few lines
of code) and calls `check`, which prints ``correct`` or ``not yet`` with a hint, and returns the
verdict. The right answer is computed from the package when it is called (the model, the dataset, the
published results), never stored, so that the exercises stay true when the code changes. Every
exercise's solution, hidden on the page below it, is run through its check by the test suite.

Examples:
    >>> check("lenet5-s2-size", 12)
    lenet5-s2-size: correct
    True
    >>> check("lenet5-s2-size", 14)
    lenet5-s2-size: not yet. Hint: an unpadded 5x5 convolution trims 2 pixels per side; S2 pools 2x2 blocks into one.
    False
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .datasets import DATASETS, BatchLoader
from .models import create_model, transfer_model
from .recipes import BACKBONES, get_recipe
from .results import load_history
from .training import Lookahead, evaluate, make_optimizer, make_scheduler
from .visualize import confusion_counts


@dataclass(frozen=True)
class Exercise:
    """One exercise: how to compute its answer, how close an answer must be, and a hint.

    Attributes:
        name: The name `check` is called with, e.g. ``"lenet5-s2-size"``.
        tutorial: The tutorial it belongs to (its number).
        answer: Computes the right answer from the package.
        hint: What to look at when the answer is not right yet.
        tolerance: For numbers: how far off an answer may be (0 for exact answers).
    """

    name: str
    tutorial: int
    answer: Callable[[], Any]
    hint: str
    tolerance: float = 0.0

    def accepts(self, answer: Any) -> bool:
        """Whether ``answer`` is right: equal (numbers within `tolerance`; sequences as tuples; names in any case)."""
        return _matches(answer, self.answer(), self.tolerance)


def _matches(answer: Any, expected: Any, tolerance: float) -> bool:
    if isinstance(expected, dict):
        return (
            isinstance(answer, dict)
            and answer.keys() == expected.keys()
            and all(_close(answer[key], value, tolerance) for key, value in expected.items())
        )
    return _close(answer, expected, tolerance)


def _plain(answer: Any) -> Any:
    """A NumPy or torch scalar as its Python number, a 1-d array or tensor as a list; anything else as it is."""
    if getattr(answer, "ndim", None) == 0 and hasattr(answer, "item"):
        return answer.item()
    if getattr(answer, "ndim", None) == 1 and hasattr(answer, "tolist"):
        return answer.tolist()
    return answer


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _form_problem(answer: Any, expected: Any) -> str | None:
    """What is wrong with the form of ``answer`` (a name where a number is due, a dict with other keys), so that
    the learner is not sent back to arithmetic that may be right; ``None`` if its form is the expected one."""
    answer = _plain(answer)
    shown = repr(answer) if len(repr(answer)) <= 40 else f"{repr(answer)[:37]}..."
    if getattr(answer, "ndim", 0) > 1:  # an array or tensor: its shape says more than its first numbers
        shown = f"of shape {tuple(answer.shape)}"
    got = f"got the {type(answer).__name__} {shown}"
    if _is_number(expected) and not _is_number(answer):
        return f"expected a number, {got}."
    if isinstance(expected, (tuple, list)) and not (isinstance(answer, (tuple, list)) and len(answer) == len(expected)):
        return f"expected a tuple or list of {len(expected)} numbers, {got}."
    if isinstance(expected, dict) and not (isinstance(answer, dict) and answer.keys() == expected.keys()):
        return f"expected a dict with the keys {', '.join(map(repr, expected))}, {got}."
    if isinstance(expected, str) and not isinstance(answer, str):
        return f"expected a name, {got}."
    return None


def _close(answer: Any, expected: Any, tolerance: float) -> bool:
    answer = _plain(answer)
    if isinstance(expected, (tuple, list)):
        return isinstance(answer, (tuple, list)) and tuple(answer) == tuple(expected)
    if _is_number(expected):
        return _is_number(answer) and math.isclose(answer, expected, rel_tol=0, abs_tol=tolerance)
    if isinstance(expected, str):  # a name: "shirt" and " Shirt " name the class "Shirt" too
        return isinstance(answer, str) and answer.strip().casefold() == expected.casefold()
    return answer == expected


def _parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _fashion_shirts_mistaken() -> int:
    """How many of 200 test shirts the shipped Fashion-MNIST model calls something else."""
    model = create_model("fashion_cnn", weights="fashion_mnist")
    test = DATASETS["fashion_mnist"](download=True).test.sample(200, seed=0)
    evaluation = evaluate(model, BatchLoader.for_model(test, model))
    counts = confusion_counts(evaluation.labels, evaluation.predictions, len(test.classes))
    shirt = test.classes.index("Shirt")
    return int(counts[shirt].sum() - counts[shirt, shirt])


def _smallest_validation_class() -> int:
    """The smallest class of a 15% validation split of CIFAR-10's training set (the seed recipe holds out 20%)."""
    train = DATASETS["cifar10"](download=True).train
    _, validation = train.split(0.15, seed=0)
    return min(validation.class_counts().values())


def _cosine_after_a_quarter() -> float:
    optimizer = make_optimizer("sgd", [nn.Parameter(nn.init.zeros_(nn.Linear(1, 1).weight))], lr=0.1)
    scheduler = make_scheduler("cosine", optimizer, total_steps=100)
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


def _lookahead_pull_halfway() -> float:
    optimizer = Lookahead(make_optimizer("sgd", [nn.Parameter(torch.zeros(1))], lr=0.1), total_steps=100)
    optimizer.fast_steps = 50
    return optimizer.pull()


def _transfer_model(backbone: str, **kwargs: Any) -> nn.Module:
    return create_model(transfer_model(backbone), **kwargs)


def _unfrozen_by_last_block(backbone: str) -> int:
    model = _transfer_model(backbone, trainable="last_block")
    return _parameters(model.base, trainable_only=True)


def _hidden_parameters_with_half_the_filters() -> int:
    """The MNIST CNN's hidden layer if its second convolution had half its filters (32 instead of 64)."""
    hidden = create_model("mnist_cnn").head[2]
    return _parameters(nn.Linear(hidden.in_features // 2, hidden.out_features))


def _s2_side_without_padding() -> int:
    """The side of LeNet-5's S2 maps for a 28x28 input, had C1 no padding."""
    c1, activation, s2 = create_model("lenet5").features[:3]
    unpadded = nn.Conv2d(c1.in_channels, c1.out_channels, c1.kernel_size)
    return s2(activation(unpadded(torch.zeros(1, 1, 28, 28)))).shape[-1]


def _lenet5_parameters_with_c3_maps(maps: int) -> list[int]:
    """LeNet-5's parameters layer by layer (C1, C3, C5, F6, output) with ``maps`` feature maps in C3."""
    c1, c3, c5, f6, output = (layer for layer in create_model("lenet5").modules() if _has_weights(layer))
    widened_c3 = nn.Conv2d(c3.in_channels, maps, c3.kernel_size)
    widened_c5 = nn.Conv2d(maps, c5.out_channels, c5.kernel_size)
    return [_parameters(layer) for layer in (c1, widened_c3, widened_c5, f6, output)]


def _alexnet_first_dense_parameters(input_side: int) -> int:
    """Parameters of alexnet_cifar's first fully connected layer for square inputs of ``input_side`` pixels."""
    model = create_model("alexnet_cifar").eval()
    flattened = model.forward_features(torch.zeros(1, 3, input_side, input_side)).flatten(1).shape[1]
    return _parameters(nn.Linear(flattened, model.head[2].out_features))


def _head_parameters(backbone: str, hidden: int) -> int:
    """Parameters of an average-pooled head with ``hidden`` units on ``backbone``'s channels, then one output."""
    channels = _transfer_model(backbone, pooling="avg").head[2].in_features
    return _parameters(nn.Sequential(nn.Linear(channels, hidden), nn.Linear(hidden, 1)))


_EXERCISES = [
    Exercise(
        "mnist-cnn-hidden-parameters",
        1,
        _hidden_parameters_with_half_the_filters,
        "with 32 filters the flattened map is 32 x 12 x 12 values; count inputs x outputs weights plus one bias per "
        "output (128 outputs).",
    ),
    Exercise(
        "mnist-cnn-feature-shape",
        1,
        lambda: tuple(create_model("mnist_cnn").forward_features(torch.zeros(8, 1, 28, 28)).shape),
        "two 3x3 convolutions without padding take 28 to 26 to 24 pixels; the 2x2 max-pool halves that. "
        "The answer is (batch, channels, height, width).",
    ),
    Exercise(
        "fashion-shirts-mistaken",
        2,
        _fashion_shirts_mistaken,
        "evaluate the shipped weights (weights='fashion_mnist') on test.sample(200, seed=0); in "
        "visualize.confusion_counts the Shirt row's total minus its diagonal entry counts the shirts taken for "
        "something else.",
    ),
    Exercise(
        "fashion-smoothed-target",
        2,
        lambda: 0.9 + 0.1 / 10,
        "label smoothing eps keeps 1 - eps on the true class and spreads eps evenly over all 10 classes.",
        tolerance=1e-6,  # 0.91 computed in float32 is 0.9100000262
    ),
    Exercise(
        "lenet5-parameters-by-layer",
        3,
        lambda: _lenet5_parameters_with_c3_maps(32),
        "a convolution has in x out x k x k weights plus out biases; a linear layer in x out plus out. "
        "Five layers: C1, C3, C5, F6, output; C3's 32 maps are also C5's 32 inputs.",
    ),
    Exercise(
        "lenet5-s2-size",
        3,
        _s2_side_without_padding,
        "an unpadded 5x5 convolution trims 2 pixels per side; S2 pools 2x2 blocks into one.",
    ),
    Exercise(
        "alexnet-overfitting-gap",
        4,
        lambda: _first_epoch_with_gap("alexnet", points=10),
        "each record of results.load_history('alexnet', 'seed').epochs holds its epoch, train_accuracy and "
        "val_accuracy (fractions: 10 points is 0.10).",
    ),
    Exercise(
        "alexnet-first-dense-parameters",
        4,
        lambda: _alexnet_first_dense_parameters(input_side=64),
        "three 3x3 max-pools with stride 2 (and padding 1) take 64 to 32 to 16 to 8 pixels, so the flattened map "
        "has 256 x 8 x 8 values; each of the 1,024 outputs has a weight per value and a bias.",
    ),
    Exercise(
        "zfnet-smallest-validation-class",
        5,
        _smallest_validation_class,
        "ImageData.split is stratified: each class gives round(fraction x its count) images, and CIFAR-10 has "
        "5,000 training images of each class.",
    ),
    Exercise(
        "zfnet-first-layer-filters",
        5,
        lambda: create_model("zfnet_cifar").features[0].out_channels,
        "the first entry of the ZFNet layer table (cfgs['zfnet']) is (channels, kernel size).",
    ),
    Exercise(
        "transfer-head-parameters",
        6,
        lambda: {backbone: _head_parameters(backbone, hidden=128) for backbone in BACKBONES},
        "with average pooling the head sees one value per channel of the base (512 for VGG16, 1,280 for "
        "EfficientNet-Lite0): channels x 128 + 128, then 128 x 1 + 1.",
    ),
    Exercise(
        "transfer-vgg16-feature-size",
        6,
        lambda: _transfer_model("vgg16").base(torch.zeros(1, 3, 150, 150)).shape[-1],
        "VGG16's five 2x2 max-pools each halve the side, rounding down: 150, 75, 37, ...",
    ),
    Exercise(
        "resnet32-parameters",
        7,
        lambda: _parameters(create_model("resnet32")),
        "ResNet-32 is 6n + 2 with n = 5 blocks per stage; sum(p.numel() for p in model.parameters()) counts them.",
    ),
    Exercise(
        "resnet-cosine-quarter",
        7,
        _cosine_after_a_quarter,
        "a cosine schedule from 0.1 to 0 is lr = 0.1 x (1 + cos(pi x t / T)) / 2; at t = T / 4 the angle is pi / 4.",
        tolerance=1e-4,
    ),
    Exercise(
        "features-bytes-per-image",
        8,
        lambda: {backbone: _cached_bytes_per_image(backbone) for backbone in BACKBONES},
        "after average pooling each image is one float32 (4 bytes) per channel of the base's last feature map.",
    ),
    Exercise(
        "features-images-through-the-base",
        8,
        lambda: (1 + len(get_recipe("vgg16_feature_extraction").cached_views) + 2) * 10_000,
        "the improved recipe caches the plain images plus each of its cached_views, for all 10,000 "
        "training images (5,000 cats, 5,000 dogs); two more views are two more passes.",
    ),
    Exercise(
        "fine-tuning-last-block-parameters",
        9,
        lambda: {b: _unfrozen_by_last_block(b) for b in BACKBONES},
        "model.set_trainable('last_block'), then count the base's parameters with requires_grad.",
    ),
    Exercise(
        "fine-tuning-standard-error",
        9,
        lambda: 100 * math.sqrt(0.97 * 0.03 / 500),
        "an accuracy p measured on n independent images has standard error sqrt(p (1 - p) / n); answer in "
        "percentage points.",
        tolerance=0.01,
    ),
    Exercise(
        "whitening-filters-3x3",
        10,
        lambda: 2 * create_model("fast_cifar").input_size[0] * 3 * 3,
        "a 3x3 patch of an RGB image is 27 numbers, so its covariance has 27 eigenvectors; the layer keeps each "
        "one and its negative.",
    ),
    Exercise(
        "lookahead-pull-halfway",
        10,
        _lookahead_pull_halfway,
        "pull = final_pull x progress^3, with final_pull = 0.95^5 and progress 1/2: the cube, not the progress itself.",
        tolerance=1e-4,
    ),
]


def _has_weights(layer: nn.Module) -> bool:
    return isinstance(layer, (nn.Conv2d, nn.Linear))


def _first_epoch_with_gap(experiment: str, points: float) -> int:
    """The first epoch of the published seed run whose training accuracy is more than ``points`` above its
    validation accuracy."""
    history = load_history(experiment, "seed")
    return next(record.epoch for record in history.epochs if record.train_accuracy - record.val_accuracy > points / 100)


def _cached_bytes_per_image(backbone: str) -> int:
    model = _transfer_model(backbone, pooling="avg").eval()
    with torch.no_grad():
        features = model.feature_extractor()(torch.zeros(1, *model.input_size))
    return features.numel() * features.element_size()


#: Every exercise by name.
EXERCISES: dict[str, Exercise] = {exercise.name: exercise for exercise in _EXERCISES}


def check(name: str, answer: Any) -> bool:
    """Say whether ``answer`` to the exercise ``name`` is right; print ``correct`` or a hint.

    Args:
        name: The exercise, as its tutorial names it.
        answer: The learner's answer.

    Returns:
        Whether the answer is right.

    Raises:
        ValueError: No exercise has that name.
    """
    if name not in EXERCISES:
        raise ValueError(f"No exercise {name!r}; the tutorials have: {', '.join(EXERCISES)}.")
    exercise = EXERCISES[name]
    if answer is Ellipsis:
        print(f"{name}: replace ... with your answer")
        return False
    if answer is None:
        print(f"{name}: the answer is None: replace ... with your answer (a function without return gives None)")
        return False
    expected = exercise.answer()
    problem = _form_problem(answer, expected)
    if problem is not None:
        print(f"{name}: not yet: {problem}")
        return False
    right = _matches(answer, expected, exercise.tolerance)
    print(f"{name}: correct" if right else f"{name}: not yet. Hint: {exercise.hint}")
    return right
