"""The cnn-study command as a user runs it: output, exit codes, messages."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys

import pytest
import torch

from cnn_study.cli import main
from cnn_study.datasets import DATASETS
from cnn_study.models import create_model, load_trained_model, save_trained_model
from cnn_study.recipes import get_recipe
from cnn_study.results import PUBLISHED_RESULTS, PUBLISHED_SEEDS, load_results

#: A published run's metrics, which the reproduce tests copy and vary.
LENET5_METRICS = PUBLISHED_RESULTS / "lenet5" / "improved" / "metrics.json"


def test_list_prints_models_and_experiments(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "3x32x32" in out and "9  vgg16_fine_tuning" in out
    assert "seed: the study does not state lr, augment, schedule (assumed)" in out  # LeNet-5: the others it gives


def test_summary_prints_the_torchinfo_table(capsys) -> None:
    assert main(["summary", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 269,722" in out and "[1, 64, 8, 8]" in out


def test_list_with_a_pattern_that_matches_nothing_says_so(capsys) -> None:
    assert main(["list", "zzz*"]) == 1
    captured = capsys.readouterr()
    assert "No model name matches 'zzz*'" in captured.err and captured.out == ""


def test_summary_refuses_pretrained_for_a_model_without_a_base_and_a_depth_below_one(capsys) -> None:
    assert main(["summary", "lenet5", "--pretrained"]) == 1
    assert "lenet5 has none" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", "lenet5", "--depth", "-1"])
    assert exit_info.value.code == 2 and "expected a positive whole number" in capsys.readouterr().err


def test_unknown_model_exits_1_with_a_suggestion(capsys) -> None:
    assert main(["summary", "resnet21"]) == 1
    assert "Did you mean" in (err := capsys.readouterr().err) and "'resnet20'" in err


def test_missing_data_exits_1_and_says_what_to_do(tmp_path, capsys) -> None:
    assert main(["run", "lenet5", "--quick", "--data", str(tmp_path), "--out", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "CNN_STUDY_DATA" in err and "--download" in err and "download=True" not in err


def test_bad_usage_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "lenet5", "--recipe", "fancy"])
    assert exit_info.value.code == 2


def test_run_then_results_then_evaluate(data_dir, tmp_path, capsys) -> None:
    out = tmp_path / "runs"
    assert (
        main(["run", "lenet5", "--quick", "--quiet", "--device", "cpu", "--out", str(out), "--data", str(data_dir)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "(the study: 99.03%)" in printed
    (out / "lenet5" / "improved-quick" / "metrics.json").unlink()  # as if stopped after its last epoch's checkpoint
    assert (
        main(
            [
                "run",
                "lenet5",
                "--quick",
                "--quiet",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--data",
                str(data_dir),
                "--resume",
            ]
        )
        == 0
    )
    resumed = capsys.readouterr().out  # a run stopped after its last epoch finishes and says what its time covers
    epochs = get_recipe("lenet5").quick_epochs
    assert re.search(rf"{epochs} epochs in \d+ s of epochs in all, \d+ s in this resumed call", resumed)
    assert main(["results", "--dir", str(out)]) == 0
    table = capsys.readouterr().out
    assert "lenet5" in table and "improved (quick)" in table
    model_file = out / "lenet5" / "improved-quick" / "model.pt"  # quick runs never write where full runs live
    assert main(["evaluate", str(model_file), "--data", str(data_dir)]) == 0
    assert "(lenet5): MNIST test accuracy" in capsys.readouterr().out
    assert main(["export-weights", str(model_file.parent), "--name", "mnist", "--out", str(tmp_path)]) == 1
    assert "is a --quick run" in capsys.readouterr().err


def test_a_run_with_another_seed_writes_a_folder_of_its_own_and_records_the_seed(data_dir, tmp_path, capsys) -> None:
    out = tmp_path / "runs"
    common = ["run", "lenet5", "--quick", "--quiet", "--device", "cpu", "--out", str(out), "--data", str(data_dir)]
    assert main([*common, "--seed", "3"]) == 0 and main(common) == 0
    folder = out / "lenet5" / "improved-seed3-quick"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["seed"] == metrics["recipe_settings"]["seed"] == 3
    assert json.loads((out / "lenet5" / "improved-quick" / "metrics.json").read_text())["seed"] == 0
    _, meta = load_trained_model(folder / "model.pt")
    assert meta["recipe"].startswith("cnn-study run lenet5 --recipe improved --seed 3 (")
    seeded = torch.load(folder / "model.pt", weights_only=True)["state_dict"]
    unseeded = torch.load(out / "lenet5" / "improved-quick" / "model.pt", weights_only=True)["state_dict"]
    assert not torch.equal(seeded["features.0.weight"], unseeded["features.0.weight"])  # another initialisation


def test_results_without_runs_exits_1(tmp_path, capsys) -> None:
    assert main(["results", "--dir", str(tmp_path)]) == 1
    assert "No metrics.json" in capsys.readouterr().err
    assert main(["results", "--dir", str(tmp_path / "nowhere")]) == 1
    assert f"{tmp_path / 'nowhere'} is not a folder; --dir takes the results folder" in capsys.readouterr().err
    run_folder = tmp_path / "lenet5" / "improved"
    run_folder.mkdir(parents=True)
    (run_folder / "metrics.json").write_text("{}")
    assert main(["results", "--dir", str(run_folder)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"cnn-study: error: {run_folder} is one run's folder; --dir takes the results folder above its "
        f"experiment's folder: {tmp_path}."
    )
    assert main(["results", "--dir", str(run_folder.parent)]) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"{run_folder.parent} is one experiment's folder; --dir takes the results folder above it: {tmp_path}."
        )
    )
    unfinished = tmp_path / "runs" / "mnist_cnn" / "seed"
    unfinished.mkdir(parents=True)
    (unfinished / "checkpoint.pt").write_bytes(b"")
    assert main(["results", "--dir", str(tmp_path / "runs")]) == 1
    assert f"and 1 unfinished one(s) ({unfinished}): continue one with" in capsys.readouterr().err
    project = tmp_path / "project"  # the folder above the results folder
    (project / "runs" / "lenet5" / "improved").mkdir(parents=True)
    (project / "runs" / "lenet5" / "improved" / "metrics.json").write_text("{}")
    assert main(["results", "--dir", str(project)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"cnn-study: error: No run directly under {project}: the results folder is one level down, "
        f"--dir {project / 'runs'}."
    )


def test_results_says_that_the_table_without_dir_is_the_published_one(capsys) -> None:
    assert main(["results"]) == 0
    out, err = capsys.readouterr()
    assert "The published runs, shipped with cnn-study" in err and "lenet5" in out


def test_console_script_and_module_entry_point() -> None:
    completed = subprocess.run([sys.executable, "-m", "cnn_study", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0 and "summary" in completed.stdout


@pytest.mark.usefixtures("offline_extra")
def test_evaluate_scores_as_the_run_did_and_in_bfloat16_only_when_asked(
    data_dir, tmp_path, capsys, monkeypatch
) -> None:
    entered = []

    @contextlib.contextmanager
    def recording_precision(device):
        entered.append(device.type)
        yield

    monkeypatch.setattr("cnn_study.cli.extraction_precision", recording_precision)
    photos = DATASETS["dogs_vs_cats"]  # 20 of the validation photos, to keep the test fast
    monkeypatch.setitem(DATASETS, "dogs_vs_cats", lambda *args, **kwargs: (None, photos(*args, **kwargs)[1].sample(10)))
    model = create_model("efficientnet_lite0_transfer", pooling="avg").eval()
    meta = {
        "model": "efficientnet_lite0_transfer",
        "model_kwargs": {"pooling": "avg"},
        "num_classes": 1,
        "classes": ["cat", "dog"],
        "mean": list(model.mean),
        "std": list(model.std),
        "dataset": "dogs_vs_cats",
        "test_mirror": True,
    }
    model_file = save_trained_model(model, meta, tmp_path / "model.pt")
    assert main(["evaluate", str(model_file), "--data", str(data_dir), "--device", "cpu"]) == 0
    assert entered == [] and "(20 images, each averaged with its mirror image)" in capsys.readouterr().out
    assert main(["evaluate", str(model_file), "--data", str(data_dir), "--device", "cpu", "--bfloat16"]) == 0
    assert entered == ["cpu"]  # the base ran in the precision feature extraction uses


def test_reproduce_prints_a_valid_run_command_for_every_published_run(capsys) -> None:
    from cnn_study.cli import build_parser

    assert main(["reproduce", "--print"]) == 0
    lines = capsys.readouterr().out.splitlines()
    finished = [m for m in load_results(PUBLISHED_RESULTS) if m["test_accuracy"] is not None]
    assert len(lines) == len(finished) and all(line.startswith("cnn-study run ") for line in lines)
    for line in lines:  # each parses as cnn-study run parses it
        assert build_parser().parse_args(line.split()[1:]).handler.__name__ == "command_run"
    assert (
        "cnn-study run mnist_cnn --recipe improved --precision float32 --no-compile --out runs" in lines
    )  # a CPU run made before bfloat16
    assert "cnn-study run resnet --recipe seed --precision bfloat16 --no-compile --out runs" in lines  # the H100
    assert main(["reproduce", "lenet5", "--seeds", "--print"]) == 0
    lines = capsys.readouterr().out.splitlines()
    seeds = [m for m in load_results(PUBLISHED_SEEDS) if m["name"] == "lenet5"]
    assert len(lines) == 2 + len(seeds) and all(" lenet5 " in line for line in lines)
    assert main(["reproduce", "11", "--print"]) == 1
    assert "Unknown experiment '11'" in capsys.readouterr().err


def test_reproduce_skips_a_finished_run_resumes_one_cut_short_and_starts_the_others(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("cnn_study.cli.command_run", lambda args: calls.append((args.recipe, args.resume, args.device)))
    out = tmp_path / "runs"
    (out / "lenet5" / "improved").mkdir(parents=True)
    published = LENET5_METRICS.read_text()
    (out / "lenet5" / "improved" / "metrics.json").write_text(published)  # finished, as published
    (out / "lenet5" / "seed").mkdir()
    (out / "lenet5" / "seed" / "checkpoint.pt").write_bytes(b"")  # cut short
    assert main(["reproduce", "3", "--seeds", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"{out / 'lenet5' / 'improved'} holds this run, finished: skipped" in printed
    assert (
        "cnn-study run lenet5 --recipe seed --precision float32 --no-compile --out" in printed and "--resume" in printed
    )
    assert calls[0] == ("improved", False, "cpu") and calls[-1] == ("seed", True, "cpu")  # the seeds, then seed
    assert [recipe for recipe, _, _ in calls].count("improved") == len(calls) - 1


def test_reproduce_refuses_another_run_in_its_place_and_the_published_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("cnn_study.cli.command_run", lambda args: None)
    finished = tmp_path / "runs" / "lenet5" / "improved" / "metrics.json"
    finished.parent.mkdir(parents=True)
    metrics = json.loads(LENET5_METRICS.read_text())
    finished.write_text(json.dumps({**metrics, "precision": "bfloat16"}))  # the user's own run, in bfloat16
    assert main(["reproduce", "3", "--out", str(tmp_path / "runs")]) == 1
    assert "holds another run of this recipe (precision bfloat16 instead of float32)" in capsys.readouterr().err
    finished.write_text("{ damaged")
    assert main(["reproduce", "3", "--out", str(tmp_path / "runs")]) == 1
    assert str(finished) in capsys.readouterr().err
    assert main(["reproduce", "--out", str(PUBLISHED_SEEDS)]) == 1
    assert "is the published results folder" in capsys.readouterr().err


def test_an_interrupted_reproduce_says_what_is_kept_and_how_to_carry_on(tmp_path, monkeypatch, capsys) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("cnn_study.cli.command_run", interrupted)
    assert main(["reproduce", "3", "--out", str(tmp_path)]) == 130
    error = capsys.readouterr().err
    assert "The runs it finished are kept" in error and f"cnn-study reproduce 3 --out {tmp_path}" in error


def test_reproduce_names_a_run_of_no_registered_recipe_apart_from_the_commands(monkeypatch, capsys) -> None:
    improved = json.loads(LENET5_METRICS.read_text())
    script_made = {**improved, "recipe": "plain56"}  # a variant a script ran, as results records it
    monkeypatch.setattr("cnn_study.cli.load_results", lambda folder: [improved, script_made])
    assert main(["reproduce", "--print"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["cnn-study run lenet5 --recipe improved --precision float32 --no-compile --out runs"]
    assert "lenet5 'plain56' is no recipe of cnn-study run: not repeated." in err


def test_reproduce_leaves_a_run_of_several_processes_to_a_torchrun_launch_as_it_ran(monkeypatch, capsys) -> None:
    improved = json.loads(LENET5_METRICS.read_text())
    monkeypatch.setattr("cnn_study.cli.load_results", lambda folder: [{**improved, "world_size": 2}])
    monkeypatch.setattr("cnn_study.cli.command_run", lambda args: pytest.fail("trained in one process"))
    torchrun = "torchrun --nproc-per-node 2 -m cnn_study run lenet5 --recipe improved --precision float32"
    assert main(["reproduce", "--print"]) == 0
    assert capsys.readouterr().out.startswith(torchrun)
    assert main(["reproduce"]) == 0
    assert f"trained by 2 processes: left for {torchrun}" in capsys.readouterr().out
