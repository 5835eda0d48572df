"""Results folders and what is read from them: the table, unfinished runs, histories, seeds, exported weights."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from cnn_study import results, visualize
from cnn_study.cli import main
from cnn_study.files import state_dict_sha256
from cnn_study.models import base_of, create_model, load_trained_model_file, save_trained_model
from cnn_study.recipes import get_recipe
from cnn_study.results import (
    PUBLISHED_RESULTS,
    SEED_SPREADS,
    format_results,
    format_seed_spreads,
    held_out_curve,
    load_history,
    load_results,
    published_held_out,
    published_histories,
    published_runs,
    record_unfinished_runs,
    results_folder,
    run_seconds,
    runs_over_seeds,
    scan_results,
    summarise_cross_validation,
)
from cnn_study.training import EpochRecord, History, save_checkpoint


def _history(epochs: int, val_accuracy: float | None = 0.5) -> History:
    return History(
        [EpochRecord(epoch, 1.0 / epoch, 0.1 * epoch, 0.9, val_accuracy, 0.01, 3.0) for epoch in range(1, epochs + 1)]
    )


def _metrics(**changes) -> dict:
    """A ``metrics.json`` row of a finished LeNet-5 run, with ``changes``."""
    row = {
        "experiment": 3,
        "name": "lenet5",
        "title": "LeNet-5 on MNIST",
        "recipe": "seed",
        "quick": False,
        "model": "lenet5",
        "test_accuracy": 0.99,
        "val_accuracy": 0.98,
        "epochs": 2,
        "device": "cpu",
        "seed": 0,
    }
    return {**row, **changes}


def _write_run(folder: Path, metrics: dict | None, history: History | None = None) -> Path:
    folder.mkdir(parents=True)
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if history is not None:
        (folder / "history.json").write_text(json.dumps(history.to_dict()))
    return folder


# ----------------------------------------------------------------------------- which folders are complete runs


def test_scan_reads_complete_runs_in_experiment_order_and_says_why_it_skips_the_others(tmp_path) -> None:
    _write_run(tmp_path / "resnet" / "seed", _metrics(experiment=7, name="resnet", model="resnet20"), _history(1))
    _write_run(tmp_path / "lenet5" / "seed", _metrics(), _history(2))
    _write_run(tmp_path / "lenet5" / "improved", _metrics(recipe="improved"), _history(2))
    _write_run(tmp_path / "lenet5" / "no-history", _metrics(recipe="no-history"))
    _write_run(tmp_path / "lenet5" / "bad", None, _history(1))
    (tmp_path / "lenet5" / "bad" / "metrics.json").write_text("{not json")
    rows, skipped = scan_results(tmp_path)
    assert [(row["experiment"], row["recipe"]) for row in rows] == [(3, "improved"), (3, "seed"), (7, "seed")]
    assert len(skipped) == 2
    [no_history] = [reason for reason in skipped if "no-history" in reason]
    assert no_history == f"{tmp_path / 'lenet5' / 'no-history'} (metrics.json but no history.json: the run stopped " + (
        "while writing)"
    )
    assert any(reason.startswith(str(tmp_path / "lenet5" / "bad")) for reason in skipped)


def test_scan_skips_a_metrics_file_with_damaged_values_and_names_them(tmp_path, capsys) -> None:
    _write_run(tmp_path / "lenet5" / "seed", _metrics(), _history(2))
    damaged = {"experiment": 42, "test_accuracy": "high", "wall_seconds": "x", "quick": "no", "world_size": "2"}
    _write_run(tmp_path / "lenet5" / "damaged", _metrics(recipe="damaged", **damaged), _history(2))
    rows, [reason] = scan_results(tmp_path)
    assert [row["recipe"] for row in rows] == ["seed"]
    metrics_file = tmp_path / "lenet5" / "damaged" / "metrics.json"
    assert reason == (
        f"{metrics_file.parent} ({metrics_file} is damaged: experiment 42 is not one of 1-10; quick 'no' is not a "
        "bool; world_size '2' is not a whole number; test_accuracy 'high' is not a number from 0 to 1; "
        "wall_seconds 'x' is not a number from 0 to inf)"
    )
    assert main(["results", "--dir", str(tmp_path)]) == 0  # the table of the good run, not a traceback
    out, err = capsys.readouterr()
    assert "lenet5" in out and "skipped 1 run folder(s), incomplete or damaged" in err and "is damaged" in err


def test_the_public_readers_warn_about_each_skipped_folder_at_their_caller(tmp_path) -> None:
    _write_run(tmp_path / "lenet5" / "seed", _metrics(), _history(2))
    _write_run(tmp_path / "lenet5" / "no-history", _metrics(recipe="no-history"))
    with pytest.warns(UserWarning, match=r"^Skipped .*no-history \(metrics.json but no history.json") as caught:
        rows = load_results(tmp_path)
    assert [row["recipe"] for row in rows] == ["seed"] and len(caught) == 1
    assert Path(caught[0].filename) != Path(results.__file__)  # at the caller of load_results, not inside it
    with pytest.warns(UserWarning, match="no-history"):
        [(metrics, history)] = published_runs("lenet5", tmp_path)
    assert metrics["recipe"] == "seed" and history == _history(2)


def test_published_runs_keeps_one_experiment_or_all(tmp_path) -> None:
    _write_run(tmp_path / "lenet5" / "seed", _metrics(), _history(2))
    _write_run(tmp_path / "resnet" / "seed", _metrics(experiment=7, name="resnet"), _history(3))
    assert [len(history) for _, history in published_runs(folder=tmp_path)] == [2, 3]
    assert [metrics["name"] for metrics, _ in published_runs("resnet", tmp_path)] == ["resnet"]
    assert published_runs("alexnet", tmp_path) == []


def test_results_name_a_metrics_file_that_lacks_keys(tmp_path) -> None:
    folder = tmp_path / "lenet5" / "seed"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"experiment": 3, "name": "lenet5"}))
    (folder / "history.json").write_text("{}")
    _, [reason] = scan_results(tmp_path)
    assert str(folder / "metrics.json") in reason and "lacks recipe, quick" in reason


# ----------------------------------------------------------------------------- runs stopped before their last epoch


def _checkpoint(
    path: Path, epochs: int, settings: dict | None = None, device: str | None = "cuda", world_size: int | None = None
) -> None:
    model = nn.Linear(2, 1)
    meta = {"settings": settings or {"experiment": "lenet5", "recipe": "improved", "model": "lenet5", "quick": False}}
    if world_size is not None:  # checkpoints made before it was recorded lack it
        meta["world_size"] = world_size
    if device is not None:
        meta["device"] = device
    save_checkpoint(path, model, torch.optim.SGD(model.parameters(), lr=0.1), None, _history(epochs), None, meta)


def test_an_unfinished_run_keeps_its_epochs_and_is_reported_with_what_it_planned(tmp_path) -> None:
    run_dir = tmp_path / "lenet5" / "improved"
    run_dir.mkdir(parents=True)
    _checkpoint(run_dir / "checkpoint.pt", 3)
    assert record_unfinished_runs(tmp_path) == [run_dir]
    record = json.loads((run_dir / "unfinished.json").read_text())
    assert record == {
        "experiment": "lenet5",
        "recipe": "improved",
        "number": 3,
        "title": "LeNet-5 on MNIST",
        "model": "lenet5",
        "quick": False,
        "seed": 0,
        "epochs_reached": 3,
        "epochs_planned": 20,  # a checkpoint without its recipe's settings: the registered recipe's
        "device": "cuda",
        "world_size": 1,
        "held_out": "test",  # the improved recipe has no validation split
    }
    assert History.from_dict(json.loads((run_dir / "history.json").read_text())) == _history(3)
    [row] = load_results(tmp_path)
    assert row == {
        "experiment": 3,
        "name": "lenet5",
        "title": "LeNet-5 on MNIST",
        "recipe": "improved",
        "quick": False,
        "model": "lenet5",
        "test_accuracy": None,
        "epochs": 3,
        "epochs_planned": 20,
        "device": "cuda",
        "seed": 0,
        "world_size": 1,
        "held_out": "test",
    }
    assert "3 of 20" in format_results([row]) and "unfinished" in format_results([row])


def test_an_unfinished_run_plans_the_epochs_it_was_started_with_and_keeps_its_seed_and_processes(tmp_path) -> None:
    quick_run = replace(get_recipe("lenet5").quick(), seed=2)  # its quick budget: 2 epochs, not the recipe's 20
    shortened = get_recipe("lenet5").with_epochs(5)  # cnn-study run lenet5 --epochs 5, on two processes
    for run_dir, recipe, quick, world_size in (
        (tmp_path / "lenet5" / "improved-seed2-quick", quick_run, True, 1),
        (tmp_path / "lenet5" / "improved", shortened, False, 2),
    ):
        run_dir.mkdir(parents=True)
        settings = {"experiment": "lenet5", "recipe": "improved", "model": "lenet5", "quick": quick}
        _checkpoint(
            run_dir / "checkpoint.pt", 1, dict(settings, recipe_settings=recipe.settings()), world_size=world_size
        )
    record_unfinished_runs(tmp_path)
    shortened_row, quick_row = format_results(load_results(tmp_path)).splitlines()[2:]  # in folder order
    assert "improved " in shortened_row and "1 of 5 " in shortened_row and "2 x cuda" in shortened_row
    assert "improved, seed 2 (quick)" in quick_row and "1 of 2 " in quick_row and "x cuda" not in quick_row


def test_an_unfinished_run_of_a_scripts_own_variant_is_recorded_too(tmp_path) -> None:
    variant = replace(get_recipe("resnet", "seed"), recipe="plain56", model="resnet56")  # as small-scale studies
    run_dir = tmp_path / "resnet" / "plain56"
    run_dir.mkdir(parents=True)
    settings = {"experiment": "resnet", "recipe": "plain56", "model": "resnet56", "quick": False}
    _checkpoint(run_dir / "checkpoint.pt", 4, dict(settings, recipe_settings=variant.settings()))
    assert record_unfinished_runs(tmp_path) == [run_dir]
    [row] = load_results(tmp_path)
    assert (row["experiment"], row["recipe"], row["epochs"], row["epochs_planned"]) == (7, "plain56", 4, 50)


def test_a_run_stopped_while_fine_tuning_counts_both_stages_epochs_on_another_base(tmp_path) -> None:
    run_dir = tmp_path / "vgg16_fine_tuning" / "improved-efficientnet_lite0"
    run_dir.mkdir(parents=True)
    settings = {"experiment": 9, "recipe": "improved", "model": "efficientnet_lite0_transfer", "quick": True}
    _checkpoint(run_dir / "checkpoint.pt", 2, settings, device=None)
    _checkpoint(run_dir / "checkpoint_fine_tuning.pt", 3, settings)
    record_unfinished_runs(tmp_path)
    record = json.loads((run_dir / "unfinished.json").read_text())
    assert (record["model"], record["quick"], record["epochs_reached"], record["device"]) == (
        "efficientnet_lite0_transfer",
        True,
        5,
        "unknown",  # a checkpoint that did not record its device
    )
    history = History.from_dict(json.loads((run_dir / "history.json").read_text()))
    assert history.column("epoch") == [1, 2, 3, 4, 5]


def test_a_finished_run_is_not_unfinished_and_loses_a_stale_record(tmp_path) -> None:
    run_dir = _write_run(tmp_path / "lenet5" / "improved", _metrics(recipe="improved"), _history(2))
    _checkpoint(run_dir / "checkpoint.pt", 2)
    (run_dir / "unfinished.json").write_text("{}")
    assert record_unfinished_runs(tmp_path) == []
    assert not (run_dir / "unfinished.json").exists()
    assert History.from_dict(json.loads((run_dir / "history.json").read_text())) == _history(2)  # left as it was


# ----------------------------------------------------------------------------- the results table


def test_run_seconds_takes_the_longer_of_the_wall_time_and_the_epochs_total() -> None:
    assert run_seconds({"wall_seconds": 77.0, "epoch_seconds": 4.0}) == 77.0
    # resumed: the last call's wall time covers only the epochs after the checkpoint
    assert run_seconds({"wall_seconds": 30.0, "epoch_seconds": 500.0}) == 500.0
    assert run_seconds({"epoch_seconds": 12.5}) == 12.5 and run_seconds({"wall_seconds": None}) is None
    assert run_seconds({}) is None


@pytest.mark.parametrize(
    ("changes", "time", "memory"),
    [
        ({"wall_seconds": 119.4}, "119 s", "-"),
        ({"wall_seconds": 120.0, "peak_rss_mb": 2048.0}, "2.0 min", "2.0 GB"),
        ({"wall_seconds": 7199.0, "peak_rss_mb": 512.0, "peak_cuda_mb": 3072.0}, "120.0 min", "3.0 GB GPU"),
        ({"wall_seconds": 7200.0}, "2.0 h", "-"),
        ({}, "-", "-"),
    ],
)
def test_the_table_shows_time_and_memory_in_units_a_reader_compares(changes, time, memory) -> None:
    [row] = format_results([_metrics(**changes)], markdown=True).splitlines()[2:]
    assert row.split(" | ")[-2:] == [time, f"{memory} |"]


def test_the_table_rows_show_the_study_number_ours_the_recipe_and_the_processes() -> None:
    rows = [
        _metrics(test_accuracy=0.98766, quick=True, world_size=1),
        _metrics(recipe="improved", epochs=66, epochs_planned=100, world_size=4, device="cuda"),
    ]
    lines = format_results(rows, markdown=True).splitlines()
    assert lines[0] == (
        "| # | experiment | study reported | ours (test) | recipe | model | epochs | device | time | memory |"
    )
    assert lines[1] == "| " + " | ".join(["---"] * 10) + " |"
    assert lines[2] == "| 3 | lenet5 | 99.03% | 98.77% | seed (quick) | lenet5 | 2 | cpu | - | - |"
    assert lines[3] == "| 3 | lenet5 | 99.03% | 99.00% | improved | lenet5 | 66 of 100 | 4 x cuda | - | - |"
    plain = format_results(rows).splitlines()
    assert len(plain) == 4 and set(plain[1]) == {"-", " "}
    assert [len(line) for line in plain[:2]] == [len(plain[0])] * 2  # aligned under the header
    assert plain[2].split() == ["3", "lenet5", "99.03%", "98.77%", "seed", "(quick)", "lenet5", "2", "cpu"] + [
        "-",
        "-",
    ]


def test_load_history_reads_one_run_and_names_the_command_that_makes_a_missing_one(tmp_path) -> None:
    _write_run(tmp_path / "lenet5" / "improved", None, _history(4))
    assert load_history("lenet5", "improved", tmp_path) == _history(4)
    with pytest.raises(FileNotFoundError) as error:
        load_history("lenet5", "seed", tmp_path)
    assert str(error.value) == (
        f"No results for lenet5 (seed) in {tmp_path}; run: cnn-study run lenet5 --recipe seed --out {tmp_path}"
    )
    assert load_history("lenet5", "seed").column("epoch") == list(range(1, 11))  # the published run's
    with pytest.raises(FileNotFoundError) as error:  # a folder name of a seed, base and quick run: its options
        load_history("vgg16_fine_tuning", "improved-efficientnet_lite0-seed3-quick", tmp_path)
    assert str(error.value).endswith(
        "run: cnn-study run vgg16_fine_tuning --recipe improved --backbone efficientnet_lite0 --seed 3 --quick "
        f"--out {tmp_path}"
    )
    with pytest.raises(FileNotFoundError, match=r"run: cnn-study run resnet --recipe resnet56 --seed 2$"):
        load_history("resnet", "resnet56-seed2")  # published runs need no --out


def test_histories_and_held_out_curves_are_named_by_results_folder(tmp_path) -> None:
    _write_run(tmp_path / "lenet5" / "seed", _metrics(), _history(2))
    _write_run(tmp_path / "lenet5" / "improved", _metrics(recipe="improved", val_accuracy=None), _history(3, None))
    _write_run(tmp_path / "resnet" / "seed", _metrics(experiment=7, name="resnet"), _history(1))
    assert {name: len(history) for name, history in published_histories("lenet5", tmp_path).items()} == {
        "improved": 3,
        "seed": 2,
    }
    assert list(published_histories("lenet5", tmp_path)) == ["improved", "seed"]
    assert published_held_out("lenet5", tmp_path) == {"improved": "test", "seed": "validation"}
    assert published_histories("alexnet", tmp_path) == {} == published_held_out("alexnet", tmp_path)
    assert held_out_curve({}) == "test" and held_out_curve({"val_accuracy": 0.0}) == "validation"


def test_an_unfinished_runs_history_has_its_held_out_curve_too(tmp_path) -> None:
    run_dir = tmp_path / "lenet5" / "seed"  # the seed recipe holds out 20% for validation
    run_dir.mkdir(parents=True)
    settings = {"experiment": "lenet5", "recipe": "seed", "model": "lenet5", "quick": False}
    _checkpoint(run_dir / "checkpoint.pt", 2, dict(settings, recipe_settings=get_recipe("lenet5", "seed").settings()))
    record_unfinished_runs(tmp_path)
    histories, held_out = published_histories("lenet5", tmp_path), published_held_out("lenet5", tmp_path)
    assert list(histories) == list(held_out) == ["seed"] and held_out["seed"] == "validation"
    figure = visualize.training_curves(histories, held_out=held_out)  # the pairing its docstring gives
    assert "seed validation" in [text.get_text() for text in figure.axes[1].get_legend().get_texts()]


# ----------------------------------------------------------------------------- seeds


def test_runs_over_seeds_reads_seed_0_from_the_results_and_the_others_from_the_seeds_folder(
    tmp_path, monkeypatch
) -> None:
    main, seeds = tmp_path / "results", tmp_path / "seeds"
    _write_run(main / "lenet5" / "improved", _metrics(recipe="improved", test_accuracy=0.990), _history(1))
    _write_run(main / "lenet5" / "seed", _metrics(test_accuracy=0.5), _history(1))  # another recipe
    for seed, accuracy in ((2, 0.994), (1, 0.992)):
        metrics = _metrics(recipe="improved", seed=seed, test_accuracy=accuracy)
        _write_run(seeds / "lenet5" / f"improved-seed{seed}", metrics, _history(1))
    monkeypatch.setattr(results, "PUBLISHED_RESULTS", main)
    monkeypatch.setattr(results, "PUBLISHED_SEEDS", seeds)
    assert [metrics["seed"] for metrics, _ in runs_over_seeds("lenet5")] == [0, 1, 2]
    assert [metrics["seed"] for metrics, _ in runs_over_seeds("lenet5", "seed")] == [0]
    table = format_seed_spreads([("lenet5", "improved"), ("lenet5", "seed")]).splitlines()
    assert table[0].startswith("| # | experiment | recipe | seeds | mean test accuracy | standard deviation")
    assert table[2] == "| 3 | lenet5 | improved | 3 (0, 1, 2) | 99.20% | 0.20 | 99.00% to 99.40% | 99.03% |"
    assert table[3] == "| 3 | lenet5 | seed | 1 (0) | 50.00% | nan | 50.00% to 50.00% | 99.03% |"
    assert math.isnan(float(table[3].split(" | ")[5]))


# ----------------------------------------------------------------------------- cross-validation


def test_cross_validation_averages_each_candidate_over_its_folds_in_the_records_order() -> None:
    rows = [
        {"fold": 1, "settings": "b", "accuracy": 0.90, "mirror_averaged": 0.91, "before_fine_tuning": 0.80},
        {"fold": 1, "settings": "a", "accuracy": 0.70, "mirror_averaged": 0.71, "before_fine_tuning": 0.60},
        {"fold": 2, "settings": "b", "accuracy": 0.80, "mirror_averaged": 0.83, "before_fine_tuning": 0.70},
        {"fold": 2, "settings": "a", "accuracy": 0.60, "mirror_averaged": 0.61, "before_fine_tuning": 0.50},
        {"fold": 3, "settings": "b", "accuracy": 0.70, "mirror_averaged": 0.72, "before_fine_tuning": 0.60},
        {"fold": 3, "settings": "a", "accuracy": 0.50, "mirror_averaged": 0.51, "before_fine_tuning": 0.40},
    ]
    summary = summarise_cross_validation(rows)
    assert summary.folds == 3 and list(summary.means) == ["b", "a"]
    assert summary.means["b"] == pytest.approx({"accuracy": 0.80, "mirror_averaged": 0.82, "before_fine_tuning": 0.70})
    assert summary.means["a"] == pytest.approx({"accuracy": 0.60, "mirror_averaged": 0.61, "before_fine_tuning": 0.50})
    assert summary.head_only == pytest.approx(0.60)


# ----------------------------------------------------------------------------- exported weights


def _finished_run(folder: Path, model_name: str = "lenet5", **metrics_changes) -> nn.Module:
    """A results folder as `run` leaves a full run of ``model_name`` (a ten-class model of one-channel images):
    ``model.pt`` and ``metrics.json``."""
    model = create_model(model_name).eval()
    _write_run(folder, _metrics(model=model_name, **metrics_changes))
    meta = {
        "model": model_name,
        "num_classes": 10,
        "classes": [str(digit) for digit in range(10)],
        "mean": [0.1307],
        "std": [0.3081],
        "dataset": "mnist",
        "test_accuracy": 0.99,
    }
    save_trained_model(model, meta, folder / "model.pt")
    return model


def test_exported_weights_are_named_by_model_and_dataset_and_carry_their_hash(tmp_path) -> None:
    model = _finished_run(tmp_path / "run")
    path = results.export_weights(tmp_path / "run", "mnist", tmp_path / "weights")
    assert path == tmp_path / "weights" / "lenet5-mnist.pt"
    content = load_trained_model_file(path)
    assert content["meta"]["parts"] == "all" and content["meta"]["storage"] == "float32"
    assert content["meta"]["sha256"] == state_dict_sha256(model.state_dict())
    assert all(torch.equal(content["state_dict"][key], value) for key, value in model.state_dict().items())
    half = load_trained_model_file(results.export_weights(tmp_path / "run", "mnist.half", tmp_path, float16=True))
    floating = [value for value in half["state_dict"].values() if value.is_floating_point()]
    assert half["meta"]["storage"] == "float16" and floating and all(v.dtype == torch.float16 for v in floating)
    assert half["meta"]["sha256"] == state_dict_sha256(half["state_dict"])


@pytest.mark.parametrize("name", ["", "../mnist", "mnist/x", "-mnist", ".mnist", "mn ist"])
def test_export_refuses_a_weights_name_that_is_not_a_plain_name(tmp_path, name) -> None:
    with pytest.raises(ValueError, match="is not a plain name"):
        results.export_weights(tmp_path, name, tmp_path)


def test_export_refuses_a_quick_run_and_a_head_of_a_model_without_a_base(tmp_path) -> None:
    _finished_run(tmp_path / "quick", quick=True)
    with pytest.raises(ValueError, match=r"is a --quick run; export weights from a full run\.$"):
        results.export_weights(tmp_path / "quick", "mnist", tmp_path)
    _finished_run(tmp_path / "full")
    with pytest.raises(ValueError, match="trained lenet5 from scratch: it has no pretrained base to leave out"):
        results.export_weights(tmp_path / "full", "mnist", tmp_path, head_only=True)
    assert not list(tmp_path.glob("*.pt"))


# ----------------------------------------------------------------------------- the published runs


def test_published_results_are_real_full_runs() -> None:
    published = published_runs()
    assert published, "docs/results holds the full runs behind the documentation"
    for metrics, history in published:
        assert metrics["quick"] is False
        recipe = get_recipe(metrics["name"], metrics["recipe"])
        if recipe.is_transfer:  # titled, recorded and foldered by the base that ran
            recipe = recipe.on_backbone(base_of(metrics["model"]))
        assert (metrics["model"], metrics["title"]) == (recipe.model, recipe.title), metrics["name"]
        folder = results_folder(replace(recipe, seed=metrics["seed"]), PUBLISHED_RESULTS)
        assert json.loads((folder / "metrics.json").read_text()) == metrics, folder
        if metrics["test_accuracy"] is None:  # unfinished: fewer epochs than planned, and said so
            assert metrics["epochs"] < metrics["epochs_planned"] == recipe.total_epochs, metrics["name"]
        else:
            assert metrics["epochs"] == recipe.total_epochs, metrics["name"]
            # a recipe changed after its run must be run again (settings added since are absent from older files)
            recorded = dict(metrics["recipe_settings"])
            if "seed_reported" in recorded:  # older files copied the study's numbers: still the table's
                copied = recorded.pop("seed_reported")
                assert re.findall(r"[\d.]+%", copied) == re.findall(r"[\d.]+%", recipe.study_reported)
            recorded = _full_run_part(recorded)
            assert _recorded_part(_full_run_part(recipe.settings()), recorded) == recorded
        assert len(history) == metrics["epochs"]
    table = format_results([metrics for metrics, _ in published], markdown=True).splitlines()
    assert table[0].startswith("| # | experiment") and len(table) == len(published) + 2
    unfinished = [line for line in table if "unfinished" in line]
    assert all(" of " in line for line in unfinished)


def test_the_published_budget_runs_are_experiment_10_by_sgd_with_only_its_network_and_length_changed() -> None:
    budgets = published_runs("fast_cifar", PUBLISHED_RESULTS / "budgets")  # tutorial 10's width-against-epochs table
    runs = {(metrics["parameters"], metrics["epochs"]) for metrics, _ in budgets}
    assert runs == {(498_104, 18), (1_113_336, 11), (1_972_792, 7)}
    current = _full_run_part(get_recipe("fast_cifar").settings())
    for metrics, history in budgets:
        recorded = _full_run_part(metrics["recipe_settings"])
        kwargs = recorded.pop("model_kwargs")
        assert metrics["parameters"] == sum(p.numel() for p in create_model("fast_cifar", **kwargs).parameters())
        for key in ("recipe", "seed"):  # the run's label and seed
            recorded.pop(key, None)
        assert [stage.pop("epochs") for stage in recorded["stages"]] == [metrics["epochs"]] == [len(history)]
        assert [stage.pop("optimizer") for stage in recorded["stages"]] == ["sgd"]  # the recipe's filters: Muon
        assert _recorded_part(current, recorded) == recorded, metrics["recipe"]
        assert metrics["test_size"] == 10_000 and metrics["train_size"] == 50_000 and not metrics["quick"]


def _full_run_part(settings: dict) -> dict:
    """Recipe settings without the quick-mode budget (``quick_*``), which a full run does not read."""
    return {key: value for key, value in settings.items() if not key.startswith("quick_")}


def _recorded_part(current: object, recorded: object) -> object:
    """``current`` cut down to the keys that ``recorded`` has, at every level (item by item in lists)."""
    if isinstance(current, dict) and isinstance(recorded, dict):
        return {key: _recorded_part(current.get(key), value) for key, value in recorded.items()}
    if isinstance(current, list) and isinstance(recorded, list) and len(current) == len(recorded):
        return [_recorded_part(now, then) for now, then in zip(current, recorded, strict=True)]
    return current


def _small_scale_studies():
    """``scripts/small_scale_studies.py`` as a module (scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "small_scale_studies.py"
    spec = importlib.util.spec_from_file_location("small_scale_studies", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_scale_studies_are_the_scripts_runs_and_show_what_the_tutorials_say() -> None:
    studies = _small_scale_studies()
    folder = PUBLISHED_RESULTS / "small_scale"
    for study, (variants, train_per_class, test_per_class, epochs) in studies.STUDIES.items():
        published = {m["recipe"]: m for m in load_results(folder) if m["name"] == study}
        assert set(published) == set(variants()), study
        for name, recipe in variants().items():
            metrics = published[name]
            assert (metrics["train_size"], metrics["test_size"]) == (10 * train_per_class, 10 * test_per_class)
            assert metrics["epochs"] == epochs and metrics["quick"] is False
            expected = _full_run_part(replace(recipe, recipe=name).with_epochs(epochs).settings())
            recorded = _full_run_part(metrics["recipe_settings"])
            assert _recorded_part(expected, recorded) == recorded, name
    # tutorial 7: the deeper plain network trains worse; shortcuts let the deep network train far better
    resnet = {m["recipe"]: m["train_accuracy"] for m in load_results(folder) if m["name"] == "resnet"}
    assert resnet["plain56"] < resnet["plain20"] - 0.1 and resnet["resnet56"] > resnet["plain56"] + 0.1
    # tutorial 4: with batch normalisation the seed recipe memorises: a wide gap, and a test loss that turns upwards
    memorising = published_histories("alexnet", folder)["batch-norm"].epochs[-1]
    test_loss = published_histories("alexnet", folder)["batch-norm"].column("val_loss")
    assert memorising.train_accuracy - memorising.val_accuracy > 0.3 and test_loss[-1] > 1.2 * min(test_loss)


@pytest.mark.parametrize(("experiment", "recipe"), SEED_SPREADS)
def test_a_recipe_published_over_seeds_has_full_runs_of_distinct_seeds_that_its_table_reads(experiment, recipe) -> None:
    runs = [metrics for metrics, _ in runs_over_seeds(experiment, recipe)]
    seeds = [metrics["seed"] for metrics in runs]
    assert seeds == sorted(set(seeds)) and seeds[0] == 0 and len(seeds) >= 3, seeds
    expected = get_recipe(experiment, recipe)
    for metrics in runs:  # every seed ran the same recipe to the end
        assert metrics["quick"] is False and metrics["epochs"] == expected.total_epochs
        recorded = _full_run_part(metrics["recipe_settings"])
        recorded.pop("seed_reported", None)  # older files' copy of the study's number, now STUDY_REPORTED
        assert _recorded_part(_full_run_part(replace(expected, seed=metrics["seed"]).settings()), recorded) == recorded
    # runs made before metrics recorded a precision trained in float32
    assert len({metrics.get("precision") or "float32" for metrics in runs}) == 1
    row = next(line for line in format_seed_spreads([(experiment, recipe)]).splitlines() if f"| {experiment} |" in line)
    mean = sum(metrics["test_accuracy"] for metrics in runs) / len(runs)
    assert f"| {mean:.2%} |" in row and f"| {len(runs)} (" in row


# ----------------------------------------------------------------------------- the edges the mutation run found


def test_a_run_with_both_metrics_and_an_unfinished_record_counts_once_as_finished(tmp_path) -> None:
    run_dir = _write_run(tmp_path / "lenet5" / "seed", _metrics(), _history(2))
    (run_dir / "unfinished.json").write_text(json.dumps({"experiment": "lenet5"}))  # stale, even damaged
    rows, skipped = scan_results(tmp_path)
    assert [row["test_accuracy"] for row in rows] == [0.99] and skipped == []


def test_a_damaged_unfinished_record_is_named_as_one(tmp_path) -> None:
    run_dir = _write_run(tmp_path / "lenet5" / "improved", None, _history(1))
    (run_dir / "unfinished.json").write_text(json.dumps({"experiment": "lenet5", "recipe": "seed"}))
    _, [reason] = scan_results(tmp_path)
    assert reason == (
        f"{run_dir} ({run_dir / 'unfinished.json'} is not a complete record of an unfinished run: it lacks model, "
        "quick, epochs_reached, epochs_planned, device.)"
    )


def test_unfinished_runs_are_recorded_after_finished_ones_and_keep_their_recipe(tmp_path) -> None:
    finished = _write_run(tmp_path / "lenet5" / "a-finished", _metrics(recipe="improved"), _history(2))
    _checkpoint(finished / "checkpoint.pt", 2)  # finished, with no unfinished.json to remove
    stopped = tmp_path / "lenet5" / "b-stopped"
    stopped.mkdir(parents=True)
    settings = {"experiment": "lenet5", "recipe": "seed", "model": "lenet5", "quick": False}
    _checkpoint(stopped / "checkpoint.pt", 4, settings)
    assert record_unfinished_runs(tmp_path) == [stopped]
    record = json.loads((stopped / "unfinished.json").read_text())
    assert (record["recipe"], record["epochs_planned"]) == ("seed", 10)  # the seed recipe's 10 epochs, not 20
    assert [
        (row["recipe"], row["epochs_planned"]) for row in load_results(tmp_path) if row["test_accuracy"] is None
    ] == [("seed", 10)]


def test_the_device_cell_counts_processes_only_when_there_were_several() -> None:
    cells = [
        line.split(" | ")[7]
        for line in format_results(
            [_metrics(), _metrics(world_size=2, device="cuda"), _metrics(world_size=1, device="mps")], markdown=True
        ).splitlines()[2:]
    ]
    assert cells == ["cpu", "2 x cuda", "mps"]


def test_the_plain_table_aligns_every_cell_under_its_header() -> None:
    rows = [_metrics(test_accuracy=0.98766, quick=True), _metrics(test_accuracy=None, epochs_planned=20)]
    header, rule, *lines = format_results(rows).splitlines()
    starts = [match.start() for match in re.finditer(r"(?<!\S)\S", rule)]
    assert len(starts) == 10 and header.startswith("#  experiment")
    for line in (header, *lines):
        assert all(line[start] != " " and (start == 0 or line[start - 1] == " ") for start in starts), line
    assert lines[1].split()[3:5] == ["unfinished", "seed"] and "| unfinished |" in format_results(rows, markdown=True)
    assert not any(line.endswith(" ") for line in (header, rule, *lines))  # padded between cells, not after


@pytest.mark.parametrize(
    ("changes", "cell"),
    [
        ({"wall_seconds": 8101.0}, "2.3 h"),  # 2.2503 h: rounds up
        ({"peak_rss_mb": 1281.0}, "1.3 GB"),  # 1.2510 GB
        ({"peak_cuda_mb": 3124.0}, "3.1 GB GPU"),  # 3.0508 GB
    ],
)
def test_hours_and_gigabytes_are_counted_in_3600_seconds_and_1024_megabytes(changes, cell) -> None:
    assert f"| {cell} |" in format_results([_metrics(**changes)], markdown=True)


def test_runs_go_to_runs_unless_told() -> None:
    assert results_folder(get_recipe("lenet5")) == Path("runs") / "lenet5" / "improved"
    assert results_folder(get_recipe("lenet5"), quick=True) == Path("runs") / "lenet5" / "improved-quick"


def test_load_history_reads_the_improved_run_unless_told(tmp_path) -> None:
    assert len(load_history("lenet5")) == get_recipe("lenet5", "improved").total_epochs


def test_the_seed_table_has_its_header_rule_and_a_spread_from_two_seeds(tmp_path, monkeypatch) -> None:
    main, seeds = tmp_path / "results", tmp_path / "seeds"
    _write_run(main / "lenet5" / "improved", _metrics(recipe="improved", test_accuracy=0.990), _history(1))
    _write_run(
        seeds / "lenet5" / "improved-seed1", _metrics(recipe="improved", seed=1, test_accuracy=0.992), _history(1)
    )
    monkeypatch.setattr(results, "PUBLISHED_RESULTS", main)
    monkeypatch.setattr(results, "PUBLISHED_SEEDS", seeds)
    table = format_seed_spreads([("lenet5", "improved")]).splitlines()
    assert table[1] == "|---|---|---|---|---:|---:|---|---|"
    assert table[2] == "| 3 | lenet5 | improved | 2 (0, 1) | 99.10% | 0.14 | 99.00% to 99.20% | 99.03% |"


def test_held_out_curves_refuse_an_incomplete_metrics_file_by_name(tmp_path) -> None:
    path = _write_run(tmp_path / "lenet5" / "seed", {"experiment": 3, "name": "lenet5"}, _history(1)) / "metrics.json"
    with pytest.raises(ValueError) as error:
        published_held_out("lenet5", tmp_path)
    assert str(error.value) == (
        f"{path} is not a complete metrics file: it lacks recipe, quick, model, test_accuracy, epochs, device."
    )


def test_export_names_a_bad_weights_name_and_an_incomplete_run_and_takes_capitals(tmp_path) -> None:
    with pytest.raises(ValueError) as error:
        results.export_weights(tmp_path, "../mnist", tmp_path)
    assert str(error.value) == (
        "The weights name '../mnist' is not a plain name: use letters, digits, '_' and '.' (usually the dataset, "
        "e.g. mnist)."
    )
    _finished_run(tmp_path / "run")
    assert results.export_weights(tmp_path / "run", "MNIST_v2.1", tmp_path).name == "lenet5-MNIST_v2.1.pt"
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"experiment": 3}))
    with pytest.raises(ValueError) as error:
        results.export_weights(tmp_path / "run", "mnist", tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'run' / 'metrics.json'} is not a complete metrics file: it lacks name, recipe, quick, model, "
        "test_accuracy, epochs, device."
    )
    (tmp_path / "run" / "metrics.json").unlink()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")  # stopped before its end
    with pytest.raises(FileNotFoundError, match=r"run holds an unfinished run \(a checkpoint, no metrics.json\)"):
        results.export_weights(tmp_path / "run", "mnist", tmp_path)
    (tmp_path / "run" / "model.pt").write_bytes(b"")
    with pytest.raises(ValueError) as error:  # the model file that evaluate takes, given instead of its folder
        results.export_weights(tmp_path / "run" / "model.pt", "mnist", tmp_path)
    assert (
        str(error.value)
        == f"{tmp_path / 'run' / 'model.pt'} is a file, not a results folder: pass its folder, {tmp_path / 'run'}."
    )


def test_float16_export_halves_floating_tensors_only(tmp_path) -> None:
    _finished_run(tmp_path / "run", "fashion_cnn")  # batch norm: an integer count of batches among its buffers
    half = load_trained_model_file(results.export_weights(tmp_path / "run", "x", tmp_path, float16=True))
    dtypes = {value.dtype for value in half["state_dict"].values()}
    assert dtypes == {torch.float16, torch.int64}
