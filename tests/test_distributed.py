"""Training on two processes (gloo on the CPU, as ``torchrun`` starts them) against one process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from cnn_study import distributed, experiments, files
from cnn_study.datasets import ImageData, TrainTest
from cnn_study.recipes import get_recipe
from cnn_study.results import format_results
from cnn_study.training import TensorBatches, evaluate, fit, load_checkpoint


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(task, *args, ranks: int = 2) -> None:
    """Run ``task(*args)`` in ``ranks`` fresh processes with the environment ``torchrun`` gives each."""
    mp.start_processes(_as_rank, args=(ranks, _free_port(), task, args), nprocs=ranks, start_method="spawn")


def _as_rank(rank: int, ranks: int, port: int, task, args) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(ranks), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    task(*args)


def _points(count: int = 21) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(count, 1, 6, 6, generator=generator), torch.arange(count) % 3


def _train(epochs: int, *, dropout: float = 0.0, batch_norm: bool = False, **options) -> tuple[nn.Module, list[dict]]:
    """A small network trained on 21 images in shuffled batches of 8: the last batch of 5 is shared 3 and 2."""
    torch.manual_seed(0)
    normalise = nn.BatchNorm2d(4) if batch_norm else nn.Identity()
    model = nn.Sequential(nn.Conv2d(1, 4, 3), normalise, nn.ReLU(), nn.Flatten(), nn.Dropout(dropout), nn.Linear(64, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = TensorBatches(*_points(), batch_size=8, shuffle=True, seed=1)
    # float32: the same sums on one process and on two, up to their order (bfloat16 would round each share apart)
    history = fit(
        model, loader, epochs=epochs, optimizer=optimizer, device="cpu", quiet=True, precision="float32", **options
    )
    return model, history.to_dict()["epochs"]


def _train_on_ranks(out: Path, micro_batch_size: int | None) -> None:
    with distributed.process_group(torch.device("cpu")):
        model, epochs = _train(3, micro_batch_size=micro_batch_size)
        evaluation = evaluate(model, TensorBatches(*_points(), batch_size=4))  # 6 batches dealt to 2 ranks
        torch.save(
            {"state": model.state_dict(), "epochs": epochs, "predictions": evaluation.predictions},
            out / f"rank{distributed.rank()}.pt",
        )


@pytest.mark.parametrize("micro_batch_size", [None, 2])
def test_two_ranks_train_the_weights_one_process_trains_on_the_same_batches(tmp_path, micro_batch_size) -> None:
    _launch(_train_on_ranks, tmp_path, micro_batch_size)
    alone, epochs = _train(3)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    for name, parameter in alone.state_dict().items():
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name])  # one model on both ranks
        torch.testing.assert_close(ranks[0]["state"][name], parameter, rtol=1e-5, atol=1e-6)
    for together, single in zip(ranks[0]["epochs"], epochs):  # losses and accuracies over every image
        assert together["train_accuracy"] == single["train_accuracy"]
        assert together["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
    expected = evaluate(alone, TensorBatches(*_points(), batch_size=4)).predictions
    assert torch.equal(ranks[1]["predictions"], expected)  # every rank holds all 21, in order


def _resume_on_ranks(out: Path) -> None:
    with distributed.process_group(torch.device("cpu")):
        options = {"dropout": 0.5, "batch_norm": True}  # each rank's own batch statistics on a CPU
        uninterrupted, _ = _train(4, **options)
        _train(2, checkpoint=out / "run.pt", **options)
        resumed, epochs = _train(4, checkpoint=out / "run.pt", resume=True, **options)
        torch.save(
            {"uninterrupted": uninterrupted.state_dict(), "resumed": resumed.state_dict(), "epochs": len(epochs)},
            out / f"rank{distributed.rank()}.pt",
        )


def test_a_run_on_two_ranks_resumes_where_it_stopped_each_rank_with_its_own_dropout(tmp_path) -> None:
    _launch(_resume_on_ranks, tmp_path)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    for result in results:
        assert result["epochs"] == 4
        for name, parameter in result["uninterrupted"].items():
            assert torch.equal(result["resumed"][name], parameter)
    for name in ("1.running_mean", "1.running_var"):  # each rank updated its own; the main rank's are shared
        assert torch.equal(results[0]["resumed"][name], results[1]["resumed"][name])
    checkpoint = load_checkpoint(tmp_path / "run.pt")
    by_rank = checkpoint["rng"]["torch_by_rank"]
    assert len(by_rank) == 2 and not torch.equal(by_rank[0], by_rank[1])  # the ranks drop different units


def _digits(count: int) -> ImageData:
    generator = torch.Generator().manual_seed(count)
    images = torch.randint(0, 256, (count, 1, 28, 28), dtype=torch.uint8, generator=generator)
    return ImageData(images, torch.arange(count) % 10, tuple("0123456789"), (0.1307,), (0.3081,), name="digits")


def _run_on_ranks(out: Path, log: Path) -> None:
    written = []
    if os.environ["RANK"] != "0":  # record every file the other rank would write (atomically: os.replace)
        original = os.replace
        files.os.replace = lambda source, target: (written.append(str(target)), original(source, target))[1]
    recipe = get_recipe("lenet5")
    experiments.run(
        recipe, out=out, data=TrainTest(_digits(64), _digits(20)), device="cpu", quick=True, batch_size=16, quiet=True
    )
    (log / f"rank{os.environ['RANK']}.json").write_text(json.dumps(written))


def test_only_the_main_rank_writes_the_results_folder_which_records_the_world_size(tmp_path) -> None:
    out, log = tmp_path / "runs", tmp_path / "log"
    log.mkdir()
    _launch(_run_on_ranks, out, log)
    assert json.loads((log / "rank1.json").read_text()) == []
    folder = out / "lenet5" / "improved-quick"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["train_size"] == 64 and metrics["test_size"] == 20
    assert {"checkpoint.pt", "model.pt", "history.json", "training_curves.png"} <= {p.name for p in folder.iterdir()}
    assert not (folder / ".lock").exists()
    assert "2 x cpu" in format_results([metrics])
    (folder / "metrics.json").unlink()  # as if stopped after its last epoch's checkpoint
    with pytest.raises(ValueError, match=r"trained by 2 process\(es\) and this call has 1; .*--nproc-per-node 2"):
        experiments.run(
            get_recipe("lenet5"),
            out=out,
            data=TrainTest(_digits(64), _digits(20)),
            quick=True,
            batch_size=16,
            resume=True,
        )


def _refused_on_ranks(out: Path, log: Path) -> None:
    try:
        _run_on_ranks(out, log)
    except (FileExistsError, distributed.StoppedWithMainRank) as error:
        (log / f"refused{os.environ['RANK']}.txt").write_text(f"{type(error).__name__}: {error}")


def test_a_refusal_of_the_main_rank_stops_every_rank_and_only_the_main_rank_says_why(tmp_path) -> None:
    out, log = tmp_path / "runs", tmp_path / "log"
    log.mkdir()
    _launch(_run_on_ranks, out, log)
    _launch(_refused_on_ranks, out, log)  # the folder holds a finished run
    assert (log / "refused0.txt").read_text().startswith("FileExistsError: ")
    assert (log / "refused1.txt").read_text().startswith("StoppedWithMainRank: ")
    assert (out / "lenet5" / "improved-quick" / "metrics.json").is_file()  # the finished run is untouched
