"""Figures from models, data and training histories.

Every function returns a `matplotlib.figure.Figure` and never calls
``plt.show()``: display it in a notebook, or write it with `save_figure`.
Figures are created with the object-oriented API (no global pyplot state),
so they work headless and in parallel.

Examples:
    >>> from cnn_study.visualize import confusion_matrix
    >>> figure = confusion_matrix([0, 1, 1], [0, 1, 0], classes=["cat", "dog"])
    >>> [text.get_text() for text in figure.axes[0].get_xticklabels()]
    ['cat', 'dog']
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from . import explain
from .datasets import ImageData
from .explain import find_layer, layer_names
from .files import atomic_write
from .training import History, evaluate

ArrayLike = Sequence[int] | np.ndarray | torch.Tensor


def save_figure(figure: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``figure`` as an image (format from the suffix), atomically.

    Args:
        figure: The figure.
        path: Destination, e.g. ``"curves.png"``.
        dpi: Resolution.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()))


def _numpy(values: ArrayLike) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


# ----------------------------------------------------------------------------- training curves


def training_curves(
    histories: History | Mapping[str, History],
    title: str | None = None,
    *,
    held_out: str | Mapping[str, str] = "validation",
    marks: Mapping[str, float] | None = None,
) -> Figure:
    """Loss and accuracy per epoch, training (solid) and held-out (dashed).

    Args:
        histories: One history, or several by label (e.g. ``{"seed": h1, "improved": h2}``)
            to compare runs on the same axes.
        title: Figure title.
        held_out: What the dashed curves were measured on, for their legend: ``"validation"``, or ``"test"``
            for a run without a validation split (`cnn_study.experiments.run` then monitors the test set);
            a mapping gives it per history label (`cnn_study.results.published_held_out` does for published runs).
        marks: Vertical lines by label, at an epoch (e.g. ``{"fine-tuning starts": 10.5}``).

    Returns:
        A figure with two axes: loss, then accuracy (in percent).
    """
    if isinstance(histories, History):
        histories = {"": histories}
    figure = Figure(figsize=(11, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    colours = [f"C{index}" for index in range(len(histories))]
    for colour, (label, history) in zip(colours, histories.items()):
        prefix = f"{label} " if label else ""
        epochs = history.column("epoch")
        for axes, metric, scale in ((loss_axes, "loss", 1), (accuracy_axes, "accuracy", 100)):
            axes.plot(
                epochs,
                [v * scale for v in history.column(f"train_{metric}")],
                color=colour,
                marker=".",
                label=f"{prefix}train",
            )
            monitored = history.column(f"val_{metric}")
            if all(value is not None for value in monitored):
                axes.plot(
                    epochs,
                    [v * scale for v in monitored],
                    color=colour,
                    linestyle="--",
                    marker=".",
                    label=f"{prefix}{held_out if isinstance(held_out, str) else held_out[label]}",
                )
    for axes in (loss_axes, accuracy_axes):
        for label, epoch in (marks or {}).items():
            axes.axvline(epoch, color="0.4", linestyle=":", label=label)
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend()
        axes.xaxis.get_major_locator().set_params(integer=True)
    if title:
        figure.suptitle(title)
    return figure


# ----------------------------------------------------------------------------- confusion matrix


def confusion_counts(labels: ArrayLike, predictions: ArrayLike, num_classes: int) -> np.ndarray:
    """Count matrix: entry ``[i, j]`` is the number of images of class ``i`` predicted as ``j``.

    Raises:
        ValueError: ``labels`` and ``predictions`` differ in length, or hold a class outside ``range(num_classes)``.
    """
    labels, predictions = _numpy(labels).astype(int), _numpy(predictions).astype(int)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels has {labels.size} entries, predictions {predictions.size}: one each per image.")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and not 0 <= values.min() <= values.max() < num_classes:
            raise ValueError(
                f"{name} holds classes {values.min()}..{values.max()}, outside the {num_classes} classes "
                f"0..{num_classes - 1}; pass one class name per class."
            )
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, -1)


def confusion_matrix(
    labels: ArrayLike, predictions: ArrayLike, classes: Sequence[str], normalize: bool = False
) -> Figure:
    """Confusion matrix with class names on both axes and the value in every cell.

    Args:
        labels: True classes.
        predictions: Predicted classes.
        classes: Class names, indexed by label.
        normalize: Show each row as fractions of that class (recall on the diagonal).

    Returns:
        A figure with the matrix axes and a colour bar.
    """
    counts = confusion_counts(labels, predictions, len(classes))
    values = counts / counts.sum(1, keepdims=True).clip(min=1) if normalize else counts
    size = max(4.0, 0.6 * len(classes) + 2)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(values, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, shrink=0.8, label="fraction of class" if normalize else "images")
    ticks = np.arange(len(classes))
    long_names = max(len(name) for name in classes) > 3
    axes.set_xticks(ticks, classes, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    axes.set_yticks(ticks, classes)
    axes.set(xlabel="predicted class", ylabel="true class")
    threshold = values.max() / 2
    for (row, col), value in np.ndenumerate(values):
        text = f"{value:.2f}" if normalize else f"{value:d}"
        axes.text(col, row, text, ha="center", va="center", fontsize=8, color="white" if value > threshold else "black")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    axes.set_title(f"Confusion matrix (accuracy {accuracy:.2%})")
    return figure


def model_confusion_matrix(model: nn.Module, loader: object, normalize: bool = False) -> Figure:
    """Evaluate ``model`` on a loader (with a ``classes`` attribute) and draw its confusion matrix.

    Args:
        model: The classifier.
        loader: A `cnn_study.datasets.BatchLoader`.
        normalize: As for `confusion_matrix`.
    """
    result = evaluate(model, loader)
    return confusion_matrix(result.labels, result.predictions, loader.classes, normalize=normalize)


# ----------------------------------------------------------------------------- data


def class_distribution(
    parts: ImageData | Mapping[str, ImageData], kind: str = "bar", title: str | None = None
) -> Figure:
    """Images per class as a bar chart or pie chart (experiment 5).

    Args:
        parts: One dataset, or several by name (e.g. train and validation) to show side by side.
        kind: ``"bar"`` or ``"pie"``.
        title: Figure title.

    Returns:
        For ``"bar"``, one axes with grouped bars; for ``"pie"``, one pie per part.
    """
    if kind not in ("bar", "pie"):
        raise ValueError(f"kind must be 'bar' or 'pie', not {kind!r}.")
    if isinstance(parts, ImageData):
        parts = {parts.name or "data": parts}
    if not parts:
        raise ValueError("parts is empty: pass an ImageData, or a mapping of names to ImageData.")
    counts = {name: part.class_counts() for name, part in parts.items()}
    classes = list(next(iter(counts.values())))
    if kind == "bar":
        figure = Figure(figsize=(max(6.0, 0.8 * len(classes) * max(1, len(parts) / 2)), 4), layout="constrained")
        axes = figure.subplots()
        width = 0.8 / len(parts)
        positions = np.arange(len(classes))
        for index, (name, part_counts) in enumerate(counts.items()):
            bars = axes.bar(
                positions + (index - (len(parts) - 1) / 2) * width, list(part_counts.values()), width, label=name
            )
            axes.bar_label(bars, fontsize=7, padding=2)
        axes.set_xticks(positions, classes, rotation=30, ha="right")
        axes.set(ylabel="images", title=title or "Images per class")
        axes.margins(y=0.12)
        if len(parts) > 1:
            axes.legend()
        return figure
    figure = Figure(figsize=(5 * len(parts), 5), layout="constrained")
    for axes, (name, part_counts) in zip(np.atleast_1d(figure.subplots(1, len(parts))), counts.items()):
        axes.pie(
            list(part_counts.values()),
            labels=classes,
            autopct="%1.1f%%",
            startangle=90,
            colors=[f"C{i}" for i in range(len(classes))],
            textprops={"fontsize": 8},
        )
        axes.set_title(name)
    if title:
        figure.suptitle(title)
    return figure


def _check_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    if (mean is None) != (std is None):
        raise ValueError("Pass both mean and std (the image's normalisation), or neither.")


def _display(image: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """A ``C x H x W`` image (``uint8``, or float normalised with ``mean``/``std``) as an ``H x W [x 3]`` array."""
    _check_normalisation(mean, std)
    if image.dtype == torch.uint8:
        array = image.float() / 255
    else:
        array = image.detach().float().cpu()
        if mean is not None:
            array = array * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    array = array.clamp(0, 1).cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def image_grid(
    images: torch.Tensor,
    labels: ArrayLike,
    classes: Sequence[str],
    *,
    predictions: ArrayLike | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    columns: int = 8,
    title: str | None = None,
) -> Figure:
    """A grid of images with their class (and prediction, red when wrong) as titles.

    Args:
        images: ``N x C x H x W``, ``uint8`` or normalised floats.
        labels: True classes.
        classes: Class names.
        predictions: Predicted classes to show beside the truth.
        mean: Normalisation mean, to undo it for display.
        std: Normalisation std, to undo it for display.
        columns: Images per row.
        title: Figure title.
    """
    labels = _numpy(labels)
    rows = max(1, math.ceil(len(images) / columns))
    figure = Figure(figsize=(1.5 * columns, 1.7 * rows), layout="constrained")
    for index, axes in enumerate(np.atleast_1d(figure.subplots(rows, columns)).ravel()):
        axes.axis("off")
        if index >= len(images):
            continue
        axes.imshow(_display(images[index], mean, std), cmap="gray", vmin=0, vmax=1)
        text, colour = classes[labels[index]], "black"
        if predictions is not None:
            predicted = int(_numpy(predictions)[index])
            text, colour = f"{text}\n→ {classes[predicted]}", "black" if predicted == labels[index] else "red"
        axes.set_title(text, fontsize=8, color=colour)
    if title:
        figure.suptitle(title)
    return figure


def misclassified(model: nn.Module, loader: object, count: int = 16, columns: int = 8) -> Figure:
    """The most confident mistakes of ``model``: true class, predicted class and its probability.

    Args:
        model: The classifier.
        loader: A `cnn_study.datasets.BatchLoader` (not shuffled).
        count: How many mistakes to show.
        columns: Images per row.
    """
    result = evaluate(model, loader)
    wrong = torch.nonzero(result.predictions != result.labels).flatten()
    confidence = result.probabilities[wrong, result.predictions[wrong]]
    worst = wrong[confidence.argsort(descending=True)[:count]]
    data = loader.data
    figure = image_grid(
        data.images[worst],
        data.labels[worst],
        data.classes,
        columns=columns,
        title=f"{len(wrong)} of {len(data)} misclassified; most confident mistakes",
    )
    for axes, index in zip(figure.axes, worst.tolist()):
        predicted = int(result.predictions[index])
        axes.set_title(
            f"{data.classes[data.labels[index]]}\n→ {data.classes[predicted]} "
            f"({result.probabilities[index, predicted]:.0%})",
            fontsize=8,
            color="red",
        )
    return figure


# ----------------------------------------------------------------------------- inside the network


@torch.no_grad()
def _activations(model: nn.Module, image: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    modules = {name: find_layer(model, name) for name in names}
    captured: dict[str, torch.Tensor] = {}
    handles = [
        # a copy: an in-place ReLU after the layer would otherwise change what was captured
        module.register_forward_hook(
            lambda _m, _i, output, name=name: captured.__setitem__(name, output.detach().clone())
        )
        for name, module in modules.items()
    ]
    try:
        with explain.evaluating(model):
            model(image.unsqueeze(0).to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return captured


def feature_maps(
    model: nn.Module, image: torch.Tensor, layers: Sequence[str] | None = None, max_channels: int = 16
) -> Figure:
    """Activations of chosen layers for one image: one block of channel images per layer.

    Args:
        model: The network.
        image: One normalised image, ``C x H x W``, as the model expects it.
        layers: Layer names (see `layer_names`); defaults to the first and last convolution.
        max_channels: Channels shown per layer.

    Returns:
        A figure with one sub-figure per layer, titled with its name and output shape,
        holding ``min(channels, max_channels)`` images.
    """
    convolutions = layer_names(model)
    layers = list(layers) if layers is not None else [convolutions[0], convolutions[-1]]
    activations = _activations(model, image, layers)
    columns = 8
    heights = [math.ceil(min(activations[name].shape[1], max_channels) / columns) + 0.4 for name in layers]
    figure = Figure(figsize=(12, 1.6 * sum(heights)), layout="constrained")
    subfigures = np.atleast_1d(figure.subfigures(len(layers), 1, height_ratios=heights))
    for subfigure, name in zip(subfigures, layers):
        maps = activations[name][0]
        shown = min(len(maps), max_channels)
        subfigure.suptitle(f"{name}: {tuple(maps.shape)} (showing {shown} of {len(maps)} channels)", fontsize=10)
        grid = np.atleast_1d(subfigure.subplots(math.ceil(shown / columns), columns)).ravel()
        for index, axes in enumerate(grid):
            axes.axis("off")
            if index < shown:
                axes.imshow(maps[index].float().cpu().numpy(), cmap="viridis")
                axes.set_title(f"#{index}", fontsize=7)
        for axes in grid[shown:]:
            axes.remove()
    return figure


def filters(model: nn.Module, layer: str | None = None, max_filters: int = 32, max_inputs: int = 8) -> Figure:
    """The kernels of a convolution layer, as images.

    For a layer that sees the image itself (RGB or greyscale) each kernel is
    shown as one picture, eight to a row; for deeper layers each kernel is
    shown per input channel (one row per filter, at most ``max_inputs``
    columns, red positive and blue negative).

    Args:
        model: The network.
        layer: Name of a ``Conv2d`` layer; defaults to the first one.
        max_filters: Filters shown.
        max_inputs: Input channels shown per filter (non-RGB layers).
    """
    name = layer or layer_names(model)[0]
    conv = find_layer(model, name)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"{name} is a {type(conv).__name__}, not a convolution; choose one of {layer_names(model)}.")
    weights = conv.weight.detach().float().cpu()[:max_filters]
    if weights.shape[1] in (1, 3):  # one picture per filter: colour for RGB inputs, grey for greyscale
        columns = 8
        figure = Figure(figsize=(1.3 * columns, 1.4 * math.ceil(len(weights) / columns) + 0.4), layout="constrained")
        grid = np.atleast_1d(figure.subplots(math.ceil(len(weights) / columns), columns)).ravel()
        for axes, kernel in zip(grid, weights):
            low, high = kernel.min(), kernel.max()
            picture = ((kernel - low) / (high - low + 1e-8)).permute(1, 2, 0).squeeze(-1).numpy()
            axes.imshow(picture, cmap="gray", interpolation="nearest")
        for axes in grid:
            axes.axis("off")
        for axes in grid[len(weights) :]:
            axes.remove()
    else:
        inputs = min(weights.shape[1], max_inputs)
        figure = Figure(figsize=(1.1 * inputs + 1, 1.1 * len(weights)), layout="constrained")
        grid = np.array(figure.subplots(len(weights), inputs, squeeze=False))
        limit = weights[:, :inputs].abs().max().item()
        for (row, col), axes in np.ndenumerate(grid):
            axes.imshow(
                weights[row, col].numpy(),
                cmap="gray" if inputs == 1 else "RdBu_r",
                vmin=-limit,
                vmax=limit,
                interpolation="nearest",
            )
            axes.set_xticks([])
            axes.set_yticks([])
            if col == 0:
                axes.set_ylabel(f"#{row}", fontsize=7)
            if row == 0 and inputs > 1:
                axes.set_title(f"in {col}", fontsize=7)
    figure.suptitle(f"{name}: {tuple(conv.weight.shape)} kernels (showing {len(weights)})")
    return figure


def grad_cam(
    model: nn.Module,
    image: torch.Tensor,
    *,
    classes: Sequence[str] | None = None,
    target: int | None = None,
    layer: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """Grad-CAM figure: the image, the heat map, and the heat map over the image.

    Args:
        model: The classifier.
        image: One normalised image, ``C x H x W``.
        classes: Class names for the title.
        target: Class to explain; defaults to the prediction.
        layer: Layer to explain (see `cnn_study.explain.grad_cam`).
        mean: Normalisation mean, to show the image as it was.
        std: Normalisation std.
    """
    attribution = explain.grad_cam(model, explain.one_image(image)[None], target, layer)
    heat, target = attribution.maps[0], int(attribution.targets[0])
    picture = _display(image, mean, std)
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    original, heat_axes, overlay = figure.subplots(1, 3)
    original.imshow(picture, cmap="gray")
    original.set_title("image")
    shown = heat_axes.imshow(heat.numpy(), cmap="jet", vmin=0, vmax=1)
    heat_axes.set_title("Grad-CAM")
    figure.colorbar(shown, ax=heat_axes, shrink=0.8)
    overlay.imshow(picture, cmap="gray")
    overlay.imshow(heat.numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    overlay.set_title("overlay")
    for axes in (original, heat_axes, overlay):
        axes.axis("off")
    name = classes[target] if classes is not None else str(target)
    figure.suptitle(f"Evidence for class {name!r}")
    return figure


def occlusion(
    model: nn.Module,
    image: torch.Tensor,
    *,
    classes: Sequence[str] | None = None,
    target: int | None = None,
    patch: int = 8,
    stride: int = 2,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """Occlusion-sensitivity figure: the image, the class probability at each position of a grey square, and
    the two overlaid (each probability drawn around the centre of its square).

    Args:
        model: The classifier.
        image: One normalised image, ``C x H x W``.
        classes: Class names for the title.
        target: Class to record; defaults to the prediction.
        patch: Side of the occluding square (see `cnn_study.explain.occlusion_map`).
        stride: Step between square positions.
        mean: Normalisation mean, to show the image as it was.
        std: Normalisation std.
    """
    result = explain.occlusion_map(model, image, target, patch=patch, stride=stride)
    height, width = image.shape[-2:]
    rows, columns = result.probabilities.shape
    # Each value is drawn as a stride x stride cell around the centre of its square.
    first_centre, half = (patch - 1) / 2, stride / 2
    last_row, last_column = first_centre + (rows - 1) * stride, first_centre + (columns - 1) * stride
    extent = (first_centre - half, last_column + half, last_row + half, first_centre - half)
    picture = _display(image, mean, std)
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    original, sensitivity, overlay = figure.subplots(1, 3)
    original.imshow(picture, cmap="gray")
    original.set_title("image")
    shown = sensitivity.imshow(result.probabilities.numpy(), cmap="viridis", vmin=0, vmax=1, extent=extent)
    sensitivity.set_title(f"{patch}x{patch} grey square here")
    figure.colorbar(shown, ax=sensitivity, shrink=0.8, label="probability of the class")
    overlay.imshow(picture, cmap="gray")
    overlay.imshow(result.probabilities.numpy(), cmap="viridis", vmin=0, vmax=1, extent=extent, alpha=0.5)
    overlay.set_title("overlay")
    for axes in (original, sensitivity, overlay):
        axes.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))
        axes.axis("off")
    name = classes[result.target] if classes is not None else str(result.target)
    figure.suptitle(f"Occlusion sensitivity for class {name!r} (probability {result.unoccluded:.2f} unoccluded)")
    return figure


# ----------------------------------------------------------------------------- attribution and its checks


def _magnitude(maps: torch.Tensor) -> np.ndarray:
    """Absolute values of ``... x H x W`` maps, each scaled to a maximum of 1 (an all-zero map stays 0)."""
    magnitude = maps.detach().abs().float()
    return (magnitude / magnitude.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-12)).numpy()


def attributions(
    images: torch.Tensor,
    maps: Mapping[str, explain.Attribution],
    *,
    classes: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """Several attribution methods side by side: one row per image, the image and then each method's map.

    Each map is drawn as its magnitude scaled to its own maximum (0 to 1, the same colours for every
    method), since methods measure evidence in different units.

    Args:
        images: The images explained, ``N x C x H x W`` (normalised or ``uint8``).
        maps: Attributions of those images by method name, e.g. ``{"Grad-CAM": explain.grad_cam(model, images)}``.
        classes: Class names, to title each row with the class explained.
        mean: Normalisation mean, to show the images as they were.
        std: Normalisation std.
    """
    if not maps:
        raise ValueError("maps is empty: pass attributions by method name, e.g. {'Grad-CAM': ...}.")
    targets = next(iter(maps.values())).targets
    if any(not torch.equal(attribution.targets, targets) for attribution in maps.values()):
        raise ValueError("The maps explain different classes: pass the same targets to every method.")
    columns = 1 + len(maps)
    figure = Figure(figsize=(1.8 * columns, 1.9 * len(images)), layout="constrained")
    grid = np.array(figure.subplots(len(images), columns, squeeze=False))
    scaled = {name: _magnitude(attribution.maps) for name, attribution in maps.items()}
    for row, image in enumerate(images):
        grid[row, 0].imshow(_display(image, mean, std), cmap="gray", vmin=0, vmax=1)
        target = int(targets[row])
        grid[row, 0].set_title(classes[target] if classes is not None else f"class {target}", fontsize=9)
        for column, (name, values) in enumerate(scaled.items(), start=1):
            grid[row, column].imshow(values[row], cmap="inferno", vmin=0, vmax=1)
            if row == 0:
                grid[row, column].set_title(name, fontsize=9)
    for axes in grid.ravel():
        axes.axis("off")
    return figure


def randomisation_test(result: explain.RandomisationTest, *, image: int = 0, thumbnails: int = 6) -> Figure:
    """The model-parameter randomisation test (Adebayo et al., 2018): how much each image's map still agrees
    with the trained model's as layers are re-initialised from the top, and one image's maps along the way.

    Args:
        result: What `cnn_study.explain.randomisation_test` returned.
        image: Which image's maps to show.
        thumbnails: How many of the randomised maps to show (evenly spaced, the last included).
    """
    steps = len(result.layers)
    figure = Figure(figsize=(10, 5.6), layout="constrained")
    curve_figure, maps_figure = figure.subfigures(2, 1, height_ratios=[2.2, 1])
    axes = curve_figure.subplots()
    positions = np.arange(steps + 1)  # 0: the trained model, which agrees with itself
    names = ["trained", *(f"+ {name}" for name in result.layers)]
    correlations = np.concatenate([np.ones((1, result.correlations.shape[1])), result.correlations.numpy()])
    axes.plot(positions, correlations, color="0.75", linewidth=0.8)  # one grey line per image
    axes.plot(positions, correlations.mean(1), color="C3", marker="o", linewidth=2, label="mean over images")
    axes.axhline(0, color="0.4", linewidth=0.8)
    labelled = positions[:: max(1, math.ceil(len(positions) / 12))]
    axes.set_xticks(labelled, [names[p] for p in labelled], rotation=30, ha="right", fontsize=8)
    axes.set(ylim=(-1.05, 1.05), xlabel="layers re-initialised, from the output back", ylabel="rank correlation")
    axes.set_title("Agreement with the trained model's map (1: unchanged, 0: unrelated)")
    axes.legend(loc="upper right")
    shown = [0, *np.unique(np.linspace(1, steps, min(thumbnails, steps)).round().astype(int)).tolist()]
    for step, thumbnail in zip(shown, np.atleast_1d(maps_figure.subplots(1, len(shown)))):
        thumbnail.imshow(_magnitude(result.maps[step, image]), cmap="inferno", vmin=0, vmax=1)
        thumbnail.set_title("trained" if step == 0 else f"{step} layer{'s' if step > 1 else ''} random", fontsize=8)
        thumbnail.axis("off")
    return figure


def deletion_curves(curves: Mapping[str, explain.DeletionCurve], *, mode: str = "deletion") -> Figure:
    """Deletion (or insertion) curves of several attribution methods (Petsiuk et al., 2018): the class
    probability, averaged over the images, against the fraction of pixels removed (or put back) in the
    order each map ranks them; the legend gives each method's mean area under the curve.

    Args:
        curves: What `cnn_study.explain.deletion_curve` returned, by method name.
        mode: ``"deletion"`` (lower area: better) or ``"insertion"`` (higher: better), for the labels.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', not {mode!r}.")
    figure = Figure(figsize=(6, 4.2), layout="constrained")
    axes = figure.subplots()
    for name, curve in curves.items():
        axes.plot(
            100 * curve.fractions.numpy(),
            curve.probabilities.mean(1).numpy(),
            marker=".",
            label=f"{name} (area {curve.areas.mean():.3f})",
        )
    verb = "removed" if mode == "deletion" else "put back"
    better = "lower" if mode == "deletion" else "higher"
    axes.set(
        xlabel=f"pixels {verb}, most attributed first (%)",
        ylabel="probability of the class",
        ylim=(0, 1.02),
        title=f"{mode.capitalize()} curves ({better} area: a more faithful map)",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def activation_maxima(
    maxima: Mapping[str, explain.ActivationMaximum],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    columns: int = 8,
) -> Figure:
    """The inputs that most excite chosen channels (`cnn_study.explain.maximise_activation`), one per cell,
    titled with the channel and how far its activation rose.

    Each image is shown with its normalisation undone, then stretched to the full grey or colour range, since
    gradient ascent leaves it far outside the range of real images.

    Args:
        maxima: Results by title, e.g. ``{"features.3 #5": result}``.
        mean: Normalisation mean of the model's inputs.
        std: Normalisation std.
        columns: Images per row.
    """
    if not maxima:
        raise ValueError("maxima is empty: pass results of explain.maximise_activation by title.")
    rows = math.ceil(len(maxima) / columns)
    figure = Figure(figsize=(1.6 * min(columns, len(maxima)), 1.9 * rows), layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, min(columns, len(maxima)))).ravel()
    for axes in grid:
        axes.axis("off")
    _check_normalisation(mean, std)
    for axes, (title, result) in zip(grid, maxima.items()):
        image = result.image
        if mean is not None:
            image = image * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
        stretched = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-12)
        axes.imshow(_display(stretched, None, None), cmap="gray", vmin=0, vmax=1)
        axes.set_title(f"{title}\n{result.start:.2g} → {result.final:.2g}", fontsize=8)
    return figure


def embedding(
    points: torch.Tensor,
    labels: ArrayLike,
    classes: Sequence[str],
    *,
    predictions: ArrayLike | None = None,
    title: str | None = None,
) -> Figure:
    """Two-dimensional features (e.g. `cnn_study.explain.pca` of `cnn_study.explain.penultimate_features`),
    coloured by true class, with misclassified images marked by a black cross.

    Args:
        points: ``N x 2``.
        labels: True classes.
        classes: Class names.
        predictions: Predicted classes, to mark the mistakes.
        title: Axes title.
    """
    points, labels = _numpy(points), _numpy(labels)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be N x 2 (project them first, e.g. with explain.pca), got {points.shape}.")
    figure = Figure(figsize=(6.4, 5.2), layout="constrained")
    axes = figure.subplots()
    for index, name in enumerate(classes):
        chosen = labels == index
        axes.scatter(points[chosen, 0], points[chosen, 1], s=8, color=f"C{index}", label=name, alpha=0.7)
    if predictions is not None:
        wrong = _numpy(predictions) != labels
        axes.scatter(
            points[wrong, 0],
            points[wrong, 1],
            s=22,
            marker="x",
            color="black",
            linewidths=0.8,
            label=f"misclassified ({wrong.sum()})",
        )
    axes.set(xticks=[], yticks=[], title=title or "Learned features in two dimensions")
    axes.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return figure


# ----------------------------------------------------------------------------- results of runs


def study_comparison(results: Sequence[Mapping], reported: Mapping[int, float | None]) -> Figure:
    """Per experiment, the study's reported accuracy next to the test accuracy of each of our runs.

    Args:
        results: Metrics dicts of finished runs (``experiment``, ``recipe``, ``test_accuracy``), e.g.
            `cnn_study.results.load_results`; unfinished runs (``test_accuracy=None``) are left out.
        reported: The study's accuracy per experiment number, as a fraction, or ``None`` where it
            reported none (e.g. from `cnn_study.recipes.study_accuracy`).

    Returns:
        One axes with a group of bars per experiment: the study's number (grey), then our runs.

    Examples:
        >>> figure = study_comparison([{"experiment": 3, "recipe": "seed", "test_accuracy": 0.9891}], {3: 0.9903})
        >>> [text.get_text() for text in figure.axes[0].get_xticklabels()]
        ['3']
    """
    finished = [row for row in results if row["test_accuracy"] is not None]
    experiments = sorted({row["experiment"] for row in finished} | {n for n, value in reported.items() if value})
    if not experiments:
        raise ValueError("Nothing to compare: no finished run and no reported number.")
    recipes = sorted({row["recipe"] for row in finished}, key=lambda name: (name != "seed", name))
    series = [("the study", "0.6", {n: reported.get(n) for n in experiments})]
    for index, recipe in enumerate(recipes):
        ours = {row["experiment"]: row["test_accuracy"] for row in finished if row["recipe"] == recipe}
        series.append((f"ours: {recipe}", f"C{index}", ours))
    figure = Figure(figsize=(max(7.0, 1.1 * len(experiments)), 4), layout="constrained")
    axes = figure.subplots()
    width = 0.8 / len(series)
    positions = np.arange(len(experiments))
    for index, (label, color, values) in enumerate(series):
        heights = [100 * values[n] if values.get(n) is not None else np.nan for n in experiments]
        bars = axes.bar(positions + (index - (len(series) - 1) / 2) * width, heights, width, label=label, color=color)
        axes.bar_label(bars, fmt="%.1f", fontsize=6, padding=1, rotation=90)
    axes.set_xticks(positions, [str(n) for n in experiments])
    low = min(100 * value for _, _, values in series for value in values.values() if value is not None)
    axes.set(xlabel="experiment", ylabel="accuracy (%)", ylim=(max(0, low - 10), 104))
    axes.legend(fontsize=8, ncols=len(series), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    figure.suptitle(
        "The study's numbers and ours (ours: test; the study's: validation for 4 and 8, unstated for 2, 3, 9)"
    )
    return figure


def _label_points(
    axes: Axes, points: Sequence[tuple[float, float]], labels: Sequence[str], fontsize: float = 7
) -> None:
    """Write each label beside its point, to the upper right (upper left where it would leave the axes); a label
    that would cover one already written moves down a line at a time, so that close points stay readable."""
    axes.autoscale_view()
    to_points = 72 / axes.figure.dpi  # display pixels to typographic points, the unit of the offsets
    right_edge = axes.transAxes.transform((1, 0))[0] * to_points
    line, gap = 1.2 * fontsize, 3
    written: list[tuple[float, float, float, float]] = []  # label boxes, in points: left, bottom, right, top
    offsets = {}
    for index in sorted(range(len(points)), key=lambda i: -points[i][1]):  # top down
        x, y = (coordinate * to_points for coordinate in axes.transData.transform(points[index]))
        width = 0.6 * fontsize * len(labels[index])  # about a character's width in a sans-serif font
        left = x - gap - width if x + gap + width > right_edge else x + gap
        bottom = y + gap
        while any(
            left < box_right and left + width > box_left and bottom < box_top and bottom + line > box_bottom
            for box_left, box_bottom, box_right, box_top in written
        ):
            bottom -= line
        written.append((left, bottom, left + width, bottom + line))
        offsets[index] = (left - x if left > x else -gap, bottom - y, "left" if left > x else "right")
    for index, (point, label) in enumerate(zip(points, labels, strict=True)):
        dx, dy, align = offsets[index]
        axes.annotate(label, point, xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=align)


def accuracy_vs_cost(results: Sequence[Mapping]) -> Figure:
    """Test accuracy against model size and against training time, one labelled point per finished run.

    Args:
        results: Metrics dicts of finished runs (``experiment``, ``recipe``, ``test_accuracy``, ``seconds``:
            how long the run took, e.g. `cnn_study.results.run_seconds`, and ``parameters``: all of the
            model's, a frozen base's too).

    Returns:
        Two axes side by side, both with a logarithmic x axis.

    Examples:
        >>> rows = [{"experiment": 3, "recipe": "seed", "test_accuracy": 0.99, "seconds": 60, "parameters": 61706}]
        >>> [axes.get_xscale() for axes in accuracy_vs_cost(rows).axes]
        ['log', 'log']
    """
    finished = [row for row in results if row["test_accuracy"] is not None]
    if not finished:
        raise ValueError("No finished run to plot.")
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    by_size, by_time = figure.subplots(1, 2, sharey=True)
    for axes, x_of, xlabel in (
        (by_size, lambda row: row["parameters"], "parameters"),
        (by_time, lambda row: row["seconds"], "time the run took (s)"),
    ):
        points = [(x_of(row), 100 * row["test_accuracy"]) for row in finished]
        for row, (x, y) in zip(finished, points, strict=True):
            axes.scatter(x, y, color=f"C{row['experiment'] - 1}", s=25)
        axes.set_xscale("log")
        _label_points(axes, points, [f"{row['experiment']} {row['recipe']}" for row in finished])
        axes.set(xlabel=xlabel)
        axes.grid(alpha=0.3)
    by_size.set(ylabel="test accuracy (%)", title="Accuracy and model size")
    by_time.set_title("Accuracy and training time")
    figure.suptitle("One point per published run; CPU and GPU runs are mixed (see the device column)")
    return figure
