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

The base is VGG16 (torchvision ImageNet weights) in the study; the offline
EfficientNet-Lite0 base is a separate registry entry that must be chosen by
name. A missing download raises an error; it never swaps one base for another.
As torchvision's builders do, a transfer model downloads nothing unless asked:
``base_weights="imagenet"`` loads its base's ImageNet weights (what a recipe's
run starts from, `cnn_study.recipes.Recipe.create_model`); the default is a random base.

References:
    * Yosinski et al. "How transferable are features in deep neural
      networks?", NeurIPS 2014.
    * Chollet. *Deep Learning with Python*, chapter 5.3 (the Keras recipe whose head, Flatten -> Dense 256
      -> sigmoid, the study's experiment 9 names).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ._base import ImageClassifier, InputSpec
from ._registry import create_model, get_model_info, list_models, register_model

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

    def feature_extractor(self, folded: bool = False) -> nn.Module:
        """The frozen part with everything parameter-free after it: the base and the head's pooling (or identity).

        Its output is what feature extraction caches; `classifier_head` maps it to logits, so
        ``classifier_head()(feature_extractor()(x))`` equals ``model(x)``.

        Args:
            folded: Return a copy for inference with the base's batch norms folded into its convolutions
                (`fold_batch_norms`): 1.2 times the images/s of EfficientNet-Lite0 on a 2-core CPU
                (``benchmarks/transfer_inference.py``), the same features to float32 rounding. The copy
                does not follow later changes of the model's parameters.
        """
        extractor = nn.Sequential(self.base, self.head[0])
        return fold_batch_norms(extractor) if folded else extractor

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


class _ConvolutionLeafTracer(torch.fx.Tracer):
    """An fx tracer that keeps every ``nn.Conv2d``, subclasses included, as one call (so it can be fused)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, nn.Conv2d) or super().is_leaf_module(module, qualified_name)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """A copy of a frozen ``module`` in eval mode with each batch norm that follows a convolution folded into it.

    In eval mode a batch norm is a fixed per-channel scale and shift, so it can be merged into the
    weights and bias of the convolution before it (``torch.nn.utils.fusion.fuse_conv_bn_eval``): the
    same function in one pass over the activations instead of two. Only a batch norm whose input is a
    convolution's output and nothing else's is folded. ``module`` itself is left as it is.

    Args:
        module: A module whose parameters will not change while the copy is used (a frozen base).

    Returns:
        An ``torch.fx.GraphModule`` in eval mode.

    Examples:
        >>> conv_bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
        >>> folded = fold_batch_norms(conv_bn)
        >>> x = torch.randn(2, 3, 8, 8)
        >>> torch.allclose(folded(x), conv_bn(x), atol=1e-6), [type(m).__name__ for m in folded.children()]
        (True, ['Conv2d'])
    """
    module = copy.deepcopy(module).eval()
    graph = _ConvolutionLeafTracer().trace(module)
    folded = torch.fx.GraphModule(module, graph)
    for node in list(folded.graph.nodes):
        source = node.args[0] if node.args else None
        if not (node.op == "call_module" and isinstance(folded.get_submodule(node.target), nn.BatchNorm2d)):
            continue
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1):
            continue
        convolution = folded.get_submodule(source.target)
        if not isinstance(convolution, nn.Conv2d):
            continue
        parent, _, name = source.target.rpartition(".")
        fused = fuse_conv_bn_eval(convolution, folded.get_submodule(node.target))
        setattr(folded.get_submodule(parent) if parent else folded, name, fused)
        node.replace_all_uses_with(source)
        folded.graph.erase_node(node)
    folded.delete_all_unused_submodules()
    folded.recompile()
    return folded.eval()


def is_transfer_model(name: str) -> bool:
    """Whether the registered model ``name`` is a pretrained base with a new head (a `TransferClassifier`).

    >>> is_transfer_model("vgg16_transfer"), is_transfer_model("lenet5")
    (True, False)
    """
    return issubclass(get_model_info(name).model_class, TransferClassifier)


def transfer_model(base: str) -> str:
    """The registry name of the transfer model on the pretrained base ``base``: ``<base>_transfer``.

    With `base_of`, the one place that knows how a transfer model is named after its base.

    Raises:
        ValueError: No transfer model is registered on ``base``; the message lists the bases that have one.

    >>> transfer_model("efficientnet_lite0"), base_of("vgg16_transfer")
    ('efficientnet_lite0_transfer', 'vgg16')
    """
    name = f"{base}_transfer"
    if name not in list_models() or not is_transfer_model(name):
        bases = [base_of(model) for model in list_models("*_transfer") if is_transfer_model(model)]
        raise ValueError(f"Unknown pretrained base {base!r}; choose one of {', '.join(bases)}.")
    return name


def base_of(model: str) -> str:
    """The pretrained base inside the transfer model ``model`` (see `transfer_model`).

    Raises:
        ValueError: ``model`` is not a transfer model.
    """
    if not is_transfer_model(model):
        raise ValueError(f"{model} is trained from scratch: it has no pretrained base.")
    return model.removesuffix("_transfer")


#: What ``base_weights="imagenet"`` loads, by base: each base's ImageNet weights in the registry.
IMAGENET_WEIGHTS = {"vgg16": "IMAGENET1K_FEATURES", "efficientnet_lite0": "IMAGENET1K"}


def _create_transfer(base_name: str, base_weights: str | Path | None, **head: Any) -> TransferClassifier:
    """Build the registered model ``base_name`` with ``base_weights`` and put a new head on its body."""
    base = create_model(base_name, weights=IMAGENET_WEIGHTS[base_name] if base_weights == "imagenet" else base_weights)
    return TransferClassifier(base.features, base.last_block(), mean=base.mean, std=base.std, **head)


@register_model(
    "vgg16_transfer",
    paper="Simonyan & Zisserman (base); Chollet, Deep Learning with Python (head)",
    year=2015,
)
def vgg16_transfer(*, base_weights: str | Path | None = None, image_size: int = 150, **head: Any) -> TransferClassifier:
    """VGG16 convolutional base (ImageNet) + new head, the study's transfer model.

    Args:
        base_weights: Weights of the VGG16 base: ``"imagenet"`` (torchvision's ``IMAGENET1K_FEATURES``, a
            528 MB download the first time), another torchvision weights name, a local file, or ``None`` (the
            default) for random weights, which downloads nothing.
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
    *, base_weights: str | Path | None = None, image_size: int = 224, **head: Any
) -> TransferClassifier:
    """EfficientNet-Lite0 base (ImageNet, from the ``offline`` extra) + new head.

    Args:
        base_weights: ``"imagenet"`` (the ``offline`` extra's ``IMAGENET1K``), a local file, or ``None`` (the
            default) for random weights.
        image_size: Side of the square input images (224, the base's native size).
        **head: The head's settings (see `TransferClassifier`).
    """
    return _create_transfer("efficientnet_lite0", base_weights, image_size=image_size, **head)
