"""The model registry, in the manner of torchvision's ``models/_api.py``.

A registry is a dict plus a handful of functions: `register_model`
(a decorator that fails loudly on a duplicate name), `list_models`,
`get_model_info` and `create_model`. Pretrained weights are
`Weights` objects that carry their metadata (classes, normalisation,
the accuracy they reached and the recipe that produced them).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import load_state, safe_torch_load
from ._model_file import builder_kwargs, check_parameters, holds_head_only, load_trained_model_file, read_model_meta

#: Where shipped trained weights live, as ``<model>-<name>.pt`` (see `available_weights`).
WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture.

    ``input_size`` and ``num_classes`` are read from the model class and its builder when the model
    is registered, so they are written down once, where the model is defined.

    Attributes:
        name: Registry name, e.g. ``"resnet20"``.
        builder: Keyword-only function that returns the ``nn.Module``.
        model_class: The class the builder returns (its return annotation).
        paper: The reference the architecture comes from.
        year: Year of that reference.
        input_size: Expected ``(channels, height, width)`` of one image, with the builder's defaults.
        num_classes: Number of outputs when ``num_classes`` is not given.
        pretrained: Extra weights that are downloaded rather than shipped
            (torchvision's ImageNet weights for VGG16).
    """

    name: str
    builder: Callable[..., nn.Module]
    model_class: type[nn.Module]
    paper: str
    year: int
    input_size: tuple[int, int, int]
    num_classes: int
    pretrained: Mapping[str, Weights] = field(default_factory=dict)


@dataclass(frozen=True)
class Weights:
    """Pretrained weights and the metadata that describes them.

    Attributes:
        name: Name passed as ``create_model(..., weights=name)``.
        meta: ``num_classes``, ``classes``, ``mean``, ``std``, ``dataset``,
            ``test_accuracy`` and ``recipe`` (what produced the weights).
        loader: Function ``loader(progress) -> state_dict`` that reads (or
            downloads and hash-checks) the parameters.
    """

    name: str
    meta: Mapping[str, Any]
    loader: Callable[[bool], dict[str, torch.Tensor]]

    def get_state_dict(self, progress: bool = True) -> dict[str, torch.Tensor]:
        """Load the state dict, downloading it first if it is not on disk.

        Args:
            progress: Show a download progress bar.

        Returns:
            The parameters and buffers, ready for ``model.load_state_dict``.
        """
        return self.loader(progress)


_MODELS: dict[str, ModelInfo] = {}


def register_model(
    name: str, *, paper: str, year: int, pretrained: Mapping[str, Weights] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a model builder to the registry under ``name``.

    The builder's return annotation names the model class; the class's ``input_size`` (see
    `ImageClassifier.registered_input_size`) and the default of its ``num_classes`` argument
    become the registry's ``input_size`` and ``num_classes``.

    Args:
        name: Registry name; registering it twice raises ``ValueError``.
        paper: The reference the architecture comes from.
        year: Year of that reference.
        pretrained: Downloadable weights by name.

    Returns:
        The decorator, which returns the builder unchanged.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"A model named {name!r} is already registered.")
        model_class = typing.get_type_hints(builder).get("return")
        if not (isinstance(model_class, type) and hasattr(model_class, "registered_input_size")):
            raise TypeError(
                f"The builder of {name!r} must be annotated with the model class it returns (a subclass of "
                f"cnn_study.models.ImageClassifier), e.g. 'def {name}(*, num_classes: int = 10) -> MyNet:'."
            )
        builder_defaults = _defaults(builder)
        num_classes = builder_defaults.get("num_classes", _defaults(model_class.__init__)["num_classes"])
        input_size = model_class.registered_input_size(builder_defaults)
        _MODELS[name] = ModelInfo(
            name, builder, model_class, paper, year, input_size, num_classes, dict(pretrained or {})
        )
        return builder

    return decorator


def _defaults(function: Callable[..., Any]) -> dict[str, Any]:
    parameters = inspect.signature(function).parameters.values()
    return {parameter.name: parameter.default for parameter in parameters if parameter.default is not parameter.empty}


def list_models(pattern: str | None = None) -> list[str]:
    """Return the registered model names, sorted, optionally filtered.

    Args:
        pattern: A shell-style wildcard such as ``"resnet*"``.

    Returns:
        Sorted model names.

    Examples:
        >>> from cnn_study.models import list_models
        >>> list_models("resnet*")
        ['resnet110', 'resnet20', 'resnet32', 'resnet44', 'resnet56']
    """
    names = sorted(_MODELS)
    return names if pattern is None else fnmatch.filter(names, pattern)


def get_model_info(name: str) -> ModelInfo:
    """Return the `ModelInfo` of a registered model.

    Args:
        name: Registry name.

    Raises:
        ValueError: ``name`` is not registered; the message lists the closest names.
    """
    if not isinstance(name, str):
        raise ValueError(f"A model is named by a string, got {name!r}. Registered models: {', '.join(list_models())}.")
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} Registered models: {', '.join(list_models())}.") from None


def available_weights(name: str) -> dict[str, Weights]:
    """Return the named weights a model can be created with.

    These are the checkpoints shipped in ``cnn_study/models/weights/`` as
    ``<model>-<dataset>.pt`` plus any downloadable weights (VGG16 ImageNet).

    Args:
        name: Registry name.
    """
    weights = dict(get_model_info(name).pretrained)
    for path in sorted(WEIGHTS_DIR.glob(f"{name}-*.pt")):
        weights_name = path.stem.removeprefix(f"{name}-")
        weights[weights_name] = Weights(weights_name, _shipped_meta(path), functools.partial(_load_shipped, path))
    return weights


@functools.cache
def _shipped_meta(path: Path) -> dict[str, Any]:
    return read_model_meta(path)


def _load_shipped(path: Path, progress: bool) -> dict[str, torch.Tensor]:
    return load_trained_model_file(path, shipped=True)["state_dict"]


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a file written by ``torch.save``, safely.

    Accepts a bare state dict, or a checkpoint dict holding one under
    ``"state_dict"`` or ``"model"`` (what `cnn_study.training` writes).

    Args:
        path: The file.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable PyTorch checkpoint, or it is a trained-model file
            (``{"state_dict", "meta"}``) whose parameters do not match the SHA-256 its metadata records.
    """
    content = safe_torch_load(path, "PyTorch weights file")
    if (
        isinstance(content, dict)
        and isinstance(content.get("meta"), dict)
        and isinstance(content.get("state_dict"), dict)
    ):
        check_parameters(content, path)  # a trained-model file: its parameters as recorded
    for key in ("state_dict", "model"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            return content[key]
    return content


def _check_built_as_trained(name: str, builder: Callable[..., nn.Module], chosen: Weights, kwargs: dict) -> None:
    """Refuse a builder argument other than the one the weights were trained with: the parameters would load
    into another network (a plain ResNet under a residual one's weights) and compute something else, silently."""
    trained_with = builder_kwargs(chosen.meta)
    defaults = {key: parameter.default for key, parameter in inspect.signature(builder).parameters.items()}
    for key, value in kwargs.items():
        trained = trained_with.get(key, defaults.get(key, inspect.Parameter.empty))
        as_list = [list(v) if isinstance(v, tuple) else v for v in (value, trained)]  # a tuple and its list agree
        if trained is not inspect.Parameter.empty and as_list[0] != as_list[1]:
            raise ValueError(
                f"The {name} weights {chosen.name!r} were trained with {key}={trained!r}, not {value!r}. Leave "
                f"{key} out, or create the model without weights to train it with {key}={value!r}."
            )


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with pretrained weights.

    Args:
        name: Registry name (see `list_models`).
        num_classes: Number of outputs; defaults to the model's or the weights'.
        weights: ``None`` for random initialisation, the name of available
            weights (see `available_weights`), or a path to a state-dict file.
        progress: Show a progress bar when weights are downloaded.
        **kwargs: Passed on to the model's builder.

    Returns:
        The model, in training mode.

    Raises:
        ValueError: Unknown model or weights, ``num_classes`` is not positive, or it or another builder argument
            (``shortcuts=False`` under residual weights) disagrees with the weights.

    Examples:
        >>> import torch
        >>> from cnn_study.models import create_model
        >>> model = create_model("lenet5")
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    info = get_model_info(name)
    if num_classes is not None and (type(num_classes) is not int or num_classes < 1):
        raise ValueError(
            f"num_classes must be a positive whole number (1 for a binary model with one logit), got {num_classes!r}."
        )
    if weights is None:
        return info.builder(num_classes=num_classes or info.num_classes, **kwargs)
    named = available_weights(name)
    if not isinstance(weights, (str, os.PathLike)):  # weights=True, as other libraries spell "pretrained"
        raise ValueError(
            f"weights names the weights to load, got {weights!r}: one of {', '.join(named) or 'none'} for {name}, "
            "or the path of a .pt/.pth file."
        )

    chosen = named.get(str(weights))
    if chosen is not None:
        weights_classes = chosen.meta["num_classes"]
        if num_classes is not None and num_classes != weights_classes:
            raise ValueError(
                f"The {name} weights {chosen.name!r} have {weights_classes} classes, but num_classes={num_classes} "
                "was asked for. Leave num_classes out, or create the model without weights and train a new head."
            )
        _check_built_as_trained(name, info.builder, chosen, kwargs)
        state_dict = chosen.get_state_dict(progress=progress)
        num_classes = weights_classes
        # shipped weights say how their model was built (a transfer head's pooling, the ImageNet base under a head)
        kwargs = {**builder_kwargs(chosen.meta), **kwargs}
    elif Path(weights).suffix in {".pt", ".pth"} or Path(weights).exists():
        state_dict = load_state_dict_file(weights)
    else:
        raise ValueError(
            f"Unknown weights {weights!r} for {name}. Available: {', '.join(named) or 'none'}; "
            "or pass the path of a .pt/.pth state-dict file."
        )
    model = info.builder(num_classes=num_classes or info.num_classes, **kwargs)
    head_only = chosen is not None and holds_head_only(chosen.meta)
    try:
        load_state(model, state_dict, head_only=head_only)
    except RuntimeError as error:
        raise ValueError(
            f"The weights {str(weights)!r} do not fit {name} with num_classes={num_classes or info.num_classes}: "
            f"{error}"
        ) from error
    if chosen is not None:  # the model is fed as its weights were trained: their normalisation
        model.mean, model.std = tuple(chosen.meta["mean"]), tuple(chosen.meta["std"])
    return model
