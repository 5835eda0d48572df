"""The trained-model file, ``{"state_dict", "meta"}``: read, checked and written here only.

`cnn-study run` writes one as ``model.pt`` (`save_trained_model`); `cnn_study.results.export_weights` turns one
into shipped weights (its metadata adds ``parts``, ``storage`` and the ``sha256`` of the parameters); the registry
reads the shipped ones (`read_model_meta` for their metadata, `load_trained_model_file` with ``shipped=True`` for
their parameters, hash checked); `cnn_study.models.load_trained_model` rebuilds the model from one.

The metadata says how to rebuild the model (registry name, its keyword arguments, number of classes) and how it
was fed (class names, normalisation, dataset), so that a model rebuilt from the file evaluates correctly with no
other information.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import CHECKPOINT_KEYS, atomic_torch_save, safe_torch_load, state_dict_sha256

#: What the metadata of a trained-model file must hold to rebuild and evaluate the model.
MODEL_META_KEYS = ("model", "num_classes", "classes", "mean", "std", "dataset")


def save_trained_model(model: nn.Module, meta: dict[str, Any], path: str | Path) -> Path:
    """Write ``model``'s parameters and ``meta`` (with every key of `MODEL_META_KEYS`) to ``path``, atomically.

    Raises:
        ValueError: ``meta`` lacks one of `MODEL_META_KEYS`.
    """
    return write_model_file(model.state_dict(), meta, path)


def write_model_file(state_dict: dict[str, torch.Tensor], meta: dict[str, Any], path: str | Path) -> Path:
    """Write ``{"state_dict", "meta"}`` to ``path``, atomically, after checking ``meta`` (`MODEL_META_KEYS`)."""
    _check_meta(meta, path)
    return atomic_torch_save({"state_dict": state_dict, "meta": meta}, path)


def load_trained_model_file(path: str | Path, *, shipped: bool = False) -> dict[str, Any]:
    """Read a trained-model file: ``{"state_dict", "meta"}``, its metadata checked.

    Args:
        path: The file.
        shipped: Weights shipped with the package: their metadata must record the SHA-256 of their parameters
            (`cnn_study.files.state_dict_sha256`). Any file whose metadata records one (every exported file)
            must match it.

    Raises:
        ValueError: The file has no state dict and metadata, its metadata lacks one of `MODEL_META_KEYS` or holds
            a value of the wrong kind, or its parameters do not match their recorded SHA-256 (or, ``shipped``,
            it records none).
    """
    content = _read(path)
    check_parameters(content, path, shipped=shipped)
    return content


def check_parameters(content: dict[str, Any], path: str | Path, *, shipped: bool = False) -> None:
    """Check the parameters of a trained-model file's ``content`` against the SHA-256 its metadata records.

    Raises:
        ValueError: They do not match it, or (``shipped``) the metadata records none.
    """
    recorded = content["meta"].get("sha256")
    if (recorded is None and shipped) or (
        recorded is not None and state_dict_sha256(content["state_dict"]) != recorded
    ):
        problem = "records no SHA-256 of" if recorded is None else "has a SHA-256 that does not match"
        fix = (
            "Reinstall the package: pip install --force-reinstall cnn-study."
            if shipped
            else "Copy or export it again (cnn-study export-weights)."
        )
        raise ValueError(f"{path} is damaged: its metadata {problem} its parameters. {fix}")


def holds_head_only(meta: dict[str, Any]) -> bool:
    """Whether a model file holds a transfer model's head alone (``meta["parts"] == "head"``, shipped weights of a
    run whose base stayed frozen): its base is the ImageNet base it was trained on, which the builder loads."""
    return meta.get("parts") == "head"


def builder_kwargs(meta: dict[str, Any], *, head_only: bool | None = None) -> dict[str, Any]:
    """The keyword arguments that rebuild the model a file's parameters were trained in: the recorded
    ``model_kwargs`` and, under a head alone, the ImageNet base it sits on (``base_weights="imagenet"``).

    Args:
        meta: The file's metadata.
        head_only: Rebuild for the head alone, or for the whole model; by default as the file holds it
            (`holds_head_only`). An export that leaves the base out asks for the model its head will be loaded into.

    >>> builder_kwargs({"parts": "head", "model_kwargs": {"pooling": "avg"}})
    {'base_weights': 'imagenet', 'pooling': 'avg'}
    """
    head_only = holds_head_only(meta) if head_only is None else head_only
    return {**({"base_weights": "imagenet"} if head_only else {}), **meta.get("model_kwargs", {})}


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """The checked metadata of a trained-model file, without reading its parameters (they are memory-mapped)."""
    return _read(path, mmap=True)["meta"]


def _read(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    if Path(path).is_dir():  # a run's results folder, most likely
        inside = "its model.pt" if (Path(path) / "model.pt").is_file() else "a model.pt (a finished run's)"
        raise FileNotFoundError(f"{path} is a folder, not a trained model file: pass {inside}.")
    content = safe_torch_load(path, "trained model file", mmap=mmap)
    if isinstance(content, dict) and CHECKPOINT_KEYS <= content.keys():
        raise ValueError(
            f"{path} is a training checkpoint, not a trained model file: a finished run writes model.pt next to "
            "it. Finish the run (cnn-study run ... --resume) and pass its model.pt."
        )
    if not isinstance(content, dict) or not {"state_dict", "meta"} <= content.keys():
        raise ValueError(f"{path} is not a trained model file (model.pt from cnn-study run, or shipped weights).")
    _check_meta(content["meta"], path)
    return content


def _check_meta(meta: dict[str, Any], path: str | Path) -> None:
    """Refuse metadata that lacks a key of `MODEL_META_KEYS` or holds a value of the wrong kind, naming each problem."""
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a trained model file: its metadata is a {type(meta).__name__}, not a table.")
    missing = [key for key in MODEL_META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{path} is not a complete trained model file: its metadata lacks {', '.join(missing)}.")
    problems = _meta_problems(meta)
    if problems:
        raise ValueError(
            f"{path} has damaged metadata: {'; '.join(problems)}. Use the model.pt of a run or a shipped weights file."
        )


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _meta_problems(meta: dict[str, Any]) -> list[str]:
    """What is wrong with each value of ``meta`` (complete), one phrase per problem."""
    problems = []
    for key in ("model", "dataset"):
        if not isinstance(meta[key], str) or not meta[key]:
            problems.append(f"{key} is {meta[key]!r}, not a name")
    classes, num_classes = meta["classes"], meta["num_classes"]
    if not isinstance(classes, list | tuple) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        problems.append(f"classes is {classes!r}, not a list of two or more names")
    if not _is_whole(num_classes) or num_classes < 1:
        problems.append(f"num_classes is {num_classes!r}, not a whole number of outputs")
    elif isinstance(classes, list | tuple) and num_classes != len(classes) and (num_classes, len(classes)) != (1, 2):
        problems.append(f"num_classes is {num_classes}, but there are {len(classes)} classes")  # 1 of 2: one logit
    mean, std = meta["mean"], meta["std"]
    for key, values in (("mean", mean), ("std", std)):
        numbers = isinstance(values, list | tuple) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        )
        if not numbers or len(values) not in (1, 3):
            problems.append(f"{key} is {values!r}, not one or three numbers (a value per channel)")
    if isinstance(std, list | tuple) and any(isinstance(v, int | float) and v <= 0 for v in std):
        problems.append(f"std is {std!r}: a standard deviation must be positive")
    if not isinstance(meta.get("model_kwargs", {}), dict):
        problems.append(f"model_kwargs is {meta['model_kwargs']!r}, not a table of arguments")
    return problems
