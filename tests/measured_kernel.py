"""An IPython kernel that, when it shuts down, appends one JSON line to a log: the cells it ran, where it
imported ``cnn_study`` from, how long it ran and its peak memory.

The docs build of ``tests/test_docs.py`` executes every tutorial in this kernel, started with the Python of a
fresh virtual environment that has the built wheel installed (``tests/conftest.py``: ``wheel_environment``), so
each notebook runs from the wheel, in a kernel of its own, and its time and memory are measured. Started as::

    <python> tests/measured_kernel.py <log.jsonl> -f <connection file>
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def _peak_rss_kb() -> int:
    """This process's peak resident memory. Linux's ``VmHWM`` starts afresh at exec; ``ru_maxrss`` there would
    start from the memory of the process that started the kernel (the docs build: about 2 GB)."""
    status = Path("/proc/self/status")
    if status.is_file():
        return int(next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:")).split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)


def _record(log: Path, started: float, cells: list[str]) -> None:
    package = sys.modules.get("cnn_study")
    peak_kb = _peak_rss_kb()
    record = {
        "cells": cells,
        "cnn_study": getattr(package, "__file__", None),
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
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
