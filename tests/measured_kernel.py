"""An IPython kernel that, when it shuts down, appends one JSON line to a log: the cells it ran, where it
imported ``cnn_study`` from, how long it ran and its peak memory.

The docs build of ``tests/test_docs.py`` executes every tutorial in this kernel, started with the Python of a
fresh virtual environment that has the built wheel installed (``tests/conftest.py``: ``wheel_environment``), so
each notebook runs from the wheel, in a kernel of its own, and its time and memory are measured. Started as::

    <python> tests/measured_kernel.py <log.jsonl> -f <connection file>
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _record(log: Path, started: float, cells: list[str]) -> None:
    import torch

    import cnn_study  # the notebook imported it already (and torch): from the wheel, if all went right
    from cnn_study.training import peak_memory  # VmHWM: getrusage would count the docs build's 2 GB too

    record = {
        "cells": cells,
        "cnn_study": cnn_study.__file__,
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mb": peak_memory(torch.device("cpu"))["peak_rss_mb"],
    }
    with log.open("a") as file:
        file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    import atexit

    from ipykernel.kernelapp import IPKernelApp

    log, started, cells = Path(sys.argv.pop(1)), time.monotonic(), []
    app = IPKernelApp.instance()
    app.initialize()
    app.shell.events.register("pre_run_cell", lambda info: cells.append(info.raw_cell))  # as the notebook has it
    atexit.register(_record, log, started, cells)
    app.start()
