"""Every tutorial ends with exercises; every hidden solution passes its check, and wrong answers do not."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cnn_study import datasets, exercises, models, recipes, results, visualize
from cnn_study.datasets.catalog import FASHION_CLASSES
from cnn_study.training import EpochRecord, History

from .conftest import has_offline_extra, missing

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.py"))
#: An exercise cell, then the markdown cell with its hidden solution.
EXERCISE = re.compile(
    r'exercises\.check\("(?P<name>[\w-]+)", answer\)\s*# %% \[markdown\]\s*# <details><summary>Solution</summary>'
    r"\s*#\s*# ```python\n(?P<code>(?:#.*\n)+?)# ```"
)


def _solutions() -> list[tuple[str, str, str]]:
    found = []
    for tutorial in TUTORIALS:
        for match in EXERCISE.finditer(tutorial.read_text()):
            code = "\n".join(line[2:] if line.startswith("# ") else "" for line in match["code"].splitlines())
            found.append((tutorial.stem, match["name"], code))
    return found


SOLUTIONS = _solutions()
#: The exercises whose answers read a dataset; the others need the package alone (and the offline base for the
#: transfer ones), so that they run, and judge mutants, where no data folder is set.
READ_DATA = {"fashion-shirts-mistaken", "zfnet-smallest-validation-class"}


def _needs(name: str, request: pytest.FixtureRequest) -> None:
    """Skip (or, in CI, fail) an exercise test whose answer needs what is missing: the data or the offline base."""
    if name in READ_DATA:
        request.getfixturevalue("data_dir")
    if name.startswith(("transfer-", "features-", "fine-tuning-")) and not has_offline_extra():
        missing('the transfer exercises compare both bases: pip install "cnn-study[offline]"')


def test_every_tutorial_has_two_exercises_with_solutions_and_every_exercise_is_used() -> None:
    per_tutorial = {
        tutorial.stem: [name for stem, name, _ in SOLUTIONS if stem == tutorial.stem] for tutorial in TUTORIALS
    }
    assert all(len(names) == 2 for names in per_tutorial.values()), per_tutorial
    assert sorted(name for _, name, _ in SOLUTIONS) == sorted(exercises.EXERCISES)
    assert {exercise.tutorial for exercise in exercises.EXERCISES.values()} == set(range(1, 11))


@pytest.mark.parametrize(("tutorial", "name", "code"), SOLUTIONS, ids=[name for _, name, _ in SOLUTIONS])
def test_the_hidden_solution_passes_its_check(tutorial, name, code, request, capsys) -> None:
    _needs(name, request)
    namespace = {
        "datasets": datasets,
        "models": models,
        "recipes": recipes,
        "results": results,
        "visualize": visualize,
        "json": json,
    }
    exec(code, namespace)  # the tutorial's own solution
    assert exercises.check(name, namespace["answer"]), capsys.readouterr().out
    assert capsys.readouterr().out == f"{name}: correct\n"


@pytest.mark.parametrize("name", sorted(exercises.EXERCISES))
def test_a_wrong_answer_gets_the_hint(name, request, capsys) -> None:
    _needs(name, request)
    near_miss = NEAR_MISSES[name](exercises.EXERCISES[name].answer())[0]
    assert not exercises.check(name, near_miss)
    assert f"Hint: {exercises.EXERCISES[name].hint}" in capsys.readouterr().out
    assert not exercises.check(name, ...)  # the placeholder the tutorials start from
    assert "replace ... with your answer" in capsys.readouterr().out


def test_an_answer_of_the_wrong_form_is_told_its_form_instead_of_the_hint(capsys) -> None:
    answers = [
        ("lenet5-s2-size", "12", "expected a number, got the str '12'."),
        ("lenet5-s2-size", True, "expected a number, got the bool True."),
        ("mnist-cnn-feature-shape", (8, 64), "expected a tuple or list of 4 numbers, got the tuple (8, 64)."),
        (
            "mnist-cnn-feature-shape",
            torch.zeros(8, 64, 12, 12),  # the features, not their shape
            "expected a tuple or list of 4 numbers, got the Tensor of shape (8, 64, 12, 12).",
        ),
        (
            "transfer-head-parameters",
            {"VGG16": 1},
            "expected a dict with the keys 'vgg16', 'efficientnet_lite0', got the dict {'VGG16': 1}.",
        ),
    ]
    for name, answer, problem in answers:
        assert not exercises.check(name, answer)
        assert capsys.readouterr().out == f"{name}: not yet: {problem}\n"
    assert not exercises.check("lenet5-s2-size", None)  # a function that forgot to return
    assert "the answer is None" in capsys.readouterr().out


def test_answers_computed_as_tensors_or_in_float32_are_taken_as_their_numbers() -> None:
    assert exercises.check("fashion-smoothed-target", torch.tensor(0.9) + torch.tensor(0.1) / 10)  # 0.9100000262
    assert exercises.check("mnist-cnn-feature-shape", np.array([8, 64, 12, 12]))
    assert exercises.check("lenet5-s2-size", torch.tensor(12))


def test_an_unknown_exercise_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as error:
        exercises.check("lenet", 1)
    assert str(error.value) == f"No exercise 'lenet'; the tutorials have: {', '.join(exercises.EXERCISES)}."
    assert str(error.value).startswith("No exercise 'lenet'; the tutorials have: mnist-cnn-hidden-parameters, ")


def test_the_overfitting_gap_passes_10_points_where_the_published_history_says() -> None:
    history = json.loads((Path(results.PUBLISHED_RESULTS) / "alexnet" / "seed" / "history.json").read_text())
    gaps = [100 * (epoch["train_accuracy"] - epoch["val_accuracy"]) for epoch in history["epochs"]]
    first = 1 + next(index for index, gap in enumerate(gaps) if gap > 10)  # epochs count from 1
    assert exercises.EXERCISES["alexnet-overfitting-gap"].accepts(first) and gaps[first - 2] <= 10 < gaps[first - 1]


def test_a_right_number_is_right_as_a_numpy_or_torch_scalar_and_a_near_miss_is_not(capsys) -> None:
    expected = exercises.EXERCISES["mnist-cnn-hidden-parameters"].answer()
    for answer in (np.int64(expected), torch.tensor(expected), np.array(expected), float(expected)):
        assert exercises.check("mnist-cnn-hidden-parameters", answer), type(answer)
    for near_miss in (np.int64(expected - 128), torch.tensor(expected + 1)):  # the bias forgotten, one too many
        assert not exercises.check("mnist-cnn-hidden-parameters", near_miss)
    assert "not yet" in capsys.readouterr().out


def _dict_off_by(expected: dict, amount: float) -> dict:
    """The right dict but for its first entry, off by ``amount``."""
    first = next(iter(expected))
    return {**expected, first: expected[first] + amount}


#: For each exercise, the classic wrong answers a learner gives, as functions of the right answer.
NEAR_MISSES = {
    "mnist-cnn-hidden-parameters": lambda right: [right - 128, right + 1, 2 * right - 128],  # biases; 64 filters
    "mnist-cnn-feature-shape": lambda right: [(8, 64, 24, 24), (8, 12, 12, 64), tuple(right[1:])],  # no pool, order
    "fashion-shirts-mistaken": lambda right: [200 - right, right - 1, right + 1],  # the right ones counted; off by one
    "fashion-smoothed-target": lambda right: [0.9, 0.9 + 0.1 / 9, 1.0],  # the spread share forgotten, over 9 others
    "lenet5-parameters-by-layer": lambda right: [  # reversed, short, off by one, C5 left at 16 inputs
        list(reversed(right)),
        right[:-1],
        [n + 1 for n in right],
        [*right[:2], 16 * 120 * 25 + 120, *right[3:]],
    ],
    "lenet5-s2-size": lambda right: [right + 2, 2 * right, right + 1],  # padded as the page's, not pooled
    "alexnet-overfitting-gap": lambda right: [right + 1, right - 1, 100],  # an epoch off, the last epoch
    "alexnet-first-dense-parameters": lambda right: [right - 1024, 256 * 4 * 4 * 1024 + 1024],  # biases, 32x32
    "zfnet-smallest-validation-class": lambda right: [right + 1, right - 1, 1000, 7500],  # one off, 20%, all classes
    "zfnet-first-layer-filters": lambda right: [3, 64, 7],  # kernel size, AlexNet's, the ImageNet kernel
    "transfer-head-parameters": lambda right: [_dict_off_by(right, -129), _dict_off_by(right, 1)],  # biases
    "transfer-vgg16-feature-size": lambda right: [right + 1, 150 / 32],  # rounding up, not rounding at all
    "resnet32-parameters": lambda right: [460_000, right - 10],  # the paper's rounded 0.46M
    "resnet-cosine-quarter": lambda right: [0.075, 0.05, 0.1 * 2**-0.5],  # linear, halfway, cos(pi/4) alone
    "features-bytes-per-image": lambda right: [{key: value // 2 for key, value in right.items()}],  # float16
    "features-images-through-the-base": lambda right: [60_000, right + 10_000, 2],  # the printed count, 3 more
    "fine-tuning-last-block-parameters": lambda right: [_dict_off_by(right, 1)],
    "fine-tuning-standard-error": lambda right: [right / 100, right**2, 100 * (0.97 * 0.03 / 500)],  # fraction
    "whitening-filters-3x3": lambda right: [right // 2, 24, right + 0.5],  # negatives forgotten, the 2x2 count
    "lookahead-pull-halfway": lambda right: [right * 4, right * 2, right + 3e-4],  # linear, square, close
}


def test_every_exercise_names_its_near_misses() -> None:
    assert set(NEAR_MISSES) == set(exercises.EXERCISES)


@pytest.mark.parametrize("name", sorted(NEAR_MISSES))
def test_each_exercise_takes_its_right_answer_in_another_form_and_refuses_its_near_misses(name, request) -> None:
    _needs(name, request)
    right = exercises.EXERCISES[name].answer()  # computed once: some answers evaluate a model on real data
    exercise = dataclasses.replace(exercises.EXERCISES[name], answer=lambda: right)
    equivalent = {
        int: float,
        float: np.float64,
        tuple: list,
        list: tuple,
        dict: dict,
        str: lambda name: f" {name.lower()}",
    }[type(right)](right)
    assert exercise.accepts(right) and exercise.accepts(equivalent)
    wrong = [answer for answer in NEAR_MISSES[name](right) if exercise.accepts(answer)]
    assert not wrong, f"{name} accepts the near miss {wrong[0]!r} of {right!r}"


#: Answers worked out by hand or read from the papers, independently of the package's code: where a tutorial's
#: solution computes its answer the way `Exercise.answer` does, only these catch a model or an answer gone wrong.
BY_HAND = {
    "mnist-cnn-hidden-parameters": 32 * 12 * 12 * 128 + 128,  # 32 maps of 12x12 flattened into 128 units
    "mnist-cnn-feature-shape": (8, 64, 12, 12),  # 28 -> 26 -> 24 (two 3x3 convolutions) -> 12 (2x2 pool)
    "fashion-smoothed-target": 0.9 + 0.1 / 10,  # label smoothing 0.1 shared over all 10 classes
    "lenet5-parameters-by-layer": [6 * 25 + 6, 32 * 6 * 25 + 32, 120 * 32 * 25 + 120, 84 * 120 + 84, 10 * 84 + 10],
    "lenet5-s2-size": 12,  # an unpadded 5x5 C1 leaves 28 - 4 = 24; 2x2 pooling halves it
    "alexnet-first-dense-parameters": 256 * 8 * 8 * 1024 + 1024,  # 64 px, downsampled 8 times as 32 px is
    "zfnet-smallest-validation-class": 750,  # 15% of CIFAR-10's 5,000 training images of each class
    "zfnet-first-layer-filters": 96,  # Zeiler & Fergus 2014, Fig. 3: 96 filters of 7x7
    "transfer-head-parameters": {"vgg16": 512 * 128 + 128 + 128 + 1, "efficientnet_lite0": 1280 * 128 + 128 + 129},
    "transfer-vgg16-feature-size": 4,  # five 2x2 pools: 150 -> 75 -> 37 -> 18 -> 9 -> 4
    "resnet32-parameters": 464_154,  # He et al. 2016, Table 6: 0.46M
    "resnet-cosine-quarter": 0.1 * (1 + math.cos(math.pi / 4)) / 2,
    "features-bytes-per-image": {"vgg16": 512 * 4, "efficientnet_lite0": 1280 * 4},  # pooled float32 channels
    "fine-tuning-last-block-parameters": {
        "vgg16": 3 * (512 * 512 * 9 + 512),  # conv5_1 to conv5_3
        # the last MBConv (192 -> 1152 -> 320, 3x3 depthwise) and the 1x1 head convolution to 1280, with batch norms
        "efficientnet_lite0": 192 * 1152
        + 2 * 1152
        + 1152 * 9
        + 2 * 1152
        + 1152 * 320
        + 2 * 320
        + 320 * 1280
        + 2 * 1280,
    },
    "fine-tuning-standard-error": 100 * (0.97 * 0.03 / 500) ** 0.5,
    "whitening-filters-3x3": 2 * 3 * 3 * 3,  # one filter per eigenvector of 3x3x3 patches, and its negative
}


@pytest.mark.parametrize("name", sorted(BY_HAND))
def test_the_answers_agree_with_the_numbers_worked_out_by_hand(name, request) -> None:
    _needs(name, request)
    assert exercises.EXERCISES[name].accepts(BY_HAND[name]), (exercises.EXERCISES[name].answer(), BY_HAND[name])


def _cifar_shaped(counts: list[int]) -> datasets.ImageData:
    """Blank 32x32 images, ``counts[c]`` of class ``c``."""
    labels = torch.cat([torch.full((count,), label) for label, count in enumerate(counts)])
    images = torch.zeros(len(labels), 3, 32, 32, dtype=torch.uint8)
    return datasets.ImageData(images, labels, tuple(f"class {c}" for c in range(len(counts))), (0.5,) * 3, (0.25,) * 3)


def test_the_smallest_validation_class_is_15_percent_of_the_smallest_class_split_with_seed_0(monkeypatch) -> None:
    train = _cifar_shaped([60, 40, 47, 60, 60, 60, 60, 60, 60, 60])  # 15% of the smallest, 40: 6
    asked = []
    monkeypatch.setitem(
        exercises.DATASETS, "cifar10", lambda download: asked.append(download) or datasets.TrainTest(train, train)
    )
    assert exercises.EXERCISES["zfnet-smallest-validation-class"].answer() == 6
    assert asked == [True]  # a learner without the data gets it downloaded


def test_the_shirts_mistaken_are_the_shirt_rows_mistakes_among_200_test_images_of_each_class(monkeypatch) -> None:
    labels = torch.arange(10).repeat_interleave(250)  # 250 of each class: the exercise samples 200
    images = torch.arange(len(labels)).reshape(-1, 1, 1, 1).expand(-1, 1, 28, 28) % 251  # told apart by value
    test = datasets.ImageData(images.to(torch.uint8).contiguous(), labels, FASHION_CLASSES, (0.5,), (0.25,))
    asked = []
    monkeypatch.setitem(
        exercises.DATASETS, "fashion_mnist", lambda download: asked.append(download) or datasets.TrainTest(test, test)
    )
    shipped = models.create_model("fashion_cnn", weights="fashion_mnist").state_dict()
    seen = []

    def evaluate(model, loader):  # the shipped model's verdicts, made up: mistakes 0, 1, ..., 9 by class, but
        assert all(torch.equal(value, shipped[key]) for key, value in model.state_dict().items())
        assert torch.equal(loader.data.images, test.sample(200, seed=0).images)
        seen.append((len(loader.data), loader.data.class_counts()))
        labels = loader.data.labels
        predictions = labels.clone()
        for label in range(10):  # Shirt (6): 7 mistakes, not the most; 5 sandals taken for shirts (the column)
            mistakes = {6: 7, 2: 11}.get(label, label)
            predictions[(labels == label).nonzero().flatten()[:mistakes]] = (label + 1) % 10
        return SimpleNamespace(labels=labels, predictions=predictions)

    monkeypatch.setattr(exercises, "evaluate", evaluate)
    assert exercises.EXERCISES["fashion-shirts-mistaken"].answer() == 7
    assert seen == [(2000, dict.fromkeys(FASHION_CLASSES, 200))] and asked == [True]


def test_a_check_compares_names_in_any_case_numbers_exactly_within_tolerance_and_scalars_only() -> None:
    name = exercises.Exercise("name", 2, lambda: "Shirt", "hint")
    assert name.accepts(" shirt ") and not name.accepts("Shirts") and not name.accepts(6)
    large = exercises.Exercise("large", 1, lambda: 10**12, "hint")  # no relative slack: one off is wrong
    assert large.accepts(np.int64(10**12)) and not large.accepts(10**12 + 1)
    assert not large.accepts(np.array([10**12]))  # an array of one number is not a number


def test_the_first_epoch_with_a_gap_is_the_first_strictly_above_it(monkeypatch) -> None:
    gaps = [0.125, 0.1875, 0.25]  # exact in binary: the first equals 12.5 points, it does not pass them
    records = [EpochRecord(epoch, 1.0, 0.5 + gap, 1.0, 0.5, 0.1, 1.0) for epoch, gap in enumerate(gaps, start=1)]
    monkeypatch.setattr(exercises, "load_history", lambda experiment, recipe: History(records))
    assert exercises._first_epoch_with_gap("alexnet", points=12.5) == 2
