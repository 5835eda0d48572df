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
    missing = [key for key in MODEL_META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{path} is not a complete trained model file: its metadata lacks {', '.join(missing)}.")


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
