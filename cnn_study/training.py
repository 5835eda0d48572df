"""Fit and evaluate any classifier on any batch loader, with atomic, resumable checkpoints.

This module knows nothing about experiments, datasets or architectures: it
takes an ``nn.Module``, an optimizer and iterables of ``(images, labels)``.
A model with one output is treated as a binary classifier (one logit,
``BCEWithLogitsLoss``, the sigmoid lives in the loss); any other as a
multiclass classifier (``CrossEntropyLoss``).

Examples:
    A classifier of two-feature points whose class is the sign of the first feature:

    >>> import torch
    >>> from cnn_study.training import TensorBatches, evaluate, fit
    >>> _ = torch.manual_seed(0)
    >>> points = torch.randn(200, 2)
    >>> classes = (points[:, 0] > 0).long()
    >>> model = torch.nn.Linear(2, 2)
    >>> history = fit(model, TensorBatches(points, classes, 50, shuffle=True), epochs=5,
    ...               optimizer=torch.optim.SGD(model.parameters(), lr=0.5), device="cpu", quiet=True)
    >>> len(history), evaluate(model, TensorBatches(points, classes, 100)).accuracy > 0.95
    (5, True)

    On a dataset, batches come from `cnn_study.datasets.BatchLoader`:
    ``fit(model, BatchLoader(train, 128, shuffle=True), epochs=..., optimizer=...)``.
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
import sys
import time
from collections.abc import Iterable, Sized
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import distributed
from ._messages import option
from .files import CHECKPOINT_KEYS, atomic_torch_save, load_model_state, safe_torch_load


class Batches(Iterable[tuple[torch.Tensor, torch.Tensor]], Sized, Protocol):
    """What ``fit`` and ``evaluate`` iterate over: sized, yields ``(images, labels)``.

    A loader that has a ``generator`` attribute (a ``torch.Generator`` behind
    its shuffling and augmentation) gets that generator saved in checkpoints; one with a
    ``set_epoch(epoch)`` method is told the number of each epoch (from 1) before it is iterated.
    """


def select_device(device: str | torch.device | None = None) -> torch.device:
    """Pick the training device: CUDA if available, then Apple MPS, then the CPU.

    Args:
        device: An explicit choice (``"cpu"``, ``"cuda:1"``, ``"mps"``) that
            overrides the automatic one; ``None`` or ``"auto"`` chooses.

    Raises:
        ValueError: The requested device is not available on this machine.
    """
    if device not in (None, "auto"):
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):  # torch's own message lists every device type it was built for
            raise ValueError(f"Unknown device {device!r}; use auto, cpu, cuda, cuda:1 or mps.") from None
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }.get(device.type, False)
        if not available:
            raise ValueError(f"Device {device} is not available here; use 'auto' or 'cpu'.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """A readable name for the device, e.g. ``"NVIDIA H100 80GB HBM3"`` or ``"cpu (2 threads)"``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def peak_memory(device: torch.device) -> dict[str, float | None]:
    """The most memory this process has held so far, in MB: ``peak_rss_mb`` and, on CUDA, ``peak_cuda_mb``.

    ``peak_rss_mb`` is the peak resident set size of the process, what a laptop's RAM must hold: ``VmHWM``
    of ``/proc/self/status`` on Linux (``getrusage`` there counts the memory of the parent a process was
    started from, up to its start), ``getrusage`` elsewhere, ``None`` on Windows. ``peak_cuda_mb`` is
    ``torch.cuda.max_memory_allocated``.

    >>> peak_memory(torch.device("cpu"))["peak_rss_mb"] > 10
    True
    """
    cuda_mb = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None
    return {"peak_rss_mb": _peak_rss_mb(), "peak_cuda_mb": cuda_mb}


def _peak_rss_mb() -> float | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux
        status = ""
    high_water = re.search(r"^VmHWM:\s+(\d+) kB", status, flags=re.M)
    if high_water:
        return round(int(high_water.group(1)) / 1024, 1)
    try:
        import resource
    except ImportError:  # Windows
        return None
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(max_rss / (2**20 if sys.platform == "darwin" else 2**10), 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so that runs repeat exactly on the CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class EpochRecord:
    """Metrics of one epoch; ``val_*`` are ``None`` when there is no validation loader."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float


@dataclass
class History:
    """Per-epoch metrics of a training run, as plotted by `cnn_study.visualize.training_curves`."""

    epochs: list[EpochRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epochs)

    def column(self, name: str) -> list[Any]:
        """Return one metric over all epochs, e.g. ``history.column("val_accuracy")``."""
        return [getattr(record, name) for record in self.epochs]

    def followed_by(self, stage: History) -> History:
        """This history and then a later stage's, whose epochs count on from this one's (fine-tuning)."""
        later = [replace(record, epoch=record.epoch + len(self)) for record in stage.epochs]
        return History(self.epochs + later)

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """A JSON-ready dict (this is what ``history.json`` holds)."""
        return {"epochs": [asdict(record) for record in self.epochs]}

    @classmethod
    def from_dict(cls, content: dict[str, list[dict[str, Any]]]) -> History:
        """Rebuild a history from `to_dict` output."""
        return cls([EpochRecord(**record) for record in content["epochs"]])


@dataclass
class Evaluation:
    """Result of `evaluate`.

    Attributes:
        loss: Mean loss over the data.
        accuracy: Fraction of correct predictions.
        predictions: Predicted class per image.
        labels: True class per image.
        probabilities: ``N x classes`` class probabilities (``N x 2`` for a binary model).
    """

    loss: float
    accuracy: float
    predictions: torch.Tensor
    labels: torch.Tensor
    probabilities: torch.Tensor


def _is_binary(logits: torch.Tensor) -> bool:
    return logits.dim() == 2 and logits.shape[1] == 1


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities, ``N x classes``, from ``N x classes`` logits (softmax) or one logit per image
    (sigmoid: ``N x 2``, class 0's probability computed from the negated logit, precise near 0 too).

    Examples:
        >>> class_probabilities(torch.tensor([[0.0]])).tolist()
        [[0.5, 0.5]]
    """
    if _is_binary(logits):
        return torch.sigmoid(torch.cat([-logits, logits], dim=1))
    return logits.softmax(1)


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """The predicted class per image: the largest of ``N x classes`` logits, or for one logit per image
    whether it is positive (class 1).

    Examples:
        >>> predicted_classes(torch.tensor([[0.3], [-0.2]])).tolist()
        [1, 0]
    """
    return (logits[:, 0] > 0).long() if _is_binary(logits) else logits.argmax(1)


def loss_and_predictions(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and predicted classes for binary (one logit) or multiclass outputs.

    Args:
        logits: Model output, ``N x 1`` or ``N x classes``.
        labels: True classes.
        label_smoothing: Label smoothing (Szegedy et al. 2016) for the loss.
    """
    if _is_binary(logits):
        targets = labels.float() * (1 - label_smoothing) + 0.5 * label_smoothing
        loss = F.binary_cross_entropy_with_logits(logits.squeeze(1), targets)
    else:
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    return loss, predicted_classes(logits)


def mixed_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """The precision `evaluate` computes in: bfloat16 autocast on CUDA, float32 elsewhere.

    On a CPU the reported accuracies stay float32, the precision every published CPU run and shipped weight
    was measured in, whatever precision the model trained in (`training_precision`); the published H100 runs
    were measured in bfloat16 autocast.
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


#: The precisions `fit` can train in: ``"bfloat16"`` autocast (parameters, gradients and optimizer stay
#: float32) or plain ``"float32"``.
PRECISIONS = ("bfloat16", "float32")

Precision = Literal["bfloat16", "float32"]


def training_precision(device: torch.device) -> Precision:
    """The precision `fit` trains in unless told: bfloat16 on CUDA and on CPUs that compute it natively.

    On a 2-core CPU with AVX512-BF16, bfloat16 autocast trained every model of the experiments trained from
    scratch faster than float32 (``benchmarks/train_throughput.py``), and the models of experiments 1 to 5, 7
    and 10 to the same accuracy within the spread of three seeds (``benchmarks/bfloat16_training.py``; the tables
    are on the documentation's Results page). Elsewhere (MPS, CPUs without it) float32.

    >>> training_precision(torch.device("cuda")), training_precision(torch.device("mps"))
    ('bfloat16', 'float32')
    """
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bfloat16()):
        return "bfloat16"
    return "float32"


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """The context a training step's forward pass runs in: bfloat16 autocast on ``device``, or none.

    Raises:
        ValueError: ``precision`` is not one of `PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use {' or '.join(PRECISIONS)}.")
    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache  # read once: the optimizer asks at every step, and /proc/cpuinfo grows with the cores
def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX-BF16; read from ``/proc/cpuinfo``)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: not detected
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def extraction_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """The precision `extract_features` runs a frozen base in: bfloat16 autocast where the hardware has it.

    On CUDA that is `mixed_precision`. On a CPU with native bfloat16 (`cpu_has_native_bfloat16`) it
    made EfficientNet-Lite0 extraction 2.5 times and VGG16 1.7 times as fast as float32 on 2 cores
    (``benchmarks/transfer_inference.py``), and experiments 6 and 8 came within 0.1 points of their
    float32 runs (98.60% and 86.00%, against 98.60% and 86.10%: ``docs/results.md``). Training and
    `evaluate` keep `mixed_precision`, so a model is tested as it was trained.
    """
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return mixed_precision(device)


def compile_for_training(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` under `torch.compile` for training steps; it shares the parameters of ``model``.

    On CUDA the mode is ``"reduce-overhead"``: a step replays recorded CUDA graphs instead of
    launching every kernel from Python, the limit of small CIFAR models on a GPU. Elsewhere
    inductor's default mode fuses the element-wise work (batch norm, ReLU) around the
    convolutions. Shapes are compiled static (``dynamic=False``): a smaller last batch gets a
    graph of its own rather than turning every step into a dynamic-shape graph. The first
    steps are slow while it compiles.
    """
    return torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None, dynamic=False)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Batches,
    device: str | torch.device | None = None,
    average_mirror: bool = False,
    precision: Precision | None = None,
) -> Evaluation:
    """Compute loss, accuracy and predictions of ``model`` over ``loader``, in eval mode.

    Under ``torchrun`` (`cnn_study.distributed`) every rank must call it: the ranks share the batches
    out (batch ``i`` to rank ``i % world_size``) and every rank returns the whole evaluation.

    Args:
        model: The classifier.
        loader: Batches of ``(images, labels)``.
        device: Where to run; defaults to where the model's parameters are.
        average_mirror: Test-time augmentation: classify every image and its mirror
            image, and average the two outputs (logits) before the loss and prediction.
        precision: ``"bfloat16"`` or ``"float32"``; by default `mixed_precision` (float32 on a CPU), the
            precision of every reported test accuracy. `fit` monitors its epochs in the training precision.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    evaluated = []  # (logits, labels) of each batch this rank evaluates
    for index, (images, labels) in enumerate(loader):
        if index % distributed.world_size() != distributed.rank():
            continue
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with mixed_precision(device) if precision is None else autocast(device, precision):
            logits = model(images)
            if average_mirror:
                logits = (logits + model(images.flip(3))) / 2
        evaluated.append((logits.float().cpu(), labels.cpu()))
    model.train(was_training)
    evaluated = distributed.gather_batches(evaluated)
    if not evaluated:
        raise ValueError("loader yielded no batches: evaluate needs at least one image.")
    logits, labels = (torch.cat(parts) for parts in zip(*evaluated))
    loss, _ = loss_and_predictions(logits, labels)
    probabilities = class_probabilities(logits)
    predictions = probabilities.argmax(1)
    return Evaluation(
        loss=loss.item(),
        accuracy=(predictions == labels).float().mean().item(),
        predictions=predictions,
        labels=labels,
        probabilities=probabilities,
    )


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    history: History,
    loader: Batches,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write everything needed to resume training, atomically (temporary file, then rename).

    Under ``torchrun`` every rank must call it (each rank's random state is saved, for its dropout);
    the main rank alone writes.

    Args:
        path: Checkpoint file.
        model: The model being trained.
        optimizer: Its optimizer.
        scheduler: Its learning-rate scheduler, if any.
        history: Metrics so far; its length is the number of finished epochs.
        loader: The training loader; its generator state is saved.
        meta: Extra JSON-like information (model name, classes, normalisation).
    """
    generator = getattr(loader, "generator", None)
    torch_by_rank = distributed.gather_objects(torch.get_rng_state())
    if distributed.is_main():
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "history": history.to_dict(),
            "rng": {
                "torch": torch_by_rank[0],
                "torch_by_rank": torch_by_rank,
                "loader": generator.get_state() if generator is not None else None,
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "meta": meta or {},
        }
        atomic_torch_save(state, path)
    distributed.barrier()  # once it returns, every rank sees the checkpoint (a rank that resumes reads it)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (safely: ``weights_only=True``).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is not a cnn-study checkpoint.
    """
    state = safe_torch_load(path, "checkpoint")
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
        raise ValueError(f"{path} is not a cnn-study training checkpoint (no model/optimizer/history).")
    return state


def load_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` a checkpoint was saved with, read without loading its tensors into memory.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is not a cnn-study checkpoint.
    """
    state = safe_torch_load(path, "checkpoint", mmap=True)
    if not isinstance(state, dict) or not isinstance(state.get("meta"), dict):
        raise ValueError(f"{path} is not a cnn-study training checkpoint (no meta).")
    return state["meta"]


def fit(
    model: nn.Module,
    train_loader: Batches,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    val_loader: Batches | None = None,
    label_smoothing: float = 0.0,
    device: str | torch.device | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    quiet: bool = False,
    compile_model: bool = False,
    micro_batch_size: int | None = None,
    precision: Precision | None = None,
    held_out: str = "val",
) -> History:
    """Train ``model`` for ``epochs`` epochs and return the per-epoch history.

    The scheduler, if any, is stepped after every batch (build it with the
    total number of steps, ``epochs * len(train_loader)``). After every epoch
    the model is evaluated on ``val_loader`` and, if ``checkpoint`` is given,
    a checkpoint is written atomically. With ``resume=True`` training
    continues from that checkpoint; on the CPU the result is bit-identical to
    a run that was never interrupted.

    Under ``torchrun`` (`cnn_study.distributed`) every rank calls ``fit`` with the same loader: each
    trains on its share of every batch through DistributedDataParallel, the epoch's numbers are summed
    over all ranks, and the main rank alone shows progress and writes the checkpoint.

    Args:
        model: The classifier (moved to ``device``).
        train_loader: Training batches; shuffling should come from a seeded generator.
        epochs: Total number of epochs, including those already done when resuming.
        optimizer: Optimizer over the parameters to train.
        scheduler: Learning-rate scheduler stepped once per batch.
        val_loader: Batches to evaluate on after each epoch.
        label_smoothing: Label smoothing for the training loss.
        device: Device override; defaults to `select_device`.
        checkpoint: File to save to after each epoch (and to resume from).
        resume: Continue from ``checkpoint`` if it exists.
        meta: Extra information stored in the checkpoint.
        quiet: Hide the progress bar.
        compile_model: Run the training steps through `compile_for_training`
            (evaluation stays eager; checkpoints hold the plain model's parameters).
        micro_batch_size: Compute each batch's gradient in chunks of at most this many images, summed
            before the optimizer step (gradient accumulation): the same step in less memory, for a model
            without batch statistics in training mode. ``None``: whole batches.
        precision: ``"bfloat16"`` or ``"float32"`` for the training steps' forward passes; by default
            `training_precision`. The ``val_loader`` evaluation after each epoch runs in the same
            precision: a curve to watch; the test accuracy a run reports comes from `evaluate` (`mixed_precision`).
        held_out: What ``val_loader`` holds, as the epoch line names it: ``"val"``, or ``"test"`` for a run that
            watches the test set (the history keeps its ``val_`` fields either way).

    Returns:
        The `History` of all epochs (resumed ones included).
    """
    device = select_device(device)
    precision = precision or training_precision(device)
    step_precision = autocast(device, precision)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN time and pick its fastest convolutions
    if getattr(train_loader, "channels_last", False):
        model.to(memory_format=torch.channels_last)
    history = History()
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        history = _restore(Path(checkpoint), model, optimizer, scheduler, train_loader)
    elif distributed.active():  # the ranks' dropout draws differ from here on (a resumed run restores each one's)
        torch.manual_seed(int(torch.randint(2**62, ())) + distributed.rank())
    trained = distributed.data_parallel(model, device)
    forward = compile_for_training(trained, device) if compile_model else trained
    ranks = distributed.world_size()
    quiet = quiet or not distributed.is_main()

    for epoch in range(len(history) + 1, epochs + 1):
        if hasattr(train_loader, "set_epoch"):  # a loader whose batches depend on the epoch (alternating flip)
            train_loader.set_epoch(epoch)
        model.train()
        started = time.perf_counter()
        totals = torch.zeros(3, device=device)  # summed loss, right answers and images of this rank
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=quiet, unit="batch")
        for step, (images, labels) in enumerate(bar):
            batch_size = len(labels)  # of the whole batch: each rank weights its share's loss by its part
            if batch_size < ranks:  # too few images to give each rank one: skipped by every rank alike
                continue
            images, labels = distributed.shard(images), distributed.shard(labels)
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            chunk = micro_batch_size or len(labels)
            chunks = list(zip(images.split(chunk), labels.split(chunk)))
            for number, (chunk_images, chunk_labels) in enumerate(chunks, start=1):
                # DistributedDataParallel averages the ranks' gradients in the backward pass of the last chunk
                synchronised = ranks == 1 or number == len(chunks)
                with contextlib.nullcontext() if synchronised else trained.no_sync():
                    with step_precision:
                        logits = forward(chunk_images)
                    loss, predictions = loss_and_predictions(logits.float(), chunk_labels, label_smoothing)
                    # the batch's mean loss, chunk by chunk; times the ranks, whose gradients are averaged
                    (loss * (len(chunk_labels) * ranks / batch_size)).backward()
                totals[0] += loss.detach() * len(chunk_labels)
                totals[1] += (predictions == chunk_labels).sum()
                totals[2] += len(chunk_labels)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if not quiet and step % 20 == 0:  # reading the numbers waits for the device: not every step
                total_loss, correct, seen = totals.tolist()
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        distributed.broadcast_buffers(model)  # one set of batch-norm statistics to evaluate and save
        total_loss, correct, seen = distributed.sum_across_ranks(totals).tolist()
        validation = evaluate(model, val_loader, device, precision=precision) if val_loader is not None else None
        record = EpochRecord(
            epoch=epoch,
            train_loss=total_loss / seen,
            train_accuracy=correct / seen,
            val_loss=validation.loss if validation else None,
            val_accuracy=validation.accuracy if validation else None,
            learning_rate=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - started,
        )
        history.epochs.append(record)
        if not quiet:
            val_text = f", {held_out} loss {record.val_loss:.4f} acc {record.val_accuracy:.2%}" if validation else ""
            tqdm.write(
                f"epoch {epoch}/{epochs}: train loss {record.train_loss:.4f} acc {record.train_accuracy:.2%}"
                f"{val_text} ({record.seconds:.1f} s)"
            )
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, scheduler, history, train_loader, meta)
    return history


def _restore(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loader: Batches,
) -> History:
    state = load_checkpoint(path)
    load_model_state(model, state["model"], path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (KeyError, ValueError) as error:  # torch's own messages name neither the file nor a way out
        raise ValueError(
            f"{path} holds no optimizer or schedule state that this training can continue from "
            f"({type(error).__name__}: {error}): start the run again ({option('overwrite')})."
        ) from error
    by_rank = state["rng"].get("torch_by_rank") or [state["rng"]["torch"]]
    if len(by_rank) != distributed.world_size():
        raise ValueError(
            f"{path} was written by a run of {len(by_rank)} process(es), and this one has "
            f"{distributed.world_size()}; resume it with as many (torchrun --nproc-per-node {len(by_rank)})."
        )
    torch.set_rng_state(by_rank[distributed.rank()])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    generator = getattr(loader, "generator", None)
    if generator is not None and state["rng"]["loader"] is not None:
        generator.set_state(state["rng"]["loader"])
    return History.from_dict(state["history"])


class TensorBatches:
    """Batches from a pair of tensors (e.g. cached features), shuffled by a seeded generator.

    Args:
        inputs: ``N x ...`` model inputs.
        labels: ``N`` labels.
        batch_size: Items per batch.
        shuffle: New random order every epoch.
        seed: Seed of the generator.
    """

    def __init__(
        self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 128, shuffle: bool = False, seed: int = 0
    ) -> None:
        self.inputs, self.labels, self.batch_size, self.shuffle = inputs, labels, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.inputs[index], self.labels[index]


@torch.no_grad()
def extract_features(
    base: nn.Module,
    loader: Batches,
    device: str | torch.device | None = None,
    quiet: bool = False,
    precision: contextlib.AbstractContextManager | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a frozen convolutional base once over ``loader`` and keep its outputs.

    This is the fast path of feature extraction: a frozen base gives the same
    features every epoch, so computing them once and training the head on
    `TensorBatches` of features saves all but one pass through the base.
    (It rules out augmentation, which changes the input every epoch; fixed views of every image,
    a mirrored copy say, are extracted as further passes.)

    Args:
        base: The frozen part, e.g. ``TransferClassifier.feature_extractor(folded=True)``.
        loader: Batches of ``(images, labels)``, not shuffled.
        device: Where to run; defaults to `select_device`.
        quiet: Hide the progress bar.
        precision: A context manager to run the base under; by default `extraction_precision`
            (``torch.autocast("cpu", enabled=False)`` forces float32).

    Returns:
        ``(features, labels)`` on the CPU.
    """
    device = select_device(device)
    base.to(device).eval()
    if getattr(loader, "channels_last", False):
        base.to(memory_format=torch.channels_last)
    # The outputs go into one tensor allocated at the first batch. Kept as a list of small per-batch
    # tensors, they pin the heap between the large transient activations, and a 2-core CPU run of
    # experiment 6 held 2.3 GB instead of 1.2 GB (the resolving note of issue 18).
    features = labels = None
    seen = 0
    for images, batch_labels in tqdm(loader, desc="extracting features", leave=False, disable=quiet):
        with precision or extraction_precision(device):
            batch = base(images.to(device)).float().cpu()
        if features is None:
            capacity = len(loader) * len(batch)  # every batch but the last is this size
            features = torch.empty((capacity, *batch.shape[1:]), dtype=batch.dtype)
            labels = torch.empty(capacity, dtype=batch_labels.dtype)
        features[seen : seen + len(batch)] = batch
        labels[seen : seen + len(batch)] = batch_labels.cpu()
        seen += len(batch)
    if features is None:
        raise ValueError("extract_features got a loader without batches; give it at least one image.")
    return features[:seen], labels[:seen]


Schedule = Literal["constant", "cosine", "onecycle", "triangle"]


class Lookahead(torch.optim.Optimizer):
    """Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"), scheduled as airbench does.

    The wrapped optimizer takes ``steps`` ordinary ("fast") steps; then a copy of the weights kept aside
    (the "slow" weights) moves towards the fast ones, ``slow += (1 - pull) * (fast - slow)``, and the fast
    weights restart from the slow ones. With a constant ``pull`` of 0.5 this is the paper's method. Jordan's
    airbench (2024) lets ``pull`` grow with the cube of the training's progress, from 0 (plain training) to
    ``final_pull``: early on the model moves freely; near the end the slow weights average the last steps'
    noise away, as an exponential moving average of the weights does, and the model ends on them.

    It shares the wrapped optimizer's ``param_groups``, so learning-rate schedulers drive it as they would the
    wrapped one, and its ``state_dict`` holds the slow weights (a resumed run goes on exactly).

    Args:
        optimizer: The fast optimizer, e.g. SGD.
        total_steps: Steps of the whole training, over which ``pull`` grows.
        steps: Fast steps between synchronisations (the paper's ``k``).
        final_pull: ``pull`` at the end of training (airbench: ``0.95 ** 5``, an average over about 20 steps).

    Examples:
        >>> weight = torch.nn.Parameter(torch.zeros(1))
        >>> optimizer = Lookahead(torch.optim.SGD([weight], lr=1.0), total_steps=4, steps=2, final_pull=0.5)
        >>> for _ in range(4):
        ...     weight.grad = torch.tensor([-1.0])
        ...     optimizer.step()
        >>> weight.item()  # pull 1/16 after two steps (slow = 2 - 2/16), 1/2 after four: 1.875 + (3.875 - 1.875) / 2
        2.875
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, total_steps: int, steps: int = 5, final_pull: float = 0.95**5
    ) -> None:
        super().__init__(optimizer.param_groups, optimizer.defaults)  # the same group dicts: one learning rate
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.steps = steps
        self.final_pull = final_pull
        self.fast_steps = 0
        self.slow_weights: list[torch.Tensor] | None = None  # taken at the first step, where the model then is

    def _parameters(self) -> list[torch.Tensor]:
        return [parameter for group in self.param_groups for parameter in group["params"]]

    def pull(self) -> float:
        """How much the slow weights hold back at the current step: ``final_pull * progress ** 3``."""
        return self.final_pull * min(1.0, self.fast_steps / self.total_steps) ** 3

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        if self.slow_weights is None:  # the starting weights, on the device and in the layout they train in
            self.slow_weights = [parameter.detach().clone() for parameter in self._parameters()]
        loss = self.optimizer.step(closure)
        self.fast_steps += 1
        if self.fast_steps % self.steps == 0 or self.fast_steps == self.total_steps:
            pull = self.pull()
            for slow, fast in zip(self.slow_weights, self._parameters(), strict=True):
                slow.lerp_(fast, 1 - pull)
                fast.copy_(slow)
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "slow_weights": self.slow_weights,
            "fast_steps": self.fast_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.param_groups = self.optimizer.param_groups  # loading made new group dicts: share them again
        saved = state_dict["slow_weights"]
        if saved is not None:
            parameters = self._parameters()  # where the model is now, in its layout
            self.slow_weights = [torch.empty_like(p).copy_(w) for p, w in zip(parameters, saved, strict=True)]
        self.fast_steps = state_dict["fast_steps"]


def orthogonalise(matrix: torch.Tensor, steps: int = 3) -> torch.Tensor:
    """Roughly the nearest orthogonal matrix to ``matrix``: Muon's quintic Newton-Schulz iteration.

    With ``matrix = U S V^T`` (its singular value decomposition) the exact answer is ``U V^T``: every singular
    value set to 1. The iteration gets there without a decomposition, by matrix products alone. It scales the
    matrix so that its singular values lie in ``[0, 1]`` and then applies the odd polynomial
    ``p(x) = a x + b x^3 + c x^5`` to them, ``steps`` times. Its coefficients ``(3.4445, -4.7750, 2.0315)``
    (Jordan et al. 2024) make ``p`` steep at 0, so that small singular values grow fast, at the price of
    ending anywhere between about 0.5 and 1.5 rather than at exactly 1, which their runs found costs
    nothing; the weakest directions (below about a hundredth of the matrix's norm) stay lower. The products run in
    the precision `training_precision` picks for the device (bfloat16 on CUDA and on CPUs that compute it natively,
    float32 elsewhere), whatever precision the model trains in: Muon's step needs its directions, not their digits.

    Args:
        matrix: A 2-D tensor.
        steps: Iterations; 3 in airbench94_muon, 5 in Muon's reference code.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> singular_values = torch.linalg.svdvals(orthogonalise(torch.randn(8, 32)))
        >>> bool(singular_values.min() > 0.5 and singular_values.max() < 1.5)
        True
    """
    x = matrix.to(getattr(torch, training_precision(matrix.device)))
    x = x / (x.norm() + 1e-7)  # the Frobenius norm bounds the largest singular value: all of them now <= 1
    wide = x.T if x.shape[0] > x.shape[1] else x  # x @ x.T is then the smaller of the two Gram matrices
    for _ in range(steps):
        gram = wide @ wide.T
        wide = 3.4445 * wide + (-4.7750 * gram + 2.0315 * gram @ gram) @ wide
    return (wide.T if x.shape[0] > x.shape[1] else wide).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Muon (Jordan et al. 2024): momentum SGD whose step for each filter bank is orthogonalised.

    A filter bank of ``out x in x k x k`` weights is a matrix of ``out`` rows. Muon keeps SGD's (Nesterov) momentum
    of its gradients, but instead of stepping along it, steps along the nearest (semi-)orthogonal matrix
    (`orthogonalise`): the same directions with every singular value set to about 1. A gradient step is dominated
    by its few largest directions; the orthogonalised step moves the weights as far along the rare directions as
    along the common ones. Bernstein and Newhouse (2024) derive it as steepest descent under the spectral norm. As
    in airbench94_muon, each bank is first rescaled to a norm of ``sqrt(out)``: for a convolution followed by batch
    norm, which undoes any scale of its input, this changes nothing in the function and keeps the learning rate's
    meaning fixed (a step of ``lr`` turns the filters by about as much all through training), in place of weight
    decay. Use it only for such convolutions (`stage_optimizer` gives Muon the filters of the convolutions without a
    bias and SGD the rest).

    Args:
        params: The filter banks (4-D weights; any tensor with a first dimension works).
        lr: Step size.
        momentum: Momentum of the gradients (Nesterov's form when ``nesterov``).
        nesterov: Step along ``gradient + momentum * buffer`` instead of the buffer.
        steps: Newton-Schulz iterations of `orthogonalise`.

    Examples:
        One step on eight filters moves them about as far along each of the eight directions of its update:

        >>> _ = torch.manual_seed(0)
        >>> conv = torch.nn.Conv2d(4, 8, 3)
        >>> optimizer = Muon([conv.weight], lr=0.01, momentum=0.0)
        >>> conv(torch.randn(2, 4, 5, 5)).square().mean().backward()
        >>> rescaled = conv.weight.detach() * 8**0.5 / conv.weight.norm()
        >>> optimizer.step()
        >>> step = (rescaled - conv.weight.detach()).view(8, -1) / 0.01
        >>> singular_values = torch.linalg.svdvals(step)
        >>> bool(singular_values.min() > 0.5 and singular_values.max() < 1.5)
        True
    """

    def __init__(self, params: Any, lr: float, momentum: float, nesterov: bool = True, steps: int = 3) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov, "steps": steps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():  # the closure recomputes the loss and its gradients
                loss = closure()
        for group in self.param_groups:
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                state = self.state[weight]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(weight)
                buffer = state["momentum_buffer"].mul_(group["momentum"]).add_(weight.grad)
                direction = weight.grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
                norm = weight.norm()
                weight.mul_(torch.where(norm > 0, len(weight) ** 0.5 / norm, 0))  # a bank of zeros stays zeros
                update = orthogonalise(direction.reshape(len(weight), -1), group["steps"])
                weight.add_(update.view_as(weight), alpha=-group["lr"])
        return loss


class CombinedOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, stepped, scheduled and saved as one.

    Its ``param_groups`` are theirs (the same dicts), so a learning-rate scheduler or `Lookahead` drives
    every group of every optimizer, each from its own peak.

    Args:
        optimizers: The optimizers, each over its own parameters.

    Examples:
        >>> a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
        >>> both = CombinedOptimizer(torch.optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.2))
        >>> a.grad, b.grad = torch.ones(1), torch.ones(1)
        >>> both.step()
        >>> [round(p.item(), 2) for p in (a, b)], len(both.param_groups)
        ([0.9, 0.8], 2)
    """

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers
        super().__init__([group for optimizer in optimizers for group in optimizer.param_groups], {})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():  # the closure recomputes the loss and its gradients
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        # loading made new group dicts: share them again, so that a scheduler drives what the optimizers read
        self.param_groups = [group for optimizer in self.optimizers for group in optimizer.param_groups]


def make_optimizer(
    name: str,
    parameters: Any,
    lr: float,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Build an optimizer by name: ``adam``, ``adamw``, ``sgd`` or ``rmsprop``.

    Args:
        name: Optimizer name.
        parameters: Parameters (or parameter groups) to optimise.
        lr: Learning rate.
        momentum: Momentum (SGD).
        nesterov: Nesterov momentum (SGD).
        weight_decay: Weight decay (decoupled for AdamW).
    """
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}; use adam, adamw, sgd or rmsprop.")


def make_scheduler(
    schedule: str, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Build a per-batch learning-rate schedule: ``constant``, ``cosine``, ``onecycle`` or ``triangle``.

    ``onecycle`` is torch's `OneCycleLR`: a cosine warm-up over the first quarter from a 25th of the peak,
    then a cosine decay to almost 0, with the momentum cycled the other way, from 0.95 down to 0.85 and back
    (the momentum of SGD and Adam's first beta; an optimizer without momentum, RMSprop's default, keeps none).
    ``triangle`` is airbench's short schedule (Jordan 2024): a linear warm-up from a fifth of the peak over the
    first fifth of the steps, then a linear decay to 0. Each parameter group's learning rate is its own peak.

    Args:
        schedule: Schedule name.
        optimizer: The optimizer whose learning rate it drives.
        total_steps: Number of batches the schedule spans.
    """
    if schedule == "constant":
        return None
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if schedule == "onecycle":
        if total_steps < 4:
            raise ValueError(
                f"The one-cycle schedule needs at least 4 steps (batches times epochs), and this training has "
                f"{total_steps}: use a smaller batch size or more epochs, or check that the training data is not empty."
            )
        peaks = [group["lr"] for group in optimizer.param_groups]
        warmup = max(0.25, 2 / total_steps)  # at least two warm-up steps, even in quick runs
        # torch cycles the momentum too (0.95 down to 0.85 and back) of an optimizer that has one: SGD with momentum,
        # Adam's first beta; not RMSprop's or SGD's momentum of 0, nor a CombinedOptimizer's, whose parts keep theirs
        defaults = optimizer.defaults
        cycle_momentum = "betas" in defaults or defaults.get("momentum", 0) > 0
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=total_steps, pct_start=warmup, cycle_momentum=cycle_momentum
        )
    if schedule == "triangle":
        warmup_steps = 0.2 * total_steps

        def triangle(step: int) -> float:
            return min(0.2 + 0.8 * step / warmup_steps, (total_steps - step) / (total_steps - warmup_steps))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, triangle)
    raise ValueError(f"Unknown schedule {schedule!r}; use constant, cosine, onecycle or triangle.")


@dataclass(frozen=True, kw_only=True)
class Stage:
    """The settings of one training stage: everything `fit_stage` needs besides the model and the data.

    Attributes:
        epochs: Epochs of this stage.
        optimizer: Optimizer name (see `make_optimizer`).
        lr: Learning rate (the peak, for the ``onecycle`` schedule).
        momentum: Momentum for SGD (Nesterov when ``nesterov``). The one-cycle schedule replaces it with its own
            cycle from 0.95 down to 0.85 and back (see `make_scheduler`), except in a ``"muon"`` stage.
        nesterov: Use Nesterov momentum with SGD.
        weight_decay: L2 penalty (decoupled for AdamW).
        schedule: Per-batch learning-rate schedule (see `make_scheduler`).
        label_smoothing: Label smoothing of the training loss.
        lookahead: Wrap the optimizer in `Lookahead` (airbench's schedule).
        bias_lr_scale: Learning-rate factor for the one-dimensional parameters (biases and batch-norm
            shifts), whose weight decay is divided by it, so that it shrinks them by as much per step as it
            shrinks the weights (airbench trains batch-norm shifts 64 times as fast as the weights).
        muon_lr: With ``optimizer="muon"``, the step size of the filters of the convolutions without a bias,
            which `Muon` trains (rescaled at each step, with no weight decay); every other parameter trains by
            SGD with the settings above (see `stage_optimizer`). ``None`` otherwise.
        muon_momentum: With ``optimizer="muon"``, Muon's (Nesterov) momentum. ``None`` otherwise.

    Raises:
        ValueError: ``optimizer="muon"`` without ``muon_lr`` and ``muon_momentum``, or either with another optimizer.
    """

    epochs: int
    optimizer: str
    lr: float
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    label_smoothing: float = 0.0
    lookahead: bool = False
    bias_lr_scale: float = 1.0
    muon_lr: float | None = None
    muon_momentum: float | None = None

    def __post_init__(self) -> None:
        muon_settings = (self.muon_lr, self.muon_momentum)
        if self.optimizer == "muon" and None in muon_settings:
            raise ValueError("optimizer='muon' needs muon_lr and muon_momentum, the settings of the filters' Muon.")
        if self.optimizer != "muon" and muon_settings != (None, None):
            raise ValueError(f"muon_lr and muon_momentum are settings of optimizer='muon', not {self.optimizer!r}.")


def stage_optimizer(stage: Stage, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of ``stage`` over the trainable parameters of ``model`` (those that require gradients).

    It is ``stage.optimizer`` (`make_optimizer`), with the one-dimensional parameters in a group of their own
    when ``stage.bias_lr_scale`` is not 1. ``"muon"`` is `Muon` for the filters of the convolutions without a
    bias and SGD for the rest (biases, batch-norm shifts, the linear head, a convolution with a bias), as in
    airbench94_muon (Jordan et al. 2024), combined into one `CombinedOptimizer`. A convolution followed by batch
    norm needs no bias (the batch norm's shift is one), and only there is Muon's rescaling of the filters
    harmless; in this package's networks the convolutions without a bias are exactly those. Without any such
    trainable filters (a stage that trains a head alone) it is that SGD alone.

    Examples:
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.Flatten(), torch.nn.Linear(8, 2)
        ... )
        >>> stage = Stage(epochs=1, optimizer="muon", lr=0.5, muon_lr=0.1, muon_momentum=0.6, bias_lr_scale=64)
        >>> optimizer = stage_optimizer(stage, model)
        >>> [(type(part).__name__, [group["lr"] for group in part.param_groups]) for part in optimizer.optimizers]
        [('SGD', [0.5, 32.0]), ('Muon', [0.1])]
    """
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    filters = []
    if stage.optimizer == "muon":
        convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d) and module.bias is None]
        filters = [conv.weight for conv in convolutions if conv.weight.requires_grad]
    muon_trained = {id(weight) for weight in filters}
    rest = [parameter for parameter in trainable if id(parameter) not in muon_trained]
    groups = [{"params": rest}]
    if stage.bias_lr_scale != 1:
        groups = [
            {"params": [parameter for parameter in rest if parameter.ndim > 1]},
            {
                "params": [parameter for parameter in rest if parameter.ndim <= 1],
                "lr": stage.lr * stage.bias_lr_scale,
                "weight_decay": stage.weight_decay / stage.bias_lr_scale,
            },
        ]
    optimizer = make_optimizer(
        "sgd" if stage.optimizer == "muon" else stage.optimizer,
        groups,
        stage.lr,
        momentum=stage.momentum,
        nesterov=stage.nesterov,
        weight_decay=stage.weight_decay,
    )
    if not filters:
        return optimizer
    return CombinedOptimizer(optimizer, Muon(filters, lr=stage.muon_lr, momentum=stage.muon_momentum))


def fit_stage(
    model: nn.Module,
    train_loader: Batches,
    stage: Stage,
    *,
    history: History | None = None,
    **fit_options: Any,
) -> History:
    """Train the parameters of ``model`` that require gradients for one `Stage`, after ``history``.

    It builds the stage's optimizer over the trainable parameters and its schedule over the stage's
    batches, then calls `fit`. With a ``checkpoint`` among ``fit_options``, a resumed stage continues
    where it stopped (the schedule spans the whole stage either way).

    Args:
        model: The model; only parameters with ``requires_grad`` learn.
        train_loader: Training batches.
        stage: Epochs, optimizer, schedule and loss settings.
        history: The history of the stages before this one, which the returned history continues.
        **fit_options: Passed to `fit` (``val_loader``, ``device``, ``checkpoint``, ``resume``, ...).

    Returns:
        ``history`` followed by this stage's epochs.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2)
        >>> data = TensorBatches(torch.randn(8, 2), torch.tensor([0, 1] * 4), batch_size=4)
        >>> len(fit_stage(model, data, Stage(epochs=3, optimizer="sgd", lr=0.1), device="cpu", quiet=True))
        3
    """
    optimizer = stage_optimizer(stage, model)
    total_steps = stage.epochs * len(train_loader)
    if stage.lookahead:
        optimizer = Lookahead(optimizer, total_steps)
    scheduler = make_scheduler(stage.schedule, optimizer, total_steps)
    trained = fit(
        model,
        train_loader,
        epochs=stage.epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        label_smoothing=stage.label_smoothing,
        **fit_options,
    )
    return trained if history is None else history.followed_by(trained)


def fit_head_on_features(
    extractor: nn.Module,
    head: nn.Module,
    train_views: list[Batches],
    val_loader: Batches | None,
    stage: Stage,
    *,
    batch_size: int,
    seed: int = 0,
    device: str | torch.device | None = None,
    quiet: bool = False,
    **fit_options: Any,
) -> History:
    """Feature extraction, the fast path: run a frozen ``extractor`` once per image and view, then train ``head``.

    A frozen extractor gives the same output for an image every epoch, so its outputs are computed once
    (`extract_features`) and the head trains on `TensorBatches` of them. Each training view (the plain
    images, a mirrored copy, a fixed random augmentation) adds one copy of the training set's features.

    Args:
        extractor: The frozen part, e.g. ``TransferClassifier.feature_extractor()``.
        head: What learns on the extracted features, e.g. ``TransferClassifier.classifier_head()``.
        train_views: One loader per view of the training images (not shuffled).
        val_loader: Images whose features are evaluated after each epoch, or ``None``.
        stage: The head's training settings.
        batch_size: Feature vectors per training batch.
        seed: Seed of the shuffling of the features.
        device: Where to run; defaults to `select_device`.
        quiet: Hide progress bars.
        **fit_options: Passed to `fit` (``checkpoint``, ``resume``, ``meta``, ...).

    Returns:
        The head's history.
    """
    extracted = [extract_features(extractor, view, device, quiet) for view in train_views]
    features, labels = torch.cat([f for f, _ in extracted]), torch.cat([y for _, y in extracted])
    train_features = TensorBatches(features, labels, batch_size, shuffle=True, seed=seed)
    val_features = None
    if val_loader is not None:
        val_features = TensorBatches(*extract_features(extractor, val_loader, device, quiet), batch_size=500)
    return fit_stage(head, train_features, stage, val_loader=val_features, device=device, quiet=quiet, **fit_options)
