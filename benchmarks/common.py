"""What the benchmark scripts share: a measurement in a fresh Python process, the matrix-product yardstick."""

from __future__ import annotations

import subprocess
import sys
import time

import torch


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


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that the clock reads finished work (CUDA and MPS run ahead)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def matmul_gflops(device: torch.device, precision: str = "float32", size: int = 2048, repeats: int = 20) -> float:
    """GFLOP/s of a ``size x size`` matrix product on ``device`` in ``precision``: the yardstick the benchmarks
    measure their achieved rate against (not the device's peak)."""
    a, b = (torch.randn(size, size, device=device, dtype=getattr(torch, precision)) for _ in range(2))
    torch.mm(a, b)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9
