"""Keep the finished epochs of every run in a folder that stopped before its last epoch.

A run stopped early (out of time on a lent GPU, say) writes no ``metrics.json``, but its checkpoints
hold the history of every finished epoch (``checkpoint.pt``, then ``checkpoint_fine_tuning.pt`` for a
run stopped while fine-tuning). For each such run this writes that history as
``history.json`` and an ``unfinished.json`` (epochs reached and planned, device), which
`cnn_study.experiments.load_results` reports as an unfinished row. A run that has finished loses any
stale ``unfinished.json``.

Usage::

    python scripts/partial_histories.py runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnn_study._io import atomic_json_dump
from cnn_study.experiments import get_recipe
from cnn_study.training import History, load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, help="results folder written by cnn-study run --out")
    args = parser.parse_args()
    for checkpoint in sorted(args.runs.glob("*/*/checkpoint.pt")):
        folder = checkpoint.parent
        if (folder / "metrics.json").exists():
            (folder / "unfinished.json").unlink(missing_ok=True)
            continue
        state = load_checkpoint(checkpoint)
        history = History.from_dict(state["history"])
        fine_tuning = folder / "checkpoint_fine_tuning.pt"
        if fine_tuning.exists():
            history = history.followed_by(History.from_dict(load_checkpoint(fine_tuning)["history"]))
        settings = state["meta"]["settings"]  # what `run` started the folder with (its name may add -quick)
        recipe = get_recipe(settings["experiment"], settings["recipe"])
        record = {"experiment": recipe.name, "recipe": recipe.recipe, "quick": settings["quick"],
                  "epochs_reached": len(history), "epochs_planned": recipe.total_epochs,
                  "device": state["meta"].get("device", "unknown")}
        atomic_json_dump(history.to_dict(), folder / "history.json")
        atomic_json_dump(record, folder / "unfinished.json")


if __name__ == "__main__":
    main()
