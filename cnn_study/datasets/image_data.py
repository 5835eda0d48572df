"""A dataset held in memory: ``uint8`` images, integer labels, class names, normalisation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageData:
    """Images and labels of one dataset split, kept in memory as tensors.

    Keeping the whole split as one ``uint8`` tensor (CIFAR-10's 50,000 training
    images take 150 MB) means that batches are produced by indexing, with no
    per-image Python work (see `cnn_study.datasets.BatchLoader`).

    Attributes:
        images: ``uint8`` tensor of shape ``N x C x H x W``.
        labels: ``int64`` tensor of shape ``N`` with values in ``range(len(classes))``.
        classes: Class names, indexed by label.
        mean: Per-channel mean of the pixel values in [0, 1], used to normalise.
        std: Per-channel standard deviation, used to normalise.
        name: Short description, e.g. ``"MNIST train"``.

    Examples:
        >>> import torch
        >>> data = ImageData(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),
        ...                  ("even", "odd"), (0.5,), (0.25,), "toy")
        >>> data.class_counts()
        {'even': 2, 'odd': 2}
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor of shape N x C x H x W, got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}."
            )
        if self.labels.is_floating_point() or self.labels.dtype == torch.bool:
            raise ValueError(
                f"labels must be integer class indices, got {self.labels.dtype}: convert them with labels.long()."
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels.")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError(
                f"mean and std need one value per channel ({self.images.shape[1]}), got {self.mean} and {self.std}."
            )
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise ValueError(f"labels must lie in [0, {len(self.classes) - 1}] for the classes {self.classes}.")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        return tuple(self.images.shape[1:])

    def class_counts(self) -> dict[str, int]:
        """Number of images per class, in class order."""
        counts = Counter(self.labels.tolist())
        return {name: counts.get(index, 0) for index, name in enumerate(self.classes)}

    def subset(self, indices: torch.Tensor, name: str | None = None) -> ImageData:
        """Return the images at ``indices``: a copy of those images only (indexing by a tensor copies).

        Args:
            indices: Integer index tensor.
            name: Name of the subset; defaults to this one's.
        """
        return replace(self, images=self.images[indices], labels=self.labels[indices], name=name or self.name)

    def split(self, fraction: float = 0.2, seed: int = 0) -> tuple[ImageData, ImageData]:
        """Split off a stratified validation part, reproducibly.

        Every class contributes ``round(fraction * count)`` images to the
        validation part, chosen by a generator seeded with ``seed``.

        Args:
            fraction: Share of each class that goes to the validation part.
            seed: Seed of the random permutation.

        Returns:
            ``(train, validation)``.

        Examples:
            >>> import torch
            >>> data = ImageData(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10) % 2,
            ...                  ("a", "b"), (0.5,), (0.5,))
            >>> train, val = data.split(0.2, seed=0)
            >>> len(train), len(val), val.class_counts()
            (8, 2, {'a': 1, 'b': 1})
        """
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}.")
        generator = torch.Generator().manual_seed(seed)
        train_parts, val_parts = [], []
        for label in range(len(self.classes)):
            members = torch.nonzero(self.labels == label).flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            n_val = round(fraction * len(members))
            val_parts.append(members[:n_val])
            train_parts.append(members[n_val:])
        train_indices = torch.cat(train_parts).sort().values
        val_indices = torch.cat(val_parts).sort().values
        return (
            self.subset(train_indices, f"{self.name} (train part)"),
            self.subset(val_indices, f"{self.name} (validation part)"),
        )

    def folds(self, count: int = 5, seed: int = 0) -> list[tuple[ImageData, ImageData]]:
        """Split into ``count`` stratified folds for cross-validation, reproducibly.

        Every image is held out exactly once: fold ``k`` holds out every ``count``-th
        image of each class (from position ``k`` of a seeded permutation) and trains
        on the rest, so the held-out parts of a class differ by at most one image (the
        first folds take a class's remainder).

        Args:
            count: Number of folds (at least 2).
            seed: Seed of the random permutation.

        Returns:
            ``count`` pairs of ``(train, held_out)``.

        Examples:
            >>> import torch
            >>> data = ImageData(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10) % 2,
            ...                  ("a", "b"), (0.5,), (0.5,))
            >>> [(len(train), held_out.class_counts()) for train, held_out in data.folds(5)][0]
            (8, {'a': 1, 'b': 1})
        """
        if count < 2:
            raise ValueError(f"Cross-validation needs at least 2 folds, got {count}.")
        generator = torch.Generator().manual_seed(seed)
        fold_of = torch.empty_like(self.labels)
        for label in range(len(self.classes)):
            members = torch.nonzero(self.labels == label).flatten()
            fold_of[members[torch.randperm(len(members), generator=generator)]] = torch.arange(len(members)) % count
        held_out = torch.bincount(fold_of, minlength=count)
        if (held_out == 0).any():
            raise ValueError(
                f"{count} folds of these {len(self)} images would leave {int((held_out == 0).sum())} of them empty: "
                f"use fewer folds (each class's images are dealt out from the first fold)."
            )
        return [
            (
                self.subset(torch.nonzero(fold_of != fold).flatten(), f"{self.name} (fold {fold + 1} training part)"),
                self.subset(torch.nonzero(fold_of == fold).flatten(), f"{self.name} (fold {fold + 1} held out)"),
            )
            for fold in range(count)
        ]

    def sample(self, per_class: int, seed: int = 0) -> ImageData:
        """Return a stratified random subset with at most ``per_class`` images of each class.

        Quick runs (tests, the docs build) use this to train on a small but
        balanced part of a dataset.

        Args:
            per_class: Images to keep from each class.
            seed: Seed of the random choice.

        Raises:
            ValueError: ``per_class`` is not a positive number.
        """
        if per_class < 1:
            raise ValueError(f"per_class must be a positive number of images per class, got {per_class}.")
        generator = torch.Generator().manual_seed(seed)
        keep = []
        for label in range(len(self.classes)):
            members = torch.nonzero(self.labels == label).flatten()
            keep.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
        return self.subset(torch.cat(keep).sort().values)

    def resized(self, size: int) -> ImageData:
        """Return the images resized to ``size x size`` once (bilinear, antialiased).

        Args:
            size: Side of the output images.
        """
        if self.images.shape[-2:] == (size, size):
            return self
        chunks = [
            F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            .round_()
            .clamp_(0, 255)
            .to(torch.uint8)
            for chunk in self.images.split(1024)
        ]
        return replace(self, images=torch.cat(chunks))
