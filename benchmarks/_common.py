"""What the benchmark scripts share: running a measurement in a fresh Python process."""

from __future__ import annotations

import subprocess
import sys


def run_child(arguments: list[str]) -> str:
    """Run ``python ARGUMENTS`` in a fresh process and return its standard output.

    A measurement that fails ends the benchmark with the child's own error (a missing dataset names
    ``CNN_STUDY_DATA``, for example) instead of a bare exit status.
    """
    completed = subprocess.run([sys.executable, *arguments], capture_output=True, text=True)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"the measurement in a fresh process failed (exit status {completed.returncode}); see above")
    return completed.stdout
