"""Atomic file writes: a reader never sees a half-written checkpoint, cache or results file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes the file private; give it normal permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``."""
    return _atomic_write(path, lambda file: torch.save(obj, file))


def atomic_json_dump(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return _atomic_write(path, lambda file: file.write(text.encode()))


def safe_torch_load(path: str | Path, what: str) -> Any:
    """``torch.load`` onto the CPU with ``weights_only=True`` (no code runs from the file).

    Args:
        path: The file.
        what: What the file should be, for the error messages (e.g. ``"checkpoint"``).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file cannot be read as a PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No {what} at {path}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a corrupt file
        raise ValueError(f"{path} is not a readable {what} ({error}).") from error
