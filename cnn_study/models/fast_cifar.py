"""A network built to train fast on CIFAR-10, experiment 10 (not in the study).

The design follows Keller Jordan's airbench (2024), which descends from David Page's
"How to train your ResNet" (2018-2019) and tysam-code's hlb-CIFAR10: a short, wide VGG-style network
that reaches 94% CIFAR-10 accuracy in a few seconds on one GPU. Each part is here for speed:

* **A whitened first layer.** A 2x2 convolution with frozen weights (its bias trains) whose 24
  filters are the whitening transform of the training images' 2x2 patches (their covariance's
  eigenvectors, each scaled by one over the square root of its eigenvalue, and their negatives).
  The first layer starts out decorrelating the pixels, which the network would otherwise spend
  epochs learning.
* **Three conv groups**: conv 3x3, max-pool 2x2, batch norm, GELU, conv 3x3, batch norm, GELU;
  the resolution goes 31 -> 15 -> 7 -> 3 and a global max-pool feeds one linear layer.
* **Batch-norm settings for short training**: the scale of every batch norm is fixed at 1 (only the
  shift learns) and its running statistics follow the batches quickly (momentum 0.4 instead of
  torch's 0.1): a batch counts for less than 1% of them 8 batches later (22 at torch's 0.1).
* **Logits scaled by 1/9**: a temperature that keeps the first steps' softmax soft.

``identity_init=True`` adds airbench's partial identity initialisation: the first filters of every 3x3
convolution, one per input channel, start by copying their channel through (`initialise_as_identity`).

``widths`` sets the channels of the three groups: airbench's ``(64, 256, 256)`` (about 2.0M
parameters), or the narrower ``(32, 128, 128)`` default (0.50M), which trains about three times as fast
on a CPU. Experiment 10 trains ``widths=(48, 192, 192), identity_init=True`` (1.1M parameters), the
best of the widths tried within its 15-minute budget on 2 CPU cores (tutorial 10).

| layer    | output (32x32 input) |
|----------|----------------------|
| whiten   | 24 x 31 x 31 (2x2 conv, no padding, frozen weights) |
| group 1  | w1 x 15 x 15         |
| group 2  | w2 x 7 x 7           |
| group 3  | w3 x 3 x 3           |
| head     | global max-pool, linear w3 -> 10, times 1/9 |

References:
    * Jordan. "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498, 2024 (airbench).
    * Page. "How to train your ResNet", myrtle.ai blog series, 2018-2019.
    * Zagoruyko, Komodakis. "DiracNets: Training Very Deep Neural Networks Without Skip-Connections",
      arXiv:1706.00388, 2017 (identity-initialised convolutions).
    * Coates, Ng. "Learning Feature Representations with K-means", 2012 (patch whitening, Section 3.1).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ._base import ImageClassifier
from ._registry import register_model

#: Channels of the whitening layer: the 12 directions of a 2x2x3 patch and their negatives.
WHITENING_CHANNELS = 24


class FastBatchNorm(nn.BatchNorm2d):
    """Batch norm with a fixed scale of 1 and fast-moving running statistics (airbench's settings).

    Args:
        channels: Number of channels.
        momentum: Weight of the newest batch in the running statistics (torch's convention).
        eps: Added to the variance.
    """

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12) -> None:
        super().__init__(channels, momentum=momentum, eps=eps)
        self.weight.requires_grad_(False)


@torch.no_grad()
def initialise_as_identity(conv: nn.Conv2d) -> None:
    """Start the first ``conv.in_channels`` filters of ``conv`` as the identity (airbench's ``dirac_``).

    Filter ``i`` then copies input channel ``i`` (a 1 at the centre of its kernel for that channel, 0
    elsewhere); the other filters keep their random start. A convolution as wide as its input starts
    as the identity map, as in DiracNets (Zagoruyko and Komodakis, 2017), and training moves it away.

    >>> conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    >>> initialise_as_identity(conv)
    >>> x = torch.randn(1, 2, 4, 4)
    >>> torch.equal(conv(x)[:, :2], x)
    True
    """
    nn.init.dirac_(conv.weight[: conv.in_channels])


class ConvGroup(nn.Sequential):
    """conv 3x3, max-pool 2x2, batch norm, GELU, conv 3x3, batch norm, GELU.

    With ``identity_init`` both convolutions start partly as the identity (`initialise_as_identity`).
    """

    def __init__(
        self, in_channels: int, out_channels: int, batch_norm: type[nn.Module], identity_init: bool = False
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            batch_norm(out_channels),
            nn.GELU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            batch_norm(out_channels),
            nn.GELU(),
        )
        if identity_init:
            initialise_as_identity(self[0])
            initialise_as_identity(self[4])


class FastCifarNet(ImageClassifier):
    """The airbench-style network (see the module docstring).

    Args:
        widths: Channels of the three conv groups.
        num_classes: Number of output classes.
        whitening: Start the first layer as the patch-whitening transform and keep its weights
            frozen (`initialise_from_data`); ``False``: an ordinary trainable first layer.
        fast_batch_norm: airbench's batch norm (`FastBatchNorm`); ``False``: torch's defaults
            (learned scale, momentum 0.1, eps 1e-5).
        identity_init: Start the 3x3 convolutions partly as the identity (`initialise_as_identity`);
            ``False``: torch's random initialisation throughout.
        logit_scale: Factor applied to the logits.

    Examples:
        >>> import torch
        >>> model = FastCifarNet()
        >>> model.forward_features(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 128, 3, 3])
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    input_size = (3, 32, 32)
    fixed_input_size = False

    def __init__(
        self,
        widths: tuple[int, int, int] = (32, 128, 128),
        num_classes: int = 10,
        *,
        whitening: bool = True,
        fast_batch_norm: bool = True,
        identity_init: bool = False,
        logit_scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        self.whitening = whitening
        self.logit_scale = logit_scale
        batch_norm = FastBatchNorm if fast_batch_norm else nn.BatchNorm2d
        self.whiten = nn.Conv2d(3, WHITENING_CHANNELS, kernel_size=2, bias=True)
        self.whiten.weight.requires_grad_(not whitening)
        groups, in_channels = [], WHITENING_CHANNELS
        for channels in widths:
            groups.append(ConvGroup(in_channels, channels, batch_norm, identity_init))
            in_channels = channels
        self.features = nn.Sequential(self.whiten, nn.GELU(), *groups)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes, bias=False)

    @torch.no_grad()
    def initialise_from_data(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], eps: float = 5e-4) -> None:
        """Set the first layer to the whitening transform of the 2x2 patches of the images in ``batches``.

        The covariance of all 2x2x3 patches has 12 eigenvectors ``v`` with eigenvalues ``l``; the
        filters are ``v / sqrt(l + eps)`` and their negatives, so the layer's outputs are uncorrelated
        with unit variance, and GELU after it keeps both signs. A no-op without ``whitening``.

        Args:
            batches: ``(images, labels)`` of normalised training images (a few thousand images are enough).
            eps: Added to each eigenvalue, so that near-constant directions are not blown up.
        """
        if not self.whitening:
            return
        weight = self.whiten.weight
        images = torch.cat([images.float() for images, _ in batches]).to(weight.device)
        patches = F.unfold(images, kernel_size=2).transpose(1, 2).reshape(-1, weight[0].numel())
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
        filters = (eigenvectors.T / (eigenvalues[:, None] + eps).sqrt()).float().view(-1, *weight.shape[1:])
        weight.copy_(torch.cat([filters, -filters]))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(features), 1)) * self.logit_scale

    def get_classifier(self) -> nn.Linear:
        return self.fc


@register_model("fast_cifar", paper="Jordan, 94% on CIFAR-10 in 3.29 Seconds on a Single GPU (airbench)", year=2024)
def fast_cifar(
    *,
    num_classes: int = 10,
    widths: tuple[int, int, int] = (32, 128, 128),
    whitening: bool = True,
    fast_batch_norm: bool = True,
    identity_init: bool = False,
) -> FastCifarNet:
    """Build the airbench-style network for CIFAR-10 (0.50M parameters at the default widths).

    ``widths=(64, 256, 256)`` gives airbench94's widths (1.97M parameters).
    """
    return FastCifarNet(
        widths, num_classes, whitening=whitening, fast_batch_norm=fast_batch_norm, identity_init=identity_init
    )
