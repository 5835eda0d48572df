"""Model registry and the architectures of the ten experiments.

Examples:
    >>> from cnn_study.models import create_model, list_models
    >>> "lenet5" in list_models()
    True
    >>> sum(p.numel() for p in create_model("resnet20").parameters())
    269722
"""

from __future__ import annotations

from typing import Any

import torchinfo

from . import (
    alexnet_cifar,
    efficientnet_lite0,
    fashion_cnn,
    fast_cifar,
    lenet5,
    mnist_cnn,
    resnet_cifar,
    trained,
    transfer,
    vgg16,
    zfnet_cifar,
)
from ._base import ImageClassifier, InputSpec
from ._model_file import (
    MODEL_META_KEYS,
    builder_kwargs,
    load_trained_model_file,
    read_model_meta,
    save_trained_model,
    write_model_file,
)
from ._registry import (
    WEIGHTS_DIR,
    ModelInfo,
    Weights,
    available_weights,
    create_model,
    get_model_info,
    list_models,
    load_state_dict_file,
    register_model,
)
from .trained import load_trained_model
from .transfer import TransferClassifier, base_of, fold_batch_norms, is_transfer_model, transfer_model


def summary(name: str, *, depth: int = 3, **kwargs: Any) -> torchinfo.ModelStatistics:
    """Return the torchinfo summary of a registered model for one image of its expected size.

    Args:
        name: Registry name.
        depth: How many levels of nested modules to show.
        **kwargs: Passed to `create_model` (e.g. ``num_classes``, or ``base_weights="imagenet"`` for a transfer model).

    Returns:
        The summary; ``print`` it, or read ``total_params`` and ``summary_list``.

    Examples:
        >>> from cnn_study.models import summary
        >>> summary("lenet5").total_params
        61706
    """
    model = create_model(name, **kwargs)
    return torchinfo.summary(
        model,
        input_size=(1, *model.input_size),
        depth=depth,
        col_names=("output_size", "num_params", "kernel_size"),
        device="cpu",
        verbose=0,
    )


__all__ = [
    "MODEL_META_KEYS",
    "WEIGHTS_DIR",
    "ImageClassifier",
    "InputSpec",
    "ModelInfo",
    "TransferClassifier",
    "Weights",
    "alexnet_cifar",
    "available_weights",
    "base_of",
    "builder_kwargs",
    "create_model",
    "efficientnet_lite0",
    "fashion_cnn",
    "fast_cifar",
    "fold_batch_norms",
    "get_model_info",
    "is_transfer_model",
    "lenet5",
    "list_models",
    "load_state_dict_file",
    "load_trained_model",
    "load_trained_model_file",
    "read_model_meta",
    "mnist_cnn",
    "register_model",
    "resnet_cifar",
    "save_trained_model",
    "summary",
    "trained",
    "transfer",
    "transfer_model",
    "vgg16",
    "write_model_file",
    "zfnet_cifar",
]
