"""Whole-batch data augmentation on normalised image tensors.

Each augmentation takes a float batch ``N x C x H x W`` and a
``torch.Generator`` and returns a new batch of the same shape. Random numbers
come from the generator, on the generator's device (`BatchLoader` keeps it on
the batch's device, so a GPU never waits for random numbers copied from the
host), and are applied to the whole batch at once with tensor operations: no
per-image Python loop, which is what makes augmentation cheap on a CPU.

Batches are already normalised, so zero is the mean colour: padding and
cutout fill with the dataset mean, not with black.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=generator.device) * (high - low) + low).to(device)


def _randint(high: int, size: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, high, size, generator=generator, device=generator.device).to(device)


def random_flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images left to right."""
    flip = _uniform(len(batch), 0, 1, generator, batch.device) < 0.5
    return torch.where(flip[:, None, None, None], batch.flip(3), batch)


@dataclass(frozen=True)
class Mirror:
    """Mirror every image left to right (a fixed view, e.g. for caching features of mirror images)."""

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return batch.flip(3)


@dataclass(frozen=True)
class CropFlip:
    """Random crop after zero padding, then random horizontal flip (the standard CIFAR augmentation).

    Attributes:
        padding: Pixels of padding on each side; the crop is the original size.
        flip: Also mirror a random half of the images.

    Examples:
        >>> import torch
        >>> batch = torch.randn(8, 3, 32, 32)
        >>> CropFlip(padding=4)(batch, torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """

    padding: int = 4
    flip: bool = True

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = batch.shape
        padded = F.pad(batch, (self.padding,) * 4)
        offsets = _randint(2 * self.padding + 1, (2, n), generator, batch.device)
        rows = offsets[0, :, None] + torch.arange(height, device=batch.device)  # N x H
        cols = offsets[1, :, None] + torch.arange(width, device=batch.device)  # N x W
        batch_index = torch.arange(n, device=batch.device)[:, None, None]
        cropped = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]  # N x H x W x C
        cropped = cropped.permute(0, 3, 1, 2)
        return random_flip(cropped, generator) if self.flip else cropped.contiguous()


@dataclass(frozen=True)
class ShearZoomFlip:
    """Random shear, zoom and horizontal flip as one affine warp per image (Keras ``ImageDataGenerator``).

    The study's transfer experiments used shear, zoom and flip without stating
    how much; the seed recipes assume Chollet's ``shear_range=0.2,
    zoom_range=0.2, horizontal_flip=True`` (*Deep Learning with Python*).
    Here shear is a shear factor in ``[-shear, shear]`` (0.2: up to about 11
    degrees) and zoom one scale in ``[1 - zoom, 1 + zoom]`` for both axes;
    border pixels are repeated (Keras' ``fill_mode="nearest"``). Recent Keras
    versions read ``shear_range`` in degrees (the oldest applied it in radians),
    so on a recent Keras a ``shear_range`` of 0.2 shears by at most 0.2
    degrees, almost nothing, and Keras draws the two axes' zooms independently:
    this augmentation is stronger than Keras's with the same numbers.

    Attributes:
        shear: Largest shear factor.
        zoom: Largest relative zoom.
        flip: Also mirror a random half of the images.
    """

    shear: float = 0.2
    zoom: float = 0.2
    flip: bool = True

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = len(batch)
        shear = _uniform(n, -self.shear, self.shear, generator, batch.device)
        scale = _uniform(n, 1 - self.zoom, 1 + self.zoom, generator, batch.device)
        mirror = torch.ones(n, device=batch.device)
        if self.flip:
            mirror = torch.where(_uniform(n, 0, 1, generator, batch.device) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=batch.device, dtype=batch.dtype)
        theta[:, 0, 0] = scale * mirror
        theta[:, 0, 1] = scale * shear
        theta[:, 1, 1] = scale
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class Cutout:
    """Set one random ``size x size`` square of every image to the mean colour (DeVries & Taylor 2017).

    As in the paper's code, the square's centre is a random pixel and the square is clipped at the
    border: rows ``centre - size // 2`` up to, not including, ``centre - size // 2 + size``.

    Attributes:
        size: Side of the square; it may extend past the border.
    """

    size: int = 8

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = batch.shape
        top = _randint(height, (n, 1, 1), generator, batch.device) - self.size // 2
        left = _randint(width, (n, 1, 1), generator, batch.device) - self.size // 2
        ys = torch.arange(height, device=batch.device)[None, :, None]
        xs = torch.arange(width, device=batch.device)[None, None, :]
        inside = (ys >= top) & (ys < top + self.size) & (xs >= left) & (xs < left + self.size)  # N x H x W
        return batch.masked_fill(inside[:, None], 0.0)
