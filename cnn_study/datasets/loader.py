"""Batches straight from in-memory tensors, in the manner of airbench's ``CifarLoader``.

The per-sample ``torch.utils.data.DataLoader`` calls Python once per image:
decode, convert, normalise, augment, collate. For 28x28 or 32x32 images that
overhead, not the model, dominates training on a CPU. `BatchLoader`
instead indexes a ``uint8`` tensor (already on the training device) once per
batch and normalises and augments the whole batch with tensor operations.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from .image_data import ImageData

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: Pixels per inference batch: 500 CIFAR-10 images on a CPU, 16 times that on a GPU. Activations grow
#: with pixels, so a fixed budget keeps evaluation and feature extraction of 224 px photos in the same
#: memory as 32 px ones, instead of a fixed 500 images per batch.
INFERENCE_PIXELS = {"cpu": 500 * 32 * 32, "cuda": 16 * 500 * 32 * 32}


def inference_batch_size(size: Sequence[int], device: str | torch.device = "cpu", limit: int = 500) -> int:
    """Images per batch for evaluation and feature extraction: as many as `INFERENCE_PIXELS` allows, at most ``limit``.

    Args:
        size: ``(channels, height, width)`` of one input image.
        device: Where the batches go (a GPU gets a larger budget; MPS is budgeted as a CPU).
        limit: The most images per batch.

    Examples:
        >>> inference_batch_size((1, 28, 28)), inference_batch_size((3, 150, 150)), inference_batch_size((3, 224, 224))
        (500, 22, 10)
    """
    budget = INFERENCE_PIXELS.get(torch.device(device).type, INFERENCE_PIXELS["cpu"])
    return max(1, min(limit, budget // (size[-2] * size[-1])))


#: Pixels per training chunk on a CPU (and MPS): 8 photos at 224 px. Fine-tuning EfficientNet-Lite0 on
#: batches of 64 such photos held 6.2 GB in one piece and 1.6 GB in chunks of 8, and took 3.5 s per batch
#: instead of 6.2 s (2-core CPU). CUDA trains whole batches.
TRAINING_PIXELS = 8 * 224 * 224


def training_micro_batch_size(size: Sequence[int], device: str | torch.device = "cpu") -> int | None:
    """The chunk size `cnn_study.training.fit` accumulates a batch's gradient in, or ``None`` for whole batches.

    Args:
        size: ``(channels, height, width)`` of one input image.
        device: Where training runs: on CUDA, whole batches.

    Examples:
        >>> training_micro_batch_size((3, 224, 224)), training_micro_batch_size((3, 150, 150))
        (8, 17)
        >>> training_micro_batch_size((3, 32, 32)), training_micro_batch_size((3, 224, 224), "cuda")
        (392, None)
    """
    if torch.device(device).type == "cuda":
        return None
    return max(1, TRAINING_PIXELS // (size[-2] * size[-1]))


class FeedableModel(Protocol):
    """A model that says how it wants to be fed (`cnn_study.models.ImageClassifier` and its subclasses)."""

    def input_spec(self) -> Any: ...


class BatchLoader:
    """Yield ``(images, labels)`` batches: normalised, augmented, on ``device``.

    Args:
        data: The split to serve.
        batch_size: Images per batch.
        shuffle: Visit the images in a new random order every epoch.
        augment: Augmentations applied in order to each normalised batch
            (see `cnn_study.datasets.augment`).
        device: Where the images live and batches are produced.
        seed: Seed of the generator behind shuffling and augmentation (it lives on ``device``).
        drop_last: Skip a final batch smaller than ``batch_size``.
        image_size: Resize every batch to ``image_size x image_size`` (bilinear).
        mean: Normalisation mean; defaults to the data's (a pretrained model may need its own).
        std: Normalisation standard deviation; defaults to the data's.
        channels_last: Return batches in channels-last memory format (faster convolutions on CPUs).
        alternating_flip: Mirror a random half of the images in the first epoch and, after that, each
            image in every other epoch, so that every two consecutive epochs show each image once each
            way (Jordan 2024, airbench, Section 3.6); ``fit`` numbers the epochs through `set_epoch`.
            Applied before ``augment``.

    Examples:
        >>> import torch
        >>> from cnn_study.datasets import ImageData
        >>> data = ImageData(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), torch.zeros(10, dtype=torch.long),
        ...                  ("zero",), (0.1307,), (0.3081,))
        >>> [tuple(x.shape) for x, _ in BatchLoader(data, batch_size=4)]
        [(4, 1, 28, 28), (4, 1, 28, 28), (2, 1, 28, 28)]
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int = 128,
        *,
        shuffle: bool = False,
        augment: Sequence[Augmentation] = (),
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        channels_last: bool = False,
        alternating_flip: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(
                f"batch_size is the number of images per batch, a whole number from 1, got {batch_size!r}."
            )
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = tuple(augment)
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.image_size = image_size
        self.channels_last = channels_last
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.epoch = 1
        # which images the odd epochs mirror (the even ones mirror the others); None: no alternating flip
        self.flipped_in_odd_epochs = None
        if alternating_flip:
            self.flipped_in_odd_epochs = torch.rand(len(data), generator=self.generator, device=self.device) < 0.5
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        shape = (1, -1, 1, 1)
        mean, std = (data.mean if mean is None else mean), (data.std if std is None else std)  # a tensor too
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device).view(shape) * 255
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device).view(shape) * 255

    @classmethod
    def for_model(
        cls,
        data: ImageData,
        model: FeedableModel,
        batch_size: int | None = None,
        *,
        device: str | torch.device = "cpu",
        shuffle: bool = False,
        augment: Sequence[Augmentation] = (),
        seed: int = 0,
        alternating_flip: bool = False,
    ) -> BatchLoader:
        """Batches of ``data`` as ``model`` eats them: the one place that knows how to feed a model.

        The model's `input_spec` gives the image size (batches are resized when the model asks for it)
        and the normalisation (the data's own statistics when the model has none). Batches are
        channels-last on CPUs and CUDA GPUs, where convolutions run faster in that layout.

        Args:
            data: The split to serve.
            model: A model with ``input_spec()``, e.g. any `cnn_study.models.ImageClassifier`.
            batch_size: Images per batch; by default `inference_batch_size` (for evaluation and extraction).
            device: Where the batches go.
            shuffle: Visit the images in a new random order every epoch (training).
            augment: Augmentations applied to each normalised batch (training).
            seed: Seed of shuffling and augmentation.
            alternating_flip: Mirror each image in every other epoch (training; see `BatchLoader`).

        Examples:
            >>> import torch
            >>> from cnn_study.models import create_model
            >>> data = ImageData(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.long),
            ...                  ("cat",), (0.5,) * 3, (0.25,) * 3)
            >>> images, _ = next(iter(BatchLoader.for_model(data, create_model("vgg16_transfer"))))
            >>> tuple(images.shape), images.is_contiguous(memory_format=torch.channels_last)
            ((4, 3, 150, 150), True)
        """
        spec = model.input_spec()
        device = torch.device(device)
        return cls(
            data,
            batch_size or inference_batch_size(spec.size, device),
            shuffle=shuffle,
            augment=augment,
            device=device,
            seed=seed,
            image_size=spec.size[-1] if spec.resize else None,
            mean=spec.mean,
            std=spec.std,
            channels_last=device.type in ("cpu", "cuda"),
            alternating_flip=alternating_flip,
        )

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names of the data."""
        return self.data.classes

    def __len__(self) -> int:
        full, rest = divmod(len(self.data), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def set_epoch(self, epoch: int) -> None:
        """Say which epoch (from 1) the next iteration is: it decides which images an alternating flip mirrors."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            mirror = None
            if self.flipped_in_odd_epochs is not None:
                mirror = self.flipped_in_odd_epochs[index] ^ (self.epoch % 2 == 0)
            yield self.transform(self.images[index], mirror), self.labels[index]

    def transform(self, images: torch.Tensor, mirror: torch.Tensor | None = None) -> torch.Tensor:
        """Turn a ``uint8`` batch into the model's input: resize, normalise, mirror the ``mirror`` images, augment."""
        batch = images.float()
        if self.image_size is not None and batch.shape[-2:] != (self.image_size, self.image_size):
            batch = F.interpolate(batch, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        batch = (batch - self.mean) / self.std
        if mirror is not None:
            batch = torch.where(mirror[:, None, None, None], batch.flip(3), batch)
        for augmentation in self.augment:
            batch = augmentation(batch, self.generator)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch
