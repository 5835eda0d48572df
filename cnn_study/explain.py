"""What a trained network looks at, how far to believe it, and what it has learned to represent.

Attribution maps say which pixels an image's class score depends on. Every method here takes a batch
(``N x C x H x W``, normalised as the model expects) and returns an `Attribution`: one ``H x W`` map per
image and the class it explains (by default the model's prediction; for a one-logit binary model class 1
is explained by the logit and class 0 by its negation).

* `saliency`: the gradient of the class score with respect to the pixels (Simonyan et al., 2014).
* `smoothgrad`: saliency averaged over noisy copies of the image (Smilkov et al., 2017).
* `integrated_gradients`: gradients along the straight path from a baseline image (Sundararajan et al., 2017).
* `grad_cam` and `grad_cam_plus_plus`: class-weighted feature maps of a layer (Selvaraju et al., 2017;
  Chattopadhay et al., 2018), at ``forward_features``' output unless another layer is named.
* `occlusion`: how much the class probability drops while a grey square hides each pixel (Zeiler &
  Fergus, 2014); `occlusion_map` keeps the probability per square position.

All of these are written out here, because each is a few lines and the lines are the lesson (Grad-CAM's
hook on a layer, the path integral's Riemann sum). captum (``pip install "cnn-study[explain]"``) is the
better tool for the many methods that need rules per layer type (DeepLIFT, guided backpropagation, LRP):
`captum_method` wraps any of its attribution classes so that the checks below apply to it too, and the
tests compare our integrated gradients with captum's.

A map can look convincing and still say nothing about the model. Two checks measure how far to believe one:

* `randomisation_test`: re-initialise the network's layers from the top and see whether the maps change
  (Adebayo et al., *Sanity Checks for Saliency Maps*, 2018). A map that survives randomisation explains the
  image, not the model.
* `deletion_curve`: remove (or insert) the most-attributed pixels first and follow the class probability
  (Petsiuk et al., *RISE*, 2018); a faithful map makes it fall fast, a small area under the curve.

And what the network has learned to represent: `maximise_activation` (the input that most excites a channel,
by gradient ascent with jitter and blur), and `penultimate_features` with `pca` and `tsne` (the features its
classifier sees, projected to two dimensions; `nearest_centroid_accuracy` measures how well they separate).

Examples:
    >>> import torch
    >>> from cnn_study.models import create_model
    >>> model = create_model("lenet5").eval()
    >>> attribution = saliency(model, torch.randn(2, 1, 28, 28))
    >>> attribution.maps.shape, attribution.targets.shape
    (torch.Size([2, 28, 28]), torch.Size([2]))
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .training import class_probabilities, predicted_classes


@dataclass
class Attribution:
    """What an attribution method returns.

    Attributes:
        maps: One map per image, ``N x H x W`` (larger: more evidence for the class).
        targets: The class each map explains, ``N``.
    """

    maps: torch.Tensor
    targets: torch.Tensor


#: An attribution method: ``method(model, images, targets) -> Attribution`` (``targets`` may be ``None``).
Method = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], Attribution]


# ----------------------------------------------------------------------------- shared steps


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _check_batch(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4:
        hint = ": pass image[None] for one image." if images.dim() == 3 else "."
        raise ValueError(f"images must be a batch of shape N x C x H x W, got shape {tuple(images.shape)}{hint}")
    if hasattr(model, "check_input"):
        model.check_input(images)
    return images.to(next(model.parameters()).device).float()


def one_image(image: torch.Tensor) -> torch.Tensor:
    """``image`` itself if it is one image, ``C x H x W``; otherwise a ``ValueError`` that says what to pass."""
    if image.dim() != 3:
        raise ValueError(
            f"image must be one image of shape C x H x W, got shape {tuple(image.shape)}"
            + (": pass images[i], not a batch." if image.dim() == 4 else ".")
        )
    return image


def class_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The score of each image's target class, ``N``: its logit, or for a one-logit binary model the logit
    for class 1 and the negated logit for class 0.

    Examples:
        >>> class_scores(torch.tensor([[2.0], [2.0]]), torch.tensor([1, 0])).tolist()
        [2.0, -2.0]
    """
    if logits.shape[1] == 1:
        return torch.where(targets == 1, logits[:, 0], -logits[:, 0])
    return logits.gather(1, targets[:, None])[:, 0]


def _resolve_targets(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int | None) -> torch.Tensor:
    if targets is None:
        with torch.no_grad():
            return predicted_classes(model(images))
    return torch.as_tensor(targets, device=images.device).long().expand(len(images))


def _input_gradients(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``d score / d pixel`` for each image's target class, ``N x C x H x W``."""
    images = images.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = class_scores(model(images), targets)
        # Images do not interact in eval mode, so the gradient of the sum is each image's own gradient.
        (gradients,) = torch.autograd.grad(scores.sum(), images)
    return gradients


# ----------------------------------------------------------------------------- gradients of the input


def saliency(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int | None = None) -> Attribution:
    """Vanilla gradient saliency (Simonyan et al., 2014, Section 3.1): the largest absolute gradient of the
    class score over each pixel's channels.

    Args:
        model: A classifier.
        images: Normalised images, ``N x C x H x W``.
        targets: Class per image (or one for all); defaults to the prediction.
    """
    with evaluating(model):
        images = _check_batch(model, images)
        targets = _resolve_targets(model, images, targets)
        gradients = _input_gradients(model, images, targets)
    return Attribution(gradients.abs().amax(1).cpu(), targets.cpu())


def smoothgrad(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int | None = None,
    *,
    samples: int = 25,
    noise: float = 0.15,
    seed: int = 0,
) -> Attribution:
    """SmoothGrad (Smilkov et al., 2017): saliency averaged over copies of the image with Gaussian noise
    added, which removes the speckle that single gradients show.

    Args:
        model: A classifier.
        images: Normalised images, ``N x C x H x W``.
        targets: Class per image; defaults to the prediction on the clean image.
        samples: Noisy copies per image (the paper: 50; 25 looks the same at these sizes).
        noise: Standard deviation of the noise, as a fraction of each image's value range (the paper: 10-20%).
        seed: Seed of the noise.
    """
    generator = torch.Generator().manual_seed(seed)
    with evaluating(model):
        images = _check_batch(model, images)
        targets = _resolve_targets(model, images, targets)
        spread = (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
        total = torch.zeros_like(images[:, 0])
        for _ in range(samples):
            noisy = images + noise * spread * torch.randn(images.shape, generator=generator).to(images.device)
            total += _input_gradients(model, noisy, targets).abs().amax(1)
    return Attribution((total / samples).cpu(), targets.cpu())


def integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int | None = None,
    *,
    baseline: torch.Tensor | None = None,
    steps: int = 32,
) -> Attribution:
    """Integrated gradients (Sundararajan et al., 2017): ``(image - baseline)`` times the gradient averaged
    along the straight path from the baseline to the image, summed over channels.

    The attributions add up to the score's change from the baseline to the image (the paper's completeness
    axiom), up to the error of the ``steps``-point midpoint rule that approximates the path integral.

    Args:
        model: A classifier.
        images: Normalised images, ``N x C x H x W``.
        targets: Class per image; defaults to the prediction.
        baseline: The image that stands for "no evidence", broadcastable to ``images``; defaults to zeros,
            which for normalised images is the normalisation's mean colour (the training data's, or for a
            pretrained base the one its weights were trained with).
        steps: Points on the path.
    """
    with evaluating(model):
        images = _check_batch(model, images)
        targets = _resolve_targets(model, images, targets)
        baseline = torch.zeros_like(images) if baseline is None else baseline.to(images.device).expand_as(images)
        total = torch.zeros_like(images)
        for step in range(steps):
            fraction = (step + 0.5) / steps
            total += _input_gradients(model, baseline + fraction * (images - baseline), targets)
    return Attribution(((images - baseline) * total / steps).sum(1).cpu(), targets.cpu())


# ----------------------------------------------------------------------------- class activation maps


def layer_names(model: nn.Module, kind: type[nn.Module] = nn.Conv2d) -> list[str]:
    """Names of the model's layers of a given type (convolutions by default), in forward order.

    Use them as ``layer=`` of `grad_cam` and `maximise_activation`, and in `cnn_study.visualize`'s figures.

    Examples:
        >>> from cnn_study.models import create_model
        >>> layer_names(create_model("lenet5"))
        ['features.0', 'features.3', 'features.6']
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


def _layer_activations_and_gradients(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int | None, layer: str | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A layer's output for each image, the gradient of the target score with respect to it, and the targets."""
    # The input requires a gradient so that the graph reaches the layer even through a frozen base.
    images = images.detach().requires_grad_(True)
    captured: dict[str, torch.Tensor] = {}
    with torch.enable_grad():
        if layer is None:
            captured["features"] = model.forward_features(images)
            logits = model.forward_head(captured["features"])
        else:
            handle = find_layer(model, layer).register_forward_hook(
                lambda _module, _inputs, output: captured.__setitem__("features", output)
            )
            try:
                logits = model(images)
            finally:
                handle.remove()
        targets = predicted_classes(logits) if targets is None else _resolve_targets(model, images, targets)
        (gradients,) = torch.autograd.grad(class_scores(logits, targets).sum(), captured["features"])
    return captured["features"].detach(), gradients, targets


def _to_image_size(cams: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """``N x h x w`` maps, made non-negative, upsampled bilinearly to ``size`` and scaled to a maximum of 1 each."""
    cams = torch.nn.functional.interpolate(torch.relu(cams)[:, None], size=size, mode="bilinear", align_corners=False)
    return (cams[:, 0] / cams.amax(dim=(1, 2, 3))[:, None, None].clamp(min=1e-8)).cpu()


def _class_activation_map(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int | None,
    layer: str | None,
    channel_weights: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Attribution:
    """A layer's feature maps summed with one weight per map (``channel_weights(activations, gradients)``,
    ``N x K``), then as `_to_image_size` makes them: what Grad-CAM and Grad-CAM++ share."""
    with evaluating(model):
        images = _check_batch(model, images)
        activations, gradients, targets = _layer_activations_and_gradients(model, images, targets, layer)
    weights = channel_weights(activations, gradients)[:, :, None, None]
    return Attribution(_to_image_size((weights * activations).sum(1), images.shape[-2:]), targets.cpu())


def grad_cam(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int | None = None, layer: str | None = None
) -> Attribution:
    """Grad-CAM (Selvaraju et al., 2017): a layer's feature maps weighted by the spatial mean of the class
    score's gradient, summed, passed through ReLU, upsampled to the image and scaled to a maximum of 1.

    Args:
        model: A classifier with ``forward_features``/``forward_head``, or any network when ``layer`` is given.
        images: Normalised images, ``N x C x H x W``.
        targets: Class per image; defaults to the prediction.
        layer: Layer whose output to explain; defaults to ``forward_features``' output.
    """
    return _class_activation_map(model, images, targets, layer, lambda _, gradients: gradients.mean(dim=(2, 3)))


def grad_cam_plus_plus(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int | None = None, layer: str | None = None
) -> Attribution:
    """Grad-CAM++ (Chattopadhay et al., 2018, eq. 19): like `grad_cam`, but each feature map's weight sums
    only the positive gradients, each weighted by how much that position alone accounts for the score. Where
    one class appears several times in an image, Grad-CAM++ covers every instance more evenly.

    The higher derivatives the paper needs come from the exponential of the score, whose second and third
    derivatives are powers of the first (the paper's eq. 18-19).

    Args:
        model: A classifier with ``forward_features``/``forward_head``, or any network when ``layer`` is given.
        images: Normalised images, ``N x C x H x W``.
        targets: Class per image; defaults to the prediction.
        layer: Layer whose output to explain; defaults to ``forward_features``' output.
    """

    def channel_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        # eq. 19: alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab * g_ij^3), the third derivative at (i, j) itself
        squared = gradients**2
        denominator = 2 * squared + activations.sum(dim=(2, 3), keepdim=True) * gradients**3
        alphas = squared / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        return (alphas * torch.relu(gradients)).sum(dim=(2, 3))

    return _class_activation_map(model, images, targets, layer, channel_weights)


# ----------------------------------------------------------------------------- occlusion


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


def _square_positions(height: int, width: int, patch: int, stride: int) -> tuple[range, range]:
    if not 0 < patch <= min(height, width):
        raise ValueError(f"patch must be between 1 and the image side {min(height, width)}, got {patch}.")
    return range(0, height - patch + 1, stride), range(0, width - patch + 1, stride)


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

    The square is filled with zeros, which for a normalised image is the normalisation's mean colour: grey,
    as in the paper. A low value means the square hid what the model needed for the class. The occluded copies of
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
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4, 2))
        >>> occlusion_map(model, torch.zeros(1, 4, 4), target=0, patch=2, stride=2).probabilities.shape
        torch.Size([2, 2])
    """
    tops, lefts = _square_positions(*one_image(image).shape[-2:], patch, stride)
    copies = image.unsqueeze(0).repeat(1 + len(tops) * len(lefts), 1, 1, 1)  # copy 0 stays whole
    for index, (top, left) in enumerate(((top, left) for top in tops for left in lefts), start=1):
        copies[index, :, top : top + patch, left : left + patch] = 0.0
    device = next(model.parameters()).device
    with evaluating(model), torch.no_grad():
        scores = torch.cat([model(chunk.to(device)) for chunk in copies.split(batch_size)]).float().cpu()
    by_class = class_probabilities(scores)  # a one-logit model's two classes included
    target = int(by_class[0].argmax()) if target is None else target
    probabilities = by_class[:, target]
    return OcclusionMap(probabilities[1:].reshape(len(tops), len(lefts)), target, probabilities[0].item())


def occlusion(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int | None = None,
    *,
    patch: int = 8,
    stride: int = 2,
) -> Attribution:
    """Occlusion sensitivity per pixel: how far the class probability falls, on average over the squares of
    `occlusion_map` that cover the pixel.

    Args:
        model: A classifier.
        images: Normalised images, ``N x C x H x W``.
        targets: Class per image; defaults to the prediction.
        patch: Side of the occluding square.
        stride: Step between square positions.
    """
    with evaluating(model):
        images = _check_batch(model, images)
        targets = _resolve_targets(model, images, targets)
    height, width = images.shape[-2:]
    tops, lefts = _square_positions(height, width, patch, stride)
    maps = torch.zeros(len(images), height, width)
    for index, (image, target) in enumerate(zip(images, targets.tolist())):
        result = occlusion_map(model, image, target, patch=patch, stride=stride)
        drops, covered = torch.zeros(height, width), torch.zeros(height, width)
        for (row, column), probability in zip(
            ((row, column) for row in range(len(tops)) for column in range(len(lefts))), result.probabilities.flatten()
        ):
            top, left = tops[row], lefts[column]
            drops[top : top + patch, left : left + patch] += result.unoccluded - probability
            covered[top : top + patch, left : left + patch] += 1
        maps[index] = drops / covered.clamp(min=1)
    return Attribution(maps, targets.cpu())


def captum_method(name: str, **options: object) -> Method:
    """Any of captum's attribution classes (e.g. ``"GuidedBackprop"``, ``"DeepLift"``) as a `Method`, so that
    `randomisation_test` and `deletion_curve` apply to it; maps sum the attributions over channels.

    Args:
        name: The class's name in ``captum.attr``.
        **options: Keyword arguments for its ``attribute`` call (e.g. ``baselines``).

    Raises:
        ImportError: captum is not installed (``pip install "cnn-study[explain]"``).
    """
    try:
        from captum import attr
    except ImportError as error:
        raise ImportError(f'{name} comes from captum: pip install "cnn-study[explain]"') from error
    if not hasattr(attr, name):
        raise ValueError(f"captum.attr has no attribution method {name!r}.")

    def method(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int | None = None) -> Attribution:
        with evaluating(model):
            images = _check_batch(model, images)
            targets = _resolve_targets(model, images, targets)
            if model(images[:1]).shape[1] == 1:
                raise ValueError(f"{name} via captum needs one logit per class; this model has a single logit.")
            attributions = getattr(attr, name)(model).attribute(images, target=targets, **options)
        return Attribution(attributions.detach().sum(1).cpu(), targets.cpu())

    return method


# ----------------------------------------------------------------------------- can the map be trusted?


def rank_correlation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between matching maps, one value per map (ties share their average rank).

    Args:
        first: Maps, ``N x ...``.
        second: Maps of the same shape.

    Examples:
        >>> rank_correlation(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 15.0]])).tolist()
        [0.5]
    """

    def ranks(values: torch.Tensor) -> torch.Tensor:
        _, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        return (ends - (counts - 1) / 2)[inverse]

    correlations = []
    for a, b in zip(first.flatten(1), second.flatten(1)):
        a, b = ranks(a) - ranks(a).mean(), ranks(b) - ranks(b).mean()
        denominator = (a.norm() * b.norm()).item()
        correlations.append((a @ b).item() / denominator if denominator else 0.0)
    return torch.tensor(correlations)


@dataclass
class RandomisationTest:
    """What `randomisation_test` returns.

    Attributes:
        layers: The layers re-initialised, top first; step ``i`` has layers ``0..i`` randomised.
        correlations: Spearman rank correlation of each image's map with the trained model's map (absolute
            values), ``len(layers) x N``.
        maps: The trained model's maps, then the maps after each step, ``(1 + len(layers)) x N x H x W``.
    """

    layers: list[str]
    correlations: torch.Tensor
    maps: torch.Tensor


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of the layers with weights of their own that can be re-initialised, from the output back."""
    return [
        name
        for name, module in reversed(list(model.named_modules()))
        if hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False))
    ]


def randomisation_test(
    model: nn.Module,
    images: torch.Tensor,
    method: Method,
    *,
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> RandomisationTest:
    """Cascading model-parameter randomisation (Adebayo et al., 2018, Section 3.1).

    Re-initialises a copy of the model layer by layer, from the output back, and recomputes each map for the
    class the trained model predicted. A method that explains the model gives maps that change as its learned
    weights are destroyed (rank correlation falling towards 0); maps that stay the same show the image's
    edges or brightness, whatever the network learned.

    Args:
        model: The trained classifier (left unchanged).
        images: Normalised images, ``N x C x H x W``.
        method: An attribution method, e.g. `grad_cam` or ``functools.partial(smoothgrad, samples=10)``.
        layers: Layers to re-initialise, in order; defaults to all with weights, from the top
            (`parameter_layers`).
        seed: Seed of the new weights (the global random state is left as it was).
    """
    trained = method(model, images, None)
    randomised = copy.deepcopy(model)
    layers = list(layers) if layers is not None else parameter_layers(randomised)
    maps, correlations = [trained.maps], []
    device = next(model.parameters()).device  # manual_seed seeds CUDA too: keep its generator as well
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for name in layers:
            find_layer(randomised, name).reset_parameters()
            after = method(randomised, images, trained.targets).maps
            maps.append(after)
            correlations.append(rank_correlation(trained.maps.abs(), after.abs()))
    return RandomisationTest(layers, torch.stack(correlations), torch.stack(maps))


@dataclass
class DeletionCurve:
    """What `deletion_curve` returns.

    Attributes:
        fractions: Fraction of pixels removed (deletion) or inserted (insertion) at each step, ``steps + 1``.
        probabilities: The target class's probability at each step, ``(steps + 1) x N``.
        areas: Area under each image's curve (mean over the evenly spaced steps, trapezoid rule), ``N``.
    """

    fractions: torch.Tensor
    probabilities: torch.Tensor
    areas: torch.Tensor


def deletion_curve(
    model: nn.Module,
    images: torch.Tensor,
    attribution: Attribution,
    *,
    mode: str = "deletion",
    steps: int = 16,
    blur_sigma: float = 5.0,
    blur_size: int | None = None,
) -> DeletionCurve:
    """Deletion and insertion curves (Petsiuk et al., 2018, Section 4.1).

    Deletion sets the most-attributed pixels to 0 (the mean colour of normalised images), most attributed
    first, and follows the class probability: the faster it falls (the smaller the area), the better the map
    found what the model needs. Insertion starts from a blurred image and puts the most-attributed pixels back
    first: the faster it rises (the larger the area), the better. Pixels of equal attribution (the zeros of a
    Grad-CAM map, say) go in a seeded random order, so that ties do not sweep the image row by row.

    Args:
        model: The classifier.
        images: Normalised images, ``N x C x H x W``.
        attribution: Their maps and target classes (from any method).
        mode: ``"deletion"`` or ``"insertion"``.
        steps: Equal steps from none of the pixels to all of them.
        blur_sigma: Standard deviation, in pixels, of the Gaussian blur that insertion starts from.
        blur_size: Width of the blur's square kernel (odd); by default three standard deviations each side, the
            whole Gaussian. The authors' evaluation code (``Evaluation.ipynb`` of github.com/eclique/RISE, on
            224x224 images) cuts it at one: ``blur_size=11`` with the default ``blur_sigma`` repeats theirs, a
            milder blur that leaves a small image (32x32, say) recognisable, so insertion starts where it ends.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', not {mode!r}.")
    with evaluating(model):
        images = _check_batch(model, images)
        count, height, width = len(images), *images.shape[-2:]
        if attribution.maps.shape != (count, height, width):
            raise ValueError(
                f"attribution maps have shape {tuple(attribution.maps.shape)}; these images need "
                f"{(count, height, width)}: one H x W map per image."
            )
        if mode == "deletion":
            start, end = images, torch.zeros_like(images)
        else:
            size = blur_size or 2 * round(3 * blur_sigma) + 1
            start, end = gaussian_blur(images, [size, size], [blur_sigma, blur_sigma]), images
        shuffled = torch.randperm(height * width, generator=torch.Generator().manual_seed(0))  # breaks ties
        ranked = attribution.maps.flatten(1)[:, shuffled].argsort(dim=1, descending=True, stable=True)
        order = shuffled[ranked].to(images.device)
        rank = torch.empty_like(order).scatter_(
            1, order, torch.arange(height * width, device=images.device).expand_as(order)
        )
        targets = attribution.targets.to(images.device)
        fractions = torch.linspace(0, 1, steps + 1)
        probabilities = []
        with torch.no_grad():
            for fraction in fractions.tolist():
                changed = (rank < round(fraction * height * width)).view(count, 1, height, width)
                logits = model(torch.where(changed, end, start)).float()
                probabilities.append(class_probabilities(logits).gather(1, targets[:, None])[:, 0].cpu())
    probabilities = torch.stack(probabilities)
    areas = ((probabilities[1:] + probabilities[:-1]) / 2).mean(0)
    return DeletionCurve(fractions, probabilities, areas)


# ----------------------------------------------------------------------------- what a channel responds to


@dataclass
class ActivationMaximum:
    """What `maximise_activation` returns.

    Attributes:
        image: The input that excites the channel most, ``C x H x W`` (normalised, as the model sees it).
        start: The channel's mean activation on the starting image.
        final: Its mean activation on ``image``.
    """

    image: torch.Tensor
    start: float
    final: float


def maximise_activation(
    model: nn.Module,
    layer: str,
    channel: int,
    *,
    input_size: tuple[int, int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    steps: int = 128,
    learning_rate: float = 0.05,
    noise: float = 0.1,
    jitter: int = 2,
    blur_every: int = 8,
    blur_sigma: float = 0.5,
    seed: int = 0,
) -> ActivationMaximum:
    """The input that most excites one channel of a layer, by gradient ascent from faint noise (Erhan et al.,
    2009), regularised so that the result shows patterns, not high-frequency noise: the image is blurred every
    few steps (Yosinski et al., 2015) and shifted by a few random pixels at every step (jitter; Olah et al.,
    *Feature Visualization*, 2017).

    Args:
        model: The network (left unchanged).
        layer: The layer's name (see `layer_names`).
        channel: The channel whose mean activation to maximise.
        input_size: ``(C, H, W)``; defaults to the model's ``input_size``.
        mean: With ``std``, the model's input normalisation: the image is then optimised in pixels (0 to 1)
            around the mean colour and normalised for the model at every step, so that ``learning_rate`` and
            ``noise`` mean the same on every base (VGG16's ImageNet base takes pixels on a 0-255 scale). Without
            them the image is optimised in the model's input units, which suits inputs normalised to a spread
            of about one.
        std: See ``mean``.
        steps: Gradient-ascent steps (Adam).
        learning_rate: Adam's step size, in the units the image is optimised in.
        noise: Standard deviation of the starting noise, in the same units.
        jitter: Largest random shift, in pixels, per step.
        blur_every: Blur the image every this many steps.
        blur_sigma: The blur's standard deviation, in pixels.
        seed: Seed of the starting noise and the shifts.
    """
    input_size = input_size or getattr(model, "input_size", None)
    if input_size is None:
        raise ValueError(f"{type(model).__name__} has no input_size: pass input_size=(C, H, W).")
    target_layer = find_layer(model, layer)
    if (mean is None) != (std is None):
        raise ValueError("Pass both mean and std (the model's normalisation), or neither.")
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    pixel_mean, pixel_std = (torch.tensor(v, device=device).view(-1, 1, 1) for v in (mean or [0.0], std or [1.0]))
    image = (pixel_mean + noise * torch.randn(1, *input_size, generator=generator).to(device)).requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=learning_rate)
    captured: dict[str, torch.Tensor] = {}
    # A copy: an in-place ReLU after the layer would otherwise turn what was captured into its own output,
    # whose gradient is 0 wherever the channel starts negative.
    handle = target_layer.register_forward_hook(lambda _m, _i, output: captured.__setitem__("output", output.clone()))

    def activation(batch: torch.Tensor) -> torch.Tensor:
        model((batch - pixel_mean) / pixel_std)
        if not 0 <= channel < captured["output"].shape[1]:
            raise ValueError(f"{layer} has {captured['output'].shape[1]} channels; channel {channel} does not exist.")
        return captured["output"][0, channel].mean()

    try:
        with evaluating(model), torch.enable_grad():
            start = activation(image).item()
            for step in range(steps):
                shift = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
                loss = -activation(image.roll(shift, dims=(2, 3)))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if (step + 1) % blur_every == 0:
                    with torch.no_grad():
                        image.copy_(gaussian_blur(image, [3, 3], [blur_sigma, blur_sigma]))
            final = activation(image).item()
    finally:
        handle.remove()
    return ActivationMaximum(((image.detach() - pixel_mean) / pixel_std)[0].cpu(), start, final)


# ----------------------------------------------------------------------------- learned features


@dataclass
class Features:
    """What `penultimate_features` returns.

    Attributes:
        features: What the last linear layer receives, one row per image, ``N x D``.
        labels: True classes, ``N``.
        predictions: Predicted classes, ``N``.
    """

    features: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor


def penultimate_features(model: nn.Module, loader: object) -> Features:
    """The features a trained model's classifier sees: the input of its last ``nn.Linear``, for every image.

    Args:
        model: The classifier.
        loader: Batches of ``(images, labels)``, e.g. a `cnn_study.datasets.BatchLoader`.
    """
    linear_layers = layer_names(model, nn.Linear)
    if not linear_layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer whose input to record.")
    captured: list[torch.Tensor] = []
    handle = find_layer(model, linear_layers[-1]).register_forward_hook(
        lambda _m, inputs, _output: captured.append(inputs[0].detach().flatten(1).float().cpu())
    )
    device = next(model.parameters()).device
    labels, predictions = [], []
    try:
        with evaluating(model), torch.no_grad():
            for images, batch_labels in loader:
                predictions.append(predicted_classes(model(images.to(device)).float()).cpu())
                labels.append(batch_labels.cpu())
    finally:
        handle.remove()
    return Features(torch.cat(captured), torch.cat(labels), torch.cat(predictions))


def pca(features: torch.Tensor, dimensions: int = 2) -> torch.Tensor:
    """Project ``N x D`` features on their first principal components, ``N x dimensions``.

    Examples:
        >>> points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
        >>> pca(points, 1).abs().flatten().tolist()
        [1.4142135381698608, 0.0, 1.4142135381698608]
    """
    centred = features.double() - features.double().mean(0)
    _, _, directions = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ directions[:dimensions].T).float()


def tsne(features: torch.Tensor, *, perplexity: float = 30.0, seed: int = 0) -> torch.Tensor:
    """t-SNE (van der Maaten & Hinton, 2008) of ``N x D`` features to 2-D, with scikit-learn.

    Unlike PCA it keeps neighbourhoods, not distances: clusters mean something, the gaps between them do not.

    Raises:
        ImportError: scikit-learn is not installed (``pip install "cnn-study[explain]"``).
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError as error:
        raise ImportError('t-SNE comes from scikit-learn: pip install "cnn-study[explain]"') from error
    embedded = TSNE(2, perplexity=min(perplexity, len(features) - 1), init="pca", random_state=seed)
    return torch.from_numpy(embedded.fit_transform(features.double().numpy())).float()


def nearest_centroid_accuracy(points: torch.Tensor, labels: torch.Tensor) -> float:
    """How well classes separate: the fraction of points nearer their own class's centroid than any other.

    Examples:
        >>> nearest_centroid_accuracy(torch.tensor([[0.0], [1.0], [9.0], [10.0]]), torch.tensor([0, 0, 1, 1]))
        1.0
    """
    classes = labels.unique()
    centroids = torch.stack([points[labels == label].mean(0) for label in classes])
    nearest = classes[torch.cdist(points.double(), centroids.double()).argmin(1)]
    return (nearest == labels).double().mean().item()
