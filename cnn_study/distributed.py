"""Training on several processes: the process group that ``torchrun`` starts, and what each rank does in it.

``torchrun --nproc-per-node N -m cnn_study run ...`` starts N copies of the command (on one machine, or on
several with ``--nnodes``), each with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in its environment. `process_group` joins them: NCCL on CUDA (one GPU per process, by
``LOCAL_RANK``), gloo on a CPU. Outside ``torchrun`` everything here is a no-op: rank 0 of a world of one.

What each rank does (`cnn_study.training.fit` and `cnn_study.training.evaluate` call these):

* every rank iterates the same seeded loader, so all draw the same order and the same augmentation, and
  trains on its `shard` of each batch: every image once per epoch across the ranks, the recipe's batch
  size and learning rate unchanged, and gradients that equal one process's (DistributedDataParallel
  averages them; `fit` weights each rank's loss by its share of the batch);
* evaluation splits the batches among the ranks and `gather_batches` puts them back in order;
* only the main rank (`is_main`) writes: checkpoints, the model, metrics and figures.

Examples:
    Outside ``torchrun``: one process, which holds every batch whole.

    >>> import torch
    >>> rank(), world_size(), is_main()
    (0, 1, True)
    >>> shard(torch.arange(5)).tolist()
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

#: How long a rank waits for the others in one collective before the run fails: long enough for
#: rank 0 to write a checkpoint or the figures, short enough that a rank that died stops the rest.
TIMEOUT = datetime.timedelta(minutes=10)


class StoppedWithMainRank(RuntimeError):
    """Raised on the other ranks when the main rank refused to start (it prints the reason, once)."""


def launched() -> bool:
    """Whether this process is one of several that ``torchrun`` started (``WORLD_SIZE`` above 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: 0 for the main (and only) process outside ``torchrun``."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """How many processes train together: 1 outside ``torchrun``."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes and reports the results: rank 0 (``RANK`` before the group starts or
    after it ends), or the only process."""
    return rank() == 0 if active() else os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join the processes ``torchrun`` started for the block, and yield this rank's device.

    Outside ``torchrun`` (or when a group is already running) it yields ``device`` and starts nothing.
    The backend follows the device: NCCL on CUDA, where each process takes the GPU of its ``LOCAL_RANK``,
    gloo elsewhere.

    Raises:
        ValueError: ``torchrun`` started more processes on this machine than it has GPUs, or
            asked for MPS (which torch.distributed does not support).
    """
    if not launched() or dist.is_initialized():
        yield device
        return
    if device.type == "mps":
        raise ValueError("torch.distributed cannot train on MPS; run with --device cpu under torchrun.")
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"torchrun started process {local_rank} on a machine with {torch.cuda.device_count()} GPU(s); "
                "give --nproc-per-node at most the number of GPUs."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's share of a batch: one of `world_size` consecutive parts, sizes differing by at most one."""
    return batch.tensor_split(world_size())[rank()] if active() else batch


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over all ranks (a new tensor; ``values`` itself on one process)."""
    if not active():
        return values
    total = values.clone()
    dist.all_reduce(total)
    return total


def barrier() -> None:
    """Wait until every rank has come here (after the main rank writes a file that all of them read)."""
    if active():
        dist.barrier()


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank the main rank's buffers (batch-norm running statistics), which DistributedDataParallel
    sends only before each training step: afterwards each rank's last step has updated its own."""
    if active():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def gather_batches(batches: list[Any]) -> list[Any]:
    """Every rank's evaluated batches, in the order of the loader they were dealt from (``i % world_size``).

    Args:
        batches: This rank's results, one per batch it evaluated (batches ``rank``, ``rank + world``, ...).

    Returns:
        All ranks' results, batch 0 first; ``batches`` itself on one process.
    """
    if not active():
        return batches
    by_rank: list[list[Any]] = [[] for _ in range(world_size())]
    dist.all_gather_object(by_rank, batches)
    total = sum(len(part) for part in by_rank)
    return [by_rank[index % len(by_rank)][index // len(by_rank)] for index in range(total)]


def gather_objects(value: Any) -> list[Any]:
    """``value`` from every rank, rank 0 first; ``[value]`` on one process."""
    if not active():
        return [value]
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def on_main_rank(action: Callable[[], Any]) -> None:
    """Run ``action`` on the main rank alone, while the others wait; if it raises, every rank stops.

    The main rank raises the error itself and the others `StoppedWithMainRank`, so that the main rank
    alone explains what went wrong.
    """
    _share_outcome(action if is_main() else None)


def main_rank_first(action: Callable[[], Any]) -> Any:
    """Run ``action`` on the main rank, then, if it succeeded, on the others; return this rank's result.

    For work that every rank needs and the first run makes cheaper or checks: loading a dataset (whose
    decoded copy the main rank caches, and whose errors it alone reports) or downloading weights.
    """
    result = _share_outcome(action if is_main() else None)
    return result if is_main() else action()


def _share_outcome(action: Callable[[], Any] | None) -> Any:
    """``action()`` where given, its failure told to every rank: it raises there, `StoppedWithMainRank` elsewhere."""
    if not active():
        return action() if action is not None else None
    result, outcome, error = None, [None], None
    if action is not None:
        try:
            result = action()
        except Exception as raised:  # told to the other ranks, then raised again here
            error, outcome = raised, [str(raised)]
    dist.broadcast_object_list(outcome, src=0)
    if error is not None:
        raise error
    if outcome[0] is not None:
        raise StoppedWithMainRank(outcome[0])
    return result


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped for training on all ranks (DistributedDataParallel); ``model`` itself on one process.

    On CUDA its batch norms become SyncBatchNorm, which normalise with the statistics of the whole batch
    across the GPUs, as one process does. torch's SyncBatchNorm runs on GPUs only, so on CPUs each rank's
    batch norms use the statistics of its own share of the batch (as torchvision's reference scripts do
    without ``--sync-bn``): a model with batch norm then trains slightly differently from one process.
    """
    if not active():
        return model
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
