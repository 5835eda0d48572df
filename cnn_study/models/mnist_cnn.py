"""The simple MNIST CNN of experiment 1.

This is the network of the official PyTorch MNIST example: two 3x3
convolutions, one max-pool, dropout and two fully connected layers. It is
the smallest model that shows every ingredient of a CNN.

References:
    * PyTorch examples, ``mnist/main.py``: https://github.com/pytorch/examples/tree/main/mnist
    * Keras example "Simple MNIST convnet" (the same idea). The study's own network is not recorded: this
      one is our assumption of "a simple CNN".
"""

from __future__ import annotations

from torch import nn

from ._base import ImageClassifier
from ._registry import register_model


class MnistCNN(ImageClassifier):
    """conv(32) -> conv(64) -> max-pool -> dropout -> fc(128) -> dropout -> fc(classes).

    Args:
        num_classes: Number of output classes.
        dropout: Dropout probabilities after the pooling and after the hidden layer.

    Examples:
        >>> import torch
        >>> MnistCNN()(torch.zeros(1, 1, 28, 28)).shape
        torch.Size([1, 10])
    """

    input_size = (1, 28, 28)

    def __init__(self, num_classes: int = 10, dropout: tuple[float, float] = (0.25, 0.5)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3),  # 28 -> 26
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, kernel_size=3),  # 26 -> 24
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 24 -> 12
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout[0]),
            nn.Flatten(),
            nn.Linear(64 * 12 * 12, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout[1]),
            nn.Linear(128, num_classes),
        )


@register_model(
    "mnist_cnn",
    paper="PyTorch examples: MNIST convnet",
    year=2017,
)
def mnist_cnn(*, num_classes: int = 10) -> MnistCNN:
    """Build the simple MNIST CNN (1.2M parameters)."""
    return MnistCNN(num_classes=num_classes)
