"""Readers for the on-disk formats: IDX files, image folders and downloaded archives.

Each reader turns files into ``uint8`` tensors once. Image folders are decoded
in parallel and cached as one tensor file, so the second load is a single read.
"""

from __future__ import annotations

import collections
import glob
import gzip
import hashlib
import os
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .._messages import option
from ..files import atomic_torch_save, safe_torch_load
from ._paths import cache_dir

#: The image files a folder dataset reads: torchvision's ``IMG_EXTENSIONS`` and GIF and JFIF (JPEG) files.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".ppm", ".pgm", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# IDX type codes (http://yann.lecun.com/exdb/mnist/): 0x08 is unsigned byte.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class CorruptDataError(ValueError):
    """A data file exists but cannot be read: truncated, malformed or not an image."""


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (the MNIST format), plain or gzip-compressed.

    The header is two zero bytes, a type code, the number of dimensions and one
    big-endian int32 per dimension; the data follows.

    Args:
        path: The file.

    Returns:
        A tensor with the file's shape and type (``uint8`` for images and labels).

    Raises:
        FileNotFoundError: There is no file at ``path``.
        CorruptDataError: Bad magic number, unknown type, or a size that does
            not match the header (a truncated download).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No IDX file at {path}.")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise CorruptDataError(
            f"{path} is not a complete gzip file ({error}): the download was cut short or the file is damaged. "
            f"Delete it and download it again ({option('download')})."
        ) from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise CorruptDataError(
            f"{path} is not an IDX file (bad magic number). Delete it and download it again ({option('download')})."
        )
    dims = raw[3]
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise CorruptDataError(
            f"{path} is {len(raw):,} bytes but its header describes {expected:,} (shape {shape}): the file is "
            f"truncated or corrupt. Delete it and download it again ({option('download')})."
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")).copy())


#: The most pixels an image of a folder may have: a 50-megapixel photo decodes to 150 MB. A larger file is
#: refused before it is decoded (a "decompression bomb" of a few MB can claim 20,000 x 20,000 pixels).
MAX_IMAGE_PIXELS = 50_000_000


def _to_8_bits(pixels: np.ndarray) -> np.ndarray:
    """Greyscale pixels of more than 8 bits as 8 bits: the top 8 of 16.

    A 16-bit PNG opens as ``I;16``; a 16-bit PGM or an integer TIFF as ``I`` (32 bits), whose depth Pillow does
    not keep: such an image with values above 255 is read as 16-bit, one within 0-255 as 8-bit.
    """
    if pixels.dtype.itemsize == 2 or pixels.max(initial=0) > 255:  # 16-bit, in either byte order
        return (pixels.clip(0, 65_535) >> 8).astype(np.uint8)
    return pixels.clip(0, 255).astype(np.uint8)


def _decode(path: str, channels: int, size: int | None) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise CorruptDataError(
                    f"{path} is {image.width:,} x {image.height:,} pixels, more than the {MAX_IMAGE_PIXELS:,} an "
                    "image of a dataset may have. Resize it or remove it."
                )
            image.load()
            if image.mode.startswith("I"):  # greyscale deeper than 8 bits: scaled, not saturated, to 8 bits
                image = Image.fromarray(_to_8_bits(np.asarray(image)))
            image = image.convert("RGB" if channels == 3 else "L")  # a greyscale photo gets three equal channels
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except Image.DecompressionBombError as error:  # past twice PIL's own limit: refused by Image.open itself
        raise CorruptDataError(
            f"{path} has more pixels than the {MAX_IMAGE_PIXELS:,} an image of a dataset may have ({error}). "
            "Resize it or remove it."
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise CorruptDataError(f"Cannot decode {path} ({error}). Remove or replace the file.") from error
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _decode_or_error(path: str, channels: int, size: int | None) -> np.ndarray | CorruptDataError:
    try:
        return _decode(path, channels, size)
    except CorruptDataError as error:
        return error


def _is_hidden(name: str) -> bool:
    """Files and folders that are not data: ``.ipynb_checkpoints``, ``.DS_Store``, macOS ``._*`` forks, ``__MACOSX``."""
    return name.startswith(".") or name == "__MACOSX"


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not _is_hidden(name)


def list_image_folder(folder: Path) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """Return the class names (sub-folder names, sorted) and ``(file, label)`` pairs of ``folder/<class>/*``.

    Hidden entries are skipped: folders and files whose names start with ``.`` (Jupyter's
    ``.ipynb_checkpoints``, macOS ``._*`` resource forks) and macOS's ``__MACOSX`` folder.
    Uses ``os.scandir`` and plain strings: listing CIFAR-10's 60,000 files is then a fraction of a second.

    Sub-folders of a class folder are not read, with a warning that names them.

    Raises:
        CorruptDataError: A class folder holds no images (an empty class would still get a label), or
            an image name that is not a regular file (a folder, a named pipe that would block the read).
    """
    entries = [entry for entry in os.scandir(folder) if not _is_hidden(entry.name)]
    classes = tuple(sorted(entry.name for entry in entries if entry.is_dir()))
    files, nested = [], []
    for label, name in enumerate(classes):
        class_folder = os.path.join(folder, name)
        contents = [entry for entry in os.scandir(class_folder) if not _is_hidden(entry.name)]
        images = [entry for entry in contents if _is_image_name(entry.name)]
        sub_folders = [entry.path for entry in contents if entry.is_dir() and not _is_image_name(entry.name)]
        nested += sub_folders
        for entry in images:
            if not entry.is_file():  # follows links: a link to an image is read, one to a pipe is not
                raise CorruptDataError(
                    f"{entry.path} is not a regular file (a folder, a link to nothing, or a named pipe that reading "
                    "would wait on forever). Remove it from the dataset folder."
                )
        names = sorted(entry.name for entry in images)
        if not names:
            below = (
                f" Its {len(sub_folders)} sub-folder(s) are not read: a class's images go in its folder itself."
                if sub_folders
                else ""
            )
            raise CorruptDataError(
                f"The class folder {class_folder} holds no images (files named *{', *'.join(sorted(IMAGE_SUFFIXES))}), "
                f"so it would be a class with no examples. Remove the folder or put its images in it.{below}"
            )
        files += [(os.path.join(class_folder, n), label) for n in names]
    if nested:
        warnings.warn(
            f"{len(nested)} sub-folder(s) inside the class folders of {folder} were not read ({nested[0]}"
            f"{', ...' if len(nested) > 1 else ''}): a class's images go in its folder itself.",
            stacklevel=2,
        )
    return classes, files


def load_image_folder(
    folder: str | Path, *, channels: int = 3, size: int | None = None, workers: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Decode ``folder/<class>/<image>`` into tensors, using a cache after the first time.

    The cache holds one file per folder (named after the folder's path), which records the requested
    size and channels and every file's name, size and modification time: a changed folder is decoded
    again and its cache file replaced, atomically. The cache is only an optimisation: a cache file that
    cannot be read or written gives a warning that names it, and the images are decoded.

    Args:
        folder: Folder with one sub-folder per class.
        channels: 3 for RGB, 1 for greyscale.
        size: Resize every image to ``size x size`` while decoding; ``None``
            keeps the size (all images must then have the same size).
        workers: Decoding threads; defaults to the number of CPUs.

    Returns:
        ``(images, labels, classes)``: ``uint8`` N x C x H x W, ``int64`` N, class names.

    Raises:
        ValueError: ``channels`` is not 1 or 3, or ``size`` is not ``None`` or a whole number from 1.
        FileNotFoundError: ``folder`` has no class sub-folders with images.
        CorruptDataError: Images cannot be decoded (all of them named in one message), or sizes differ and
            ``size`` is ``None``.
    """
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels is 3 (RGB) or 1 (greyscale), got {channels!r}.")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size is the side in pixels the images are resized to (or None), got {size!r}.")
    folder = Path(folder).resolve()
    classes, files = list_image_folder(folder) if folder.is_dir() else ((), [])
    if not files:
        expected = f"expected {folder}/<class name>/<image>.jpg"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist; {expected}.")
        loose = sum(_is_image_name(entry.name) for entry in os.scandir(folder))
        if loose:
            raise FileNotFoundError(
                f"{folder} holds {loose:,} images but no class sub-folders; {expected}: move each class's images "
                "into a sub-folder named after the class."
            )
        raise FileNotFoundError(f"{folder} holds no images; {expected}.")
    slot = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    fingerprint = hashlib.sha256(f"{channels}|{size}".encode())
    for path, label in files:
        stat = os.stat(path)
        fingerprint.update(f"{os.path.basename(path)}|{label}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    cache_file = cache_dir() / "decoded" / f"{folder.name}-{slot}-{fingerprint.hexdigest()[:20]}.pt"
    cached = _read_cache(cache_file, classes, len(files))
    if cached is not None:
        return cached

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        arrays = list(pool.map(lambda item: _decode_or_error(item[0], channels, size), files, chunksize=64))
    failed = [(path, array) for (path, _), array in zip(files, arrays) if isinstance(array, CorruptDataError)]
    if failed:  # all of them in one message: a learner should not need one run per bad file
        first, *others = failed
        if not others:
            raise first[1]
        named = ", ".join(os.path.relpath(path, folder) for path, _ in others[:5]) + (
            ", ..." if len(others) > 5 else ""
        )
        raise CorruptDataError(f"{first[1]} The same goes for {len(others):,} more file(s): {named}.") from first[1]
    shapes = collections.Counter(array.shape for array in arrays)
    if len(shapes) > 1:
        common = shapes.most_common(1)[0][0]
        odd, shape = next((path, array.shape) for (path, _), array in zip(files, arrays) if array.shape != common)
        raise CorruptDataError(
            f"{odd} is {shape[2]} x {shape[1]} pixels, and {shapes[common]:,} other images of {folder} are "
            f"{common[2]} x {common[1]}: resize it to their size or remove it."
        )
    images = torch.from_numpy(np.stack(arrays))
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    _write_cache(cache_file, images, labels, classes)
    return images, labels, classes


def _read_cache(
    cache_file: Path, classes: tuple[str, ...], count: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]] | None:
    """The decoded folder from ``cache_file``, if it holds ``count`` images of ``classes``; else ``None``."""
    if not cache_file.is_file():
        return None
    try:
        cached = safe_torch_load(cache_file, "image cache")
        images, labels, cached_classes = cached["images"], cached["labels"], tuple(cached["classes"])
        fits = (
            isinstance(images, torch.Tensor)
            and (images.dtype, images.dim(), len(images)) == (torch.uint8, 4, count)
            and isinstance(labels, torch.Tensor)
            and (labels.dtype, tuple(labels.shape)) == (torch.int64, (count,))
            and cached_classes == classes
            and bool(((labels >= 0) & (labels < len(classes))).all())
        )
        if not fits:
            raise ValueError(f"it does not hold {count:,} uint8 images and labels of the classes {', '.join(classes)}")
        return images, labels, cached_classes
    except (ValueError, KeyError, TypeError) as error:  # a damaged cache is decoded again, never a failed load
        warnings.warn(f"Ignoring the unreadable image cache {cache_file} ({error}); decoding the images.", stacklevel=3)
        return None


def _write_cache(cache_file: Path, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> None:
    """Store the decoded folder as ``cache_file`` and remove the older versions of the same folder."""
    try:
        atomic_torch_save({"images": images, "labels": labels, "classes": list(classes)}, cache_file)
        folder_slot = cache_file.name.rsplit("-", 1)[0]
        for older in cache_file.parent.glob(f"{glob.escape(folder_slot)}-*.pt"):
            if older != cache_file:
                older.unlink(missing_ok=True)
    except OSError as error:
        message = f"Could not write the image cache {cache_file} ({error}); the next load decodes again."
        warnings.warn(message, stacklevel=3)
