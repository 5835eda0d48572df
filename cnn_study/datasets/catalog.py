"""The five datasets of the study, one function each.

Every function returns ``(train, test)`` as `cnn_study.datasets.ImageData`
and looks for its files under `cnn_study.datasets.data_root`
(``root=``, then ``$CNN_STUDY_DATA``, then the user cache). With
``download=True`` a missing dataset is fetched from its real source, with
checksums: torchvision's MNIST, FashionMNIST and CIFAR10 classes, and the
``cats_and_dogs_filtered`` archive for Dogs vs Cats.

Offline layouts that load without a download::

    <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    <root>/FashionMNIST/raw/...                   (same four files)
    <root>/cifar-10-batches-py/                   (torchvision's download)
    <root>/cifar10/{train,test}/<class>/*.png     (or cifar10-jpeg/, any image type)
    <root>/dogs-vs-cats/{train,validation}/{cats,dogs}/*.jpg
    <root>/cats_and_dogs_filtered/...             (the archive, extracted)

Normalisation constants are the usual per-channel statistics of the training
sets: MNIST (0.1307, 0.3081), Fashion-MNIST (0.2860, 0.3530), CIFAR-10
(0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616). Dogs vs Cats uses the
ImageNet statistics, because it is only ever fed to ImageNet-trained bases.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch
import torchvision
from torchvision.datasets.utils import download_url
from torchvision.models import VGG16_Weights

from .._messages import option
from ..files import downloading
from ._paths import DATA_ENV, data_root
from .image_data import ImageData
from .sources import CorruptDataError, load_image_folder, read_idx

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
#: CIFAR-10's classes in label order, as torchvision names them (and an image-folder export names its folders).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: Photos of cats and dogs are normalised as ImageNet was, as torchvision's pretrained models expect.
IMAGENET_MEAN = tuple(VGG16_Weights.IMAGENET1K_V1.transforms().mean)
IMAGENET_STD = tuple(VGG16_Weights.IMAGENET1K_V1.transforms().std)

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: The filtered Kaggle Dogs vs Cats subset used by the Keras and TensorFlow tutorials:
#: 1,000 training and 500 validation images per class. No checksum is published for it;
#: the byte count is checked, and every member's CRC-32 is verified while extracting.
DOGS_VS_CATS_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
DOGS_VS_CATS_BYTES = 68_606_236


class DataNotFoundError(FileNotFoundError):
    """A dataset is not on disk; the message names the layout, the variable and how to download it."""


class TrainTest(NamedTuple):
    """The two parts a dataset function returns."""

    train: ImageData
    test: ImageData


def _missing(
    name: str, root: Path, layout: str, *, found_above: Path | None = None, archive: str | None = None
) -> DataNotFoundError:
    """The error for a dataset not found under ``root``, saying where its downloaded ``archive`` lies there
    unextracted, or where a folder above ``root`` holds it (``root`` a level or two too deep)."""
    if archive is not None and (root / archive).is_file():
        found = f" {root / archive} is there: pass {option('download')} to check it and extract it."
    elif found_above is not None:
        found = f" {found_above} holds it: point at that folder instead."
    else:
        found = ""
    return DataNotFoundError(
        f"{name} was not found under {root}. Expected {layout}.{found} Point {DATA_ENV} (or {option('root')}) at "
        f"the folder that holds it, or pass {option('download')} to fetch it."
    )


def _holder_above(root: Path, *layouts: str) -> Path | None:
    """The nearest of the three folders above ``root`` that holds one of the ``layouts`` (relative paths)."""
    return next((folder for folder in root.parents[:3] if any((folder / path).exists() for path in layouts)), None)


def _offline_advice(folder: Path) -> str:
    return f"Check the connection and try again, or copy the files into {folder} on a machine with internet."


def _idx_dataset(name: str, folder: str, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    raw = root / folder / "raw"

    def find(stem: str) -> Path | None:
        return next((p for p in (raw / stem, raw / f"{stem}.gz") if p.is_file()), None)

    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    if download and not all(find(stem) for stem in stems):
        with downloading(name, _offline_advice(raw), raw):
            getattr(torchvision.datasets, folder)(root, train=True, download=True)  # fetches and md5-checks all four
    paths = [find(stem) for stem in stems]
    if not all(paths):
        missing = ", ".join(stem for stem, path in zip(stems, paths) if path is None)
        layout = f"{raw}/ with the four IDX files (missing: {missing})"
        raise _missing(name, root, layout, found_above=_holder_above(root, f"{folder}/raw"))
    arrays = [read_idx(path) for path in paths]
    fix = f"Delete it and download it again ({option('download')})."
    for (images, labels), (images_path, labels_path) in zip((arrays[:2], arrays[2:]), (paths[:2], paths[2:])):
        if images.dtype != torch.uint8 or images.dim() != 3 or 0 in images.shape:
            kind = str(images.dtype).removeprefix("torch.")
            raise CorruptDataError(
                f"{images_path} holds {kind} values of shape {tuple(images.shape)}, not N x height x width bytes "
                f"(a stack of greyscale images). {fix}"
            )
        if labels.dtype != torch.uint8 or labels.dim() != 1:
            kind = str(labels.dtype).removeprefix("torch.")
            raise CorruptDataError(
                f"{labels_path} holds {kind} values of shape {tuple(labels.shape)}, not N labels. {fix}"
            )
        if len(images) != len(labels):
            raise CorruptDataError(f"{images_path} holds {len(images)} images but its label file {len(labels)} labels.")
        if labels.max() > 9:
            raise CorruptDataError(
                f"{labels_path} holds the label {int(labels.max())}; {name} has classes 0 to 9. {fix}"
            )
    train_images, train_labels, test_images, test_labels = arrays
    if train_images.shape == test_images.shape and torch.equal(train_images, test_images):
        raise CorruptDataError(
            f"The t10k files in {raw} hold the same images as the train files: a copy of the training set would "
            f"test a network on what it learned. {fix}"
        )
    return train_images.unsqueeze(1), train_labels.long(), test_images.unsqueeze(1), test_labels.long()


def mnist(root: str | Path | None = None, *, download: bool = False) -> TrainTest:
    """MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 greyscale.

    Args:
        root: Folder that contains ``MNIST/raw``; see `cnn_study.datasets.data_root`.
        download: Fetch the files with torchvision if they are missing.

    Examples:
        >>> train, test = mnist()  # doctest: +SKIP
        >>> train.images.shape, train.labels[:5].tolist()  # doctest: +SKIP
        (torch.Size([60000, 1, 28, 28]), [5, 0, 4, 1, 9])
    """
    root = data_root(root)
    train_x, train_y, test_x, test_y = _idx_dataset("MNIST", "MNIST", root, download)
    classes = tuple(str(digit) for digit in range(10))
    return TrainTest(
        ImageData(train_x, train_y, classes, MNIST_MEAN, MNIST_STD, "MNIST train"),
        ImageData(test_x, test_y, classes, MNIST_MEAN, MNIST_STD, "MNIST test"),
    )


def fashion_mnist(root: str | Path | None = None, *, download: bool = False) -> TrainTest:
    """Fashion-MNIST clothing images: 60,000 training and 10,000 test images, 28x28 greyscale.

    Args:
        root: Folder that contains ``FashionMNIST/raw``.
        download: Fetch the files with torchvision if they are missing.
    """
    root = data_root(root)
    train_x, train_y, test_x, test_y = _idx_dataset("Fashion-MNIST", "FashionMNIST", root, download)
    return TrainTest(
        ImageData(train_x, train_y, FASHION_CLASSES, FASHION_MEAN, FASHION_STD, "Fashion-MNIST train"),
        ImageData(test_x, test_y, FASHION_CLASSES, FASHION_MEAN, FASHION_STD, "Fashion-MNIST test"),
    )


def _folder_pair(
    name: str,
    base: Path,
    parts: tuple[str, str],
    size: int | None,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> TrainTest:
    loaded = [load_image_folder(base / part, channels=3, size=size) for part in parts]
    (train_x, train_y, train_classes), (test_x, test_y, test_classes) = loaded
    if train_classes != test_classes:
        raise CorruptDataError(
            f"The class folders of {base / parts[0]} {train_classes} and {base / parts[1]} {test_classes} differ; "
            "both parts need the same class sub-folders."
        )
    return TrainTest(
        ImageData(train_x, train_y, train_classes, mean, std, f"{name} {parts[0]}"),
        ImageData(test_x, test_y, test_classes, mean, std, f"{name} {parts[1]}"),
    )


def _check_cifar10_folder(pair: TrainTest, folder: Path) -> None:
    """Refuse an image-folder export of CIFAR-10 whose class folders are not its ten or whose images are not 32x32."""
    missing = [name for name in CIFAR10_CLASSES if name not in pair.train.classes]
    if missing:
        raise CorruptDataError(
            f"{folder} is not all of CIFAR-10: its train/ and test/ hold {len(pair.train.classes)} of its 10 class "
            f"folders; missing: {', '.join(missing)}. Export every class, or pass {option('download')} for the "
            "original."
        )
    extra = [name for name in pair.train.classes if name not in CIFAR10_CLASSES]
    if extra:
        raise CorruptDataError(
            f"{folder} holds class folders that are not CIFAR-10's: {', '.join(extra)}. Move them out of its train/ "
            "and test/ folders."
        )
    for part in pair:
        height, width = part.images.shape[-2:]
        if (height, width) != (32, 32):
            raise CorruptDataError(
                f"{folder}: the images of {part.name} are {height}x{width}; CIFAR-10's are 32x32. Export them at "
                f"their original size, or pass {option('download')} for the original."
            )


def cifar10(root: str | Path | None = None, *, download: bool = False) -> TrainTest:
    """CIFAR-10: 50,000 training and 10,000 test colour images, 32x32, ten classes.

    Reads torchvision's ``cifar-10-batches-py`` (the lossless original) when
    present, otherwise an image-folder export ``cifar10/`` or ``cifar10-jpeg/``.

    Args:
        root: Folder that contains one of the layouts above.
        download: Fetch the original with torchvision (md5-checked) if nothing is found.
    """
    root = data_root(root)
    folders = [root / name for name in ("cifar10", "cifar10-jpeg") if (root / name / "train").is_dir()]
    if folders and not (root / "cifar-10-batches-py").is_dir():
        pair = _folder_pair("CIFAR-10", folders[0], ("train", "test"), None, CIFAR10_MEAN, CIFAR10_STD)
        _check_cifar10_folder(pair, folders[0])
        return pair
    if not (root / "cifar-10-batches-py").is_dir() and not download:
        raise _missing(
            "CIFAR-10",
            root,
            f"{root}/cifar-10-batches-py/ or {root}/cifar10/{{train,test}}/<class>/*.png",
            found_above=_holder_above(root, "cifar-10-batches-py", "cifar10/train", "cifar10-jpeg/train"),
            archive="cifar-10-python.tar.gz",  # torchvision's download, which it checks and extracts
        )
    parts = _torchvision_cifar10(root, download)
    train_x, test_x = (torch.from_numpy(part.data).permute(0, 3, 1, 2).contiguous() for part in parts)
    train_y, test_y = (torch.tensor(part.targets, dtype=torch.int64) for part in parts)
    classes = tuple(parts[0].classes)
    return TrainTest(
        ImageData(train_x, train_y, classes, CIFAR10_MEAN, CIFAR10_STD, "CIFAR-10 train"),
        ImageData(test_x, test_y, classes, CIFAR10_MEAN, CIFAR10_STD, "CIFAR-10 test"),
    )


def _torchvision_cifar10(root: Path, download: bool) -> list[torchvision.datasets.CIFAR10]:
    """torchvision's CIFAR-10 training and test parts, downloaded (md5-checked) if asked."""

    def load() -> list[torchvision.datasets.CIFAR10]:
        return [torchvision.datasets.CIFAR10(root, train=train, download=download) for train in (True, False)]

    folder = root / "cifar-10-batches-py"
    if download:
        with downloading("CIFAR-10", _offline_advice(folder), folder):
            return load()
    try:
        return load()
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
        raise CorruptDataError(
            f"{folder} is incomplete or corrupt (its files fail torchvision's md5 check). Delete it and pass "
            f"{option('download')} to fetch it again."
        ) from error


def cifar10_cats_dogs(root: str | Path | None = None, *, download: bool = False) -> TrainTest:
    """The cat and dog images of CIFAR-10 as a binary task (experiment 8): label 0 cat, 1 dog.

    10,000 training and 2,000 test images, 32x32; experiment 8 upsamples them
    to 150x150 batch by batch.

    Args:
        root: As for `cifar10`.
        download: As for `cifar10`.
    """
    full = cifar10(root, download=download)
    cat, dog = full.train.classes.index("cat"), full.train.classes.index("dog")

    def binary(part: ImageData, name: str) -> ImageData:
        keep = torch.nonzero((part.labels == cat) | (part.labels == dog)).flatten()
        subset = part.subset(keep, name)
        return ImageData(subset.images, (subset.labels == dog).long(), ("cat", "dog"), part.mean, part.std, name)

    return TrainTest(binary(full.train, "CIFAR-10 cats/dogs train"), binary(full.test, "CIFAR-10 cats/dogs test"))


def download_dogs_vs_cats(root: Path, url: str = DOGS_VS_CATS_URL) -> Path:
    """Download and extract ``cats_and_dogs_filtered.zip`` into ``root``; return the extracted folder.

    An archive already in ``root`` is checked and extracted without a download. The extraction goes to a
    hidden folder first and takes its name only when complete, so an interrupted one is never read as data.

    Args:
        root: Destination folder.
        url: Archive address (tests point it at a local file server).

    Raises:
        CorruptDataError: The archive has the wrong size or fails its CRC check.
        FileExistsError: ``root/cats_and_dogs_filtered`` exists already.
    """
    archive, extracted = root / "cats_and_dogs_filtered.zip", root / "cats_and_dogs_filtered"
    if extracted.exists():
        raise FileExistsError(f"{extracted} already exists. Move it away to extract {archive.name} again.")
    downloaded = not archive.is_file()  # an archive that was already there is the user's: never deleted here
    if downloaded:
        try:
            with downloading("Dogs vs Cats", _offline_advice(root / "dogs-vs-cats"), root):
                download_url(url, str(root), filename=archive.name)
        except BaseException:  # torchvision writes straight into the archive: a part of it is not the user's
            archive.unlink(missing_ok=True)
            raise

    def refuse(problem: str) -> CorruptDataError:
        if downloaded:
            archive.unlink()
            return CorruptDataError(f"The download from {url} {problem}; run the command again to retry.")
        return CorruptDataError(
            f"{archive} {problem}: it is not a complete copy of {url}. Delete it (or move it away) and pass "
            f"{option('download')} again."
        )

    size = archive.stat().st_size
    if url == DOGS_VS_CATS_URL and size != DOGS_VS_CATS_BYTES:
        raise refuse(f"is {size:,} bytes, not {DOGS_VS_CATS_BYTES:,}")
    partial = root / f".{extracted.name}.partial"  # extracted here, then renamed: a cut-short extraction is no dataset
    shutil.rmtree(partial, ignore_errors=True)  # left by an extraction that was killed
    try:
        with zipfile.ZipFile(archive) as zipped:
            bad_member = zipped.testzip()
            if bad_member is not None:
                raise refuse(f"has a member, {bad_member}, that fails its CRC check")
            zipped.extractall(partial)
    except zipfile.BadZipFile as error:
        raise refuse(f"is not a valid zip archive ({error})") from error
    except BaseException:  # Ctrl-C, a full disk: nothing half-extracted stays behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if not (partial / extracted.name).is_dir():
        shutil.rmtree(partial)
        raise refuse(f"does not hold the folder {extracted.name}/")
    (partial / extracted.name).replace(extracted)
    shutil.rmtree(partial)
    return extracted


def dogs_vs_cats(root: str | Path | None = None, *, image_size: int = 150, download: bool = False) -> TrainTest:
    """Kaggle Dogs vs Cats, the 2,000/1,000 filtered subset (experiments 6 and 9): label 0 cat, 1 dog.

    The photos vary in size; they are resized to ``image_size`` once, while
    decoding, and the result is cached.

    Why this source: the full Kaggle set needs a Kaggle login, while the
    filtered archive is public and is the subset the study's notebooks used.
    ``torchvision.datasets.OxfordIIITPet(target_types="binary-category")`` is a
    checksummed alternative with a different composition (37 breeds).

    Args:
        root: Folder that contains ``dogs-vs-cats/`` or ``cats_and_dogs_filtered/``.
        image_size: Side of the square images after resizing, in pixels.
        download: Fetch and extract the archive (or extract one already in ``root``) if no folder holds
            ``train/`` and ``validation/``.

    Raises:
        ValueError: ``image_size`` is not a positive whole number.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size is the side of the square images in pixels (150 by default), got {image_size!r}.")
    root = data_root(root)
    folders = [root / name for name in ("dogs-vs-cats", "cats_and_dogs_filtered") if (root / name).is_dir()]
    complete = [folder for folder in folders if (folder / "train").is_dir() and (folder / "validation").is_dir()]
    if not complete and download and not (root / "cats_and_dogs_filtered").exists():
        complete = [download_dogs_vs_cats(root)]
    if not complete and not folders:
        raise _missing(
            "Dogs vs Cats",
            root,
            f"{root}/dogs-vs-cats/{{train,validation}}/{{cats,dogs}}/*.jpg",
            found_above=_holder_above(root, "dogs-vs-cats/train", "cats_and_dogs_filtered/train"),
            archive="cats_and_dogs_filtered.zip",
        )
    folder = (complete or folders)[0]
    if not complete and (any(folder.glob("train.zip")) or any(folder.glob("train/cat.*.jpg"))):
        raise DataNotFoundError(
            f"{folder} holds Kaggle's full Dogs vs Cats download (train.zip, or train/cat.0.jpg ...), not the "
            f"filtered subset that experiments 6 and 9 use. Pass {option('download')} to fetch the subset, or sort "
            "images into train/cats, train/dogs, validation/cats and validation/dogs."
        )
    if not complete:
        missing = " or ".join(f"{part}/" for part in ("train", "validation") if not (folder / part).is_dir())
        advice = "put it in place"
        if folder.name == "cats_and_dogs_filtered":
            advice = f"an extraction cut short leaves this: move the folder away and pass {option('download')}"
        raise DataNotFoundError(f"{folder} has no {missing} ({folder}/{{train,validation}}/{{cats,dogs}}/): {advice}.")
    train, validation = _folder_pair(
        "Dogs vs Cats", folder, ("train", "validation"), image_size, IMAGENET_MEAN, IMAGENET_STD
    )
    if tuple(name.lower() for name in train.classes) not in (("cats", "dogs"), ("cat", "dog")):
        found = ", ".join(train.classes)
        raise CorruptDataError(
            f"{folder}: Dogs vs Cats needs two class folders, cats/ and dogs/, in train/ and validation/; "
            f"found: {found}. Rename or move them (label 0 is cat, 1 is dog)."
        )
    classes = ("cat", "dog")  # the folder names are plural
    return TrainTest(
        ImageData(train.images, train.labels, classes, train.mean, train.std, train.name),
        ImageData(validation.images, validation.labels, classes, validation.mean, validation.std, validation.name),
    )
