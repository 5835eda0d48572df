"""Datasets of the study as in-memory tensors, and a fast batch loader.

Examples:
    >>> import torch
    >>> from cnn_study.datasets import BatchLoader, CropFlip, ImageData
    >>> data = ImageData(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), torch.arange(10) % 2, ("even", "odd"),
    ...                  (0.1307,), (0.3081,), "toy")
    >>> loader = BatchLoader(data, batch_size=4, shuffle=True, augment=[CropFlip(2, flip=False)])
    >>> [(tuple(images.shape), len(labels)) for images, labels in loader]
    [((4, 1, 28, 28), 4), ((4, 1, 28, 28), 4), ((2, 1, 28, 28), 2)]

    The real datasets load the same way: ``train, test = mnist()`` (see `cnn_study.datasets.catalog`).
"""

from ..files import DownloadError
from ._paths import CACHE_ENV, DATA_ENV, cache_dir, data_root
from .augment import CropFlip, Cutout, Mirror, ShearZoomFlip, random_flip
from .catalog import (
    DataNotFoundError,
    TrainTest,
    cifar10,
    cifar10_cats_dogs,
    dogs_vs_cats,
    download_dogs_vs_cats,
    fashion_mnist,
    mnist,
)
from .image_data import ImageData
from .loader import (
    INFERENCE_PIXELS,
    TRAINING_PIXELS,
    Augmentation,
    BatchLoader,
    inference_batch_size,
    training_micro_batch_size,
)
from .sources import CorruptDataError, load_image_folder, read_idx

#: Dataset functions by name, for recipes and the command line.
DATASETS = {
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
    "cifar10_cats_dogs": cifar10_cats_dogs,
    "dogs_vs_cats": dogs_vs_cats,
}

__all__ = [
    "CACHE_ENV",
    "DATASETS",
    "DATA_ENV",
    "INFERENCE_PIXELS",
    "TRAINING_PIXELS",
    "Augmentation",
    "BatchLoader",
    "CorruptDataError",
    "CropFlip",
    "Cutout",
    "DataNotFoundError",
    "DownloadError",
    "ImageData",
    "Mirror",
    "ShearZoomFlip",
    "TrainTest",
    "cache_dir",
    "cifar10",
    "cifar10_cats_dogs",
    "data_root",
    "dogs_vs_cats",
    "download_dogs_vs_cats",
    "fashion_mnist",
    "inference_batch_size",
    "load_image_folder",
    "mnist",
    "random_flip",
    "read_idx",
    "training_micro_batch_size",
]
