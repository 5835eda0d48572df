"""Trained-model files: what `cnn-study run` writes as ``model.pt`` and what ships as weights.

A trained-model file holds ``{"state_dict", "meta"}``. The metadata says how to rebuild the model
(registry name, its keyword arguments, number of classes) and how it was fed (class names,
normalisation, dataset), so that `load_trained_model` returns a model that evaluates correctly with
no other information: its `ImageClassifier.input_spec` carries the normalisation it was trained with.

Examples:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from cnn_study.models import create_model
    >>> model = create_model("lenet5").eval()
    >>> meta = {"model": "lenet5", "num_classes": 10, "classes": [str(d) for d in range(10)],
    ...         "mean": [0.1307], "std": [0.3081], "dataset": "mnist"}
    >>> path = save_trained_model(model, meta, Path(tempfile.mkdtemp()) / "model.pt")
    >>> reloaded, _ = load_trained_model(path)
    >>> x = torch.randn(2, 1, 28, 28)
    >>> torch.equal(model(x), reloaded(x)), reloaded.input_spec().mean
    (True, (0.1307,))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..files import atomic_torch_save, load_model_state, safe_torch_load
from ._registry import create_model
from .transfer import is_transfer_model

#: What the metadata of a trained-model file must hold to rebuild and evaluate the model.
MODEL_META_KEYS = ("model", "num_classes", "classes", "mean", "std", "dataset")


def save_trained_model(model: nn.Module, meta: dict[str, Any], path: str | Path) -> Path:
    """Write ``model``'s parameters and ``meta`` (with every key of `MODEL_META_KEYS`) to ``path``, atomically.

    Raises:
        ValueError: ``meta`` lacks one of `MODEL_META_KEYS`.
    """
    _check_meta(meta, path)
    return atomic_torch_save({"state_dict": model.state_dict(), "meta": meta}, path)


def load_trained_model_file(path: str | Path) -> dict[str, Any]:
    """Read a trained-model file: ``{"state_dict", "meta"}``.

    Raises:
        ValueError: The file has no state dict and metadata, or its metadata lacks one of `MODEL_META_KEYS`.
    """
    content = safe_torch_load(path, "trained model file")
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


def load_trained_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a trained-model file, in eval mode, and return it with its metadata.

    The model remembers the normalisation it was trained with (``meta["mean"]``, ``meta["std"]``),
    so ``BatchLoader.for_model(data, model)`` feeds it as it was fed in training.

    Args:
        path: The file.
    """
    content = load_trained_model_file(path)
    meta = content["meta"]
    kwargs = dict(meta.get("model_kwargs", {}))
    if is_transfer_model(meta["model"]):
        kwargs["base_weights"] = None  # the file holds the trained base too
    model = create_model(meta["model"], num_classes=meta["num_classes"], **kwargs)
    load_model_state(model, content["state_dict"], path)
    model.mean, model.std = tuple(meta["mean"]), tuple(meta["std"])
    return model.eval(), meta
