"""AlexNet adapted to 32x32 CIFAR-10 images, experiment 4.

AlexNet (Krizhevsky, Sutskever, Hinton 2012) has five convolutional layers,
three overlapping max-pools and three fully connected layers. Its ImageNet
shapes assume 224x224 inputs; on 32x32 images the first layer's stride of 4
would leave almost nothing to convolve. The adaptation keeps the depth, the
layer order, ReLU, overlapping pooling and dropout, takes the channel widths
of torchvision's single-GPU AlexNet (64-192-384-256-256: the 2012 paper's
two-GPU network has 96-256-384-384-256, the one-column network of Krizhevsky
2014, which torchvision cites, 64-192-384-384-256; the fourth layer's 256 comes
from the one-GPU configuration of Krizhevsky's cuda-convnet2 code), and shrinks
what depends on image size:

| layer | torchvision (ImageNet)       | CIFAR-10 version                |
|-------|------------------------------|---------------------------------|
| conv1 | 64 x 11x11, stride 4, pad 2  | 64 x 5x5, stride 1, pad 2       |
| pool1 | 3x3, stride 2 (55 -> 27)     | 3x3, stride 2, pad 1 (32 -> 16) |
| conv2 | 192 x 5x5, pad 2             | 192 x 3x3, pad 1                |
| pool2 | 3x3, stride 2 (27 -> 13)     | 3x3, stride 2, pad 1 (16 -> 8)  |
| conv3-5 | 384, 256, 256 x 3x3        | unchanged                       |
| pool3 | 3x3, stride 2 (13 -> 6)      | 3x3, stride 2, pad 1 (8 -> 4)   |
| fc6, fc7 | 4096, 4096, dropout 0.5   | 1024, 1024, dropout 0.5         |
| fc8   | 1000                         | 10                              |

The architecture is data (`cfgs`), as in torchvision's ``vgg.py``;
ZFNet (`cnn_study.models.zfnet_cifar`) is the same network with another table.
``batch_norm=True`` inserts batch normalisation after each convolution, which
the original lacked (the 2012 paper used local response normalisation after
the first two convolutions; neither torchvision nor this version has it) and
which the improved recipe uses.

References:
    * Krizhevsky, Sutskever, Hinton. "ImageNet Classification with Deep
      Convolutional Neural Networks", NeurIPS 2012.
    * Krizhevsky. "One weird trick for parallelizing convolutional neural
      networks", arXiv:1404.5997, 2014 (one column of 64-192-384-384-256).
    * torchvision ``models/alexnet.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._base import ImageClassifier
from ._registry import register_model

#: A convolution as ``(out_channels, kernel_size)``; ``"M"`` is a 3x3/2 overlapping max-pool.
LayerSpec = tuple[int, int] | str

cfgs: dict[str, list[LayerSpec]] = {
    "alexnet": [(64, 5), "M", (192, 3), "M", (384, 3), (256, 3), (256, 3), "M"],
}


def make_layers(cfg: Sequence[LayerSpec], in_channels: int = 3, batch_norm: bool = False) -> nn.Sequential:
    """Turn a layer table into ``nn.Sequential`` (same-padding convs, ReLU, pools).

    Args:
        cfg: Table of ``(out_channels, kernel_size)`` convolutions and ``"M"`` pools.
        in_channels: Channels of the input image.
        batch_norm: Insert ``BatchNorm2d`` after each convolution.
    """
    layers: list[nn.Module] = []
    for spec in cfg:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            continue
        out_channels, kernel_size = spec
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    return nn.Sequential(*layers)


class AlexNetCIFAR(ImageClassifier):
    """Five convolutions and three pools from a table, then three fully connected layers.

    Args:
        cfg: Layer table (see `cfgs`); it must contain three pools.
        num_classes: Number of output classes.
        hidden: Width of the two hidden fully connected layers.
        dropout: Dropout probability before each hidden layer.
        batch_norm: Use batch normalisation after each convolution.

    Examples:
        >>> import torch
        >>> model = AlexNetCIFAR(cfgs["alexnet"])
        >>> model.forward_features(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 256, 4, 4])
    """

    input_size = (3, 32, 32)

    def __init__(
        self,
        cfg: Sequence[LayerSpec],
        num_classes: int = 10,
        hidden: int = 1024,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.features = make_layers(cfg, batch_norm=batch_norm)
        last_channels = [spec for spec in cfg if spec != "M"][-1][0]
        feature_size = 32 // 2 ** cfg.count("M")
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(last_channels * feature_size**2, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )


@register_model(
    "alexnet_cifar",
    paper="Krizhevsky et al., ImageNet Classification with Deep CNNs",
    year=2012,
)
def alexnet_cifar(*, num_classes: int = 10, batch_norm: bool = False, dropout: float = 0.5) -> AlexNetCIFAR:
    """Build AlexNet for CIFAR-10 (see the module docstring for the layer table)."""
    return AlexNetCIFAR(cfgs["alexnet"], num_classes=num_classes, batch_norm=batch_norm, dropout=dropout)
