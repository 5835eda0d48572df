"""Datasets on the real offline copies, bad input, downloads from a local server, the batch loader."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_study.datasets import (
    DATA_ENV,
    BatchLoader,
    CorruptDataError,
    CropFlip,
    Cutout,
    DataNotFoundError,
    DownloadError,
    ImageData,
    Mirror,
    ShearZoomFlip,
    cifar10,
    cifar10_cats_dogs,
    dogs_vs_cats,
    download_dogs_vs_cats,
    fashion_mnist,
    inference_batch_size,
    load_image_folder,
    mnist,
    read_idx,
    sources,
    training_micro_batch_size,
)
from cnn_study.models import InputSpec

from .conftest import idx_bytes

# ----------------------------------------------------------------------------- the real data


def test_mnist_counts_labels_and_order(mnist_data) -> None:
    train, test = mnist_data
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert len(test) == 10_000
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert train.classes == tuple("0123456789")
    assert sum(test.class_counts().values()) == 10_000


def test_fashion_mnist_counts_and_classes(data_dir) -> None:
    train, test = fashion_mnist(data_dir)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert set(train.class_counts().values()) == {6_000}


def test_cifar10_counts_and_classes(cifar_data) -> None:
    train, test = cifar_data
    assert train.images.shape == (50_000, 3, 32, 32)
    assert set(test.class_counts().values()) == {1_000}
    assert train.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_cifar10_cats_dogs_is_the_binary_subset(data_dir, cifar_data) -> None:
    train, test = cifar10_cats_dogs(data_dir)
    assert train.classes == ("cat", "dog")
    assert train.class_counts() == {"cat": 5_000, "dog": 5_000}
    assert len(test) == 2_000
    first_dog = int(torch.nonzero(cifar_data[0].labels == 5)[0])
    first_dog_in_subset = int(torch.nonzero(train.labels == 1)[0])
    assert torch.equal(train.images[first_dog_in_subset], cifar_data[0].images[first_dog])


def test_dogs_vs_cats_counts_size_and_cache_hit(data_dir, isolated_cache, monkeypatch) -> None:
    train, validation = dogs_vs_cats(data_dir, image_size=64)
    assert train.class_counts() == {"cat": 1_000, "dog": 1_000}
    assert validation.class_counts() == {"cat": 500, "dog": 500}
    assert train.image_shape == (3, 64, 64)
    assert list((isolated_cache / "decoded").glob("train-*.pt"))

    def no_decoding(*args):
        raise AssertionError("a cached folder was decoded again")

    monkeypatch.setattr(sources, "_decode", no_decoding)  # a hit is a load that decodes nothing, however fast
    again, _ = dogs_vs_cats(data_dir, image_size=64)
    assert torch.equal(again.images, train.images)


def test_split_is_stratified_and_reproducible(mnist_data) -> None:
    train, _ = mnist_data
    part, validation = train.split(0.2, seed=3)
    assert (len(part), len(validation)) == (48_000, 12_000)
    for name, count in train.class_counts().items():
        assert validation.class_counts()[name] == round(0.2 * count)
    assert torch.equal(train.split(0.2, seed=3)[1].labels, validation.labels)
    assert not torch.equal(train.split(0.2, seed=4)[1].images, validation.images)
    with pytest.raises(ValueError, match="between 0 and 1"):
        train.split(1.5)


def test_folds_hold_out_every_image_once_stratified_and_reproducibly() -> None:
    count = 1_003
    labels = torch.cat([torch.zeros(700), torch.ones(250), torch.full((53,), 2)]).long()
    index_pixels = torch.stack([torch.arange(count) // 256, torch.arange(count) % 256], 1).to(torch.uint8)
    data = ImageData(index_pixels.view(count, 1, 1, 2), labels, ("a", "b", "c"), (0.5,), (0.5,), "toy")

    def indices(part: ImageData) -> set[int]:
        return set((part.images.flatten(1).long() @ torch.tensor([256, 1])).tolist())

    folds = data.folds(5, seed=1)
    held_out = [indices(held) for _, held in folds]
    assert sorted(index for part in held_out for index in part) == list(range(count))  # each exactly once
    for (train, _), held_indices in zip(folds, held_out):
        assert indices(train) == set(range(count)) - held_indices
        assert torch.equal(train.labels, labels[sorted(indices(train))])  # labels travel with their images
    for name, total in data.class_counts().items():
        per_fold = [held.class_counts()[name] for _, held in folds]
        assert sum(per_fold) == total and max(per_fold) - min(per_fold) <= 1, (name, per_fold)
    assert held_out == [indices(held) for _, held in data.folds(5, seed=1)]
    assert held_out != [indices(held) for _, held in data.folds(5, seed=2)]
    assert all(len(held) == 1 for _, held in data.subset(torch.arange(4)).folds(4))  # one class: dealt out evenly
    with pytest.raises(ValueError, match=r"^5 folds of these 4 images would leave 1 of them empty: use fewer folds"):
        data.subset(torch.arange(4)).folds(5)
    one_per_class = data.subset(torch.tensor([0, 700, 950]))  # each class's one image goes to the first fold
    with pytest.raises(ValueError, match=r"^2 folds of these 3 images would leave 1 of them empty"):
        one_per_class.folds(2)
    with pytest.raises(ValueError, match="at least 2 folds"):
        data.folds(1)


@pytest.mark.parametrize("batch_size", [0, -1, True, 2.5])
def test_a_loader_refuses_a_batch_size_that_is_not_a_whole_number_from_one(batch_size) -> None:
    with pytest.raises(ValueError, match=rf"^batch_size is the number of images per batch, .* got {batch_size!r}\.$"):
        BatchLoader(_toy(), batch_size)


# ----------------------------------------------------------------------------- bad input


def test_missing_dataset_names_the_layout_the_variable_and_download(tmp_path) -> None:
    with pytest.raises(DataNotFoundError) as error:
        mnist(tmp_path)
    message = str(error.value)
    assert "MNIST/raw" in message and DATA_ENV in message and "download=True" in message


def test_truncated_idx_file_is_reported(tmp_path, data_dir) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in (data_dir / "MNIST" / "raw").iterdir():
        (raw / path.name).write_bytes(path.read_bytes())
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1000])
    with pytest.raises(CorruptDataError, match="truncated or corrupt"):
        mnist(tmp_path)


def test_malformed_idx_header_is_reported(tmp_path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x01\x02\x03\x04" + bytes(100))
    with pytest.raises(CorruptDataError, match="bad magic number"):
        read_idx(path)


def test_idx_reader_reads_gzip(tmp_path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + array.tobytes()))
    assert torch.equal(read_idx(path), torch.from_numpy(array))


def test_corrupt_jpeg_is_named(tiny_folder_dataset) -> None:
    broken = tiny_folder_dataset / "dogs-vs-cats" / "train" / "dogs" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(CorruptDataError, match="broken.jpg"):
        dogs_vs_cats(tiny_folder_dataset, image_size=12)


def test_every_undecodable_image_is_named_in_one_message(tiny_folder_dataset) -> None:
    cats = tiny_folder_dataset / "dogs-vs-cats" / "train" / "cats"
    for name in ("a.jpg", "b.jpg", "c.png"):
        (cats / name).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    message = f"^Cannot decode {cats / 'a.jpg'} .* The same goes for 2 more file\\(s\\): cats/b.jpg, cats/c.png\\.$"
    with pytest.raises(CorruptDataError, match=message):
        dogs_vs_cats(tiny_folder_dataset, image_size=12)


def test_a_greyscale_photo_in_an_rgb_dataset_gets_three_equal_channels(tmp_path, make_image_folder) -> None:
    make_image_folder(tmp_path / "a", {"x": 1}, size=2)
    Image.fromarray(np.array([[0, 100], [200, 255]], np.uint8), "L").save(tmp_path / "a" / "x" / "grey.png")
    images, _, _ = load_image_folder(tmp_path / "a")
    grey = images[1]  # 0.png, then grey.png
    assert torch.equal(grey, torch.tensor([[0, 100], [200, 255]], dtype=torch.uint8).expand(3, 2, 2))


def test_a_16_bit_greyscale_png_keeps_its_top_8_bits_instead_of_saturating(tmp_path) -> None:
    (tmp_path / "a" / "x").mkdir(parents=True)
    Image.fromarray(np.array([[1_000, 60_000]], np.uint16)).save(tmp_path / "a" / "x" / "deep.png")
    Image.fromarray(np.array([[3, 200]], np.uint16)).save(tmp_path / "a" / "x" / "dark.png")  # 16-bit, all < 256
    images, _, _ = load_image_folder(tmp_path / "a", channels=1)
    assert sorted(images.flatten().tolist()) == [0, 0, 1_000 >> 8, 60_000 >> 8]  # 3 and 234, not 255 and 255


def test_a_16_bit_pgm_keeps_its_top_8_bits_and_an_8_bit_integer_image_its_values(tmp_path) -> None:
    (tmp_path / "a" / "x").mkdir(parents=True)
    pixels = np.array([[1_000, 60_000]], ">u2").tobytes()
    (tmp_path / "a" / "x" / "deep.pgm").write_bytes(b"P5\n2 1\n65535\n" + pixels)  # opens as mode "I"
    Image.fromarray(np.array([[7, 200]], np.int32)).save(tmp_path / "a" / "x" / "shallow.tif")  # mode "I" too
    images, _, _ = load_image_folder(tmp_path / "a", channels=1)
    assert sorted(images.flatten().tolist()) == sorted([1_000 >> 8, 60_000 >> 8, 7, 200])


def test_sub_folders_of_a_class_folder_are_named_instead_of_skipped_without_a_word(tmp_path, make_image_folder) -> None:
    make_image_folder(tmp_path / "a", {"x": 2, "y": 1})
    make_image_folder(tmp_path / "a" / "x", {"more": 1})  # a.x.more/0.png: torchvision would read it, we do not
    with pytest.warns(UserWarning, match=r"1 sub-folder\(s\) inside the class folders of .* were not read \(.*more\)"):
        images, _, _ = load_image_folder(tmp_path / "a")
    assert len(images) == 3
    for path in (tmp_path / "a" / "y").glob("*.png"):
        path.rename(tmp_path / "a" / "x" / "more" / f"y{path.name}")  # y now holds only its own sub-folder...
    (tmp_path / "a" / "y" / "batch1").mkdir()
    with pytest.raises(CorruptDataError, match="holds no images .* Its 1 sub-folder\\(s\\) are not read"):
        load_image_folder(tmp_path / "a")


def test_images_without_class_folders_are_told_to_move_into_them(tmp_path, make_image_folder) -> None:
    make_image_folder(tmp_path / "a", {"x": 2})
    for path in (tmp_path / "a" / "x").iterdir():
        path.rename(tmp_path / "a" / f"cat.{path.name}")
    (tmp_path / "a" / "x").rmdir()
    with pytest.raises(FileNotFoundError, match="holds 2 images but no class sub-folders; .*: move each class's"):
        load_image_folder(tmp_path / "a")


def test_train_and_test_classes_must_agree(tiny_folder_dataset, make_image_folder) -> None:
    make_image_folder(tiny_folder_dataset / "dogs-vs-cats" / "validation", {"horses": 2})
    with pytest.raises(CorruptDataError, match="class folders .* differ"):
        dogs_vs_cats(tiny_folder_dataset, image_size=12)


def test_an_image_of_another_size_is_named_unless_a_size_is_asked_for(tmp_path, make_image_folder) -> None:
    make_image_folder(tmp_path / "a", {"x": 3}, size=8)
    make_image_folder(tmp_path / "a", {"y": 1}, size=9)
    odd = f"{tmp_path / 'a' / 'y' / '0.png'} is 9 x 9 pixels, and 3 other images of {tmp_path / 'a'} are 8 x 8"
    with pytest.raises(CorruptDataError, match=f"^{re.escape(odd)}: resize it to their size or remove it\\.$"):
        load_image_folder(tmp_path / "a")
    images, labels, classes = load_image_folder(tmp_path / "a", size=8)
    assert images.shape == (4, 3, 8, 8) and classes == ("x", "y") and labels.tolist() == [0, 0, 0, 1]


def test_an_image_name_that_is_not_a_regular_file_is_refused_by_name_without_reading_it(
    tmp_path, make_image_folder
) -> None:
    make_image_folder(tmp_path / "a", {"x": 2, "y": 2}, size=8)
    pipe = tmp_path / "a" / "y" / "9.png"
    os.mkfifo(pipe)  # opening it to read would wait forever for a writer
    with pytest.raises(CorruptDataError, match=f"^{re.escape(str(pipe))} is not a regular file .* Remove it"):
        load_image_folder(tmp_path / "a")
    pipe.unlink()
    (tmp_path / "a" / "y" / "folder.jpg").mkdir()
    with pytest.raises(CorruptDataError, match="folder.jpg is not a regular file"):
        load_image_folder(tmp_path / "a")


def test_a_decompression_bomb_is_refused_by_name_before_it_is_decoded(tmp_path, make_image_folder) -> None:
    make_image_folder(tmp_path / "a", {"x": 2, "y": 2}, size=8)
    bomb = tmp_path / "a" / "x" / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 million pixels in about 50 kB
    assert bomb.stat().st_size < 2e6
    with pytest.raises(CorruptDataError, match=f"^{re.escape(str(bomb))} has more pixels than the 50,000,000"):
        load_image_folder(tmp_path / "a")
    Image.new("1", (8_000, 7_000)).save(bomb)  # under PIL's own limit, over ours
    with pytest.raises(CorruptDataError, match=f"^{re.escape(str(bomb))} is 8,000 x 7,000 pixels, more than"):
        load_image_folder(tmp_path / "a")


def test_nothing_is_half_written_into_the_cache(tmp_path, isolated_cache, monkeypatch, make_image_folder) -> None:
    make_image_folder(tmp_path / "b", {"x": 2})
    import cnn_study.files as io

    def explode(obj, file):
        file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(io.torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        load_image_folder(tmp_path / "b")
    assert not list((isolated_cache / "decoded").glob("b-*"))


# ----------------------------------------------------------------------------- downloads


@pytest.fixture
def file_server(tmp_path):
    """Serve ``tmp_path / "served"`` on 127.0.0.1 and yield ``(folder, base_url)``."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_mnist_download_goes_through_torchvision_with_checksums(tmp_path, file_server, monkeypatch) -> None:
    import torchvision

    folder, url = file_server
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte.gz": idx_bytes(np.arange(20, dtype=np.uint8) % 10),
        "t10k-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(np.arange(10, dtype=np.uint8)),
    }
    resources = []
    for name, content in files.items():
        packed = gzip.compress(content)
        (folder / name).write_bytes(packed)
        resources.append((name, hashlib.md5(packed).hexdigest()))
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [url])
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", resources)
    train, test = mnist(tmp_path / "data", download=True)
    assert (len(train), len(test)) == (20, 10)
    assert train.labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]

    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="not found or corrupted"):
        mnist(tmp_path / "other", download=True)

    for name in files:
        (folder / name).unlink()  # offline, as far as MNIST goes: every file is missing
    with pytest.raises(DownloadError, match="Could not download MNIST"):
        mnist(tmp_path / "offline", download=True)
    assert not (tmp_path / "offline").exists()  # no empty folder left to look like a dataset


def test_dogs_vs_cats_archive_download_and_extraction(tmp_path, file_server, make_image_folder) -> None:
    folder, url = file_server
    source = make_image_folder(tmp_path / "src" / "cats_and_dogs_filtered" / "train", {"cats": 2, "dogs": 2})
    make_image_folder(source.parent / "validation", {"cats": 1, "dogs": 1})
    with zipfile.ZipFile(folder / "cats_and_dogs_filtered.zip", "w") as archive:
        for path in sorted((tmp_path / "src").rglob("*.png")):
            archive.write(path, path.relative_to(tmp_path / "src"))
    extracted = download_dogs_vs_cats(tmp_path / "data", url=url + "cats_and_dogs_filtered.zip")
    assert extracted == tmp_path / "data" / "cats_and_dogs_filtered"
    train, validation = dogs_vs_cats(tmp_path / "data", image_size=12)
    assert train.class_counts() == {"cat": 2, "dog": 2} and len(validation) == 2

    with pytest.raises(FileExistsError, match="cats_and_dogs_filtered already exists"):
        download_dogs_vs_cats(tmp_path / "data", url=url + "cats_and_dogs_filtered.zip")

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cats_and_dogs_filtered.zip").write_bytes(b"PK not really")
    with pytest.raises(CorruptDataError, match="not a valid zip"):
        download_dogs_vs_cats(tmp_path / "bad", url=url + "missing.zip")


def _filtered_archive(path: Path, scratch: Path, make_image_folder, monkeypatch) -> Path:
    """A small ``cats_and_dogs_filtered.zip`` at ``path`` (2 + 2 training and 1 + 1 validation images, written
    in ``scratch`` first), of the size the real archive is checked against here."""
    source = scratch / "cats_and_dogs_filtered"
    make_image_folder(source / "train", {"cats": 2, "dogs": 2})
    make_image_folder(source / "validation", {"cats": 1, "dogs": 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for image in sorted(source.rglob("*.png")):
            archive.write(image, image.relative_to(source.parent))
    monkeypatch.setattr("cnn_study.datasets.catalog.DOGS_VS_CATS_BYTES", path.stat().st_size)
    return path


def test_an_interrupted_extraction_leaves_no_dataset_and_the_next_one_completes(
    tmp_path, make_image_folder, monkeypatch
) -> None:
    root = tmp_path / "data"
    _filtered_archive(root / "cats_and_dogs_filtered.zip", tmp_path / "source", make_image_folder, monkeypatch)
    real_extract, real_extractall = zipfile.ZipFile.extract, zipfile.ZipFile.extractall

    def interrupted(self, path=None, members=None, pwd=None):  # Ctrl-C after two of the six images
        for member in self.namelist()[:2]:
            real_extract(self, member, path, pwd)
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "extractall", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dogs_vs_cats(root, image_size=12, download=True)
    assert [path.name for path in root.iterdir()] == ["cats_and_dogs_filtered.zip"]  # nothing half-extracted
    with pytest.raises(DataNotFoundError, match="Dogs vs Cats was not found"):
        dogs_vs_cats(root, image_size=12)  # the two images are not taken for the dataset
    monkeypatch.setattr(zipfile.ZipFile, "extractall", real_extractall)
    train, validation = dogs_vs_cats(root, image_size=12, download=True)
    assert (len(train), len(validation)) == (4, 2)


def test_kaggles_full_download_is_recognised_and_a_complete_folder_beside_it_is_used(
    tmp_path, make_image_folder, monkeypatch
) -> None:
    kaggle = tmp_path / "dogs-vs-cats"
    make_image_folder(kaggle / "train", {"x": 1})
    (kaggle / "train" / "x" / "0.png").rename(kaggle / "train" / "cat.0.jpg")
    (kaggle / "train" / "x").rmdir()
    with pytest.raises(DataNotFoundError, match="holds Kaggle's full Dogs vs Cats download .* Pass download=True"):
        dogs_vs_cats(tmp_path, image_size=12)
    _filtered_archive(tmp_path / "cats_and_dogs_filtered.zip", tmp_path / "source", make_image_folder, monkeypatch)
    train, _ = dogs_vs_cats(tmp_path, image_size=12, download=True)  # extracts the archive beside it, offline
    assert train.class_counts() == {"cat": 2, "dog": 2}


def test_a_root_too_deep_an_unextracted_archive_or_an_incomplete_extraction_is_pointed_out(tmp_path) -> None:
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match=f"{tmp_path} holds it: point at that folder instead\\."):
        mnist(tmp_path / "MNIST" / "raw")
    with pytest.raises(DataNotFoundError) as error:  # a folder named raw that is not under MNIST/: no guess
        fashion_mnist(tmp_path / "MNIST" / "raw")
    assert "holds it:" not in str(error.value)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz is there: pass download=True to check it"):
        cifar10(tmp_path)
    (tmp_path / "cats_and_dogs_filtered" / "train").mkdir(parents=True)  # as older versions left a cut extraction
    with pytest.raises(DataNotFoundError, match="has no validation/ .* cut short leaves this: move the folder away"):
        dogs_vs_cats(tmp_path, download=True)


# ----------------------------------------------------------------------------- loader and augmentation


def _toy(n: int = 64, channels: int = 3, size: int = 32) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)
    return ImageData(images, torch.arange(n) % 4, ("a", "b", "c", "d"), (0.5,) * channels, (0.25,) * channels)


def test_the_loader_takes_its_normalisation_as_a_tensor_too() -> None:
    data = _toy(4)
    as_tuple = next(iter(BatchLoader(data, 4, mean=(0.4, 0.5, 0.6), std=(0.2, 0.2, 0.2))))[0]
    as_tensor = next(iter(BatchLoader(data, 4, mean=torch.tensor([0.4, 0.5, 0.6]), std=torch.full((3,), 0.2))))[0]
    assert torch.equal(as_tuple, as_tensor)


def test_labels_that_are_not_class_indices_are_refused() -> None:
    with pytest.raises(ValueError, match="labels must be integer class indices, got torch.float32: convert them"):
        ImageData(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0.0, 1.0]), ("a", "b"), (0.5,), (0.5,))


def test_loader_normalises_with_the_data_constants() -> None:
    data = _toy()
    images, labels = next(iter(BatchLoader(data, 16)))
    expected = (data.images[:16].float() / 255 - 0.5) / 0.25
    assert torch.allclose(images, expected, atol=1e-5)
    assert labels.tolist() == data.labels[:16].tolist()


def test_loader_shuffles_reproducibly_and_covers_every_image() -> None:
    data = _toy()
    first = torch.cat([labels for _, labels in BatchLoader(data, 10, shuffle=True, seed=1)])
    second = torch.cat([labels for _, labels in BatchLoader(data, 10, shuffle=True, seed=1)])
    assert torch.equal(first, second)
    assert sorted(first.tolist()) == sorted(data.labels.tolist())
    assert len(BatchLoader(data, 10, drop_last=True)) == 6 and len(BatchLoader(data, 10)) == 7


@pytest.mark.parametrize("augmentation", [CropFlip(4), ShearZoomFlip(0.2, 0.2), Cutout(8)])
def test_augmentations_keep_shapes_and_change_pixels(augmentation) -> None:
    batch = torch.randn(32, 3, 32, 32)
    augmented = augmentation(batch, torch.Generator().manual_seed(0))
    assert augmented.shape == batch.shape
    changed = (augmented - batch).abs().flatten(1).amax(1) > 1e-4
    assert changed.float().mean() > 0.4


def test_crop_flip_moves_content_without_distorting_it() -> None:
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 3] = 1.0
    shifted = CropFlip(padding=2, flip=False)(image.repeat(50, 1, 1, 1), torch.Generator().manual_seed(0))
    assert torch.all(shifted.flatten(1).sum(1) <= 1.0) and shifted.max() == 1.0
    positions = {tuple(torch.nonzero(sample[0])[0].tolist()) for sample in shifted if sample.sum() == 1}
    assert len(positions) > 5 and all(1 <= r <= 5 and 1 <= c <= 5 for r, c in positions)


def test_loader_resizes_batches_for_transfer_models() -> None:
    images, _ = next(iter(BatchLoader(_toy(8), 8, image_size=150, channels_last=True)))
    assert images.shape == (8, 3, 150, 150)
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_inference_batches_hold_a_fixed_budget_of_pixels() -> None:
    assert [inference_batch_size(size) for size in ((1, 28, 28), (3, 32, 32), (3, 150, 150), (3, 224, 224))] == [
        500,  # the limit: 500 x 32 x 32 pixels would allow 653 MNIST digits
        500,
        22,  # 500 x 32 x 32 // (150 x 150)
        10,
    ]
    assert inference_batch_size((3, 224, 224), "cuda") == 163 and inference_batch_size((3, 224, 224), "mps") == 10
    assert inference_batch_size((1, 28, 28), limit=64) == 64 and inference_batch_size((3, 2000, 2000)) == 1
    assert inference_batch_size((3, 100, 200)) == 25  # height times width


def test_training_micro_batches_hold_eight_224_pixel_photos_on_a_cpu_and_whole_batches_on_cuda() -> None:
    sizes = ((3, 224, 224), (3, 150, 150), (3, 32, 32), (3, 1000, 1000))
    assert [training_micro_batch_size(size) for size in sizes] == [8, 17, 392, 1]
    assert training_micro_batch_size((3, 112, 448)) == 8  # height times width
    assert (
        training_micro_batch_size((3, 224, 224), "mps") == 8 and training_micro_batch_size((3, 32, 32), "cuda") is None
    )


class Fed:
    """The smallest model `BatchLoader.for_model` can feed: it only says how it wants its images."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    def input_spec(self) -> InputSpec:
        return self.spec


def test_for_model_feeds_a_model_its_size_normalisation_and_layout() -> None:
    data = _toy(8)
    spec = InputSpec((3, 40, 40), mean=(0.1, 0.2, 0.3), std=(0.5, 0.4, 0.3), resize=True)
    loader = BatchLoader.for_model(data, Fed(spec))
    as_asked = BatchLoader(data, 320, image_size=40, mean=spec.mean, std=spec.std)  # 320: the pixel budget
    [(images, labels)], [(expected, expected_labels)] = list(loader), list(as_asked)
    assert loader.batch_size == inference_batch_size((3, 40, 40)) == 320 and loader.device == torch.device("cpu")
    assert torch.equal(images, expected) and torch.equal(labels, expected_labels) and images.shape == (8, 3, 40, 40)
    assert images.is_contiguous(memory_format=torch.channels_last) and not loader.shuffle and loader.augment == ()
    own_statistics = BatchLoader.for_model(data, Fed(InputSpec((3, 32, 32))), 4)  # no normalisation, no resize
    [first, _] = [images for images, _ in own_statistics]
    assert own_statistics.image_size is None and torch.equal(first, next(iter(BatchLoader(data, 4)))[0])


def test_for_model_trains_with_the_shuffle_augmentation_and_seed_it_is_given() -> None:
    data, fed = _toy(16), Fed(InputSpec((3, 32, 32)))
    options = {"shuffle": True, "augment": (Cutout(8),), "seed": 3}
    loader = BatchLoader.for_model(data, fed, 4, **options)
    reference = BatchLoader(data, 4, channels_last=True, **options)
    for (images, labels), (expected, expected_labels) in zip(loader, reference, strict=True):
        assert torch.equal(images, expected) and torch.equal(labels, expected_labels)
    assert not torch.equal(torch.cat([y for _, y in loader]), data.labels)  # shuffled
    by_default = BatchLoader.for_model(data, fed, 4, shuffle=True)
    assert torch.equal(next(iter(by_default))[1], next(iter(BatchLoader(data, 4, shuffle=True, seed=0)))[1])


def test_image_data_rejects_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), ("a",), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="labels must lie"):
        ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 3]), ("a", "b"), (0.5,), (0.5,))


def test_mirror_flips_every_image() -> None:
    batch = torch.randn(4, 3, 8, 8)
    assert torch.equal(Mirror()(batch, torch.Generator()), batch.flip(3))


def test_resized_keeps_labels_and_resizes_once() -> None:
    data = _toy(6, size=32)
    bigger = data.resized(48)
    assert bigger.images.shape == (6, 3, 48, 48) and bigger.images.dtype == torch.uint8
    assert torch.equal(bigger.labels, data.labels)
    assert data.resized(32) is data
    flat = ImageData(torch.full((2, 1, 8, 8), 77, dtype=torch.uint8), torch.tensor([0, 0]), ("a",), (0.5,), (0.5,))
    assert torch.all(flat.resized(20).images == 77)


@pytest.mark.parametrize("name", ["folder.pack", "folder.pack.xz"])
def test_a_packed_image_folder_unpacks_bit_for_bit(tiny_folder_dataset, tmp_path, name) -> None:
    script = Path(__file__).parents[1] / "scripts" / "pack_image_folder.py"
    source, packed, unpacked = tiny_folder_dataset / "dogs-vs-cats", tmp_path / "packs" / name, tmp_path / "unpacked"
    for action, origin, destination in (("pack", source, packed), ("unpack", packed, unpacked)):
        subprocess.run([sys.executable, str(script), action, str(origin), str(destination)], check=True)
    files = sorted(path.relative_to(source) for path in source.rglob("*") if path.is_file())
    assert len(files) == 18 and (tmp_path / "packs" / "folder.json.gz").is_file()
    assert sorted(path.relative_to(unpacked) for path in unpacked.rglob("*") if path.is_file()) == files
    assert all((unpacked / file).read_bytes() == (source / file).read_bytes() for file in files)
    if name.endswith(".xz"):  # the tiny PNGs share their headers: xz makes the pack smaller than their bytes
        assert packed.stat().st_size < sum((source / file).stat().st_size for file in files)
