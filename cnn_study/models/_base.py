"""The interface every cnn-study classifier shares.

Following timm, a classifier is split into a convolutional body,
`ImageClassifier.forward_features`, and a classification head,
`ImageClassifier.forward_head`. Feature extraction, fine-tuning,
feature-map plots and Grad-CAM all build on that split.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class InputSpec:
    """How to feed a model: what `cnn_study.datasets.BatchLoader.for_model` turns images into.

    Attributes:
        size: ``(channels, height, width)`` of one input image.
        mean: Normalisation mean per channel; ``None``: the statistics of the data it is trained on.
        std: Normalisation standard deviation per channel; ``None`` as for ``mean``.
        resize: Resize every batch to ``size`` (a pretrained base that accepts any image size).

    Examples:
        >>> from cnn_study.models import create_model
        >>> create_model("lenet5").input_spec()
        InputSpec(size=(1, 28, 28), mean=None, std=None, resize=False)
    """

    size: tuple[int, int, int]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: bool = False


class ImageClassifier(nn.Module):
    """Base class: input checking and the ``forward_features``/``forward_head`` split.

    Subclasses set `input_size` and `fixed_input_size` (and `mean` and `std` when their weights
    were trained with a normalisation of their own). The default
    methods fit the common layout of two ``nn.Sequential`` attributes,
    ``features`` (convolutional body) and ``head`` (ending in the final
    ``nn.Linear``); architectures laid out differently override them.

    Attributes:
        input_size: The ``(channels, height, width)`` the model was designed for.
        fixed_input_size: Whether height and width must equal ``input_size``
            exactly (true for models that flatten feature maps into a linear layer).
        mean: The normalisation mean the model's weights expect, or ``None`` for the data's own.
        std: The normalisation standard deviation the model's weights expect, or ``None``.
    """

    input_size: tuple[int, int, int]
    fixed_input_size: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @classmethod
    def registered_input_size(cls, builder_defaults: Mapping[str, Any]) -> tuple[int, int, int]:
        """The input size the registry reports for a builder of this class, given the builder's defaults."""
        return cls.input_size

    def input_spec(self) -> InputSpec:
        """What this model eats: size, normalisation, and whether batches are resized to fit."""
        return InputSpec(self.input_size, self.mean, self.std)

    def initialise_from_data(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Data-dependent initialisation from batches of normalised training images; most models need none
        and do not read them.

        `cnn_study.models.fast_cifar.FastCifarNet` sets its whitening layer here.
        """

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last convolutional feature map for a batch ``x``."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map the output of `forward_features` to class logits."""
        return self.head(features)

    def get_classifier(self) -> nn.Linear:
        """Return the final linear layer, the one that produces the logits."""
        return self.head[-1]

    @property
    def num_classes(self) -> int:
        """Number of outputs of the final layer."""
        return self.get_classifier().out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` that says what the model expects when ``x`` does not fit.

        Args:
            x: A batch of images, ``N x C x H x W``.
        """
        channels, height, width = self.input_size
        name = type(self).__name__
        if x.dim() != 4:
            raise ValueError(
                f"{name} expects a batch of shape (N, {channels}, {height}, {width}); got a "
                f"{x.dim()}-d tensor of shape {tuple(x.shape)}. Add a batch dimension with x.unsqueeze(0)."
            )
        if not x.is_floating_point():
            raise ValueError(
                f"{name} expects floating-point images, got a {str(x.dtype).removeprefix('torch.')} tensor. Scale "
                "them to [0, 1] with x.float() / 255, then normalise them with the training data's mean and std."
            )
        if x.shape[1] != channels:
            raise ValueError(
                f"{name} expects {channels} input channel(s), got {x.shape[1]} (input shape {tuple(x.shape)})."
            )
        if self.fixed_input_size and tuple(x.shape[2:]) != (height, width):
            raise ValueError(
                f"{name} expects {height}x{width} images, got {x.shape[2]}x{x.shape[3]}. "
                f"Resize the images to {height}x{width}, or build the model for this size."
            )
