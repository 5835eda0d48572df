"""Transfer learning models: a pretrained convolutional base and a new head.

Experiments 6, 8 and 9 reuse a network trained on ImageNet for a small
binary task (cats vs dogs). Two ways of doing it are taught:

* **Feature extraction** (``trainable="head"``): the base is frozen and only
  the new head learns. Because the base never changes, its output for an
  image never changes either, so the features can be computed once and cached
  (`cnn_study.training.extract_features`).
* **Fine-tuning** (``trainable="last_block"``): after the head has been
  trained, the last convolutional block is unfrozen and trained with a small
  learning rate, so the most task-specific features adapt too.

The head is the study's: ``Flatten -> Dense(256, ReLU) -> Dense(1)`` with a
sigmoid in the loss (``BCEWithLogitsLoss``). ``pooling="avg"`` replaces the
flatten with global average pooling, which has far fewer parameters.

The base is VGG16 (torchvision ImageNet weights) by default; the offline
EfficientNet-Lite0 base is a separate registry entry that must be chosen by
name. A missing download raises an error; it never swaps one base for another.

References:
    * Yosinski et al. "How transferable are features in deep neural
      networks?", NeurIPS 2014.
    * Chollet. *Deep Learning with Python*, chapter 5.3 (the Keras recipe the study follows).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ._base import ImageClassifier, InputSpec
from ._registry import create_model, get_model_info, register_model

Trainable = Literal["head", "last_block", "all"]


class TransferClassifier(ImageClassifier):
    """A pretrained convolutional base followed by a new classification head.

    Args:
        base: Module mapping images to a feature map (e.g. VGG16's ``features``).
        last_block: The part of ``base`` that fine-tuning unfreezes.
        image_size: Side of the square input images.
        num_classes: Outputs of the head; 1 means one logit for binary tasks.
        hidden: Width of the hidden fully connected layer.
        dropout: Dropout probability before the last layer.
        pooling: ``"flatten"`` (the study's head) or ``"avg"`` (global average pooling).
        trainable: Which parameters learn: ``"head"``, ``"last_block"`` or ``"all"``.
        mean: Normalisation mean the base was trained with.
        std: Normalisation standard deviation the base was trained with.
    """

    def __init__(
        self,
        base: nn.Module,
        last_block: nn.Module,
        *,
        image_size: int,
        num_classes: int = 1,
        hidden: int = 256,
        dropout: float = 0.0,
        pooling: Literal["flatten", "avg"] = "flatten",
        trainable: Trainable = "head",
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.input_size = (3, image_size, image_size)
        self.mean, self.std = mean, std
        self.base = base
        last_block_ids = {id(parameter) for parameter in last_block.parameters()}
        self.last_block_parameters = [
            name for name, parameter in base.named_parameters() if id(parameter) in last_block_ids
        ]
        with torch.no_grad():
            channels, height, width = base.eval()(torch.zeros(1, *self.input_size)).shape[1:]
        flat_features = channels if pooling == "avg" else channels * height * width
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1) if pooling == "avg" else nn.Identity(),
            nn.Flatten(),
            nn.Linear(flat_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.set_trainable(trainable)

    @classmethod
    def registered_input_size(cls, builder_defaults: Mapping[str, Any]) -> tuple[int, int, int]:
        return (3, builder_defaults["image_size"], builder_defaults["image_size"])

    def input_spec(self) -> InputSpec:
        """The base's size and normalisation; batches are resized, since any image size goes in."""
        return InputSpec(self.input_size, self.mean, self.std, resize=True)

    def feature_extractor(self) -> nn.Module:
        """The frozen part with everything parameter-free after it: the base and the head's pooling (or identity).

        Its output is what feature extraction caches; `classifier_head` maps it to logits, so
        ``classifier_head()(feature_extractor()(x))`` equals ``model(x)``.
        """
        return nn.Sequential(self.base, self.head[0])

    def classifier_head(self) -> nn.Module:
        """The trainable head after `feature_extractor`: flatten, hidden layer, dropout, output layer."""
        return self.head[1:]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    def set_trainable(self, trainable: Trainable) -> None:
        """Freeze the base (``"head"``), unfreeze its last block (``"last_block"``) or everything (``"all"``).

        Args:
            trainable: Which parameters learn from now on.

        Raises:
            ValueError: ``trainable`` is not one of the three choices.
        """
        if trainable not in ("head", "last_block", "all"):
            raise ValueError(f"trainable must be 'head', 'last_block' or 'all', not {trainable!r}.")
        self.trainable = trainable
        self.base.requires_grad_(trainable == "all")
        if trainable == "last_block":
            for name in self.last_block_parameters:
                self.base.get_parameter(name).requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> TransferClassifier:
        """Set training mode; the base's batch-norm layers always stay in eval mode.

        They keep normalising with their ImageNet statistics, also while
        fine-tuning: statistics re-estimated from small batches of a small
        dataset would shift every feature the base computes at once and undo
        what it learned (Keras' transfer-learning guide gives the same advice).
        Their scale and shift still learn when their block is unfrozen.
        """
        super().train(mode)
        for module in self.base.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self


def is_transfer_model(name: str) -> bool:
    """Whether the registered model ``name`` is a pretrained base with a new head (a `TransferClassifier`).

    >>> is_transfer_model("vgg16_transfer"), is_transfer_model("lenet5")
    (True, False)
    """
    return issubclass(get_model_info(name).model_class, TransferClassifier)


def _create_transfer(base_name: str, base_weights: str | Path | None, **head: Any) -> TransferClassifier:
    """Build the registered model ``base_name`` with ``base_weights`` and put a new head on its body."""
    base = create_model(base_name, weights=base_weights)
    return TransferClassifier(base.features, base.last_block(), mean=base.mean, std=base.std, **head)


@register_model(
    "vgg16_transfer",
    paper="Simonyan & Zisserman (base); Chollet, Deep Learning with Python (head)",
    year=2015,
)
def vgg16_transfer(
    *, base_weights: str | Path | None = "IMAGENET1K_FEATURES", image_size: int = 150, **head: Any
) -> TransferClassifier:
    """VGG16 convolutional base (ImageNet) + new head, the study's transfer model.

    Args:
        base_weights: Weights of the VGG16 base: a torchvision weights name, a
            local file, or ``None`` for random weights (useful only for tests).
        image_size: Side of the square input images (150 in the study).
        **head: The head's settings (see `TransferClassifier`); ``trainable="last_block"`` unfreezes block 5.
    """
    return _create_transfer("vgg16", base_weights, image_size=image_size, **head)


@register_model(
    "efficientnet_lite0_transfer",
    paper="Tan & Le, EfficientNet (base); Chollet, Deep Learning with Python (head)",
    year=2019,
)
def efficientnet_lite0_transfer(
    *, base_weights: str | Path | None = "IMAGENET1K", image_size: int = 224, **head: Any
) -> TransferClassifier:
    """EfficientNet-Lite0 base (ImageNet, from the ``offline`` extra) + new head.

    Args:
        base_weights: ``"IMAGENET1K"``, a local file, or ``None`` for random weights.
        image_size: Side of the square input images (224, the base's native size).
        **head: The head's settings (see `TransferClassifier`).
    """
    return _create_transfer("efficientnet_lite0", base_weights, image_size=image_size, **head)
