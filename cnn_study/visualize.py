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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .datasets import ImageData
from .files import atomic_write
from .training import History, class_probabilities, evaluate

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


def _display(image: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """A ``C x H x W`` image (``uint8``, or float normalised with ``mean``/``std``) as an ``H x W [x 3]`` array."""
    if (mean is None) != (std is None):
        raise ValueError("Pass both mean and std (the image's normalisation), or neither.")
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


def layer_names(model: nn.Module, kind: type[nn.Module] = nn.Conv2d) -> list[str]:
    """Names of the model's layers of a given type (convolutions by default), in forward order.

    Use them as ``layers=`` of `feature_maps` or ``layer=`` of `filters` and `grad_cam`.
    """
    return [name for name, module in model.named_modules() if isinstance(module, kind)]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule called ``name``; raise ``ValueError`` listing the convolution layers if none is."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(
            f"{type(model).__name__} has no layer {name!r}. Convolution layers: {', '.join(layer_names(model))}."
        ) from None


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
    was_training = model.training
    try:
        model.eval()
        model(image.unsqueeze(0).to(next(model.parameters()).device))
    finally:
        model.train(was_training)
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


def grad_cam_map(
    model: nn.Module, image: torch.Tensor, target: int | None = None, layer: str | None = None
) -> tuple[torch.Tensor, int]:
    """Grad-CAM heat map (Selvaraju et al. 2017) of one image, at the image's resolution.

    The gradient of the target class score with respect to a layer's feature
    maps, averaged over space, weighs each map; the weighted sum, passed through
    ReLU, shows where the evidence for the class lies.

    Args:
        model: A classifier with ``forward_features``/``forward_head``, or any
            network when ``layer`` is given.
        image: One normalised image, ``C x H x W``.
        target: Class to explain; defaults to the predicted class. For a
            one-logit binary model, class 1 uses the logit and class 0 its negative.
        layer: Layer whose output to explain; defaults to ``forward_features``' output.

    Returns:
        ``(heat map H x W in [0, 1], target class)``.
    """
    if image.dim() != 3:
        raise ValueError(
            f"image must be one image of shape C x H x W, got shape {tuple(image.shape)}"
            + (": pass images[i], not a batch." if image.dim() == 4 else ".")
        )
    if hasattr(model, "check_input"):
        model.check_input(image.unsqueeze(0))
    device = next(model.parameters()).device
    # The input requires a gradient so that the graph reaches the layer even through a frozen base.
    batch = image.unsqueeze(0).to(device).requires_grad_(True)
    was_training = model.training
    model.eval()
    captured: dict[str, torch.Tensor] = {}
    try:
        with torch.enable_grad():
            if layer is None:
                features = model.forward_features(batch)
                captured["features"] = features
                logits = model.forward_head(features)
            else:
                handle = find_layer(model, layer).register_forward_hook(
                    lambda _m, _i, output: captured.__setitem__("features", output)
                )
                try:
                    logits = model(batch)
                finally:
                    handle.remove()
            binary = logits.shape[1] == 1
            if target is None:
                target = int(logits[0, 0] > 0) if binary else int(logits[0].argmax())
            score = (logits[0, 0] if target == 1 else -logits[0, 0]) if binary else logits[0, target]
            (gradients,) = torch.autograd.grad(score, captured["features"])
    finally:
        model.train(was_training)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * captured["features"]).sum(1, keepdim=True)).detach()
    cam = torch.nn.functional.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (cam / cam.max().clamp(min=1e-8)).cpu(), target


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
        layer: Layer to explain (see `grad_cam_map`).
        mean: Normalisation mean, to show the image as it was.
        std: Normalisation std.
    """
    heat, target = grad_cam_map(model, image, target=target, layer=layer)
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


@dataclass
class OcclusionMap:
    """What `occlusion_map` returns.

    Attributes:
        probabilities: The class probability per square position, ``rows x columns``; position ``[i, j]``
            covers rows ``i * stride`` to ``i * stride + patch - 1`` (and likewise columns).
        target: The class whose probability was recorded.
        unoccluded: Its probability on the whole image.
    """

    probabilities: torch.Tensor
    target: int
    unoccluded: float


def occlusion_map(
    model: nn.Module,
    image: torch.Tensor,
    target: int | None = None,
    *,
    patch: int = 8,
    stride: int = 2,
    batch_size: int = 256,
) -> OcclusionMap:
    """Occlusion sensitivity (Zeiler & Fergus 2014, Section 4.2): the probability of ``target`` while a square
    of side ``patch`` covers each part of the image.

    The square is filled with zeros, which for a normalised image is the dataset's mean colour: grey, as in
    the paper. A low value means the square hid what the model needed for the class. The occluded copies of
    the image are classified in batches.

    Args:
        model: A classifier with one logit per class (softmax) or a single logit for class 1 (sigmoid).
        image: One normalised image, ``C x H x W``.
        target: Class whose probability to record; defaults to the predicted class.
        patch: Side of the occluding square, in pixels.
        stride: Step between square positions, in pixels.
        batch_size: Occluded copies per forward pass.

    Returns:
        An `OcclusionMap`, with ``(H - patch) // stride + 1`` rows of positions.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4, 2))
        >>> occlusion_map(model, torch.zeros(1, 4, 4), target=0, patch=2, stride=2).probabilities.shape
        torch.Size([2, 2])
    """
    if image.dim() != 3:
        raise ValueError(f"image must be one image of shape C x H x W, got shape {tuple(image.shape)}.")
    height, width = image.shape[-2:]
    if not 0 < patch <= min(height, width):
        raise ValueError(f"patch must be between 1 and the image side {min(height, width)}, got {patch}.")
    tops, lefts = range(0, height - patch + 1, stride), range(0, width - patch + 1, stride)
    copies = image.unsqueeze(0).repeat(1 + len(tops) * len(lefts), 1, 1, 1)  # copy 0 stays whole
    for index, (top, left) in enumerate(((top, left) for top in tops for left in lefts), start=1):
        copies[index, :, top : top + patch, left : left + patch] = 0.0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = torch.cat([model(chunk.to(device)) for chunk in copies.split(batch_size)]).float().cpu()
    finally:
        model.train(was_training)
    by_class = class_probabilities(scores)  # a one-logit model's two classes included
    target = int(by_class[0].argmax()) if target is None else target
    probabilities = by_class[:, target]
    return OcclusionMap(probabilities[1:].reshape(len(tops), len(lefts)), target, probabilities[0].item())


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
        patch: Side of the occluding square (see `occlusion_map`).
        stride: Step between square positions.
        mean: Normalisation mean, to show the image as it was.
        std: Normalisation std.
    """
    result = occlusion_map(model, image, target, patch=patch, stride=stride)
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
    axes.set(xlabel="experiment", ylabel="test accuracy (%)", ylim=(max(0, low - 10), 104))
    axes.legend(fontsize=8, ncols=len(series), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    figure.suptitle("The study's numbers and ours (the study's last number: validation for 4 and 8)")
    return figure


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
        for row in finished:
            x, y = x_of(row), 100 * row["test_accuracy"]
            axes.scatter(x, y, color=f"C{row['experiment'] - 1}", s=25)
            axes.annotate(
                f"{row['experiment']} {row['recipe']}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        axes.set_xscale("log")
        axes.set(xlabel=xlabel)
        axes.grid(alpha=0.3)
    by_size.set(ylabel="test accuracy (%)", title="Accuracy and model size")
    by_time.set_title("Accuracy and training time")
    figure.suptitle("One point per published run; CPU and GPU runs are mixed (see the device column)")
    return figure
