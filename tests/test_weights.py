"""Every shipped checkpoint reaches, on its test set, the accuracy its metadata claims."""

from __future__ import annotations

import pytest

from cnn_study.datasets import DATASETS, BatchLoader
from cnn_study.models import WEIGHTS_DIR, available_weights, create_model, list_models
from cnn_study.training import evaluate

SHIPPED = [(path.stem.split("-")[0], path.stem.split("-", 1)[1]) for path in sorted(WEIGHTS_DIR.glob("*.pt"))]


def test_the_small_models_ship_trained_weights() -> None:
    assert {"mnist_cnn", "lenet5", "fashion_cnn", "resnet20"} <= {model for model, _ in SHIPPED}
    assert sum(path.stat().st_size for path in WEIGHTS_DIR.glob("*.pt")) < 15e6


@pytest.mark.parametrize(("model", "name"), SHIPPED)
def test_shipped_weights_reach_their_recorded_accuracy(model: str, name: str, data_dir) -> None:
    assert model in list_models()
    meta = available_weights(model)[name].meta
    assert {"classes", "mean", "std", "dataset", "test_accuracy", "recipe"} <= set(meta)
    network = create_model(model, weights=name)
    _, test = DATASETS[meta["dataset"]](data_dir)
    assert list(test.classes) == list(meta["classes"])
    accuracy = evaluate(network, BatchLoader(test, 1000, mean=meta["mean"], std=meta["std"])).accuracy
    assert accuracy == pytest.approx(meta["test_accuracy"], abs=0.002)


def test_weights_refuse_another_class_count() -> None:
    model, name = SHIPPED[0]
    with pytest.raises(ValueError, match="num_classes=3"):
        create_model(model, weights=name, num_classes=3)
