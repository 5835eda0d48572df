"""The CIFAR-10 ResNets of He et al., experiment 7.

Section 4.2 of the ResNet paper describes a family for 32x32 images: a 3x3
stem with 16 channels, then three stages of ``n`` basic blocks with 16, 32 and
64 channels (feature maps 32x32, 16x16, 8x8), global average pooling and one
fully connected layer: ``6n + 2`` weighted layers. n = 3, 5, 7, 9, 18 give
ResNet-20, 32, 44, 56 and 110 with 0.27M, 0.46M, 0.66M, 0.85M and 1.7M
parameters (Table 6).

A basic block computes ``relu(x + F(x))`` with ``F`` = conv-BN-ReLU-conv-BN.
When a stage halves the resolution and doubles the width, the paper's
"option A" shortcut subsamples ``x`` with stride 2 and pads the new channels
with zeros, so shortcuts add no parameters.

``shortcuts=False`` builds the paper's *plain* counterpart (Section 4.2, Fig. 6):
the same layers and parameters without the ``+ x``, the network in which
He et al. saw the degradation problem (deeper plain networks reach a higher
*training* error).

References:
    * He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition",
      CVPR 2016, Section 4.2.
    * akamaster/pytorch_resnet_cifar10 (the same option-A family of 6n+2 layers, in PyTorch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._base import ImageClassifier
from ._registry import register_model


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or option-A) shortcut.

    Args:
        in_channels: Channels of the block input.
        out_channels: Channels of the block output.
        stride: Stride of the first convolution (2 at the start of a stage).
        shortcut: Add the input to the output (``False``: a plain block, ``relu(F(x))``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut: nn.Module | None = None
        if shortcut:
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = F.relu(self.bn1(self.conv1(x)))
        residual = self.bn2(self.conv2(residual))
        return F.relu(residual if self.shortcut is None else residual + self.shortcut(x))


class CifarResNet(ImageClassifier):
    """ResNet-(6n+2) for 32x32 images.

    Args:
        blocks_per_stage: ``n``, the number of basic blocks in each of the three stages.
        num_classes: Number of output classes.
        shortcuts: ``False`` builds the plain network of the same depth (no ``+ x`` in any block).

    Examples:
        >>> import torch
        >>> model = CifarResNet(blocks_per_stage=3)
        >>> model.forward_features(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 64, 8, 8])
    """

    input_size = (3, 32, 32)
    fixed_input_size = False
    stage_channels = (16, 32, 64)

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, shortcuts: bool = True) -> None:
        if not isinstance(shortcuts, bool):  # "False", a string, would build the residual network
            raise ValueError(f"shortcuts is True (the residual network) or False (the plain one), got {shortcuts!r}.")
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_channels = 16
        for index, channels in enumerate(self.stage_channels):
            first_stride = 1 if index == 0 else 2
            blocks = [BasicBlock(in_channels, channels, first_stride, shortcut=shortcuts)]
            blocks += [BasicBlock(channels, channels, shortcut=shortcuts) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = channels
        self.stage1, self.stage2, self.stage3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(self.stem(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(features), 1))

    def get_classifier(self) -> nn.Linear:
        return self.fc


HE_2016 = {"paper": "He et al., Deep Residual Learning for Image Recognition", "year": 2016}


@register_model("resnet20", **HE_2016)
def resnet20(*, num_classes: int = 10, shortcuts: bool = True) -> CifarResNet:
    """Build ResNet-20 for CIFAR-10 (3 blocks per stage, 0.27M parameters).

    ``shortcuts=False`` builds its plain counterpart, with the same layers and parameters.
    """
    return CifarResNet(3, num_classes=num_classes, shortcuts=shortcuts)


@register_model("resnet32", **HE_2016)
def resnet32(*, num_classes: int = 10, shortcuts: bool = True) -> CifarResNet:
    """Build ResNet-32 for CIFAR-10 (5 blocks per stage, 0.46M parameters).

    ``shortcuts=False`` builds its plain counterpart, with the same layers and parameters.
    """
    return CifarResNet(5, num_classes=num_classes, shortcuts=shortcuts)


@register_model("resnet44", **HE_2016)
def resnet44(*, num_classes: int = 10, shortcuts: bool = True) -> CifarResNet:
    """Build ResNet-44 for CIFAR-10 (7 blocks per stage, 0.66M parameters).

    ``shortcuts=False`` builds its plain counterpart, with the same layers and parameters.
    """
    return CifarResNet(7, num_classes=num_classes, shortcuts=shortcuts)


@register_model("resnet56", **HE_2016)
def resnet56(*, num_classes: int = 10, shortcuts: bool = True) -> CifarResNet:
    """Build ResNet-56 for CIFAR-10 (9 blocks per stage, 0.85M parameters).

    ``shortcuts=False`` builds its plain counterpart, with the same layers and parameters.
    """
    return CifarResNet(9, num_classes=num_classes, shortcuts=shortcuts)


@register_model("resnet110", **HE_2016)
def resnet110(*, num_classes: int = 10, shortcuts: bool = True) -> CifarResNet:
    """Build ResNet-110 for CIFAR-10 (18 blocks per stage, 1.7M parameters).

    ``shortcuts=False`` builds its plain counterpart, with the same layers and parameters.
    """
    return CifarResNet(18, num_classes=num_classes, shortcuts=shortcuts)
