"""Where datasets live: an explicit root, ``$CNN_STUDY_DATA``, or a per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "CNN_STUDY_DATA"
CACHE_ENV = "CNN_STUDY_CACHE"


def data_root(root: str | Path | None = None) -> Path:
    """Return the folder that holds (or will hold) the datasets.

    In order: ``root`` if given, the folder named by ``$CNN_STUDY_DATA``, or
    ``<user cache>/cnn_study/data`` (``$XDG_CACHE_HOME`` or ``~/.cache``).

    Args:
        root: An explicit folder.
    """
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return cache_dir() / "data"


def cache_dir() -> Path:
    """Return the folder for decoded-tensor caches: ``$CNN_STUDY_CACHE`` or ``<user cache>/cnn_study``.

    Raises:
        NotADirectoryError: ``$CNN_STUDY_CACHE`` names a file.
    """
    if os.environ.get(CACHE_ENV):
        folder = Path(os.environ[CACHE_ENV]).expanduser()
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(
                f"{CACHE_ENV}={os.environ[CACHE_ENV]} is a file, not a folder; point {CACHE_ENV} at a folder "
                "(it is created if missing) or unset it to use the user cache."
            )
        return folder
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cnn_study"
