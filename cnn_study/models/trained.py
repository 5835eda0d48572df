"""Rebuild a trained model from its file (`cnn_study.models._model_file` reads and checks it).

Examples:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from cnn_study.models import create_model, save_trained_model
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

from ..files import load_model_state
from ._model_file import builder_kwargs, holds_head_only, load_trained_model_file
from ._registry import create_model


def load_trained_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a trained-model file, in eval mode, and return it with its metadata.

    The model remembers the normalisation it was trained with (``meta["mean"]``, ``meta["std"]``),
    so ``BatchLoader.for_model(data, model)`` feeds it as it was fed in training. A transfer model's head
    shipped alone (``cnn-study export-weights --head-only``) goes back onto the ImageNet base it was trained on.

    Args:
        path: The file.
    """
    content = load_trained_model_file(path)
    meta = content["meta"]
    # a transfer model's base is built random (its default) where the file holds the trained base too, and with
    # its ImageNet weights under a head shipped alone (`builder_kwargs`)
    model = create_model(meta["model"], num_classes=meta["num_classes"], **builder_kwargs(meta))
    load_model_state(model, content["state_dict"], path, head_only=holds_head_only(meta))
    model.mean, model.std = tuple(meta["mean"]), tuple(meta["std"])
    return model.eval(), meta
