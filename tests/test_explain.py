"""Attribution methods, their sanity checks, activation maximisation and learned features: content, by hand
where a map can be written down, on a trained network where the deciding pixels are known otherwise."""

from __future__ import annotations

import functools
import sys

import pytest
import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from cnn_study import explain
from cnn_study.datasets import BatchLoader
from cnn_study.models import create_model
from cnn_study.training import predicted_classes

from .conftest import FeaturesThenHead, explain_extra
from .test_visualize import LinearReadout, _one_region_model, _spatial_weights, _two_squares

SIDE, SHAPE = 20, 6


def _shapes_task(count: int, seed: int, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images with a bright shape at a random place: class 0 a filled square, class 1 a cross, class 2
    nothing. The shape's pixels, and only they, are the evidence for classes 0 and 1; ``classes=2`` leaves
    out the empty images.

    Returns:
        Images ``N x 1 x H x W``, labels, and each image's shape as a mask ``N x H x W``.
    """
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 1, SIDE, SIDE, generator=generator) * 0.3
    labels = torch.arange(count) % classes
    masks = torch.zeros(count, SIDE, SIDE, dtype=torch.bool)
    cross = torch.zeros(SHAPE, SHAPE)
    cross[SHAPE // 2 - 1 : SHAPE // 2 + 1, :] = 1
    cross[:, SHAPE // 2 - 1 : SHAPE // 2 + 1] = 1
    for image, label, mask in zip(images, labels, masks):
        top, left = torch.randint(0, SIDE - SHAPE + 1, (2,), generator=generator).tolist()
        if label < 2:
            shape = torch.ones(SHAPE, SHAPE) if label == 0 else cross
            image[0, top : top + SHAPE, left : left + SHAPE] += 2.0 * shape
            mask[top : top + SHAPE, left : left + SHAPE] = shape.bool()
    return images, labels, masks


class ShapesNet(FeaturesThenHead):
    """Two convolutions, global average pooling and a linear read-out (the head Grad-CAM was made for)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Sequential(
                nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
            ),
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3)),
        )


@pytest.fixture(scope="module")
def shapes_net() -> ShapesNet:
    torch.manual_seed(0)
    model = ShapesNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    images, labels, _ = _shapes_task(480, seed=0)
    for _ in range(80):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_images, test_labels, _ = _shapes_task(96, seed=1)
    assert (model(test_images).argmax(1) == test_labels).float().mean() > 0.95  # it has learned the task
    return model.eval()


METHODS = {
    "saliency": explain.saliency,
    "smoothgrad": functools.partial(explain.smoothgrad, samples=8, noise=0.1),  # more noise blurs past a 6-pixel cross
    "integrated_gradients": explain.integrated_gradients,
    "grad_cam": explain.grad_cam,
    "grad_cam_plus_plus": explain.grad_cam_plus_plus,
    "occlusion": functools.partial(explain.occlusion, patch=4, stride=1),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_puts_its_mass_on_the_pixels_that_decide_the_class(shapes_net: ShapesNet, name: str) -> None:
    images, labels, masks = _shapes_task(8, seed=2, classes=2)
    attribution = METHODS[name](shapes_net, images, None)
    assert attribution.maps.shape == (8, SIDE, SIDE) and attribution.targets.tolist() == labels.tolist()
    mass = attribution.maps.abs()
    inside = (mass * masks).sum((1, 2)) / masks.sum((1, 2))
    assert (inside > 2 * mass.mean((1, 2))).all(), f"{name}: {(inside / mass.mean((1, 2))).tolist()}"


def test_methods_explain_the_class_asked_for_not_only_the_prediction(shapes_net: ShapesNet) -> None:
    images, labels, masks = _shapes_task(4, seed=3, classes=2)
    other = 1 - labels  # the other shape's class
    for method in (explain.saliency, explain.grad_cam, explain.integrated_gradients):
        asked = method(shapes_net, images, other)
        assert asked.targets.tolist() == other.tolist()
        assert not torch.allclose(asked.maps, method(shapes_net, images, labels).maps)


def test_saliency_and_integrated_gradients_of_a_linear_model_are_its_weights() -> None:
    weight, image = _spatial_weights(), _two_squares()
    model = LinearReadout(weight)
    saliency = explain.saliency(model, image[None], 1)
    assert torch.allclose(saliency.maps[0], weight[1].abs().amax(0))
    # for a linear score the gradient is the same everywhere on the path: attribution = image x weight
    integrated = explain.integrated_gradients(model, image[None], 1, steps=4)
    assert torch.allclose(integrated.maps[0], (image * weight[1]).sum(0), atol=1e-6)


def test_integrated_gradients_add_up_to_the_score_change_from_the_baseline(shapes_net: ShapesNet) -> None:
    images, labels, masks = _shapes_task(4, seed=4, classes=2)
    baseline = torch.full_like(images, -0.2)
    attribution = explain.integrated_gradients(shapes_net, images, labels, baseline=baseline, steps=128)
    with torch.no_grad():
        change = explain.class_scores(shapes_net(images), labels) - explain.class_scores(shapes_net(baseline), labels)
    assert torch.allclose(attribution.maps.sum((1, 2)), change, rtol=0.02, atol=0.02)


def test_integrated_gradients_agree_with_captums(shapes_net: ShapesNet) -> None:
    attr = explain_extra("captum.attr")
    images, labels, masks = _shapes_task(3, seed=5, classes=2)
    ours = explain.integrated_gradients(shapes_net, images, labels, steps=16).maps
    theirs = attr.IntegratedGradients(shapes_net).attribute(images, target=labels, n_steps=16, method="riemann_middle")
    assert torch.allclose(ours, theirs.sum(1), atol=1e-5)
    wrapped = explain.captum_method("IntegratedGradients", n_steps=16, method="riemann_middle")
    assert torch.allclose(wrapped(shapes_net, images, labels).maps, ours, atol=1e-5)


def test_captum_method_names_a_method_captum_lacks() -> None:
    explain_extra("captum.attr")
    with pytest.raises(ValueError, match=r"^captum\.attr has no attribution method 'GradCam9'\.$"):
        explain.captum_method("GradCam9")


def test_grad_cam_plus_plus_equals_the_papers_formula_on_a_linear_read_out() -> None:
    weight, image = _spatial_weights(), _two_squares()
    for target in (0, 1):
        maps = explain.grad_cam_plus_plus(LinearReadout(weight), image[None], target).maps[0]
        gradients, activations = weight[target], image  # features = the image; d score / d feature = weight
        alphas = gradients**2 / (2 * gradients**2 + activations.sum((1, 2), keepdim=True) * gradients**3)
        weights = (alphas * torch.relu(gradients)).sum((1, 2))
        expected = torch.relu((weights[:, None, None] * activations).sum(0))
        assert torch.allclose(maps, expected / expected.max(), atol=1e-5)


def test_grad_cam_of_a_batch_equals_one_image_at_a_time(shapes_net: ShapesNet) -> None:
    images, _, _ = _shapes_task(5, seed=6, classes=2)
    together = explain.grad_cam(shapes_net, images)
    for index, image in enumerate(images):
        alone = explain.grad_cam(shapes_net, image[None])
        assert torch.allclose(together.maps[index], alone.maps[0], atol=1e-6)


def test_rank_correlation_shares_the_rank_of_ties_as_spearmans_does() -> None:
    stats = explain_extra("scipy.stats")
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(0, 4, (3, 50), generator=generator).float()  # many ties, as ReLU maps have zeros
    second = first + torch.randint(0, 3, (3, 50), generator=generator)
    expected = [stats.spearmanr(a, b).statistic for a, b in zip(first.numpy(), second.numpy())]
    assert explain.rank_correlation(first, second).tolist() == pytest.approx(expected)
    assert explain.rank_correlation(first, -first).tolist() == pytest.approx([-1.0] * 3)


def test_randomising_the_top_layers_changes_grad_cam_but_not_an_edge_detector(shapes_net: ShapesNet) -> None:
    images, _, _ = _shapes_task(6, seed=7, classes=2)
    result = explain.randomisation_test(shapes_net, images, explain.grad_cam)
    assert result.layers == ["head.2", "features.3", "features.0"]  # from the output back
    assert result.correlations.shape == (3, 6) and result.maps.shape == (4, 6, SIDE, SIDE)
    assert result.correlations[1].mean() < 0.5  # read-out and last convolution random: a different map

    def edges(model: nn.Module, batch: torch.Tensor, targets: torch.Tensor | None) -> explain.Attribution:
        """A "method" that ignores the model: the image's own brightness."""
        return explain.Attribution(batch[:, 0].abs(), predicted_classes(model(batch)))

    blind = explain.randomisation_test(shapes_net, images, edges)
    assert torch.allclose(blind.correlations, torch.ones_like(blind.correlations))
    assert [name for name, _ in shapes_net.named_parameters()][0] == "features.0.weight"
    trained_again = explain.grad_cam(shapes_net, images).maps
    assert torch.allclose(trained_again, result.maps[0])  # the model itself is left as it was


def test_deletion_of_the_attributed_pixels_lowers_the_class_faster_than_a_random_order(shapes_net) -> None:
    images, labels, masks = _shapes_task(8, seed=8, classes=2)
    attribution = explain.grad_cam(shapes_net, images)
    deletion = explain.deletion_curve(shapes_net, images, attribution)
    shuffled = explain.Attribution(torch.rand(8, SIDE, SIDE, generator=torch.Generator().manual_seed(0)), labels)
    random_deletion = explain.deletion_curve(shapes_net, images, shuffled)
    assert deletion.fractions.tolist() == pytest.approx([step / 16 for step in range(17)])
    assert deletion.probabilities.shape == (17, 8)
    with torch.no_grad():
        predicted = shapes_net(images).softmax(1).gather(1, labels[:, None])[:, 0]
    assert torch.allclose(deletion.probabilities[0], predicted)  # nothing deleted yet: the image itself
    assert deletion.areas.mean() < random_deletion.areas.mean() - 0.1
    insertion = explain.deletion_curve(shapes_net, images, attribution, mode="insertion")
    random_insertion = explain.deletion_curve(shapes_net, images, shuffled, mode="insertion")
    assert torch.allclose(insertion.probabilities[-1], predicted)  # everything inserted: the image again
    assert insertion.areas.mean() > random_insertion.areas.mean()
    with pytest.raises(ValueError, match=r"^mode must be 'deletion' or 'insertion', not 'erase'\.$"):
        explain.deletion_curve(shapes_net, images, attribution, mode="erase")
    with pytest.raises(ValueError, match=r"attribution maps have shape \(8, 20, 20\); these images need \(4, 20"):
        explain.deletion_curve(shapes_net, images[:4], attribution)


def test_activation_maximisation_raises_its_channel_tenfold_beyond_any_real_image(shapes_net: ShapesNet) -> None:
    squares, _, _ = _shapes_task(60, seed=9, classes=1)  # class 0 only: filled squares
    with torch.no_grad():
        real = shapes_net.features(squares).mean((2, 3))  # each channel's mean activation per image
    channel = int(real.mean(0).argmax())  # the channel that responds most to squares
    result = explain.maximise_activation(shapes_net, "features.4", channel, input_size=(1, SIDE, SIDE), steps=64)
    assert result.image.shape == (1, SIDE, SIDE)
    assert result.final > 10 * result.start and result.final > real[:, channel].max()
    with pytest.raises(ValueError, match=r"features\.4 has 16 channels; channel 16 does not exist"):
        explain.maximise_activation(shapes_net, "features.4", 16, input_size=(1, SIDE, SIDE), steps=1)
    with pytest.raises(ValueError, match=r"ShapesNet has no input_size: pass input_size=\(C, H, W\)"):
        explain.maximise_activation(shapes_net, "features.4", 0)


def test_activation_maximisation_in_pixels_takes_the_same_steps_on_any_normalisation(shapes_net: ShapesNet) -> None:
    size, layer = (1, SIDE, SIDE), "features.4"
    in_model_units = explain.maximise_activation(shapes_net, layer, 2, input_size=size, steps=16)
    # pixels normalised with a spread of 0.5: the same run, each step and the noise halved in pixels
    in_pixels = explain.maximise_activation(
        shapes_net, layer, 2, input_size=size, mean=[0.3], std=[0.5], steps=16, learning_rate=0.025, noise=0.05
    )
    assert torch.allclose(in_pixels.image, in_model_units.image, atol=1e-4)
    assert in_pixels.final == pytest.approx(in_model_units.final, rel=1e-4)

    # a model that takes 0-255 pixels (VGG16's ImageNet base): in pixels the image moves visibly, in the
    # model's units by a fraction of a grey level
    def pixels_moved(steps: int, **options: object) -> torch.Tensor:
        result = explain.maximise_activation(shapes_net, layer, 2, input_size=size, steps=steps, **options)
        return result.image / 255  # back to pixels (the normalisation's mean cancels in a difference)

    in_pixels_on_0_255 = {"mean": [0.3], "std": [1 / 255], "learning_rate": 0.025, "noise": 0.05}
    assert (pixels_moved(16, **in_pixels_on_0_255) - pixels_moved(0, **in_pixels_on_0_255)).abs().max() > 0.2
    assert (pixels_moved(16) - pixels_moved(0)).abs().max() < 0.01
    with pytest.raises(ValueError, match="Pass both mean and std"):
        explain.maximise_activation(shapes_net, layer, 2, input_size=size, mean=[0.3])


def test_activation_maximisation_of_a_registered_model_uses_its_input_size_and_sees_past_an_inplace_relu() -> None:
    model = create_model("lenet5", weights="mnist")  # C3 (features.3) is followed by ReLU(inplace=True)
    result = explain.maximise_activation(model, "features.3", 3, steps=32, learning_rate=0.1)
    assert result.image.shape == (1, 28, 28)
    assert result.start < 0 < 1 < result.final  # a channel that starts negative still has a gradient


def test_trained_features_separate_mnist_classes_better_than_pixels(mnist_data) -> None:
    _, test = mnist_data
    subset = test.subset(torch.arange(1000))
    features = explain.penultimate_features(create_model("mnist_cnn", weights="mnist"), BatchLoader(subset, 250))
    assert features.features.shape == (1000, 128) and features.labels.tolist() == subset.labels.tolist()
    assert (features.predictions == features.labels).float().mean() > 0.95
    learned = explain.nearest_centroid_accuracy(explain.pca(features.features), features.labels)
    pixels = explain.nearest_centroid_accuracy(explain.pca(subset.images.flatten(1).float()), subset.labels)
    assert learned > 0.75 and learned > pixels + 0.3, (learned, pixels)  # measured: 0.850 and 0.429


def test_pca_finds_the_direction_of_largest_spread_and_tsne_keeps_clusters() -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(200, 5, generator=generator) * torch.tensor([0.1, 5.0, 0.1, 0.1, 0.1])
    projected = explain.pca(points, 1)[:, 0]
    assert abs(torch.corrcoef(torch.stack([projected, points[:, 1]]))[0, 1]) > 0.99
    explain_extra("sklearn")
    labels = torch.arange(60) % 3
    clusters = torch.randn(60, 10, generator=generator) + 8 * nn.functional.one_hot(labels, 10).float()
    assert explain.nearest_centroid_accuracy(explain.tsne(clusters, perplexity=10), labels) == 1.0


# ----------------------------------------------------------------------------- by hand, where a mutation run found gaps


def test_grad_cam_plus_plus_weighs_channels_by_the_papers_alphas() -> None:
    ramp = torch.linspace(-0.5, 1.5, 60).view(6, 10)  # gradients of both signs: ReLU and alphas both matter
    weight = torch.stack([torch.stack([ramp, 0.5 * ramp.flip(1) + 0.2])])  # one logit (class 1), two feature maps
    brighter_right = torch.linspace(0.5, 1.5, 10).expand(6, 10)
    image = torch.stack([brighter_right, brighter_right.flip(1)])
    maps = explain.grad_cam_plus_plus(LinearReadout(weight), image[None], 1).maps[0]
    gradients, activations = weight[0], image
    alphas = gradients**2 / (2 * gradients**2 + activations.sum((1, 2), keepdim=True) * gradients**3)
    weights = (alphas * torch.relu(gradients)).sum((1, 2))
    expected = torch.relu((weights[:, None, None] * activations).sum(0))
    assert torch.allclose(maps, expected / expected.max(), atol=1e-5)
    plain = torch.relu((gradients.mean((1, 2))[:, None, None] * activations).sum(0))
    assert (maps - plain / plain.max()).abs().max() > 0.04  # not Grad-CAM's weights


def test_grad_cam_plus_plus_of_a_feature_map_without_gradient_is_finite() -> None:
    weight = torch.stack([torch.stack([torch.linspace(-0.5, 1.5, 60).view(6, 10), torch.zeros(6, 10)])])
    maps = explain.grad_cam_plus_plus(LinearReadout(weight), _two_squares()[None], 1).maps  # map 1: no gradient
    assert torch.isfinite(maps).all() and maps.max() == 1.0


def test_grad_cam_plus_plus_explains_the_layer_and_class_asked_for(shapes_net: ShapesNet) -> None:
    images, labels, _ = _shapes_task(4, seed=10, classes=2)
    default = explain.grad_cam_plus_plus(shapes_net, images)
    assert not torch.allclose(explain.grad_cam_plus_plus(shapes_net, images, layer="features.1").maps, default.maps)
    other = explain.grad_cam_plus_plus(shapes_net, images, 1 - labels)
    assert other.targets.tolist() == (1 - labels).tolist() and not torch.allclose(other.maps, default.maps)


def test_occlusion_per_pixel_averages_the_drops_of_the_squares_that_cover_it() -> None:
    model, image = _one_region_model(), torch.ones(1, 12, 16)
    for target in (1, 0):  # class 0 gains where class 1's evidence is hidden: negative drops
        grid = explain.occlusion_map(model, image, target, patch=4, stride=2)
        expected = torch.zeros(12, 16)
        for row in range(12):
            for column in range(16):
                drops = [
                    grid.unoccluded - grid.probabilities[i, j]
                    for i in range(grid.probabilities.shape[0])
                    for j in range(grid.probabilities.shape[1])
                    if 2 * i <= row < 2 * i + 4 and 2 * j <= column < 2 * j + 4
                ]
                expected[row, column] = sum(drops) / len(drops)
        attribution = explain.occlusion(model, image[None], target, patch=4, stride=2)
        assert attribution.targets.tolist() == [target]
        assert torch.allclose(attribution.maps[0], expected, atol=1e-6)
    assert explain.occlusion(model, image[None], 0, patch=4, stride=2).maps.min() < 0


class Hinge(nn.Module):
    """Class 0's logit is the sum of relu(pixel - 0.5): its gradient is 1 where a pixel exceeds 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # where the attribution methods look for the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.relu(x - 0.5).sum((1, 2, 3)), torch.zeros(len(x))], 1)


def test_smoothgrad_is_the_expected_gradient_under_noise_scaled_to_the_images_range() -> None:
    pixels = torch.tensor([0.2, 0.45, 0.5, 2.2])  # range 2: noise 0.2 of it is a standard deviation of 0.4
    images = pixels.view(1, 1, 1, 4).repeat(200, 1, 1, 1)
    result = explain.smoothgrad(Hinge(), images, 0, samples=40, noise=0.2)
    expected = torch.distributions.Normal(0.0, 1.0).cdf((pixels - 0.5) / 0.4)  # P(pixel + noise > 0.5)
    assert torch.allclose(result.maps.mean(0)[0], expected, atol=0.012), result.maps.mean(0)[0]
    noiseless = explain.smoothgrad(Hinge(), images[:1], 0, samples=3, noise=0.0).maps[0, 0]
    assert noiseless.tolist() == [0.0, 0.0, 0.0, 1.0]  # saliency itself, averaged, not summed
    defaults = explain.smoothgrad(Hinge(), images[:2], 0)
    assert torch.equal(defaults.maps, explain.smoothgrad(Hinge(), images[:2], 0, samples=25, noise=0.15, seed=0).maps)
    assert not torch.equal(defaults.maps, explain.smoothgrad(Hinge(), images[:2], 0, seed=1).maps)


def test_smoothgrad_explains_the_class_asked_for(shapes_net: ShapesNet) -> None:
    images, labels, _ = _shapes_task(2, seed=11, classes=2)
    asked = explain.smoothgrad(shapes_net, images, 1 - labels, samples=2)
    assert asked.targets.tolist() == (1 - labels).tolist()
    assert not torch.allclose(asked.maps, explain.smoothgrad(shapes_net, images, labels, samples=2).maps)


def test_deletion_areas_are_per_image_trapezoids_and_insertion_starts_from_the_documented_blur(shapes_net) -> None:
    images, _, _ = _shapes_task(3, seed=12, classes=2)
    attribution = explain.grad_cam(shapes_net, images)
    curve = explain.deletion_curve(shapes_net, images, attribution, steps=4)
    assert curve.areas.shape == (3,)
    by_hand = [sum((a + b) / 2 for a, b in zip(column[:-1], column[1:])) / 4 for column in curve.probabilities.T]
    assert curve.areas.tolist() == pytest.approx([float(value) for value in by_hand])
    settings = {13: {"blur_sigma": 2.0}, 31: {}, 11: {"blur_size": 11}}  # +-3 sigma; the default; RISE's code's
    for size, arguments in settings.items():
        sigma = arguments.get("blur_sigma", 5.0)
        insertion = explain.deletion_curve(shapes_net, images, attribution, mode="insertion", **arguments)
        with torch.no_grad():
            blurred = shapes_net(gaussian_blur(images, [size, size], [sigma, sigma]))
        start = blurred.softmax(1).gather(1, attribution.targets[:, None])[:, 0]
        assert torch.allclose(insertion.probabilities[0], start)


class TopHalf(nn.Module):
    """Class 0's logit is 10 times the mean of the image's top half; class 1's is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # where the attribution methods look for the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x[:, :, : x.shape[2] // 2].mean((1, 2, 3))
        return torch.stack([10 * top, torch.zeros(len(x))], 1)


def test_deletion_takes_equally_attributed_pixels_in_a_random_order_not_row_by_row() -> None:
    images = torch.ones(1, 1, 16, 16)
    everywhere_equal = explain.Attribution(torch.zeros(1, 16, 16), torch.tensor([0]))
    curve = explain.deletion_curve(TopHalf(), images, everywhere_equal, steps=4)
    # half the pixels deleted: row by row, the whole top half (probability 0.5); in a random order, about
    # half of it (logit about 5, probability about 0.99)
    assert curve.fractions[2] == 0.5 and curve.probabilities[2, 0] > 0.95


def test_captum_method_says_how_to_install_captum(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'^GuidedBackprop comes from captum: pip install "cnn-study\[explain\]"$'):
        explain.captum_method("GuidedBackprop")


def test_penultimate_features_are_what_the_last_linear_layer_receives(shapes_net: ShapesNet) -> None:
    images, labels, _ = _shapes_task(10, seed=13)
    loader = [(images[:6], labels[:6]), (images[6:], labels[6:])]  # any iterable of batches
    recorded = explain.penultimate_features(shapes_net, loader)
    with torch.no_grad():
        expected = shapes_net.features(images).mean((2, 3))  # the pooled 16 maps
        predictions = shapes_net(images).argmax(1)
    assert torch.allclose(recorded.features, expected, atol=1e-5)
    assert recorded.labels.tolist() == labels.tolist() and recorded.predictions.tolist() == predictions.tolist()
    with pytest.raises(ValueError, match=r"^Sequential has no nn\.Linear layer whose input to record\.$"):
        explain.penultimate_features(nn.Sequential(nn.Conv2d(1, 1, 1)), loader)


def test_defaults_are_the_documented_ones(shapes_net: ShapesNet) -> None:
    images, _, _ = _shapes_task(2, seed=14, classes=2)
    assert torch.equal(
        explain.occlusion(shapes_net, images).maps, explain.occlusion(shapes_net, images, patch=8, stride=2).maps
    )
    assert torch.equal(
        explain.integrated_gradients(shapes_net, images).maps,
        explain.integrated_gradients(shapes_net, images, steps=32).maps,
    )
    layer, size = "features.4", (1, SIDE, SIDE)
    default = explain.maximise_activation(shapes_net, layer, 2, input_size=size)
    assert default.final == explain.maximise_activation(shapes_net, layer, 2, input_size=size, steps=128).final


def test_batch_errors_say_what_to_pass() -> None:
    model = LinearReadout(_spatial_weights())
    with pytest.raises(
        ValueError,
        match=r"^images must be a batch of shape N x C x H x W, got shape \(2, 6, 10\): pass image\[None\] for one "
        r"image\.$",
    ):
        explain.saliency(model, _two_squares())
    with pytest.raises(ValueError, match=r"^images must be a batch of shape N x C x H x W, got shape \(6, 10\)\.$"):
        explain.saliency(model, _two_squares()[0])


def test_tsne_clamps_the_perplexity_to_few_points_is_seeded_and_says_how_to_install(monkeypatch) -> None:
    explain_extra("sklearn")
    points = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    first = explain.tsne(points)  # perplexity 30 > 5 neighbours: clamped to 5
    assert first.shape == (6, 2) and torch.equal(first, explain.tsne(points))
    manifold = explain_extra("sklearn.manifold")
    by_hand = manifold.TSNE(2, perplexity=5, init="pca", random_state=0).fit_transform(points.double().numpy())
    assert torch.allclose(first, torch.from_numpy(by_hand).float())
    more = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(explain.tsne(more), explain.tsne(more, perplexity=30.0, seed=0))
    assert not torch.equal(explain.tsne(more), explain.tsne(more, perplexity=31.0))
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(ImportError, match=r'^t-SNE comes from scikit-learn: pip install "cnn-study\[explain\]"$'):
        explain.tsne(points)


def test_captum_method_returns_the_classes_asked_for_and_refuses_one_logit(shapes_net: ShapesNet) -> None:
    explain_extra("captum.attr")
    images, labels, _ = _shapes_task(2, seed=15, classes=2)
    saliency = explain.captum_method("Saliency", abs=False)
    asked = saliency(shapes_net, images, 1 - labels)
    assert asked.targets.tolist() == (1 - labels).tolist()
    assert not torch.allclose(asked.maps, saliency(shapes_net, images, labels).maps)
    one_logit = LinearReadout(_spatial_weights(classes=1))
    with pytest.raises(ValueError, match=r"^Saliency via captum needs one logit per class; this model has a single"):
        saliency(one_logit, _two_squares()[None])


def test_pca_centres_the_features_and_keeps_two_dimensions_by_default() -> None:
    points = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    projected = explain.pca(points)
    assert projected.shape == (50, 2) and torch.allclose(projected.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(explain.pca(points + 100.0), projected, atol=1e-3)  # an offset changes nothing


def test_rank_correlation_of_a_constant_map_is_0() -> None:
    assert explain.rank_correlation(torch.zeros(1, 5), torch.arange(5.0)[None]).tolist() == [0.0]


def test_randomisation_test_re_initialises_only_the_layers_named(shapes_net: ShapesNet) -> None:
    images, _, _ = _shapes_task(2, seed=16, classes=2)
    result = explain.randomisation_test(shapes_net, images, explain.grad_cam, layers=["features.0"])
    assert result.layers == ["features.0"] and result.correlations.shape == (1, 2)


def test_occlusion_per_pixel_at_the_border_where_one_square_covers_a_pixel() -> None:
    weight = torch.zeros(2, 1, 12, 16)
    weight[1, 0, :2, :2] = 1.0  # class 1's evidence in the corner, under the first square only
    model, image = LinearReadout(weight), torch.ones(1, 12, 16)
    grid = explain.occlusion_map(model, image, 1, patch=4, stride=2)
    corner = explain.occlusion(model, image[None], 1, patch=4, stride=2).maps[0, 0, 0]
    assert corner == pytest.approx(grid.unoccluded - grid.probabilities[0, 0].item())


def test_smoothgrad_scales_the_noise_to_each_images_own_range() -> None:
    narrow, wide = torch.tensor([0.3, 0.4, 0.5, 0.7]), torch.tensor([-1.5, 0.4, 0.5, 2.5])  # ranges 0.4 and 4
    images = torch.cat([narrow.view(1, 1, 1, 4).repeat(200, 1, 1, 1), wide.view(1, 1, 1, 4).repeat(200, 1, 1, 1)])
    maps = explain.smoothgrad(Hinge(), images, 0, samples=40, noise=0.25).maps
    normal = torch.distributions.Normal(0.0, 1.0)
    for pixels, part, sigma in ((narrow, maps[:200], 0.1), (wide, maps[200:], 1.0)):
        assert torch.allclose(part.mean(0)[0], normal.cdf((pixels - 0.5) / sigma), atol=0.015)


def test_randomisation_test_compares_each_step_with_the_trained_maps_for_the_trained_models_classes() -> None:
    """The contract of Adebayo et al.'s cascade, with a spy for a method: every step re-initialises one more layer
    (from the output back), explains the class the *trained* model predicted, and is compared with the *trained*
    model's map, by the rank correlation of absolute values."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    trained = {name: value.detach().clone() for name, value in model.named_parameters()}
    generator = torch.Generator().manual_seed(1)
    maps = torch.randn(3, 2, 4, 4, generator=generator)  # what the spy answers: trained, step 1, step 2
    trained_classes = torch.tensor([2, 0])
    calls = []

    def spy(seen: nn.Module, batch: torch.Tensor, targets: torch.Tensor | None) -> explain.Attribution:
        changed = sorted(
            {name.split(".")[0] for name, v in seen.named_parameters() if not torch.equal(v, trained[name])}
        )
        calls.append((targets, changed))
        return explain.Attribution(maps[len(calls) - 1], trained_classes if targets is None else targets)

    result = explain.randomisation_test(model, torch.randn(2, 1, 4, 4), spy)
    assert result.layers == ["3", "0"]
    assert [changed for _, changed in calls] == [[], ["3"], ["0", "3"]]  # cumulative, from the output back
    assert calls[0][0] is None and all(torch.equal(targets, trained_classes) for targets, _ in calls[1:])
    expected = torch.stack([explain.rank_correlation(maps[0].abs(), after.abs()) for after in maps[1:]])
    assert torch.allclose(result.correlations, expected)
    # the test can tell: against the previous step's map, or without absolute values, the numbers differ
    assert not torch.allclose(explain.rank_correlation(maps[1].abs(), maps[2].abs()), expected[1], atol=0.05)
    assert not torch.allclose(explain.rank_correlation(maps[0], maps[1]), expected[0], atol=0.05)
    assert torch.equal(result.maps, maps)
    assert all(torch.equal(value, trained[name]) for name, value in model.named_parameters())  # left unchanged


class _Square(nn.Module):
    """``x ** 2``: a layer whose channel mean has the gradient ``2 x / (H W)``, known by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x**2


def test_activation_maximisation_steps_on_each_images_own_gradient(monkeypatch) -> None:
    """Every Adam step sees the gradient of the image it starts from (gradients zeroed per step), never a
    sum over the steps before."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1), _Square())
    with torch.no_grad():
        model[0].weight.fill_(1.0), model[0].bias.zero_()  # the identity, with parameters to find the device by
    seen = []
    step = torch.optim.Adam.step

    def recording_step(self: torch.optim.Adam, *args: object, **kwargs: object) -> object:
        image = self.param_groups[0]["params"][0]
        seen.append((image.detach().clone(), image.grad.clone()))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    result = explain.maximise_activation(model, "1", 0, input_size=(1, 4, 4), steps=6, jitter=0, blur_every=100)
    assert len(seen) == 6
    for image, gradient in seen:  # the loss is minus the channel's mean of x ** 2 over 4 x 4 pixels
        assert torch.allclose(gradient, -2 * image / 16)
    assert result.final == pytest.approx((result.image**2).mean().item())
