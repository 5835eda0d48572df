"""ZFNet adapted to 32x32 CIFAR-10 images, experiment 5.

Zeiler and Fergus (2014) visualised AlexNet's features with deconvolution,
saw first-layer filters with "little coverage of the mid frequencies" and
aliasing in the second layer's features caused by the first layer's stride
of 4, and fixed both in the first layer: 7x7 filters with stride 2 instead of
11x11 with stride 4 (their Section 4.1). Their network (Fig. 3) also gives the
second layer a stride of 2 and connects layers 3-5 densely (their Section 3).
All five convolutions keep the 2012 AlexNet's widths (96, 256, 384, 384, 256),
in one column instead of two; variants in their Section 5.1 widened layers
3-5. ZFNet is therefore AlexNet with another layer table: `ZFNetCIFAR`
is `cnn_study.models.alexnet_cifar.AlexNetCIFAR` under its own name (which
summaries and error messages show).

On 32x32 images both adaptations use a small, stride-1 first layer (3x3 here,
5x5 in `alexnet_cifar`), so ZFNet's change of stride has no counterpart; only
the smaller first kernel echoes it: the two CIFAR-10 networks differ in their
widths and first kernel only.

| layer | ZFNet (ImageNet)           | CIFAR-10 version                |
|-------|----------------------------|---------------------------------|
| conv1 | 96 x 7x7, stride 2         | 96 x 3x3, stride 1, pad 1       |
| pool1 | 3x3, stride 2              | 3x3, stride 2, pad 1 (32 -> 16) |
| conv2 | 256 x 5x5, stride 2        | 256 x 3x3, stride 1, pad 1      |
| pool2 | 3x3, stride 2              | 3x3, stride 2, pad 1 (16 -> 8)  |
| conv3-5 | 384, 384, 256 x 3x3      | unchanged                       |
| pool3 | 3x3, stride 2              | 3x3, stride 2, pad 1 (8 -> 4)   |
| fc6, fc7 | 4096, 4096, dropout 0.5 | 1024, 1024, dropout 0.5         |
| fc8   | 1000                       | 10                              |

References:
    * Zeiler, Fergus. "Visualizing and Understanding Convolutional
      Networks", ECCV 2014.
"""

from __future__ import annotations

from ._registry import register_model
from .alexnet_cifar import AlexNetCIFAR, LayerSpec

cfgs: dict[str, list[LayerSpec]] = {
    "zfnet": [(96, 3), "M", (256, 3), "M", (384, 3), (384, 3), (256, 3), "M"],
}


class ZFNetCIFAR(AlexNetCIFAR):
    """`cnn_study.models.alexnet_cifar.AlexNetCIFAR` built from ZFNet's layer table (`cfgs`)."""


@register_model(
    "zfnet_cifar",
    paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks",
    year=2014,
)
def zfnet_cifar(*, num_classes: int = 10, batch_norm: bool = False, dropout: float = 0.5) -> ZFNetCIFAR:
    """Build ZFNet for CIFAR-10 (see the module docstring for the layer table).

    Examples:
        >>> import torch
        >>> zfnet_cifar()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    return ZFNetCIFAR(cfgs["zfnet"], num_classes=num_classes, batch_norm=batch_norm, dropout=dropout)
