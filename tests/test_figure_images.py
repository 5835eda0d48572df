"""Every figure, drawn from fixed inputs, against a reviewed picture of it (``tests/baseline_images/``).

The content tests in ``test_visualize.py`` check what each figure shows (values, titles, colour scales); these
check how it looks as a whole: size, layout, colour maps, fonts, label placement. A change that alters a
figure fails here with the two pictures and their difference written side by side, so that a person can
look at them. After a deliberate change, redraw the baselines and review them before committing::

    pytest tests/test_figure_images.py --update-baselines

Inputs are built from fixed numbers and seeded generators only (no default weight initialisation), so the
pictures depend on cnn-study and matplotlib, not on torch's initialisers. Matplotlib's wheels bundle their
own FreeType, so text renders identically on every machine with the same matplotlib; the small tolerance
absorbs anti-aliasing differences between matplotlib versions.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.testing.compare import compare_images
from torch import nn

from cnn_study import explain, visualize
from cnn_study.datasets import BatchLoader, ImageData
from cnn_study.training import EpochRecord, History

from .conftest import FeaturesThenHead

BASELINES = Path(__file__).parent / "baseline_images"
DPI = 60  # enough to tell a 7-point label from an 8-point one; keeps each baseline under 40 kB
TOLERANCE = 1.0  # root-mean-square difference in grey levels (0-255), as matplotlib's own image tests measure


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _fill_parameters(model: nn.Module, scale: float) -> nn.Module:
    """Give every parameter fixed values, uniform in +-scale/sqrt(fan-in), from a seeded generator."""
    generator = _generator()
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter[0].numel() if parameter.dim() > 1 else parameter.numel()
            parameter.copy_(scale * (torch.rand(parameter.shape, generator=generator) * 2 - 1) / fan_in**0.5)
    return model.eval()


def _small_cnn(channels: int = 1, classes: int = 3, scale: float = 1.0) -> nn.Module:
    """Two convolutions and a linear head, with ``forward_features``/``forward_head`` like the registry's models."""

    features = nn.Sequential(
        nn.Conv2d(channels, 10, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(10, 20, 3, padding=1)
    )
    return _fill_parameters(
        FeaturesThenHead(features, nn.Sequential(nn.Flatten(), nn.Linear(20 * 8 * 8, classes))), scale
    )


def _blobs(count: int, channels: int = 1) -> torch.Tensor:
    """``count`` normalised 16 x 16 images: a bright disc whose place depends on the index, over noise."""
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    images = torch.randn(count, channels, 16, 16, generator=_generator()) * 0.3
    for index in range(count):
        centre_row, centre_col = 4 + 8 * (index % 2), 4 + 3 * (index % 3)
        images[index] += 2.0 * (((rows - centre_row) ** 2 + (cols - centre_col) ** 2) < 9)
    return images


def _history(accuracy: float, epochs: range = range(1, 6)) -> History:
    return History(
        [EpochRecord(e, 2.0 / e, accuracy - 0.3 / e, 2.2 / e, accuracy - 0.05 - 0.3 / e, 0.01, 3.0) for e in epochs]
    )


def _parts() -> dict[str, ImageData]:
    """CIFAR-10's classes in three unequal parts, as experiment 5 splits and draws them."""
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    sizes = {"train": 60, "validation": 20, "test": 25}
    parts = {}
    for offset, (name, size) in enumerate(sizes.items()):
        labels = (torch.arange(size) * (offset + 3)) % 10  # a different spread per part
        parts[name] = ImageData(torch.zeros(size, 1, 2, 2, dtype=torch.uint8), labels, classes, (0.5,), (0.5,), name)
    return parts


def _colour_images() -> ImageData:
    coarse = torch.rand(12, 3, 4, 4, generator=_generator()) * 255  # 4 x 4 patches of colour, enlarged
    images = torch.nn.functional.interpolate(coarse, scale_factor=4).to(torch.uint8)
    return ImageData(images, torch.arange(12) % 3, ("red", "green", "blue"), (0.5,) * 3, (0.25,) * 3, "colours")


def _results() -> list[dict]:
    return [
        {"experiment": 1, "recipe": "seed", "test_accuracy": 0.9906, "seconds": 95.0, "parameters": 225034},
        {"experiment": 1, "recipe": "improved", "test_accuracy": 0.9941, "seconds": 310.0, "parameters": 225034},
        {"experiment": 4, "recipe": "seed", "test_accuracy": 0.7012, "seconds": 5200.0, "parameters": 3_000_000},
        {"experiment": 7, "recipe": "improved", "test_accuracy": 0.9109, "seconds": 24000.0, "parameters": 855770},
        {"experiment": 9, "recipe": "improved", "test_accuracy": 0.989, "seconds": 1157.0, "parameters": 3_700_000},
    ]


#: The study's numbers for its nine experiments (``None``: it reported none), as `cnn_study.recipes` has them.
STUDY = {1: 0.9793, 2: 0.8057, 3: 0.9903, 4: 0.5324, 5: 0.807, 6: None, 7: None, 8: 0.9194, 9: 0.9795}


def _attributions() -> dict[str, explain.Attribution]:
    model, images = _small_cnn(scale=4.0), _blobs(2)
    return {"saliency": explain.saliency(model, images, 1), "Grad-CAM": explain.grad_cam(model, images, 1)}


def _deletion_curves() -> dict[str, explain.DeletionCurve]:
    model, images = _small_cnn(scale=4.0), _blobs(3)
    attribution = explain.grad_cam(model, images)
    shuffled = explain.Attribution(torch.rand(3, 16, 16, generator=_generator()), attribution.targets)
    return {
        name: explain.deletion_curve(model, images, maps, steps=8)
        for name, maps in (("Grad-CAM", attribution), ("random order", shuffled))
    }


def _embedding() -> Figure:
    labels = torch.arange(60) % 3
    points = torch.randn(60, 2, generator=_generator()) + 3 * torch.stack([labels % 2, labels // 2], 1)
    predictions = labels.clone()
    predictions[::7] = (labels[::7] + 1) % 3
    return visualize.embedding(points, labels, ["cat", "dog", "fox"], predictions=predictions)


FIGURES: dict[str, Callable[[], Figure]] = {
    "training_curves": lambda: visualize.training_curves(
        {"seed": _history(0.8), "improved": _history(0.9)},
        title="Two runs",
        held_out={"seed": "validation", "improved": "test"},
        marks={"learning rate drops": 3.5},
    ),
    "confusion_matrix": lambda: visualize.confusion_matrix(
        [0, 0, 0, 1, 1, 2, 2, 2, 2, 3], [0, 0, 1, 1, 3, 2, 2, 0, 2, 3], ["airplane", "cat", "dog", "ship"]
    ),
    "confusion_matrix_normalised": lambda: visualize.confusion_matrix(
        [0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 1, 0], ["a", "b", "c"], normalize=True
    ),
    "class_distribution_bar": lambda: visualize.class_distribution(_parts(), kind="bar"),
    "class_distribution_pie": lambda: visualize.class_distribution(_parts(), kind="pie", title="Split"),
    "image_grid": lambda: visualize.image_grid(
        _colour_images().images[:5], [0, 1, 2, 0, 1], ["red", "green", "blue"], predictions=[0, 2, 2, 1, 1], columns=3
    ),
    "image_grid_normalised": lambda: visualize.image_grid(
        _blobs(4), [0, 1, 0, 1], ["top", "bottom"], mean=(0.5,), std=(0.5,), columns=4, title="Blobs"
    ),
    "misclassified": lambda: visualize.misclassified(
        _small_cnn(channels=3), BatchLoader(_colour_images(), 6), count=4, columns=4
    ),
    "feature_maps": lambda: visualize.feature_maps(_small_cnn(), _blobs(1)[0], max_channels=20),
    "filters_image_layer": lambda: visualize.filters(_small_cnn(channels=3)),
    "filters_grey_image_layer": lambda: visualize.filters(_small_cnn()),
    "filters_deeper_layer": lambda: visualize.filters(_small_cnn(), layer="features.3", max_filters=4, max_inputs=5),
    "grad_cam": lambda: visualize.grad_cam(_small_cnn(), _blobs(2)[1], classes=["a", "b", "c"], target=2),
    "grad_cam_colour": lambda: visualize.grad_cam(
        _small_cnn(channels=3), _blobs(1, channels=3)[0], layer="features.0", mean=(0.5,) * 3, std=(0.25,) * 3
    ),
    "occlusion": lambda: visualize.occlusion(
        _small_cnn(scale=4.0), _blobs(2)[1], classes=["a", "b", "c"], patch=4, stride=2
    ),
    "attributions": lambda: visualize.attributions(_blobs(2), _attributions(), classes=["a", "b", "c"]),
    "randomisation_test": lambda: visualize.randomisation_test(
        explain.randomisation_test(_small_cnn(scale=4.0), _blobs(3), explain.grad_cam)
    ),
    "deletion_curves": lambda: visualize.deletion_curves(_deletion_curves()),
    "activation_maxima": lambda: visualize.activation_maxima(
        {
            f"features.3 #{channel}": explain.maximise_activation(
                _small_cnn(channels=3), "features.3", channel, input_size=(3, 16, 16), steps=8
            )
            for channel in range(3)
        },
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    ),
    "embedding": _embedding,
    "study_comparison": lambda: visualize.study_comparison(_results(), STUDY),
    "accuracy_vs_cost": lambda: visualize.accuracy_vs_cost(_results()),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_looks_as_reviewed(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    baseline = BASELINES / f"{name}.png"
    drawn = visualize.save_figure(FIGURES[name](), tmp_path / f"{name}.png", dpi=DPI)
    if request.config.getoption("--update-baselines"):
        BASELINES.mkdir(exist_ok=True)
        shutil.copyfile(drawn, baseline)
        pytest.skip(f"redrew {baseline.name}: look at it before committing")
    assert baseline.is_file(), f"no baseline {baseline}: run pytest {__file__} --update-baselines and review it"
    difference = compare_images(str(baseline), str(drawn), tol=TOLERANCE)
    assert difference is None, f"{name} looks different from its baseline: {difference}"
