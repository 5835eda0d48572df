"""The nine experiments as data: the study's settings, one table of its numbers, stages that state everything."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

from cnn_study.models import create_model
from cnn_study.recipes import (
    BACKBONES,
    RECIPES,
    STUDY_REPORTED,
    STUDY_REPORTS,
    Recipe,
    RecipeStage,
    experiments_using,
    get_recipe,
    list_experiments,
    study_accuracy,
)

README = Path(__file__).parents[1] / "README.md"


def test_the_studys_nine_experiments_have_a_seed_and_an_improved_recipe_and_ours_an_improved_one() -> None:
    assert [recipe.experiment for recipe in list_experiments()] == list(range(1, 11))
    for recipe in list_experiments()[:9]:
        assert {"seed", "improved"} <= set(RECIPES[recipe.name]) and recipe.recipe == "seed"
    assert list(RECIPES["fast_cifar"]) == ["improved"] and get_recipe("10") is RECIPES["fast_cifar"]["improved"]
    assert study_accuracy(10) is None and get_recipe("10").study_reported == "not in the study"


def test_seed_recipes_follow_the_study() -> None:
    lenet = get_recipe("lenet5", "seed")
    assert lenet.stages == (RecipeStage(epochs=10, optimizer="adam", lr=1e-3),)
    assert (lenet.batch_size, lenet.validation_fraction) == (128, 0.2)
    alexnet = get_recipe("4", "seed")
    assert alexnet.stages == (RecipeStage(epochs=100, optimizer="adam", lr=1e-3),) and alexnet.augment == ()
    resnet = get_recipe("resnet", "seed")
    [stage] = resnet.stages
    assert (stage.optimizer, stage.lr, stage.momentum, stage.weight_decay, stage.epochs, resnet.batch_size) == (
        "sgd",
        0.1,
        0.9,
        1e-4,
        50,
        128,
    )
    head, fine_tuning = get_recipe("vgg16_fine_tuning", "seed").stages
    assert (head.optimizer, head.trainable) == ("rmsprop", "head")
    assert (fine_tuning.optimizer, fine_tuning.trainable) == ("rmsprop", "last_block")


#: What the study states about each experiment's setup (the brief's summary of its notebooks), by experiment.
STUDY_STATES = {
    1: {"dataset": "mnist", "model": "mnist_cnn"},
    2: {"dataset": "fashion_mnist", "model": "fashion_cnn"},
    3: {"dataset": "mnist", "model": "lenet5", "optimizer": "adam", "epochs": 10, "batch_size": 128},
    4: {"dataset": "cifar10", "model": "alexnet_cifar", "optimizer": "adam", "lr": 1e-3, "epochs": 100},
    5: {"dataset": "cifar10", "model": "zfnet_cifar", "validation_fraction": 0.2},  # the 80/20 split
    6: {"dataset": "dogs_vs_cats", "model": "vgg16_transfer"},
    7: {
        "dataset": "cifar10",
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "epochs": 50,
        "batch_size": 128,
    },
    8: {"dataset": "cifar10_cats_dogs", "model": "vgg16_transfer", "optimizer": "adam", "epochs": 10},
    9: {"dataset": "dogs_vs_cats", "model": "vgg16_transfer", "optimizer": "rmsprop"},
}


def _setting(recipe: Recipe, name: str) -> object:
    """A recipe's setting by name: its own field, or a training setting that every one of its stages shares."""
    if name in {field.name for field in fields(Recipe)}:
        return getattr(recipe, name)
    [value] = {getattr(stage, name) for stage in recipe.stages}
    return value


@pytest.mark.parametrize("experiment", sorted(STUDY_STATES))
def test_every_seed_recipe_holds_each_setting_the_study_states(experiment) -> None:
    recipe = get_recipe(str(experiment), "seed")
    assert {key: _setting(recipe, key) for key in STUDY_STATES[experiment]} == STUDY_STATES[experiment]
    if experiment == 3:
        assert recipe.validation_fraction == 0.2  # "20% val"
    if experiment == 7:
        assert recipe.batch_size == 128 and recipe.stages[0].schedule != "constant"  # "LR schedule"
    if experiment == 8:  # 150 x 150 photos, shear/zoom/flip, one sigmoid output trained with binary cross-entropy
        assert [type(augmentation).__name__ for augmentation in recipe.augment] == ["ShearZoomFlip"]
        model = create_model(recipe.model, **recipe.model_kwargs)  # as run builds it, less the ImageNet download
        assert recipe.augment[0].flip and model.input_size == (3, 150, 150) and model.num_classes == 1


def test_unknown_experiment_and_recipe() -> None:
    with pytest.raises(ValueError, match="Unknown experiment 'lenet'"):
        get_recipe("lenet")
    with pytest.raises(ValueError, match="no recipe 'best'"):
        get_recipe("lenet5", "best")


def test_recipes_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Recipe(1, "mnist_cnn", "A CNN", "seed", "mnist", "mnist_cnn")  # which number is the epochs?
    with pytest.raises(TypeError):
        RecipeStage(10, "adam", 1e-3)


def test_a_recipe_refuses_stages_its_model_cannot_train() -> None:
    lenet = get_recipe("lenet5")
    for stages in ((), lenet.stages * 3):
        with pytest.raises(ValueError, match=f"has {len(stages)} training stages; a run trains one, or a head"):
            replace(lenet, stages=stages)
    with pytest.raises(ValueError, match=r"trains lenet5 from scratch: every stage trains all of it"):
        lenet.with_stage(trainable="head")  # a network trained from scratch has no pretrained base to freeze
    head_only = get_recipe("vgg16_dogs_vs_cats")
    with pytest.raises(ValueError, match=r"caches the base's features.*trainable='head'"):
        head_only.with_stage(trainable="all")  # cached features cannot train the base that computed them
    assert replace(head_only, feature_cache=False).with_stage(trainable="all").stages[0].trainable == "all"


def test_a_recipe_says_what_learns_in_each_stage() -> None:
    trainable = {
        (name, recipe): [stage.trainable for stage in RECIPES[name][recipe].stages]
        for name in RECIPES
        for recipe in RECIPES[name]
    }
    assert trainable.pop(("vgg16_fine_tuning", "seed")) == ["head", "last_block"]
    assert trainable.pop(("vgg16_fine_tuning", "improved")) == ["head", "all"]
    for transfer in ("vgg16_dogs_vs_cats", "vgg16_feature_extraction"):
        assert trainable.pop((transfer, "seed")) == trainable.pop((transfer, "improved")) == ["head"]
    assert set(map(tuple, trainable.values())) == {("all",)}  # every network trained from scratch, in one stage


def test_the_fine_tuning_stage_inherits_nothing_from_the_head_stage() -> None:
    head, fine_tuning = get_recipe("vgg16_fine_tuning", "improved").stages
    assert fine_tuning == RecipeStage(
        epochs=5, optimizer="adamw", lr=3e-5, weight_decay=1e-2, schedule="onecycle", trainable="all"
    )
    assert head == RecipeStage(
        epochs=30, optimizer="adamw", lr=1e-3, weight_decay=1e-2, schedule="cosine", trainable="head"
    )
    assert get_recipe("vgg16_fine_tuning", "seed").stages[1].weight_decay == 0.0


def test_a_stage_holds_every_optimisation_setting_of_its_recipe() -> None:
    assert get_recipe("resnet", "improved").stages == (
        RecipeStage(
            epochs=100,
            optimizer="sgd",
            lr=0.1,
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
            schedule="onecycle",
            label_smoothing=0.1,
        ),
    )


def test_changing_a_stage_or_the_epochs_leaves_every_other_setting() -> None:
    recipe = get_recipe("vgg16_fine_tuning")
    head, fine_tuning = recipe.with_stage(1, lr=1e-4).stages
    assert head == recipe.stages[0] and fine_tuning == replace(recipe.stages[1], lr=1e-4)
    assert recipe.with_stage(lr=1e-4).stages == (replace(recipe.stages[0], lr=1e-4), recipe.stages[1])
    assert recipe.with_epochs(3).stages == tuple(replace(stage, epochs=3) for stage in recipe.stages)
    assert replace(recipe.with_epochs(3), stages=recipe.stages) == recipe  # nothing else changed


def test_quick_shortens_every_stage() -> None:
    recipe = get_recipe("vgg16_fine_tuning")
    quick = recipe.quick()
    assert [stage.epochs for stage in quick.stages] == [recipe.quick_epochs] * 2 and quick.total_epochs == 2
    assert [stage.lr for stage in quick.stages] == [stage.lr for stage in recipe.stages]


def test_transfer_recipes_are_recognised_by_the_model_type_and_run_on_any_backbone() -> None:
    transfer = [recipe.experiment for recipe in list_experiments() if recipe.is_transfer]
    assert transfer == [6, 8, 9]
    on_each = [get_recipe("6").on_backbone(backbone) for backbone in BACKBONES]
    assert [(recipe.model, recipe.backbone) for recipe in on_each] == [
        ("vgg16_transfer", "vgg16"),
        ("efficientnet_lite0_transfer", "efficientnet_lite0"),
    ]
    assert on_each[0] == get_recipe("6")  # the study's base is the recipe's own
    assert on_each[1].title == "EfficientNet-Lite0 ImageNet transfer on Dogs vs Cats"
    assert on_each[1].on_backbone("vgg16") == get_recipe("6")  # and back
    with pytest.raises(ValueError, match="Unknown pretrained base 'resnet'"):
        get_recipe("6").on_backbone("resnet")


def test_settings_record_every_field_as_json() -> None:
    assert get_recipe("alexnet").settings()["quick_augment"] == ["CropFlip(padding=2, flip=True)"]
    assert get_recipe("lenet5").settings()["quick_augment"] is None
    settings = get_recipe("vgg16_feature_extraction").settings()
    assert settings["cached_views"] == ["Mirror()"] + ["ShearZoomFlip(shear=0.2, zoom=0.2, flip=True)"] * 4
    assert set(settings) == {field.name for field in fields(Recipe)}
    for recipe in (recipe for recipes in RECIPES.values() for recipe in recipes.values()):
        # as metrics.json records them, where the published runs are compared with their recipes: no tuples
        assert json.loads(json.dumps(recipe.settings())) == recipe.settings(), recipe.command()


def test_the_readme_shows_the_study_numbers_of_the_one_table() -> None:
    rows = re.findall(r"^\| (\d+) \| .* \| `(\w+)` \| (.*) \|$", README.read_text(), flags=re.M)
    assert {int(number): reported for number, _, reported in rows} == STUDY_REPORTED
    assert {int(number): name for number, name, _ in rows} == {r.experiment: r.name for r in list_experiments()}
    assert set(RECIPES) == {name for _, name, _ in rows}


def test_only_seed_recipes_assume_and_what_they_assume_are_their_own_settings() -> None:
    names = {field.name for field in fields(Recipe)} | {field.name for field in fields(RecipeStage)}
    for recipes in RECIPES.values():
        for recipe in recipes.values():
            if recipe.recipe == "seed":
                assert recipe.assumed and set(recipe.assumed) <= names, recipe.name
                assert len(set(recipe.assumed)) == len(recipe.assumed)
            else:  # ours throughout: nothing to mark
                assert recipe.assumed == (), (recipe.name, recipe.recipe)
    assert get_recipe("resnet", "seed").assumed == ("model", "schedule", "augment")  # "ResNet", "LR schedule": which?


@pytest.mark.parametrize("experiment", sorted(STUDY_STATES))
def test_a_seed_recipe_takes_each_training_setting_from_the_study_or_marks_it_assumed(experiment) -> None:
    recipe = get_recipe(str(experiment), "seed")
    stated = set(STUDY_STATES[experiment]) | ({"validation_fraction"} if experiment == 3 else set())  # "20% val"
    assert not stated & set(recipe.assumed), "a setting the study states is not an assumption"
    assert {"epochs", "batch_size", "optimizer", "lr"} <= stated | set(recipe.assumed)


def test_the_studys_headline_accuracy_is_the_last_number_it_reported_as_a_fraction() -> None:
    headline = {number: study_accuracy(number) for number in STUDY_REPORTED}
    assert headline == {
        1: 0.9793,
        2: 0.8057,
        3: 0.9903,
        4: 0.5324,  # "train 91.07% / val 53.24%": the validation number, the last
        5: 0.807,
        6: None,
        7: None,
        8: 0.9194,
        9: 0.9795,  # "82.92% (epoch 1) -> 97.95% (epoch 10)": the last epoch
        10: None,
    }


def test_a_mistyped_experiment_gets_up_to_three_suggestions_and_the_full_list() -> None:
    every = "mnist_cnn, fashion_cnn, lenet5, alexnet, zfnet, vgg16_dogs_vs_cats, resnet, vgg16_feature_extraction, "
    every += "vgg16_fine_tuning, fast_cifar"
    for typed, hint in (
        ("net", " Did you mean 'zfnet', 'resnet', 'lenet5'?"),  # four are close: the three closest
        ("cnn", " Did you mean 'mnist_cnn'?"),
        ("mnist-cnn", " Did you mean 'mnist_cnn', 'fashion_cnn'?"),  # read as mnist_cnn
        (
            "Vgg16-Fine-Tuning",
            " Did you mean 'vgg16_fine_tuning', 'vgg16_feature_extraction'?",
        ),  # suggestions forgive case and dashes
        ("vgg", ""),
        ("resnet56", " 'resnet56' is a recipe of 'resnet': ask for 'resnet' with the recipe 'resnet56'."),
    ):
        with pytest.raises(ValueError) as error:
            get_recipe(typed)
        assert str(error.value) == f"Unknown experiment {typed!r}.{hint} Choose one of: {every} (or 1-10)."
    with pytest.raises(ValueError) as error:
        get_recipe("lenet5", "turbo")
    assert str(error.value) == "Experiment lenet5 has no recipe 'turbo'; it has seed, improved."


def test_experiments_using_a_model_name_it_and_its_base_on_either_backbone() -> None:
    for model, experiments in (
        ("mnist_cnn", [1]),
        ("lenet5", [3]),
        ("resnet20", [7]),
        ("resnet56", [7]),
        ("fast_cifar", [10]),
        ("vgg16", [6, 8, 9]),
        ("efficientnet_lite0_transfer", [6, 8, 9]),
        ("resnet32", []),
    ):
        assert experiments_using(model) == experiments, model


def test_on_backbone_says_which_experiments_have_a_base_and_which_bases_there_are() -> None:
    with pytest.raises(ValueError) as error:
        get_recipe("lenet5").on_backbone("vgg16")
    assert str(error.value) == (
        "lenet5 trains lenet5 from scratch: recipe.on_backbone(...) chooses the pretrained base of the transfer "
        "experiments (6, 8 and 9) only."  # the command line's message names --backbone (test_robustness)
    )
    with pytest.raises(ValueError) as error:
        get_recipe("6").on_backbone("resnet")
    assert str(error.value) == "Unknown pretrained base 'resnet'; choose one of vgg16, efficientnet_lite0."


def test_a_quick_run_uses_the_lighter_augmentation_where_a_recipe_names_one() -> None:
    alexnet = get_recipe("alexnet")
    assert alexnet.quick_augment is not None and alexnet.quick_augment != alexnet.augment
    assert alexnet.quick().augment == alexnet.quick_augment
    lenet = get_recipe("lenet5")
    assert lenet.quick_augment is None and lenet.quick().augment == lenet.augment != ()


def test_every_number_attributed_to_the_study_is_in_its_words_with_what_it_measured() -> None:
    assert list(STUDY_REPORTS) == list(range(1, 11)) and STUDY_REPORTED == {
        number: report.numbers for number, report in STUDY_REPORTS.items()
    }
    for number, report in STUDY_REPORTS.items():
        numbers = re.findall(r"\d+(?:\.\d+)?%", report.numbers)
        assert all(value in report.quote for value in numbers), number  # every number is in the study's words
        assert report.measured and (numbers or "no number" in report.measured or number == 10), number
    assert "not name" in STUDY_REPORTS[2].measured and "test" not in STUDY_REPORTS[2].numbers  # no split: assumed
    assert "first epoch" in STUDY_REPORTS[9].quote and "one 10-epoch fine-tuning run" in STUDY_REPORTS[9].measured


def test_a_recipes_command_line_names_its_base_and_seed_only_where_they_are_not_its_own() -> None:
    fine_tuning = get_recipe("vgg16_fine_tuning", "seed")
    assert fine_tuning.command() == "cnn-study run vgg16_fine_tuning --recipe seed"
    offline = fine_tuning.on_backbone("efficientnet_lite0")
    assert offline.command() == "cnn-study run vgg16_fine_tuning --recipe seed --backbone efficientnet_lite0"
    assert replace(get_recipe("lenet5"), seed=1).command() == "cnn-study run lenet5 --recipe improved --seed 1"


@pytest.mark.usefixtures("offline_extra")
def test_a_recipes_model_starts_a_transfer_run_on_imagenet_weights_with_the_recipes_head() -> None:
    recipe = get_recipe("vgg16_dogs_vs_cats").on_backbone("efficientnet_lite0")
    model = recipe.create_model()
    imagenet = create_model("efficientnet_lite0", weights="IMAGENET1K")
    assert recipe.model_kwargs == {"pooling": "avg", "dropout": 0.5}
    assert torch.equal(model.base._conv_stem.weight, imagenet.features._conv_stem.weight)
    assert repr(model.head) == repr(create_model(recipe.model, **recipe.model_kwargs).head)  # pooled, dropout 0.5
    assert "AdaptiveAvgPool2d" in repr(model.head) and "Dropout(p=0.5" in repr(model.head)
    lenet = get_recipe("lenet5").create_model()  # a model trained from scratch takes no base weights
    assert type(lenet) is type(create_model("lenet5"))
