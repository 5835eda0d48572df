"""Figures: content, not just that they draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_study import visualize
from cnn_study.datasets import BatchLoader, ImageData
from cnn_study.models import create_model
from cnn_study.training import EpochRecord, History


def _images(axes) -> list[np.ndarray]:
    return [image.get_array() for image in axes.get_images()]


def test_confusion_counts_match_a_hand_count() -> None:
    labels = [0, 0, 1, 1, 1, 2, 2, 2, 2]
    predictions = [0, 1, 1, 1, 2, 2, 2, 0, 2]
    expected = np.array([[1, 1, 0], [0, 2, 1], [1, 0, 3]])
    assert np.array_equal(visualize.confusion_counts(labels, predictions, 3), expected)
    figure = visualize.confusion_matrix(torch.tensor(labels), torch.tensor(predictions), ["cat", "dog", "fox"])
    axes = figure.axes[0]
    assert np.array_equal(_images(axes)[0], expected)
    assert [t.get_text() for t in axes.get_xticklabels()] == ["cat", "dog", "fox"]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["cat", "dog", "fox"]
    assert [t.get_text() for t in axes.texts] == [str(v) for v in expected.ravel()]
    assert "66.67%" in axes.get_title()


def test_normalised_confusion_matrix_rows_sum_to_one() -> None:
    figure = visualize.confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"], normalize=True)
    values = _images(figure.axes[0])[0]
    assert np.allclose(values, [[0.5, 0.5], [0.0, 1.0]])


def test_training_curves_plot_every_epoch_of_every_run() -> None:
    def history(offset: float) -> History:
        return History([EpochRecord(e, 1 / e + offset, 0.5 + e / 10, 1.2 / e, 0.4 + e / 10, 0.1, 1.0)
                        for e in range(1, 5)])  # fmt: skip

    figure = visualize.training_curves({"seed": history(0), "improved": history(0.1)}, title="runs")
    loss_axes, accuracy_axes = figure.axes
    assert len(loss_axes.lines) == 4  # train + validation per run
    assert list(accuracy_axes.lines[0].get_ydata()) == pytest.approx([60, 70, 80, 90])
    assert {line.get_label() for line in loss_axes.lines} == {
        "seed train", "seed validation", "improved train", "improved validation"}  # fmt: skip


def _toy_data(n: int = 40) -> ImageData:
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ImageData(images, torch.arange(n) % 4, ("w", "x", "y", "z"), (0.5,) * 3, (0.2,) * 3, "toy")


def test_class_distribution_bar_and_pie() -> None:
    data = _toy_data()
    train, validation = data.split(0.25, seed=0)
    bars = visualize.class_distribution({"train": train, "validation": validation}, kind="bar")
    axes = bars.axes[0]
    heights = [patch.get_height() for patch in axes.patches]
    assert heights == [train.class_counts()[c] for c in data.classes] + [
        validation.class_counts()[c] for c in data.classes]  # fmt: skip
    assert [t.get_text() for t in axes.get_xticklabels()] == list(data.classes)
    pies = visualize.class_distribution({"train": train, "validation": validation}, kind="pie")
    assert len(pies.axes) == 2 and len(pies.axes[0].patches) == 4
    with pytest.raises(ValueError, match="'bar' or 'pie'"):
        visualize.class_distribution(data, kind="line")


def test_image_grid_undoes_normalisation() -> None:
    data = _toy_data(8)
    normalised = (data.images.float() / 255 - 0.5) / 0.2
    figure = visualize.image_grid(normalised, data.labels, data.classes, mean=(0.5,) * 3, std=(0.2,) * 3, columns=4)
    shown = _images(figure.axes[0])[0]
    assert shown.shape == (16, 16, 3)
    assert np.allclose(shown, data.images[0].permute(1, 2, 0).numpy() / 255, atol=1e-5)


def test_feature_maps_show_the_channels_asked_for() -> None:
    model = create_model("mnist_cnn")
    figure = visualize.feature_maps(model, torch.randn(1, 28, 28), layers=["features.0", "features.2"],
                                    max_channels=16)  # fmt: skip
    images = [image for axes in figure.axes for image in _images(axes)]
    assert len(images) == 32
    assert {image.shape for image in images[:16]} == {(26, 26)} and {image.shape for image in images[16:]} == {(24, 24)}
    titles = [subfigure._suptitle.get_text() for subfigure in figure.subfigs]
    assert titles[0].startswith("features.0: (32, 26, 26)")


def test_unknown_layer_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"no layer 'conv9'.*features\.0, features\.2"):
        visualize.feature_maps(create_model("mnist_cnn"), torch.randn(1, 28, 28), layers=["conv9"])


def test_filters_one_picture_per_kernel_for_the_image_layer_and_per_input_channel_deeper() -> None:
    rgb = visualize.filters(create_model("resnet20"), max_filters=16)
    images = [image for axes in rgb.axes for image in _images(axes)]
    assert len(images) == 16 and images[0].shape == (3, 3, 3)
    grey = visualize.filters(create_model("mnist_cnn"))
    grey_images = [image for axes in grey.axes for image in _images(axes)]
    assert len(grey_images) == 32 and grey_images[0].shape == (3, 3)
    deeper = visualize.filters(create_model("lenet5"), layer="features.3", max_filters=4, max_inputs=6)
    assert len(deeper.axes) == 4 * 6 and _images(deeper.axes[0])[0].shape == (5, 5)


def test_saved_png_reopens_with_the_expected_size(tmp_path) -> None:
    figure = visualize.confusion_matrix([0, 1], [0, 1], ["a", "b"])
    path = visualize.save_figure(figure, tmp_path / "cm.png", dpi=100)
    with Image.open(path) as image:
        width, height = image.size
    assert image.format == "PNG"
    assert (width, height) == (round(figure.get_figwidth() * 100), round(figure.get_figheight() * 100))


def _square_task(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a bright square top-left (class 0) or bottom-right (class 1)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 1, 28, 28, generator=generator) * 0.3
    labels = torch.arange(n) % 2
    for image, label in zip(images, labels):
        corner = 18 if label else 4
        image[0, corner : corner + 6, corner : corner + 6] += 3.0
    return images, labels


def test_grad_cam_concentrates_on_the_region_that_decides_the_class() -> None:
    torch.manual_seed(0)
    model = create_model("mnist_cnn", num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = _square_task(256)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_images, test_labels = _square_task(20)
    for image, label in zip(test_images[:4], test_labels[:4]):
        heat, target = visualize.grad_cam_map(model, image)
        assert target == label
        assert heat.shape == (28, 28) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
        corner = 18 if label else 4
        inside = heat[corner : corner + 6, corner : corner + 6].mean()
        assert inside > 2 * heat.mean()
    figure = visualize.grad_cam(model, test_images[1], classes=["top-left", "bottom-right"])
    assert len(figure.axes) == 4  # image, heat map, its colour bar, overlay
    assert "bottom-right" in figure._suptitle.get_text()


def test_grad_cam_on_a_named_layer_and_a_binary_transfer_head() -> None:
    model = create_model("vgg16_transfer", base_weights=None, image_size=64)
    heat, target = visualize.grad_cam_map(model, torch.randn(3, 64, 64), layer="base.28")
    assert heat.shape == (64, 64) and target in (0, 1) and heat.min() >= 0


def test_misclassified_shows_the_most_confident_mistakes() -> None:
    data = _toy_data(40)
    model = create_model("resnet20", num_classes=4)
    figure = visualize.misclassified(model, BatchLoader(data, 20), count=6)
    titled = [axes for axes in figure.axes if axes.get_title()]
    assert len(titled) == 6
    assert all("→" in axes.get_title() and "%" in axes.get_title() for axes in titled)


def test_confusion_matrix_from_a_model_and_a_loader() -> None:
    data = _toy_data(40)
    model = create_model("resnet20", num_classes=4)
    figure = visualize.model_confusion_matrix(model, BatchLoader(data, 16))
    counts = _images(figure.axes[0])[0]
    assert counts.shape == (4, 4) and counts.sum() == 40
    assert counts.sum(1).tolist() == [10, 10, 10, 10]
