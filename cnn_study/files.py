"""Safe files: atomic writes, safe loads, and a lock that keeps two runs out of one results folder.

A reader never sees a half-written checkpoint, cache or results file: every write goes to a temporary
file in the same folder (``.<name>.<pid>.<random>.tmp``), is flushed to disk and then renamed over the
target. A process killed mid-write leaves its temporary behind; the next write of the same file removes
the temporaries of processes that no longer run. Shipped weights carry a `state_dict_sha256` that
loading checks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``.

    Args:
        path: The file to (re)write; its folder is created if needed.
        write: Writes the content into the open binary file it is given.

    Returns:
        ``path``.

    Raises:
        OSError: The file cannot be written; a full disk (or torch's ``RuntimeError`` from its zip writer,
            which is how a full disk reaches ``torch.save``) names the folder and what to do. ``path``
            is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes the file private; give it normal permissions
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise OSError(
                error.errno,
                f"Cannot write {path}: the disk of {path.parent} is full. Free some space, or write elsewhere.",
            ) from error
        if isinstance(error, RuntimeError) and any(  # torch.save's zip writer, which hides the OSError
            sign in str(error) for sign in ("write", "inline_container")
        ):
            raise OSError(
                errno.EIO,
                f"Cannot write {path} ({_first_line(error)}): check the free space and permissions of "
                f"{path.parent}, or write elsewhere.",
            ) from error
        raise
    return path


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` files next to ``path`` left by processes that have ended."""
    for temporary in path.parent.glob(f".{path.name}.*.tmp"):
        writer = temporary.name[len(path.name) + 2 :].split(".", 1)[0]
        if not writer.isdigit() or not process_is_running(int(writer)):  # no pid: written before pids were named
            temporary.unlink(missing_ok=True)


def process_is_running(pid: int) -> bool:
    """Whether a process with this id runs on this machine (``True`` when that cannot be told)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if handle:
            ctypes.windll.kernel32.CloseHandle(handle)
        return bool(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to another user
        return True
    return True


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``."""
    return atomic_write(path, lambda file: torch.save(obj, file))


def atomic_json_dump(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode()))


def read_json(path: str | Path, what: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a JSON object that cnn-study wrote, with an error that names the file and what is wrong.

    Args:
        path: The file.
        what: What the file should be, for the messages (e.g. ``"metrics file"``).
        required: Keys the object must have.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is not valid JSON, not an object, or lacks some of ``required``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No {what} at {path}.")
    try:
        content = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable {what} (invalid JSON: {error}).") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path} is not a {what}: it holds a JSON {type(content).__name__}, not an object.")
    missing = [key for key in required if key not in content]
    if missing:
        raise ValueError(f"{path} is not a complete {what}: it lacks {', '.join(missing)}.")
    return content


#: What every training checkpoint holds (`cnn_study.training.save_checkpoint`), and a trained-model file does not.
CHECKPOINT_KEYS = frozenset({"model", "optimizer", "history"})


def safe_torch_load(path: str | Path, what: str, mmap: bool = False) -> Any:
    """``torch.load`` onto the CPU with ``weights_only=True`` (no code runs from the file).

    Args:
        path: The file.
        what: What the file should be, for the error messages (e.g. ``"checkpoint"``).
        mmap: Map the tensors from the file instead of reading them (cheap when only metadata is needed).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file cannot be read as a PyTorch file, or it holds Python objects
            that could run code (a file of unknown origin, never a cnn-study file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No {what} at {path}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:  # torch's message advises weights_only=False: never for unknown files
        if "unsupported global" in str(error).lower():
            raise ValueError(
                f"{path} is not a cnn-study {what}: it holds Python objects other than tensors and plain data, "
                "which could run code when loaded, so cnn-study does not load it."
            ) from error
        raise ValueError(f"{path} is not a readable {what} (damaged, or not a PyTorch file).") from error
    except Exception as error:  # torch raises several unrelated types for a corrupt file
        detail = _first_sentence(error)
        if isinstance(error, LookupError) or "torch.save" in detail:  # a bare key, or advice on saving: no help
            detail = "damaged, or not a PyTorch file"
        raise ValueError(f"{path} is not a readable {what} ({detail}).") from error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _first_sentence(error: BaseException) -> str:
    """The first sentence of ``error``'s message: what went wrong, without torch's advice after it (never to
    load with ``weights_only=False``, which would run the code a file of unknown origin may hold)."""
    sentence = _first_line(error).split(". ")[0].rstrip(".")
    return type(error).__name__ if "weights_only" in sentence else sentence


class FolderInUseError(OSError):
    """Another process holds the lock of a results folder (an `OSError`: the command line reports it in one line)."""


LOCK_NAME = ".lock"
_LOCK_WRITE_SECONDS = 10  # an unreadable lock younger than this is still being written


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder/.lock`` while the block runs, so that no second process writes into ``folder``.

    The lock file is created atomically (``O_CREAT | O_EXCL``) and holds the owner's host and pid.
    A lock left by a process of this machine that no longer runs is stale and is taken over.
    Creating it is also the check that the folder can be created and written.

    Args:
        folder: The folder to lock (created if needed).

    Raises:
        FolderInUseError: A running process holds the lock; the message names it and the lock file.
        OSError: The folder cannot be created or written (the message names it).
    """
    lock = Path(folder) / LOCK_NAME
    created = [path for path in (lock.parent, *lock.parent.parents) if not path.exists()]  # deepest first
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        taken = _create_lock(lock)
        if not taken:
            owner = _lock_owner(lock)
            if owner is not None:
                raise FolderInUseError(
                    f"{lock.parent} is in use by {owner} (lock file {lock}). Wait for that run to finish, or "
                    "choose another results folder; delete the lock file only if that process is gone."
                )
            lock.unlink(missing_ok=True)  # stale: its process has ended
            if not _create_lock(lock):
                raise FolderInUseError(f"{lock.parent} was locked by another process just now (lock file {lock}).")
    except FolderInUseError:
        raise
    except OSError as error:
        _remove_empty_folders(created)
        reason = error.strerror or type(error).__name__
        raise type(error)(f"Cannot write results into {lock.parent} ({reason}); choose another folder.") from error
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        _remove_empty_folders(created)  # a run that failed before writing anything leaves no empty folders


def _remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders``, deepest first, as long as they are empty."""
    with contextlib.suppress(OSError):
        for path in folders:
            path.rmdir()


def _create_lock(lock: Path) -> bool:
    """Create ``lock`` with this process's host and pid; ``False`` if it exists already."""
    try:
        handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(handle, "w") as file:
            json.dump({"host": socket.gethostname(), "pid": os.getpid()}, file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    return True


def _lock_owner(lock: Path) -> str | None:
    """Who holds ``lock`` (``"process 123 on host"``), or ``None`` if it is stale."""
    try:
        owner = json.loads(lock.read_text())
        host, pid = str(owner["host"]), int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):  # not written yet, or its writer died while creating it
        try:
            starting = time.time() - lock.stat().st_mtime < _LOCK_WRITE_SECONDS
        except FileNotFoundError:
            return None
        return "a process that is starting" if starting else None
    if host == socket.gethostname() and not process_is_running(pid):
        return None
    return f"process {pid} on {host}"


class DownloadError(OSError):
    """A download failed or gave a file that fails its checksum; the message says what to do instead."""


@contextmanager
def downloading(what: str, advice: str, folder: str | Path | None = None) -> Iterator[None]:
    """Turn the errors of a download (torchvision's ``RuntimeError``, network ``OSError``) into `DownloadError`.

    Args:
        what: What is being downloaded, e.g. ``"MNIST"``.
        advice: What to do instead, appended to the message.
        folder: Where the download writes: the folders it creates there are removed again if it fails
            and leaves them empty (an empty dataset folder would look like a dataset that is there).
    """
    created = [] if folder is None else [path for path in (Path(folder), *Path(folder).parents) if not path.exists()]
    try:
        yield
    except (RuntimeError, OSError) as error:
        for path in created:  # the deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        if isinstance(error, DownloadError):
            raise
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DownloadError(f"Could not download {what} ({reason}). {advice}") from error


def load_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, head_only: bool = False) -> None:
    """``model.load_state_dict``, where a transfer model's head alone may leave out the base (``base.*``).

    Args:
        model: The model to fill.
        state_dict: Parameters to load.
        head_only: ``state_dict`` is a transfer model's head alone: the model's base keeps its own weights,
            and every other parameter must be in ``state_dict``.

    Raises:
        RuntimeError: The parameters do not fit the model (torch's message, or the keys that do not fit).
    """
    missing, unexpected = model.load_state_dict(state_dict, strict=not head_only)
    if unexpected or any(not key.startswith("base.") for key in missing):
        raise RuntimeError(f"missing keys {missing}, unexpected keys {unexpected}")


def load_model_state(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path, *, head_only: bool = False
) -> None:
    """``model.load_state_dict`` with an error that says which model and class count the file is for.

    Args:
        model: The model to fill.
        state_dict: Parameters to load.
        source: Where they came from, for the message.
        head_only: ``state_dict`` is a transfer model's head alone (`load_state`).

    Raises:
        ValueError: The parameters do not fit the model.
    """
    try:
        load_state(model, state_dict, head_only=head_only)
    except RuntimeError as error:
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in state_dict.items()}
        last = list(theirs)[-1] if theirs else "?"
        raise ValueError(
            f"{source} does not fit this {type(model).__name__}: it holds {len(theirs)} tensors "
            f"(last {last} {theirs.get(last)}), the model has {len(ours)} (last {list(ours)[-1]} "
            f"{list(ours.values())[-1]}). It was saved from another model or number of classes."
        ) from error


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The SHA-256 of a state dict: every entry's name, dtype, shape and bytes, in name order.

    Shipped weights record it in their metadata (``meta["sha256"]``) and loading checks it, so a file
    damaged on disk or in transit fails with a clear error instead of giving a subtly wrong model.

    Examples:
        >>> state = {"weight": torch.ones(2, 2), "bias": torch.zeros(2)}
        >>> state_dict_sha256(state) == state_dict_sha256(dict(reversed(state.items())))
        True
        >>> state_dict_sha256(state) == state_dict_sha256({**state, "bias": torch.ones(2)})
        False
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
