"""Figures: content, not just that they draw."""

from __future__ import annotations

import matplotlib.colors
import numpy as np
import pytest
import torch
from PIL import Image

from cnn_study import explain, visualize
from cnn_study.datasets import BatchLoader, ImageData
from cnn_study.models import create_model
from cnn_study.training import EpochRecord, History


def _cam(
    model: torch.nn.Module, image: torch.Tensor, target: int | None = None, layer: str | None = None
) -> tuple[torch.Tensor, int]:
    """Grad-CAM of one image: its map and the class explained."""
    attribution = explain.grad_cam(model, explain.one_image(image)[None], target, layer)
    return attribution.maps[0], int(attribution.targets[0])


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
        return History(
            [EpochRecord(e, 1 / e + offset, 0.5 + e / 10, 1.2 / e, 0.4 + e / 10, 0.1, 1.0) for e in range(1, 5)]
        )

    figure = visualize.training_curves({"seed": history(0), "improved": history(0.1)}, title="runs")
    loss_axes, accuracy_axes = figure.axes
    assert len(loss_axes.lines) == 4  # train + validation per run
    assert list(accuracy_axes.lines[0].get_ydata()) == pytest.approx([60, 70, 80, 90])
    assert {line.get_label() for line in loss_axes.lines} == {
        "seed train",
        "seed validation",
        "improved train",
        "improved validation",
    }


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
        validation.class_counts()[c] for c in data.classes
    ]
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
    figure = visualize.feature_maps(model, torch.randn(1, 28, 28), layers=["features.0", "features.2"], max_channels=16)
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


@pytest.mark.slow  # trains a CNN, or builds VGG16
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
        heat, target = _cam(model, image)
        assert target == label
        assert heat.shape == (28, 28) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
        corner = 18 if label else 4
        inside = heat[corner : corner + 6, corner : corner + 6].mean()
        assert inside > 2 * heat.mean()
    figure = visualize.grad_cam(model, test_images[1], classes=["top-left", "bottom-right"])
    assert len(figure.axes) == 4  # image, heat map, its colour bar, overlay
    assert "bottom-right" in figure._suptitle.get_text()


@pytest.mark.slow  # trains a CNN, or builds VGG16
def test_grad_cam_on_a_named_layer_and_a_binary_transfer_head() -> None:
    model = create_model("vgg16_transfer", image_size=64)
    heat, target = _cam(model, torch.randn(3, 64, 64), layer="base.28")
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


# ----------------------------------------------------------------------------- Grad-CAM by hand


class LinearReadout(torch.nn.Module):
    """Features = the image itself (``C x H x W``); logits = a linear map of every feature pixel.

    For this model Grad-CAM can be written down: the gradient of logit ``c`` with respect to feature
    map ``k`` is ``W[c, k]`` (an ``H x W`` map), its spatial mean ``alpha[c, k]``, and the map is
    ``ReLU(sum_k alpha[c, k] * image[k])``, scaled to a maximum of one.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight)  # classes x C x H x W

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.0

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,kchw->nk", features, self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _by_hand(weight: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    alpha = weight.mean(dim=(1, 2))  # one weight per feature map
    cam = torch.relu((alpha[:, None, None] * image).sum(0))
    return cam / cam.max()


def _two_squares(height: int = 6, width: int = 10) -> torch.Tensor:
    """Channel 0 lights a square top-right, channel 1 one bottom-left: off the diagonal, in a wide image."""
    image = torch.full((2, height, width), 0.1)
    image[0, 0:2, 7:9] = 1.0
    image[1, 4:6, 1:3] = 1.0
    return image


def _spatial_weights(classes: int = 2, height: int = 6, width: int = 10) -> torch.Tensor:
    """Weights that vary over space (so the spatial mean matters) with signs that differ by class."""
    ramp = torch.linspace(0.2, 1.8, height * width).view(height, width)  # mean 1
    by_class = [
        torch.stack([2 * ramp, -1 * ramp.flip(1)]),  # class 0: channel 0 for, channel 1 against
        torch.stack([-1 * ramp.t().reshape(height, width), 3 * ramp]),  # class 1: the other way round
    ]
    return torch.stack(by_class[:classes])


def test_grad_cam_equals_the_hand_computed_map_for_each_class() -> None:
    weight, image = _spatial_weights(), _two_squares()
    model = LinearReadout(weight)
    for target in (0, 1):
        heat, explained = _cam(model, image, target=target)
        assert explained == target and heat.shape == (6, 10)
        assert torch.allclose(heat, _by_hand(weight[target], image), atol=1e-5)
    top_right, bottom_left = (slice(0, 2), slice(7, 9)), (slice(4, 6), slice(1, 3))
    class_0, _ = _cam(model, image, target=0)
    class_1, _ = _cam(model, image, target=1)
    assert class_0[top_right].min() == 1.0 and class_0[bottom_left].max() == 0.0  # ReLU: negative evidence is 0
    assert class_1[bottom_left].min() == 1.0 and class_1[top_right].max() == 0.0


def test_grad_cam_defaults_to_the_predicted_class() -> None:
    weight, image = _spatial_weights(), _two_squares()
    predicted = int(LinearReadout(weight)(image[None]).argmax())
    heat, target = _cam(LinearReadout(weight), image)
    assert target == predicted and torch.allclose(heat, _by_hand(weight[predicted], image), atol=1e-5)


def test_grad_cam_of_a_one_logit_binary_model_explains_class_0_by_the_negated_logit() -> None:
    weight, image = _spatial_weights(classes=1), _two_squares()
    model = LinearReadout(weight)
    positive, _ = _cam(model, image, target=1)
    negative, _ = _cam(model, image, target=0)
    assert torch.allclose(positive, _by_hand(weight[0], image), atol=1e-5)
    assert torch.allclose(negative, _by_hand(-weight[0], image), atol=1e-5)
    assert not torch.allclose(positive, negative)


def test_grad_cam_upsamples_a_coarse_layer_to_the_image() -> None:
    weight = _spatial_weights(height=3, width=5)
    image = torch.rand(2, 6, 10, generator=torch.Generator().manual_seed(0))

    class Pooled(LinearReadout):
        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.avg_pool2d(x, 2)

    heat, _ = _cam(Pooled(weight), image, target=1)
    coarse = _by_hand(weight[1], torch.nn.functional.avg_pool2d(image[None], 2)[0])
    expected = torch.nn.functional.interpolate(coarse[None, None], size=(6, 10), mode="bilinear", align_corners=False)
    assert torch.allclose(heat, (expected / expected.max())[0, 0], atol=1e-5)


# ----------------------------------------------------------------------------- figures show what they claim


def test_feature_maps_draw_the_activations_themselves() -> None:
    torch.manual_seed(0)
    model = create_model("mnist_cnn").eval()
    image = torch.randn(1, 28, 28)
    with torch.no_grad():
        first = model.features[0](image[None])[0]
    figure = visualize.feature_maps(model, image, layers=["features.0"], max_channels=5)
    shown = [image for axes in figure.axes for image in _images(axes)]
    assert len(shown) == 5
    for channel, picture in enumerate(shown):
        assert np.allclose(picture, first[channel].numpy(), atol=1e-6)


def test_filters_draw_the_kernels_themselves() -> None:
    model = create_model("lenet5")
    kernels = model.features[0].weight.detach()  # 6 x 1 x 5 x 5: one grey picture per kernel
    pictures = [image for axes in visualize.filters(model).axes for image in _images(axes)]
    for kernel, picture in zip(kernels, pictures, strict=True):
        scaled = (kernel[0] - kernel.min()) / (kernel.max() - kernel.min())
        assert np.allclose(picture, scaled.numpy(), atol=1e-5)
    deeper = model.features[3].weight.detach()  # 16 x 6 x 5 x 5: one picture per filter and input channel
    figure = visualize.filters(model, layer="features.3", max_filters=3, max_inputs=4)
    for axes_index, axes in enumerate(figure.axes):
        row, col = divmod(axes_index, 4)
        assert np.array_equal(_images(axes)[0], deeper[row, col].numpy())


def test_misclassified_shows_only_mistakes_most_confident_first() -> None:
    torch.manual_seed(0)
    data = _toy_data(40)
    model = create_model("resnet20", num_classes=4).eval()
    loader = BatchLoader(data, 20)
    from cnn_study.training import evaluate

    result = evaluate(model, loader)
    wrong = torch.nonzero(result.predictions != result.labels).flatten()
    confidence = result.probabilities[wrong, result.predictions[wrong]]
    expected = wrong[confidence.argsort(descending=True)][:5]
    figure = visualize.misclassified(model, loader, count=5)
    titled = [axes for axes in figure.axes if axes.get_title()]
    assert len(wrong) >= 5 and len(titled) == 5
    shown_confidence = [float(axes.get_title().rsplit("(", 1)[1].rstrip("%)")) for axes in titled]
    assert shown_confidence == sorted(shown_confidence, reverse=True)
    for axes, index in zip(titled, expected.tolist()):
        truth, predicted = axes.get_title().split("\n→ ")
        assert truth == data.classes[data.labels[index]] and predicted.split(" (")[0] != truth
        assert np.allclose(_images(axes)[0], data.images[index].permute(1, 2, 0).numpy() / 255, atol=1e-6)


def test_study_comparison_draws_the_study_and_each_recipe_per_experiment() -> None:
    rows = [
        {"experiment": 1, "recipe": "seed", "test_accuracy": 0.991},
        {"experiment": 1, "recipe": "improved", "test_accuracy": 0.9938},
        {"experiment": 7, "recipe": "improved", "test_accuracy": 0.8982},
        {"experiment": 7, "recipe": "seed", "test_accuracy": None},  # unfinished: left out
    ]
    figure = visualize.study_comparison(rows, {1: 0.9793, 7: None})
    [axes] = figure.axes
    assert [label.get_text() for label in axes.get_xticklabels()] == ["1", "7"]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["the study", "ours: seed", "ours: improved"]
    heights = {
        (container.get_label(), index): bar.get_height()
        for container in axes.containers
        for index, bar in enumerate(container)
    }
    assert heights[("the study", 0)] == pytest.approx(97.93) and np.isnan(heights[("the study", 1)])
    assert heights[("ours: improved", 1)] == pytest.approx(89.82) and np.isnan(heights[("ours: seed", 1)])


def test_accuracy_vs_cost_places_each_run_at_its_size_and_time() -> None:
    rows = [
        {"experiment": 3, "recipe": "seed", "test_accuracy": 0.9891, "seconds": 272.0, "parameters": 61706},
        {"experiment": 7, "recipe": "resnet56", "test_accuracy": 0.9109, "seconds": 24000.0, "parameters": 855770},
    ]
    by_size, by_time = visualize.accuracy_vs_cost(rows).axes
    assert [tuple(c.get_offsets()[0]) for c in by_size.collections] == [(61706, 98.91), (855770, 91.09)]
    assert [tuple(c.get_offsets()[0]) for c in by_time.collections] == [(272.0, 98.91), (24000.0, 91.09)]
    assert [text.get_text() for text in by_size.texts] == ["3 seed", "7 resnet56"]
    assert by_size.get_xscale() == by_time.get_xscale() == "log"


def test_accuracy_vs_cost_keeps_labels_of_close_points_apart_and_inside_the_axes() -> None:
    rows = [
        {"experiment": 1, "recipe": "improved", "test_accuracy": 0.9938, "seconds": 306.0, "parameters": 1_199_882},
        {"experiment": 1, "recipe": "seed", "test_accuracy": 0.9930, "seconds": 272.0, "parameters": 1_199_882},
        {"experiment": 7, "recipe": "resnet56", "test_accuracy": 0.9109, "seconds": 24000.0, "parameters": 855_770},
    ]
    figure = visualize.accuracy_vs_cost(rows)
    figure.canvas.draw()
    for axes in figure.axes:
        boxes = [text.get_window_extent() for text in axes.texts]
        assert [text.get_text() for text in axes.texts] == ["1 improved", "1 seed", "7 resnet56"]
        assert not boxes[0].overlaps(boxes[1])  # the two MNIST runs sit almost on one point
        right_edge = axes.get_window_extent().x1
        assert all(box.x1 <= right_edge for box in boxes)
    by_time = figure.axes[1]
    assert by_time.texts[2].get_horizontalalignment() == "right"  # the longest run: its label left of the point


def test_training_curves_name_the_held_out_set_per_run_and_mark_epochs() -> None:
    history = History([EpochRecord(e, 1 / e, 0.5, 1.0, 0.5, 0.1, 1.0) for e in range(1, 5)])
    figure = visualize.training_curves(
        {"seed": history, "improved": history},
        held_out={"seed": "validation", "improved": "test"},
        marks={"fine-tuning starts": 2.5},
    )
    loss_axes, accuracy_axes = figure.axes
    labels = [line.get_label() for line in loss_axes.lines]
    assert labels == ["seed train", "seed validation", "improved train", "improved test", "fine-tuning starts"]
    for axes in (loss_axes, accuracy_axes):
        assert list(axes.lines[-1].get_xdata()) == [2.5, 2.5]
    only_test = visualize.training_curves(history, held_out="test")
    assert [line.get_label() for line in only_test.axes[0].lines] == ["train", "test"]


def _one_region_model(binary: bool = False) -> torch.nn.Module:
    """Class 1's logit is the sum of the 4 x 4 block at rows 4-7, columns 8-11 (off the diagonal); class 0's is 0."""
    weight = torch.zeros(1, 1, 12, 16)
    weight[0, 0, 4:8, 8:12] = 1.0
    readout = LinearReadout(weight if binary else torch.cat([torch.zeros_like(weight), weight]))
    return readout


def test_occlusion_lowers_the_class_only_where_the_square_covers_its_evidence() -> None:
    image = torch.ones(1, 12, 16)
    model = _one_region_model()
    result = explain.occlusion_map(model, image, target=1, patch=4, stride=4)
    assert result.probabilities.shape == (3, 4) and result.target == 1
    assert result.unoccluded == pytest.approx(torch.sigmoid(torch.tensor(16.0)).item())
    expected = torch.full((3, 4), result.unoccluded)
    expected[1, 2] = 0.5  # the square hides all 16 evidence pixels: both logits 0
    assert torch.allclose(result.probabilities, expected)
    overlapping = explain.occlusion_map(model, image, target=1, patch=4, stride=2).probabilities
    # square at rows 2-5, columns 6-9 hides 2 x 2 of the evidence: class 1's logit 16 - 4 = 12
    assert overlapping[1, 3] == pytest.approx(torch.sigmoid(torch.tensor(12.0)).item())
    assert explain.occlusion_map(model, image).target == 1  # defaults to the prediction


def test_occlusion_of_a_one_logit_model_scores_class_0_by_the_negated_logit() -> None:
    image = torch.ones(1, 12, 16)
    model = _one_region_model(binary=True)
    for target, sign in ((1, 1.0), (0, -1.0)):
        result = explain.occlusion_map(model, image, target=target, patch=4, stride=4)
        assert result.unoccluded == pytest.approx(torch.sigmoid(torch.tensor(sign * 16.0)).item())
        assert result.probabilities[1, 2] == pytest.approx(0.5)


def test_occlusion_figure_draws_the_probabilities_over_the_image() -> None:
    image = torch.ones(1, 12, 16)
    model = _one_region_model()
    figure = visualize.occlusion(model, image, classes=["blank", "square"], target=1, patch=4, stride=4)
    original, sensitivity, overlay = figure.axes[:3]
    drawn = _images(sensitivity)[0]
    assert np.allclose(drawn, explain.occlusion_map(model, image, target=1, patch=4, stride=4).probabilities)
    assert _images(sensitivity)[0].shape == (3, 4) and len(_images(overlay)) == 2
    # with stride == patch the squares tile the image, and each value is drawn exactly over its square
    assert sensitivity.get_images()[0].get_extent() == [-0.5, 15.5, 11.5, -0.5]
    assert "square" in figure._suptitle.get_text()


def test_occlusion_rejects_a_batch_and_an_oversized_square() -> None:
    model = _one_region_model()
    with pytest.raises(ValueError, match="one image of shape C x H x W"):
        explain.occlusion_map(model, torch.ones(2, 1, 12, 16))
    with pytest.raises(ValueError, match="patch must be between 1 and the image side 12"):
        explain.occlusion_map(model, torch.ones(1, 12, 16), patch=13)


def test_confusion_matrix_normalises_each_row_by_its_own_count() -> None:
    # class a: 4 images (2 right); class b: 1 image (wrong); class c: none
    figure = visualize.confusion_matrix([0, 0, 0, 0, 1], [0, 0, 1, 2, 2], ["a", "b", "c"], normalize=True)
    matrix_axes, colour_bar = figure.axes
    assert np.allclose(_images(matrix_axes)[0], [[0.5, 0.25, 0.25], [0, 0, 1], [0, 0, 0]])  # an empty row stays 0
    assert [t.get_text() for t in matrix_axes.texts][:3] == ["0.50", "0.25", "0.25"]
    assert colour_bar.get_ylabel() == "fraction of class"


def test_confusion_matrix_counts_scale_from_zero_and_write_dark_cells_in_white() -> None:
    figure = visualize.confusion_matrix([0, 0, 1, 1, 1], [0, 1, 0, 1, 1], ["cat", "dog"])
    matrix_axes, colour_bar = figure.axes
    assert matrix_axes.get_images()[0].get_clim() == (0, 2)  # every cell is at least 1: the scale still starts at 0
    assert colour_bar.get_ylabel() == "images"
    assert [(t.get_text(), t.get_color()) for t in matrix_axes.texts] == [
        ("1", "black"),
        ("1", "black"),
        ("1", "black"),
        ("2", "white"),  # above half the largest value
    ]
    assert matrix_axes.get_title() == "Confusion matrix (accuracy 60.00%)"
    assert (matrix_axes.get_xlabel(), matrix_axes.get_ylabel()) == ("predicted class", "true class")
    assert [label.get_rotation() for label in matrix_axes.get_xticklabels()] == [0, 0]  # short names stay level
    long_names = visualize.confusion_matrix([0, 1], [0, 1], ["airplane", "automobile"]).axes[0]
    assert [label.get_rotation() for label in long_names.get_xticklabels()] == [45, 45]


def test_confusion_counts_check_lengths_and_class_range_with_clear_messages() -> None:
    assert visualize.confusion_counts([0, 0], [0, 0], 1).tolist() == [[2]]  # one class only: valid
    assert visualize.confusion_counts([2, 0], [1, 2], 3).tolist() == [[0, 0, 1], [0, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match=r"^labels has 2 entries, predictions 3: one each per image\.$"):
        visualize.confusion_counts([0, 1], [0, 1, 1], 2)
    with pytest.raises(ValueError, match=r"^labels holds classes 0\.\.3, outside the 3 classes 0\.\.2; pass one"):
        visualize.confusion_counts([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match=r"^predictions holds classes -1\.\.1, outside the 3 classes 0\.\.2;"):
        visualize.confusion_counts([0, 1], [-1, 1], 3)


def _unbalanced() -> dict[str, ImageData]:
    """Two parts with different counts per class (3, 2, 1 and 1, 0, 2), so that bars and wedges differ."""
    images = torch.zeros(9, 1, 4, 4, dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 0, 2, 2])
    data = ImageData(images, labels, ("cat", "dog", "fox"), (0.5,), (0.5,), "toy")
    return {"train": data.subset(torch.arange(6)), "validation": data.subset(torch.arange(6, 9))}


def test_class_distribution_bars_sit_side_by_side_with_their_counts_written_on_them() -> None:
    figure = visualize.class_distribution(_unbalanced(), kind="bar")
    axes = figure.axes[0]
    train_bars, validation_bars = axes.containers
    assert [bar.get_height() for bar in train_bars] == [3, 2, 1]
    assert [bar.get_height() for bar in validation_bars] == [1, 0, 2]
    # two parts share each class position: 0.4 wide each, centred 0.2 to either side of it
    assert [bar.get_x() + bar.get_width() / 2 for bar in train_bars] == pytest.approx([-0.2, 0.8, 1.8])
    assert [bar.get_x() + bar.get_width() / 2 for bar in validation_bars] == pytest.approx([0.2, 1.2, 2.2])
    assert [bar.get_width() for bar in train_bars] == pytest.approx([0.4] * 3)
    assert [text.get_text() for text in axes.texts] == ["3", "2", "1", "1", "0", "2"]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["train", "validation"]
    assert (axes.get_ylabel(), axes.get_title()) == ("images", "Images per class")
    assert figure.get_size_inches() == pytest.approx((6, 4))  # wider from 8 classes (or fewer shown in groups)
    alone = visualize.class_distribution(_unbalanced()["train"], title="Training part").axes[0]
    assert alone.get_legend() is None and alone.get_title() == "Training part"
    assert [bar.get_x() + bar.get_width() / 2 for bar in alone.patches] == pytest.approx([0, 1, 2])


def test_class_distribution_pies_show_each_part_as_shares_of_its_own_total() -> None:
    figure = visualize.class_distribution(_unbalanced(), kind="pie", title="Split")
    train_axes, validation_axes = figure.axes
    assert (train_axes.get_title(), validation_axes.get_title()) == ("train", "validation")
    angles = [wedge.theta2 - wedge.theta1 for wedge in train_axes.patches]
    assert angles == pytest.approx([180, 120, 60])  # 3, 2 and 1 of 6 images
    assert train_axes.patches[0].theta1 == pytest.approx(90)  # the first class starts at the top
    labels = [text.get_text() for text in train_axes.texts]
    assert labels == ["cat", "dog", "fox", "50.0%", "33.3%", "16.7%"]
    assert figure._suptitle.get_text() == "Split"
    with pytest.raises(ValueError, match="parts is empty"):
        visualize.class_distribution({}, kind="pie")


def test_training_curves_pair_each_runs_solid_train_and_dashed_held_out_lines_by_colour() -> None:
    def history(accuracy: float) -> History:  # epochs 3-5, as a resumed or fine-tuning stage numbers them
        return History([EpochRecord(e, 2.0 / e, accuracy, 3.0 / e, accuracy - 0.1, 0.1, 1.0) for e in (3, 4, 5)])

    figure = visualize.training_curves({"seed": history(0.5), "improved": history(0.9)}, title="Two runs")
    loss_axes, accuracy_axes = figure.axes
    assert (loss_axes.get_title(), loss_axes.get_xlabel(), loss_axes.get_ylabel()) == ("Loss", "epoch", "loss")
    assert (accuracy_axes.get_title(), accuracy_axes.get_xlabel(), accuracy_axes.get_ylabel()) == (
        "Accuracy",
        "epoch",
        "accuracy (%)",
    )
    assert figure._suptitle.get_text() == "Two runs"
    for axes in (loss_axes, accuracy_axes):
        seed_train, seed_held_out, improved_train, improved_held_out = axes.lines
        assert seed_train.get_color() == seed_held_out.get_color() != improved_train.get_color()
        assert improved_train.get_color() == improved_held_out.get_color()
        assert [line.get_linestyle() for line in axes.lines] == ["-", "--", "-", "--"]
        assert all(line.get_marker() == "." and list(line.get_xdata()) == [3, 4, 5] for line in axes.lines)
        assert all(tick == int(tick) for tick in axes.get_xticks())  # whole epochs only
        assert axes.get_legend() is not None
    assert list(loss_axes.lines[1].get_ydata()) == pytest.approx([1.0, 0.75, 0.6])  # losses as they are
    assert list(accuracy_axes.lines[3].get_ydata()) == pytest.approx([80, 80, 80])  # accuracies in percent
    single = visualize.training_curves(history(0.5))
    assert [line.get_label() for line in single.axes[1].lines] == ["train", "validation"]
    assert single._suptitle is None


def test_image_grid_titles_each_image_with_its_class_and_marks_wrong_predictions_red() -> None:
    images = torch.stack([torch.full((1, 4, 6), value, dtype=torch.uint8) for value in (0, 51, 255)])
    figure = visualize.image_grid(images, [0, 1, 2], ["a", "b", "c"], predictions=[0, 2, 2], columns=2, title="Grid")
    assert len(figure.axes) == 4 and not any(axes.axison for axes in figure.axes)  # 2 x 2, no frames or ticks
    shown = [axes.get_images() for axes in figure.axes]
    assert [len(images) for images in shown] == [1, 1, 1, 0]  # the fourth cell stays empty
    assert np.allclose(shown[1][0].get_array(), np.full((4, 6), 0.2))  # greyscale: H x W in [0, 1]
    assert all(image[0].get_clim() == (0, 1) and image[0].get_cmap().name == "gray" for image in shown[:3])
    titles = [(axes.get_title(), axes.title.get_color()) for axes in figure.axes[:3]]
    assert titles == [("a\n→ a", "black"), ("b\n→ c", "red"), ("c\n→ c", "black")]
    assert figure._suptitle.get_text() == "Grid"
    plain = visualize.image_grid(images, [2, 1, 0], ["a", "b", "c"], columns=8)
    assert [axes.get_title() for axes in plain.axes[:3]] == ["c", "b", "a"] and len(plain.axes) == 8


def test_image_grid_clips_what_normalisation_cannot_show() -> None:
    normalised = torch.tensor([[[-9.0, 0.0, 9.0]]])  # one 1 x 3 image: far below, at and far above the mean
    figure = visualize.image_grid(normalised[None], [0], ["a"], mean=(0.5,), std=(0.25,))
    assert np.allclose(_images(figure.axes[0])[0], [[0.0, 0.5, 1.0]])


def test_feature_maps_default_to_the_first_and_last_convolution_and_name_each_channel() -> None:
    model = create_model("lenet5")  # convolutions features.0 (6 maps) and features.3 (16 maps), then C5
    figure = visualize.feature_maps(model, torch.randn(1, 28, 28), max_channels=10)
    titles = [subfigure._suptitle.get_text() for subfigure in figure.subfigs]
    assert titles == [
        "features.0: (6, 28, 28) (showing 6 of 6 channels)",
        "features.6: (120, 1, 1) (showing 10 of 120 channels)",
    ]
    assert len(figure.axes) == 16  # the grid's spare cells are removed
    assert [axes.get_title() for axes in figure.axes[:7]] == ["#0", "#1", "#2", "#3", "#4", "#5", "#0"]
    assert all(not axes.axison for axes in figure.axes)
    assert model.training  # the figure leaves the model in the mode it found it


def test_filters_of_a_deeper_layer_share_one_symmetric_colour_scale_and_label_rows_and_inputs() -> None:
    model = create_model("lenet5")
    weights = model.features[3].weight.detach()[:2, :3]
    figure = visualize.filters(model, layer="features.3", max_filters=2, max_inputs=3)
    limit = weights.abs().max().item()
    for axes in figure.axes:
        image = axes.get_images()[0]
        assert image.get_clim() == pytest.approx((-limit, limit)) and image.get_cmap().name == "RdBu_r"
        assert list(axes.get_xticks()) == [] and list(axes.get_yticks()) == []
    assert [axes.get_ylabel() for axes in figure.axes] == ["#0", "", "", "#1", "", ""]
    assert [axes.get_title() for axes in figure.axes] == ["in 0", "in 1", "in 2", "", "", ""]
    assert figure._suptitle.get_text() == "features.3: (16, 6, 5, 5) kernels (showing 2)"
    with pytest.raises(ValueError, match=r"features.1 is a ReLU, not a convolution; choose one of"):
        visualize.filters(model, layer="features.1")


def test_filters_of_the_image_layer_are_colour_pictures_each_scaled_to_its_own_range() -> None:
    resnet = create_model("resnet20")
    figure = visualize.filters(resnet, max_filters=3)
    assert len(figure.axes) == 3 and figure._suptitle.get_text() == "stem.0: (16, 3, 3, 3) kernels (showing 3)"
    for kernel, axes in zip(resnet.stem[0].weight.detach()[:3], figure.axes, strict=True):
        expected = ((kernel - kernel.min()) / (kernel.max() - kernel.min())).permute(1, 2, 0)  # H x W x RGB
        assert np.allclose(_images(axes)[0], expected.numpy(), atol=1e-5)


def test_save_figure_takes_the_format_from_the_suffix_png_without_one_at_120_dpi(tmp_path) -> None:
    figure = visualize.confusion_matrix([0, 1], [0, 1], ["a", "b"])
    assert visualize.save_figure(figure, tmp_path / "cm.pdf").read_bytes().startswith(b"%PDF")
    assert visualize.save_figure(figure, tmp_path / "cm").read_bytes().startswith(b"\x89PNG")
    with Image.open(visualize.save_figure(figure, tmp_path / "cm.png")) as image:
        assert image.size == (round(figure.get_figwidth() * 120), round(figure.get_figheight() * 120))


def test_grad_cam_figure_shows_the_image_its_map_on_a_fixed_scale_and_the_two_overlaid() -> None:
    weight, image = _spatial_weights()[:, :1], _two_squares()[:1]  # one channel: a greyscale image
    model = LinearReadout(weight)
    model.train()
    heat, _ = _cam(model, image, target=0)
    assert model.training  # the map leaves the model in the mode it found it
    figure = visualize.grad_cam(model, image, classes=["right", "left"], target=0)
    original, heat_axes, overlay, colour_bar = figure.axes
    assert [axes.get_title() for axes in (original, heat_axes, overlay)] == ["image", "Grad-CAM", "overlay"]
    assert not any(axes.axison for axes in (original, heat_axes, overlay))
    shown_heat = heat_axes.get_images()[0]
    assert np.allclose(shown_heat.get_array(), heat.numpy()) and shown_heat.get_clim() == (0, 1)
    assert shown_heat.get_cmap().name == "jet"
    under, over = overlay.get_images()
    assert np.allclose(over.get_array(), heat.numpy()) and over.get_alpha() == 0.45 and under.get_alpha() is None
    assert figure._suptitle.get_text() == "Evidence for class 'right'"
    with pytest.raises(ValueError, match=r"one image of shape C x H x W, got shape \(1, 1, 6, 10\): pass images\[i\]"):
        _cam(model, image[None])


def test_study_comparison_groups_bars_per_experiment_with_values_written_and_a_scale_that_shows_them() -> None:
    rows = [
        {"experiment": 2, "recipe": "improved", "test_accuracy": 0.94},
        {"experiment": 2, "recipe": "seed", "test_accuracy": 0.93},
        {"experiment": 5, "recipe": "seed", "test_accuracy": 0.70},
    ]
    figure = visualize.study_comparison(rows, {2: 0.8057, 5: 0.807, 9: None})
    [axes] = figure.axes
    study, seed, improved = axes.containers
    # three series share each experiment's slot: 0.8 / 3 wide, centred on -0.267, 0, +0.267
    width = 0.8 / 3
    assert [bar.get_x() + bar.get_width() / 2 for bar in study] == pytest.approx([-width, 1 - width])
    assert [bar.get_x() + bar.get_width() / 2 for bar in seed] == pytest.approx([0, 1])
    assert [bar.get_x() + bar.get_width() / 2 for bar in improved] == pytest.approx([width, 1 + width])
    assert study.patches[0].get_facecolor()[:3] == pytest.approx((0.6, 0.6, 0.6))  # the study in grey
    assert [text.get_text() for text in axes.texts] == ["80.6", "80.7", "93.0", "70.0", "94.0", ""]
    assert axes.get_ylim() == pytest.approx((60, 104))  # 10 points below the lowest bar, room for labels above
    assert figure.get_size_inches() == pytest.approx((7, 4))  # a bar group per experiment: wider from 7 on
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("experiment", "accuracy (%)")  # the study's splits vary
    assert figure._suptitle.get_text().startswith("The study's numbers and ours")
    with pytest.raises(ValueError, match="Nothing to compare"):
        visualize.study_comparison([{"experiment": 1, "recipe": "seed", "test_accuracy": None}], {1: None})


def test_accuracy_vs_cost_labels_each_point_and_colours_it_by_experiment() -> None:
    rows = [
        {"experiment": 3, "recipe": "seed", "test_accuracy": 0.9891, "seconds": 272.0, "parameters": 61706},
        {"experiment": 7, "recipe": "improved", "test_accuracy": None, "seconds": 1.0, "parameters": 1},  # unfinished
    ]
    by_size, by_time = visualize.accuracy_vs_cost(rows).axes
    for axes, x in ((by_size, 61706), (by_time, 272.0)):
        [points] = axes.collections  # the unfinished run is left out
        assert points.get_offsets().tolist() == [[x, pytest.approx(98.91)]]
        assert points.get_facecolor()[0][:3] == pytest.approx(matplotlib.colors.to_rgb("C2"))  # experiment 3
        assert [text.get_text() for text in axes.texts] == ["3 seed"]
    assert (by_size.get_xlabel(), by_size.get_ylabel(), by_size.get_title()) == (
        "parameters",
        "test accuracy (%)",
        "Accuracy and model size",
    )
    assert (by_time.get_xlabel(), by_time.get_title()) == ("time the run took (s)", "Accuracy and training time")
    with pytest.raises(ValueError, match="No finished run"):
        visualize.accuracy_vs_cost(rows[1:])


def test_occlusion_defaults_to_an_8_pixel_square_in_steps_of_2_and_accepts_the_smallest_square() -> None:
    model = _one_region_model()
    image = torch.ones(1, 12, 16)
    assert explain.occlusion_map(model, image, target=1).probabilities.shape == (3, 5)  # (12 - 8) // 2 + 1, ...
    one_pixel = explain.occlusion_map(model, image, target=1, patch=1, stride=4).probabilities
    assert one_pixel.shape == (3, 4)
    with pytest.raises(ValueError, match="patch must be between 1 and the image side 12, got 0"):
        explain.occlusion_map(model, image, patch=0)


def test_occlusion_figure_centres_each_value_on_its_square_over_the_whole_image() -> None:
    image = torch.ones(1, 12, 16)
    model = _one_region_model()
    figure = visualize.occlusion(model, image, classes=["blank", "square"], target=1, patch=4, stride=2)
    original, sensitivity, overlay, colour_bar = figure.axes
    assert [axes.get_title() for axes in (original, sensitivity, overlay)] == [
        "image",
        "4x4 grey square here",
        "overlay",
    ]
    drawn = sensitivity.get_images()[0]
    # squares start every 2 pixels; the first is centred 1.5 from the edge, each value drawn +-1 around its centre
    assert drawn.get_extent() == [0.5, 14.5, 10.5, 0.5]  # 7 x 5 squares: last centres 13.5 and 9.5
    assert drawn.get_clim() == (0, 1) and drawn.get_cmap().name == "viridis"
    under, over = overlay.get_images()
    assert over.get_extent() == drawn.get_extent() and over.get_alpha() == 0.5 and under.get_alpha() is None
    for axes in (original, sensitivity, overlay):
        assert axes.get_xlim() == (-0.5, 15.5) and axes.get_ylim() == (11.5, -0.5) and not axes.axison
    assert colour_bar.get_ylabel() == "probability of the class"
    assert figure._suptitle.get_text() == "Occlusion sensitivity for class 'square' (probability 1.00 unoccluded)"
    unnamed = visualize.occlusion(model, image, target=1, patch=4, stride=4)
    assert unnamed._suptitle.get_text().startswith("Occlusion sensitivity for class '1'")


# ----------------------------------------------------------------------------- gaps a mutation run found


def test_filters_of_a_single_filter_and_input_are_one_grey_kernel_without_input_titles() -> None:
    model = create_model("lenet5")
    figure = visualize.filters(model, layer="features.3", max_filters=1, max_inputs=1)
    [axes] = figure.axes
    image = axes.get_images()[0]
    assert np.array_equal(image.get_array(), model.features[3].weight.detach()[0, 0].numpy())
    assert image.get_cmap().name == "gray" and image.get_interpolation() == "nearest"
    assert (axes.get_ylabel(), axes.get_title()) == ("#0", "")  # one input: no "in 0" heading
    two_inputs = visualize.filters(model, layer="features.3", max_filters=1, max_inputs=2)
    assert [axes.get_title() for axes in two_inputs.axes] == ["in 0", "in 1"]


def test_filters_default_to_32_filters_of_8_inputs_in_rows_of_8_and_draw_pixels_as_squares() -> None:
    model = create_model("resnet20")  # its last convolution has 64 filters of 64 inputs
    deeper = visualize.filters(model, layer=visualize.layer_names(model)[-1])
    assert deeper._suptitle.get_text().endswith("kernels (showing 32)") and len(deeper.axes) == 32 * 8
    image_layer = visualize.filters(model)  # the stem: 16 colour kernels, two rows of 8
    assert len(image_layer.axes) == 16 and image_layer.get_figheight() == pytest.approx(1.4 * 2 + 0.4)
    assert all(axes.get_images()[0].get_interpolation() == "nearest" for axes in image_layer.axes)


def test_figures_keep_their_colour_maps_under_a_users_style() -> None:
    with matplotlib.rc_context({"image.cmap": "gray", "image.interpolation": "bilinear"}):
        maps = visualize.feature_maps(create_model("lenet5"), torch.randn(1, 28, 28), max_channels=2)
        occluded = visualize.occlusion(_one_region_model(), torch.ones(1, 12, 16), target=1, patch=4, stride=4)
    assert {axes.get_images()[0].get_cmap().name for axes in maps.axes} == {"viridis"}
    _, sensitivity, overlay, _ = occluded.axes
    for image in (sensitivity.get_images()[0], overlay.get_images()[1]):
        assert image.get_cmap().name == "viridis" and image.get_clim() == (0, 1)


def test_feature_maps_show_16_channels_unless_told_otherwise() -> None:
    figure = visualize.feature_maps(create_model("mnist_cnn"), torch.randn(1, 28, 28), layers=["features.0"])
    assert len(figure.axes) == 16 and figure.subfigs[0]._suptitle.get_text().endswith("(showing 16 of 32 channels)")


def test_unknown_layer_names_the_models_class() -> None:
    with pytest.raises(ValueError, match=r"^LeNet5 has no layer 'conv9'\. Convolution layers: features\.0, "):
        visualize.find_layer(create_model("lenet5"), "conv9")


def test_grad_cam_of_evidence_everywhere_keeps_the_fixed_0_to_1_scale() -> None:
    weight = torch.ones(2, 1, 6, 10)  # every pixel counts for both classes: the map is positive everywhere
    image = torch.linspace(0.5, 1.5, 60).view(1, 6, 10)
    heat, _ = _cam(LinearReadout(weight), image, target=0)
    assert heat.min() > 0.3  # so a colour scale fitted to the data would start well above 0
    _, heat_axes, overlay, _ = visualize.grad_cam(LinearReadout(weight), image, target=0).axes
    assert heat_axes.get_images()[0].get_clim() == (0, 1) and overlay.get_images()[1].get_clim() == (0, 1)
    against = LinearReadout(-weight)  # no evidence anywhere: the map is 0 and must look like 0, not mid-scale
    heat, _ = _cam(against, image, target=0)
    assert heat.max() == 0
    _, heat_axes, overlay, _ = visualize.grad_cam(against, image, target=0).axes
    assert heat_axes.get_images()[0].get_clim() == (0, 1) and overlay.get_images()[1].get_clim() == (0, 1)


def test_grad_cam_of_a_one_logit_model_defaults_to_class_1_only_for_a_positive_logit() -> None:
    image = torch.ones(1, 6, 10)
    for logit, expected in ((0.5, 1), (0.0, 0), (-0.5, 0)):
        model = LinearReadout(torch.full((1, 1, 6, 10), logit / 60))  # the logit is the weighted sum of 60 ones
        assert _cam(model, image)[1] == expected


def test_grad_cam_figure_explains_the_class_asked_for_on_a_registered_colour_model() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20")
    image = torch.randn(3, 32, 32)
    predicted = int(model.eval()(image[None]).argmax())
    other = (predicted + 1) % 10
    heat, _ = _cam(model, image, target=other)
    assert heat.shape == (32, 32)
    figure = visualize.grad_cam(model, image, target=other)
    assert np.allclose(figure.axes[1].get_images()[0].get_array(), heat.numpy())
    assert figure._suptitle.get_text() == f"Evidence for class '{other}'"


def test_grad_cam_checks_the_image_against_what_the_model_expects() -> None:
    with pytest.raises(ValueError, match=r"LeNet5 expects"):
        _cam(create_model("lenet5"), torch.zeros(1, 32, 32))
    with pytest.raises(ValueError, match=r"^image must be one image of shape C x H x W, got shape \(6, 10\)\.$"):
        _cam(LinearReadout(_spatial_weights()), torch.zeros(6, 10))


def test_image_display_needs_both_mean_and_std() -> None:
    with pytest.raises(ValueError, match=r"^Pass both mean and std"):
        visualize.image_grid(torch.zeros(1, 1, 4, 4), [0], ["a"], mean=(0.5,))


def test_occlusion_figure_explains_the_class_asked_for_with_the_image_denormalised() -> None:
    image = torch.ones(1, 12, 16)
    model = _one_region_model()
    figure = visualize.occlusion(model, image, target=0, patch=4, stride=4, mean=(0.5,), std=(0.25,))
    original, sensitivity, _, _ = figure.axes
    expected = explain.occlusion_map(model, image, target=0, patch=4, stride=4).probabilities
    assert np.allclose(sensitivity.get_images()[0].get_array(), expected)
    assert np.allclose(original.get_images()[0].get_array(), 0.75)  # 1 * 0.25 + 0.5
    default = visualize.occlusion(model, image, target=1).axes[1]
    assert default.get_title() == "8x8 grey square here" and default.get_images()[0].get_array().shape == (3, 5)


def test_occlusion_accepts_a_square_as_large_as_the_image_and_colour_images() -> None:
    model = _one_region_model()
    whole = explain.occlusion_map(model, torch.ones(1, 12, 16), target=1, patch=12, stride=2)
    assert whole.probabilities.shape == (1, 3)
    colour = LinearReadout(torch.cat([torch.zeros(1, 3, 12, 16), torch.ones(1, 3, 12, 16)]))
    image = torch.ones(3, 12, 16)
    image[1] = 2.0  # channels differ, so a mix-up of channels and copies would show
    result = explain.occlusion_map(colour, image, target=1, patch=4, stride=4)
    # class 1's logit is the sum of all 3 x 12 x 16 pixels (4 per pixel); a square removes 4 x 4 x 4 of it
    expected = torch.sigmoid(torch.tensor(4.0 * 12 * 16 - 4 * 16))
    assert torch.allclose(result.probabilities, torch.full((3, 4), expected.item()))


def test_occlusion_defaults_to_the_prediction_on_the_whole_image() -> None:
    weight = torch.zeros(2, 1, 12, 16)
    weight[1, 0, :4, :4] = 1.0  # class 1's evidence lies under the first square
    result = explain.occlusion_map(LinearReadout(weight), torch.ones(1, 12, 16), patch=4, stride=4)
    assert result.target == 1 and result.probabilities[0, 0] == pytest.approx(0.5)


def test_model_confusion_matrix_passes_normalize_on() -> None:
    data = _toy_data(40)
    figure = visualize.model_confusion_matrix(create_model("resnet20", num_classes=4), BatchLoader(data, 16), True)
    assert np.allclose(_images(figure.axes[0])[0].sum(1), 1.0)


def test_confusion_matrix_of_one_image_an_empty_row_and_four_letter_names() -> None:
    one = visualize.confusion_matrix([1], [1], ["cat", "ship"]).axes[0]
    assert one.get_title() == "Confusion matrix (accuracy 100.00%)"
    assert [label.get_rotation() for label in one.get_xticklabels()] == [45, 45]  # "ship" is long enough to tilt
    normalised = visualize.confusion_matrix([0, 0], [0, 1], ["a", "b"], normalize=True).axes[0]
    assert [text.get_text() for text in normalised.texts] == ["0.50", "0.50", "0.00", "0.00"]  # no "nan"


def test_misclassified_titles_are_red_and_show_16_mistakes_8_to_a_row_by_default() -> None:
    torch.manual_seed(0)
    data = _toy_data(40)
    figure = visualize.misclassified(create_model("resnet20", num_classes=4), BatchLoader(data, 20))
    titled = [axes for axes in figure.axes if axes.get_title()]
    assert len(titled) == 16 and len(figure.axes) == 16
    assert figure.get_figwidth() == pytest.approx(1.5 * 8)
    assert all(matplotlib.colors.to_rgb(axes.title.get_color()) == (1, 0, 0) for axes in titled)


def test_image_grid_puts_8_images_to_a_row_by_default() -> None:
    figure = visualize.image_grid(torch.zeros(9, 1, 4, 4, dtype=torch.uint8), [0] * 9, ["a"])
    assert len(figure.axes) == 16 and figure.get_figwidth() == pytest.approx(12)
    assert not any(axes.axison for axes in figure.axes)  # the 7 empty cells too


def test_class_distribution_of_one_unnamed_dataset_calls_it_data() -> None:
    data = _unbalanced()["train"]
    unnamed = ImageData(data.images, data.labels, data.classes, data.mean, data.std, "")
    assert visualize.class_distribution(unnamed, kind="pie").axes[0].get_title() == "data"


def test_results_charts_state_their_errors_exactly_and_write_values_upright() -> None:
    with pytest.raises(ValueError, match=r"^No finished run to plot\.$"):
        visualize.accuracy_vs_cost([])
    with pytest.raises(ValueError, match=r"^Nothing to compare: no finished run and no reported number\.$"):
        visualize.study_comparison([], {})
    with pytest.raises(ValueError, match=r"^parts is empty: pass an ImageData, or a mapping of names to ImageData\.$"):
        visualize.class_distribution({})
    rows = [{"experiment": 1, "recipe": "seed", "test_accuracy": 0.05, "seconds": 1.0, "parameters": 10}]
    [axes] = visualize.study_comparison(rows, {1: None}).axes
    assert axes.get_ylim() == (0, 104) and {text.get_rotation() for text in axes.texts} == {90}
    [points] = visualize.accuracy_vs_cost(rows).axes[0].collections
    assert points.get_sizes().tolist() == [25]


# ----------------------------------------------------------------------------- attribution figures


def test_attributions_draw_each_maps_magnitude_scaled_to_its_maximum_beside_the_image() -> None:
    images = torch.stack([_two_squares()[:1], -_two_squares()[:1]])
    signed = explain.Attribution(torch.stack([torch.full((6, 10), -2.0), torch.zeros(6, 10)]), torch.tensor([1, 0]))
    signed.maps[0, 0, 0] = 4.0
    figure = visualize.attributions(images, {"signed": signed}, classes=["right", "left"])
    grid = np.array(figure.axes).reshape(2, 2)
    assert [axes.get_title() for axes in grid[:, 0]] == ["left", "right"]  # the class each row explains
    assert grid[0, 1].get_title() == "signed" and grid[1, 1].get_title() == ""
    first = grid[0, 1].get_images()[0]
    assert first.get_array()[0, 0] == 1.0 and first.get_array()[1, 1] == 0.5  # |-2| / 4
    assert first.get_clim() == (0, 1) and first.get_cmap().name == "inferno"
    assert np.all(grid[1, 1].get_images()[0].get_array() == 0)  # an all-zero map stays 0, not nan
    assert grid[1, 1].get_images()[0].get_clim() == (0, 1)  # and is drawn as 0, not as mid-scale
    other = explain.Attribution(signed.maps, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"^The maps explain different classes"):
        visualize.attributions(images, {"a": signed, "b": other})
    with pytest.raises(
        ValueError, match=r"^maps is empty: pass attributions by method name, e\.g\. \{'Grad-CAM': \.\.\.\}\.$"
    ):
        visualize.attributions(images, {})


def test_attributions_of_one_normalised_image_show_it_as_it_was_on_a_fixed_scale() -> None:
    image = torch.zeros(1, 1, 6, 10)  # normalised: the mean, grey
    attribution = explain.Attribution(torch.ones(1, 6, 10), torch.tensor([1]))
    figure = visualize.attributions(image, {"flat": attribution}, mean=(0.5,), std=(0.25,))
    original, drawn = figure.axes
    assert np.allclose(original.get_images()[0].get_array(), 0.5) and original.get_images()[0].get_clim() == (0, 1)
    assert original.get_title() == "class 1" and drawn.get_title() == "flat"
    assert drawn.get_images()[0].get_clim() == (0, 1)


def test_randomisation_figure_starts_at_full_agreement_and_follows_the_mean() -> None:
    correlations = torch.tensor([[0.5, 0.3], [0.1, -0.1]])
    maps = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    result = explain.RandomisationTest(["fc", "conv"], correlations, maps)
    figure = visualize.randomisation_test(result, image=1)
    curve = figure.axes[0]
    mean = curve.lines[2]
    assert list(mean.get_xdata()) == [0, 1, 2] and list(mean.get_ydata()) == pytest.approx([1.0, 0.4, 0.0])
    assert [label.get_text() for label in curve.get_xticklabels()] == ["trained", "+ fc", "+ conv"]
    thumbnails = figure.axes[1:]
    assert [axes.get_title() for axes in thumbnails] == ["trained", "1 layer random", "2 layers random"]
    expected = maps[2, 1] / maps[2, 1].max()
    assert np.allclose(thumbnails[2].get_images()[0].get_array(), expected.numpy())
    assert thumbnails[2].get_images()[0].get_clim() == (0, 1)  # the map's minimum is above 0: the scale is not


def test_randomisation_figure_shows_six_thumbnails_evenly_spaced_and_labels_every_other_of_13_steps() -> None:
    layers = [f"layer{index}" for index in range(12)]
    maps = torch.rand(13, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    result = explain.RandomisationTest(layers, torch.zeros(12, 1), maps)
    figure = visualize.randomisation_test(result)
    titles = [axes.get_title() for axes in figure.axes[1:]]
    assert titles == ["trained", "1 layer random", "3 layers random", "5 layers random"] + [
        f"{step} layers random" for step in (8, 10, 12)
    ]
    labels = [label.get_text() for label in figure.axes[0].get_xticklabels()]
    assert labels == ["trained"] + [f"+ layer{index}" for index in range(1, 12, 2)]
    fewer = visualize.randomisation_test(result, thumbnails=2)
    assert [axes.get_title() for axes in fewer.axes[1:]] == ["trained", "1 layer random", "12 layers random"]


def test_deletion_curves_plot_the_mean_probability_per_fraction_and_name_the_area() -> None:
    curve = explain.DeletionCurve(
        torch.tensor([0.0, 0.5, 1.0]), torch.tensor([[1.0, 0.8], [0.5, 0.3], [0.1, 0.1]]), torch.tensor([0.5, 0.4])
    )
    [axes] = visualize.deletion_curves({"Grad-CAM": curve}).axes
    [line] = axes.lines
    assert list(line.get_xdata()) == [0, 50, 100] and list(line.get_ydata()) == pytest.approx([0.9, 0.4, 0.1])
    assert line.get_label() == "Grad-CAM (area 0.450)"
    assert axes.get_title() == "Deletion curves (lower area: a more faithful map)"
    insertion = visualize.deletion_curves({"x": curve}, mode="insertion").axes[0]
    assert insertion.get_xlabel() == "pixels put back, most attributed first (%)"
    assert insertion.get_title() == "Insertion curves (higher area: a more faithful map)"
    with pytest.raises(ValueError, match=r"^mode must be 'deletion' or 'insertion', not 'both'\.$"):
        visualize.deletion_curves({"x": curve}, mode="both")


def test_activation_maxima_undo_the_normalisation_and_stretch_each_image() -> None:
    image = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]]])
    result = explain.ActivationMaximum(image, 0.5, 6.0)
    [axes] = visualize.activation_maxima({"conv #3": result}, mean=(0.5,), std=(0.25,)).axes
    assert axes.get_title() == "conv #3\n0.5 → 6"
    assert np.allclose(axes.get_images()[0].get_array(), [[0.0, 0.25], [0.5, 1.0]])
    assert axes.get_images()[0].get_cmap().name == "gray" and axes.get_images()[0].get_clim() == (0, 1)
    with pytest.raises(ValueError, match=r"^maxima is empty"):
        visualize.activation_maxima({})
    with pytest.raises(ValueError, match=r"^Pass both mean and std"):
        visualize.activation_maxima({"a": result}, mean=(0.5,))


def test_activation_maxima_of_colour_images_undo_each_channels_own_normalisation() -> None:
    image = torch.stack([torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]])])
    result = explain.ActivationMaximum(image, 0.0, 1.0)
    [axes] = visualize.activation_maxima({"rgb": result}, mean=(0.0, 0.0, 1.0), std=(1.0, 2.0, 1.0)).axes
    # unnormalised: red 0..1, green 0..2, blue 1..2; then stretched together to 0..1
    assert np.allclose(axes.get_images()[0].get_array(), [[[0.0, 0.0, 0.5], [0.5, 1.0, 1.0]]])
    flat = explain.ActivationMaximum(torch.zeros(1, 2, 2), 0.0, 0.0)
    assert visualize.activation_maxima({"flat": flat}).axes[0].get_images()[0].get_clim() == (0, 1)


def test_activation_maxima_put_8_to_a_row_by_default() -> None:
    maxima = {f"#{index}": explain.ActivationMaximum(torch.rand(1, 2, 2), 0.0, 1.0) for index in range(9)}
    figure = visualize.activation_maxima(maxima)
    assert len(figure.axes) == 16 and figure.get_size_inches() == pytest.approx((1.6 * 8, 1.9 * 2))


def test_embedding_colours_points_by_class_and_crosses_the_mistakes() -> None:
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [6.0, 5.0]])
    figure = visualize.embedding(points, [0, 0, 1, 1], ["cat", "dog"], predictions=[0, 1, 1, 1])
    [axes] = figure.axes
    cats, dogs, mistakes = axes.collections
    assert cats.get_offsets().tolist() == [[0, 0], [1, 0]] and dogs.get_offsets().tolist() == [[5, 5], [6, 5]]
    assert mistakes.get_offsets().tolist() == [[1, 0]]
    assert cats.get_facecolor()[0][:3] == pytest.approx(matplotlib.colors.to_rgb("C0"))
    assert dogs.get_facecolor()[0][:3] == pytest.approx(matplotlib.colors.to_rgb("C1"))
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["cat", "dog", "misclassified (1)"]
    with pytest.raises(ValueError, match=r"points must be N x 2 \(project them first"):
        visualize.embedding(torch.zeros(4, 3), [0, 0, 1, 1], ["cat", "dog"])
