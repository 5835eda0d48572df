"""Keep the finished epochs of every run in a folder that stopped before its last epoch.

A thin command over `cnn_study.results.record_unfinished_runs`: for each run below the folder that
has a checkpoint but no ``metrics.json``, it writes the checkpoint's history as ``history.json`` and an
``unfinished.json``, which ``cnn-study results`` reports as an unfinished row.

Usage::

    python scripts/partial_histories.py runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnn_study.results import record_unfinished_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, help="results folder written by cnn-study run --out")
    args = parser.parse_args()
    for run_dir in record_unfinished_runs(args.runs):
        print(f"unfinished: {run_dir}")


if __name__ == "__main__":
    main()
