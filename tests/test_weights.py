"""Shipped checkpoints: each reaches, on its test set, the accuracy its metadata claims, and carries a SHA-256
of its parameters that loading checks; a transfer head ships without its base and loads onto it."""

from __future__ import annotations

import json

import pytest
import torch

from cnn_study.datasets import DATASETS, BatchLoader
from cnn_study.files import state_dict_sha256
from cnn_study.models import (
    WEIGHTS_DIR,
    available_weights,
    create_model,
    list_models,
    load_trained_model,
    save_trained_model,
)
from cnn_study.results import export_weights
from cnn_study.training import evaluate

SHIPPED = [(path.stem.split("-")[0], path.stem.split("-", 1)[1]) for path in sorted(WEIGHTS_DIR.glob("*.pt"))]


def test_the_small_models_and_the_transfer_experiments_ship_trained_weights_within_20_mb() -> None:
    trained_from_scratch = {"mnist_cnn", "lenet5", "fashion_cnn", "resnet20", "resnet56", "fast_cifar"}
    assert trained_from_scratch <= {model for model, _ in SHIPPED}
    transfer = {name for model, name in SHIPPED if model == "efficientnet_lite0_transfer"}
    assert transfer == {"dogs_vs_cats", "cifar10_cats_dogs", "dogs_vs_cats_fine_tuned"}  # experiments 6, 8, 9
    assert sum(path.stat().st_size for path in WEIGHTS_DIR.glob("*.pt")) < 20e6


@pytest.mark.slow  # every image of each test set
@pytest.mark.parametrize(("model", "name"), SHIPPED)
def test_shipped_weights_reach_their_recorded_accuracy(model: str, name: str, data_dir) -> None:
    assert model in list_models()
    meta = available_weights(model)[name].meta
    assert {"classes", "mean", "std", "dataset", "test_accuracy", "recipe", "sha256", "parts"} <= set(meta)
    stored = torch.load(WEIGHTS_DIR / f"{model}-{name}.pt", weights_only=True)["state_dict"]
    floating = {value.dtype for value in stored.values() if value.is_floating_point()}
    assert floating == {torch.float16 if meta.get("storage") == "float16" else torch.float32}
    network = create_model(model, weights=name)
    _, test = DATASETS[meta["dataset"]](data_dir)
    assert list(test.classes) == list(meta["classes"])
    loader = BatchLoader.for_model(test, network)  # in float32, as run measured the recorded accuracy
    accuracy = evaluate(network, loader, average_mirror=meta.get("test_mirror", False)).accuracy
    assert accuracy == pytest.approx(meta["test_accuracy"], abs=0.002)


@pytest.mark.parametrize(("model", "name"), SHIPPED)
def test_shipped_weights_match_their_recorded_sha256(model: str, name: str) -> None:
    content = torch.load(WEIGHTS_DIR / f"{model}-{name}.pt", weights_only=True)
    assert state_dict_sha256(content["state_dict"]) == content["meta"]["sha256"]


def test_a_damaged_weights_file_fails_its_hash_check(tmp_path, monkeypatch) -> None:
    damaged = tmp_path / "lenet5-mnist.pt"
    content = torch.load(WEIGHTS_DIR / "lenet5-mnist.pt", weights_only=True)
    content["state_dict"]["features.0.weight"][0, 0, 0, 0] += 1e-3  # one weight changed on disk
    torch.save(content, damaged)
    monkeypatch.setattr("cnn_study.models._registry.WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="lenet5-mnist.pt is damaged: .* SHA-256 .* --force-reinstall"):
        create_model("lenet5", weights="mnist")
    with pytest.raises(ValueError, match=r"lenet5-mnist.pt is damaged: .* SHA-256 .* export it again"):
        create_model("lenet5", weights=damaged)  # the same file by its path: checked just the same


def test_a_weights_file_without_its_sha256_is_refused(tmp_path, monkeypatch) -> None:
    content = torch.load(WEIGHTS_DIR / "lenet5-mnist.pt", weights_only=True)
    del content["meta"]["sha256"]  # the parameters are intact, but nothing vouches for them
    torch.save(content, tmp_path / "lenet5-mnist.pt")
    monkeypatch.setattr("cnn_study.models._registry.WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="lenet5-mnist.pt is damaged"):
        create_model("lenet5", weights="mnist")


def test_weights_refuse_a_builder_argument_that_builds_another_network_than_they_were_trained_in() -> None:
    with pytest.raises(
        ValueError, match=r"^The resnet56 weights 'cifar10' were trained with shortcuts=True, not False"
    ):
        create_model("resnet56", weights="cifar10", shortcuts=False)  # the plain network: the same parameter shapes
    with pytest.raises(ValueError, match=r"trained with widths=\(48, 192, 192\), not \(32, 128, 128\)\. Leave widths"):
        create_model("fast_cifar", weights="cifar10", widths=(32, 128, 128))
    with pytest.raises(ValueError, match=r"trained with base_weights='imagenet', not None"):
        create_model("efficientnet_lite0_transfer", weights="dogs_vs_cats", base_weights=None)  # a head alone
    as_trained = create_model("fast_cifar", weights="cifar10", widths=[48, 192, 192]).eval()  # the recorded widths
    with torch.no_grad():
        images = torch.rand(2, 3, 32, 32)
        assert torch.equal(as_trained(images), create_model("fast_cifar", weights="cifar10").eval()(images))


def test_weights_refuse_another_class_count() -> None:
    model, name = SHIPPED[0]
    with pytest.raises(ValueError, match="num_classes=3"):
        create_model(model, weights=name, num_classes=3)


def _finished_run(folder, model: torch.nn.Module, model_kwargs: dict) -> None:
    """A results folder as `run` leaves it, for a binary transfer model."""
    folder.mkdir(parents=True)
    meta = {
        "model": "efficientnet_lite0_transfer",
        "model_kwargs": model_kwargs,
        "num_classes": 1,
        "classes": ["cat", "dog"],
        "mean": list(model.mean),
        "std": list(model.std),
        "dataset": "dogs_vs_cats",
        "test_accuracy": 0.5,
    }
    save_trained_model(model, meta, folder / "model.pt")
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "experiment": 6,
                "name": "vgg16_dogs_vs_cats",
                "recipe": "improved",
                "quick": False,
                "model": "efficientnet_lite0_transfer",
                "test_accuracy": 0.5,
                "epochs": 1,
                "device": "cpu",
            }
        )
    )


@pytest.mark.usefixtures("offline_extra")
def test_a_shipped_head_loads_onto_its_imagenet_base_to_identical_outputs(tmp_path, monkeypatch) -> None:
    model_kwargs = {"pooling": "avg", "dropout": 0.5}
    trained = create_model("efficientnet_lite0_transfer", base_weights="imagenet", **model_kwargs).eval()
    torch.nn.init.normal_(trained.get_classifier().weight)  # a head that differs from a fresh one
    _finished_run(tmp_path / "run", trained, model_kwargs)
    shipped = export_weights(tmp_path / "run", "dogs_vs_cats", tmp_path / "weights", head_only=True)
    assert shipped.stat().st_size < 2e6  # the head's 0.33M parameters, not the 3.4M of the base
    monkeypatch.setattr("cnn_study.models._registry.WEIGHTS_DIR", tmp_path / "weights")
    reloaded = create_model("efficientnet_lite0_transfer", weights="dogs_vs_cats").eval()
    from_file, meta = load_trained_model(shipped)  # as `cnn-study evaluate <shipped file>` loads it
    images = torch.randn(2, 3, 224, 224)
    assert torch.equal(trained(images), reloaded(images))
    assert torch.equal(trained(images), from_file(images))
    assert meta["parts"] == available_weights("efficientnet_lite0_transfer")["dogs_vs_cats"].meta["parts"] == "head"


@pytest.mark.usefixtures("offline_extra")
def test_a_fine_tuned_base_cannot_ship_as_a_head(tmp_path) -> None:
    trained = create_model("efficientnet_lite0_transfer", base_weights="imagenet").eval()
    with torch.no_grad():
        trained.base._conv_head.weight.mul_(1.01)  # what fine-tuning the last block does
    _finished_run(tmp_path / "run", trained, {})
    with pytest.raises(ValueError, match="trained base differs .* export the whole model"):
        export_weights(tmp_path / "run", "dogs_vs_cats", tmp_path / "weights", head_only=True)


def test_float16_weights_are_half_the_size_and_load_to_the_same_outputs_within_half_precision(
    tmp_path, monkeypatch
) -> None:
    torch.manual_seed(0)
    trained = create_model("lenet5").eval()
    (tmp_path / "run").mkdir()
    meta = {"model": "lenet5", "num_classes": 10, "classes": [str(digit) for digit in range(10)], "dataset": "mnist"}
    save_trained_model(
        trained, {**meta, "mean": [0.1307], "std": [0.3081], "test_accuracy": 0.5}, tmp_path / "run" / "model.pt"
    )
    (tmp_path / "run" / "metrics.json").write_text(
        json.dumps(
            {
                "experiment": 3,
                "name": "lenet5",
                "recipe": "seed",
                "quick": False,
                "model": "lenet5",
                "test_accuracy": 0.5,
                "epochs": 1,
                "device": "cpu",
            }
        )
    )
    full = export_weights(tmp_path / "run", "mnist", tmp_path / "full")
    half = export_weights(tmp_path / "run", "mnist", tmp_path / "half", float16=True)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    content = torch.load(half, weights_only=True)
    assert (
        content["meta"]["storage"] == "float16"
        and state_dict_sha256(content["state_dict"]) == content["meta"]["sha256"]
    )
    monkeypatch.setattr("cnn_study.models._registry.WEIGHTS_DIR", tmp_path / "half")
    reloaded = create_model("lenet5", weights="mnist").eval()
    assert next(reloaded.parameters()).dtype == torch.float32  # computed in float32 as trained
    images = torch.randn(4, 1, 28, 28)
    assert torch.allclose(reloaded(images), trained(images), atol=1e-2)
    assert not torch.equal(reloaded(images), trained(images))  # rounded, so not bit-identical
