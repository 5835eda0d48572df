"""Property-based tests: data files damaged in random ways load right or fail in one line that names a file.

Hypothesis builds MNIST IDX files and image folders, then damages them (truncates, flips bytes, rewrites
headers, adds files that are not images or not files at all). Each case has two acceptable outcomes:
it loads, with the counts the files really hold, or it raises one of the errors the command line turns
into one ``cnn-study: error:`` line (`cnn_study.cli.EXPECTED_ERRORS`), whose single-line message names
the file or folder at fault. The examples are derived from the test's name (``derandomize``), so every
run tries the same ones, and no deadline applies: nothing here depends on the machine's speed.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnn_study.cli import EXPECTED_ERRORS
from cnn_study.datasets import load_image_folder, mnist

from .conftest import idx_bytes

SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _damage(content: bytes, how: str, position: int, value: int) -> bytes:
    """``content`` damaged at ``position`` (taken modulo its length) in one of five ways."""
    position %= max(len(content), 1)
    if how == "truncate":
        return content[:position]
    if how == "flip":
        return content[:position] + bytes([content[position] ^ (value or 1)]) + content[position + 1 :]
    if how == "append":
        return content + bytes([value]) * (position % 7 + 1)
    if how == "header":  # one of the 4 + 4 * dims header bytes: the type, the number of dims, a dimension
        position %= min(len(content), 16)
        return content[:position] + bytes([value]) + content[position + 1 :]
    return b""  # "empty"


def _one_line_naming(error: BaseException, *places: Path) -> None:
    assert isinstance(error, EXPECTED_ERRORS), f"{type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message.strip() and any(str(place) in message for place in places), message


@SETTINGS
@given(
    train=st.integers(1, 12),
    test=st.integers(1, 6),
    size=st.integers(1, 9),
    damaged=st.sampled_from(STEMS),
    how=st.sampled_from(["truncate", "flip", "append", "header", "empty"]),
    position=st.integers(0, 10_000),
    value=st.integers(0, 255),
)
def test_idx_files_damaged_anyhow_load_with_their_counts_or_fail_in_one_line(
    train, test, size, damaged, how, position, value
) -> None:
    rng = np.random.default_rng(train * 100 + test)
    arrays = {
        STEMS[0]: rng.integers(0, 256, (train, size, size), dtype=np.uint8),
        STEMS[1]: rng.integers(0, 10, train, dtype=np.uint8),
        STEMS[2]: rng.integers(0, 256, (test, size, size), dtype=np.uint8),
        STEMS[3]: rng.integers(0, 10, test, dtype=np.uint8),
    }
    with tempfile.TemporaryDirectory() as root:
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for stem, array in arrays.items():
            content = idx_bytes(array)
            (raw / stem).write_bytes(_damage(content, how, position, value) if stem == damaged else content)
        try:
            loaded_train, loaded_test = mnist(root)
        except Exception as error:  # what it raises is what is tested
            _one_line_naming(error, raw / damaged, raw)
            event(f"refused: {type(error).__name__}")
            return
        event("loaded")
        assert (len(loaded_train), len(loaded_test)) == (train, test)
        assert loaded_train.labels.max() <= 9 and loaded_test.labels.max() <= 9


def _png(size: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module", autouse=True)
def _isolated_decode_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNN_STUDY_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@SETTINGS
@given(
    counts=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    intruder=st.sampled_from(["none", "damaged", "empty file", "other size", "folder", "pipe", "hidden", "text"]),
    how=st.sampled_from(["truncate", "flip", "append", "header"]),
    position=st.integers(0, 10_000),
    value=st.integers(0, 255),
)
def test_image_folders_with_an_intruder_load_with_their_counts_or_fail_in_one_line(
    counts, intruder, how, position, value
) -> None:
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "images"
        for label, count in enumerate(counts):
            (folder / f"class{label}").mkdir(parents=True)
            for index in range(count):
                (folder / f"class{label}" / f"{index}.png").write_bytes(_png(8, label * 10 + index))
        target = folder / "class0" / "intruder.png"
        expected = list(counts)
        if intruder == "damaged":
            target.write_bytes(_damage(_png(8, 99), how, position, value))
            expected[0] += 1  # a byte flipped in the pixel data can still decode
        elif intruder == "empty file":
            target.write_bytes(b"")
        elif intruder == "other size":
            target.write_bytes(_png(9, 99))
        elif intruder == "folder":
            target.mkdir()
        elif intruder == "pipe":
            os.mkfifo(target)  # reading it would wait forever
        elif intruder == "hidden":
            (folder / "class0" / ".intruder.png").write_bytes(b"not an image")  # skipped: not data
            (folder / ".ipynb_checkpoints").mkdir()
        elif intruder == "text":
            (folder / "class0" / "notes.txt").write_text("not an image name: not read")
        try:
            images, labels, classes = load_image_folder(folder)
        except Exception as error:  # what it raises is what is tested
            assert intruder not in ("none", "hidden", "text"), error
            _one_line_naming(error, target, folder)
            event(f"refused: {intruder}")
            return
        event(f"loaded: {intruder}")
        assert intruder in ("none", "hidden", "text", "damaged")
        assert classes == tuple(f"class{label}" for label in range(len(counts)))
        assert labels.bincount(minlength=len(counts)).tolist() == expected and images.shape[1:] == (3, 8, 8)
