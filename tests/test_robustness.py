"""A learner's work is never lost, real-world folders load, and every expected failure is one clear line.

Each test is one case of issue 17: results folders that are never replaced silently, locked and
resumed only with their own settings; data folders as Jupyter and macOS leave them; arguments and
files that are wrong in the ordinary ways.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnn_study.files as io
import cnn_study.models
from cnn_study import experiments, explain, visualize
from cnn_study.cli import main
from cnn_study.datasets import (
    CACHE_ENV,
    BatchLoader,
    CorruptDataError,
    ImageData,
    TrainTest,
    cifar10,
    dogs_vs_cats,
    download_dogs_vs_cats,
    load_image_folder,
    mnist,
    read_idx,
)
from cnn_study.experiments import run
from cnn_study.models import create_model
from cnn_study.recipes import get_recipe
from cnn_study.results import results_folder, scan_results
from cnn_study.training import TensorBatches, evaluate, load_checkpoint_meta, training_precision

from .conftest import idx_bytes

RECIPE = get_recipe("mnist_cnn", "seed")  # Adam at a constant rate: any number of steps will do


def tiny_data(count: int = 60) -> TrainTest:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 1, 28, 28), dtype=torch.uint8, generator=generator)
    data = ImageData(images, torch.arange(count) % 10, tuple("0123456789"), (0.13,), (0.31,), "tiny")
    return TrainTest(data, data.subset(torch.arange(20)))


def tiny_run(out: Path, **overrides):
    settings = dict(out=out, data=tiny_data(), device="cpu", epochs=1, batch_size=16, quiet=True) | overrides
    return run(RECIPE, **settings)


def cli_run(data: Path, out: Path, *extra: str) -> int:
    settings = ["--epochs", "1", "--batch-size", "16", "--device", "cpu", "--quiet"]
    return main(["run", "mnist_cnn", "--recipe", "seed", *settings, "--data", str(data), "--out", str(out), *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnn-study: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- results are never lost


def test_a_quick_run_never_writes_where_the_full_run_lives(tmp_path) -> None:
    full = tiny_run(tmp_path)
    before = {path.name: path.read_bytes() for path in full.out_dir.iterdir() if path.suffix == ".json"}
    quick = tiny_run(tmp_path, quick=True)
    assert (full.out_dir.name, quick.out_dir.name) == ("seed", "seed-quick")
    assert {name: (full.out_dir / name).read_bytes() for name in before} == before
    assert json.loads((quick.out_dir / "metrics.json").read_text())["quick"] is True


def test_a_folder_that_holds_a_run_is_refused_unless_resumed_or_overwritten(tmp_path) -> None:
    first = tiny_run(tmp_path)
    metrics = (first.out_dir / "metrics.json").read_bytes()
    with pytest.raises(FileExistsError, match=r"already holds a finished run\. Add overwrite=True to replace it"):
        tiny_run(tmp_path)
    with pytest.raises(FileExistsError, match="already holds a finished run: there is nothing to resume"):
        tiny_run(tmp_path, resume=True)  # which would write the metrics of a call that trained nothing
    assert (first.out_dir / "metrics.json").read_bytes() == metrics
    (first.out_dir / "metrics.json").unlink()  # as if stopped after its checkpoint
    with pytest.raises(FileExistsError, match="an unfinished run"):
        tiny_run(tmp_path)
    again = tiny_run(tmp_path, overwrite=True)
    assert json.loads((again.out_dir / "metrics.json").read_text())["epochs"] == 1
    with pytest.raises(ValueError, match="choose one"):
        tiny_run(tmp_path, resume=True, overwrite=True)


def _run_files(folder: Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file() and path.name != ".lock"
    }


def _interrupted_in_its_first_epoch(*args, **kwargs):
    raise KeyboardInterrupt


def _failing(error: Exception):
    def fail(*args, **kwargs):
        raise error

    return fail


@pytest.mark.parametrize(
    "failure",
    ["missing data", "corrupt data", "Ctrl-C in the first epoch", "a bug in the first epoch", "unknown device"],
)
def test_overwrite_gives_the_old_run_back_when_the_new_one_fails_before_its_first_checkpoint(
    failure, tiny_mnist, tmp_path, monkeypatch
) -> None:
    old = tiny_run(tmp_path)
    kept = _run_files(old.out_dir)
    settings = {"data": None, "data_root": tiny_mnist, "overwrite": True}
    if failure == "missing data":
        settings["data_root"] = tmp_path / "no-data-here"
    elif failure == "corrupt data":
        (tiny_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
    elif failure == "unknown device":
        settings["device"] = "gpu"
    else:
        error = KeyboardInterrupt() if failure.startswith("Ctrl-C") else ZeroDivisionError("a bug")
        monkeypatch.setattr("cnn_study.experiments.fit_stage", _failing(error))
    with pytest.raises((OSError, ValueError, KeyboardInterrupt, ZeroDivisionError)):
        tiny_run(tmp_path, **settings)
    assert _run_files(old.out_dir) == kept  # every file of the finished run, as it was
    assert sorted(path.name for path in old.out_dir.iterdir()) == sorted(kept)  # nothing set aside is left


def test_overwrite_replaces_the_old_run_wholly_once_the_new_one_has_a_checkpoint(tmp_path, monkeypatch) -> None:
    old = tiny_run(tmp_path)
    (old.out_dir / "checkpoint_fine_tuning.pt").write_bytes(b"the old run's second stage")
    real_fit_stage = experiments.fit_stage

    def crash_after_the_first_epoch(*args, **kwargs):
        real_fit_stage(*args, **kwargs)  # writes the new run's checkpoint
        raise KeyboardInterrupt

    monkeypatch.setattr("cnn_study.experiments.fit_stage", crash_after_the_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(tmp_path, overwrite=True, epochs=2)
    assert sorted(path.name for path in old.out_dir.iterdir()) == ["checkpoint.pt"]  # nothing of the old run
    assert (
        load_checkpoint_meta(old.out_dir / "checkpoint.pt")["settings"]["recipe_settings"]["stages"][0]["epochs"] == 2
    )


def test_a_run_killed_while_replacing_another_gives_it_back_on_the_next_call(tmp_path) -> None:
    old = tiny_run(tmp_path)
    kept = _run_files(old.out_dir)
    aside = old.out_dir / experiments.REPLACED  # as --overwrite left it, before a kill -9 in the first epoch
    aside.mkdir()
    for name in kept:
        (old.out_dir / name).replace(aside / name)
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        tiny_run(tmp_path)
    assert _run_files(old.out_dir) == kept and not aside.exists()


def test_a_full_disk_at_any_write_of_a_run_loses_nothing_and_says_so_in_one_line(
    tiny_mnist, tmp_path, monkeypatch, capsys
) -> None:
    assert cli_run(tiny_mnist, tmp_path) == 0
    folder = tmp_path / "mnist_cnn" / "seed"
    finished = _run_files(folder)
    real_fsync, writes = os.fsync, []

    def counting(descriptor):
        writes.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", counting)  # every file the package writes is synced before it is renamed
    assert cli_run(tiny_mnist, tmp_path, "--overwrite") == 0
    assert len(writes) == 7  # the lock, the checkpoint, model.pt, history.json, two figures, metrics.json
    for failing in range(len(writes)):
        for path in folder.iterdir():
            path.unlink()
        for name, content in finished.items():
            (folder / name).write_bytes(content)
        writes.clear()

        def full_disk(descriptor, failing=failing):
            writes.append(descriptor)
            if len(writes) == failing + 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(descriptor)

        monkeypatch.setattr(os, "fsync", full_disk)
        capsys.readouterr()
        assert cli_run(tiny_mnist, tmp_path, "--overwrite") == 1, failing
        assert str(folder) in one_line_error(capsys)
        monkeypatch.setattr(os, "fsync", real_fsync)
        left = _run_files(folder)
        if left != finished:  # the new run got as far as its checkpoint, which replaced the old run: resume it
            assert "checkpoint.pt" in left and "metrics.json" not in left, (failing, sorted(left))
            assert cli_run(tiny_mnist, tmp_path, "--resume") == 0
        assert json.loads((folder / "metrics.json").read_text())["epochs"] == 1
        assert not (folder / experiments.REPLACED).exists() and not list(folder.glob(".*.tmp"))


def test_the_command_line_names_its_own_options_when_it_refuses(tiny_mnist, tmp_path, capsys) -> None:
    assert cli_run(tiny_mnist, tmp_path) == 0
    capsys.readouterr()
    assert cli_run(tiny_mnist, tmp_path) == 1
    err = one_line_error(capsys)
    assert "--overwrite" in err and "--out" in err and "overwrite=True" not in err
    (tmp_path / "mnist_cnn" / "seed" / "metrics.json").unlink()  # as if stopped after its last epoch's checkpoint
    assert cli_run(tiny_mnist, tmp_path) == 1
    err = one_line_error(capsys)
    assert "--resume" in err and "--overwrite" in err and "resume=True" not in err
    assert cli_run(tiny_mnist, tmp_path, "--overwrite") == 0


def test_a_transfer_run_on_another_base_gets_its_own_folder() -> None:
    recipe = get_recipe("vgg16_fine_tuning")
    default = results_folder(recipe, "runs")
    assert results_folder(recipe.on_backbone("vgg16"), "runs") == default == Path("runs/vgg16_fine_tuning/improved")
    offline = results_folder(replace(recipe.on_backbone("efficientnet_lite0"), seed=3), "runs", quick=True)
    assert offline.name == "improved-efficientnet_lite0-seed3-quick"


def test_a_locked_folder_is_refused_and_a_stale_lock_is_taken_over(tmp_path) -> None:
    folder = results_folder(RECIPE, tmp_path)
    with io.folder_lock(folder) as lock:
        with pytest.raises(io.FolderInUseError, match=rf"in use by process {os.getpid()} .*{lock.name}"):
            tiny_run(tmp_path)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)  # that process has ended
    folder.mkdir(parents=True)
    (folder / ".lock").write_text(json.dumps({"host": io.socket.gethostname(), "pid": dead_pid}))
    result = tiny_run(tmp_path)
    assert not (result.out_dir / ".lock").exists()  # taken over, then released


@pytest.mark.slow  # two real CLI processes
def test_two_runs_started_at_once_do_not_both_write(tiny_mnist, tmp_path) -> None:
    settings = ["--epochs", "3", "--batch-size", "8", "--device", "cpu", "--quiet"]
    command = [sys.executable, "-m", "cnn_study", "run", "mnist_cnn", "--recipe", "seed", *settings]
    command += ["--data", str(tiny_mnist), "--out", str(tmp_path)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((process.wait(timeout=300), process.stderr.read()) for process in runs)
    assert [code for code, _ in outcomes] == [0, 1], outcomes
    refusal = outcomes[1][1].strip()
    assert "Traceback" not in refusal and refusal.startswith("cnn-study: error: "), refusal
    # the second run finds the lock held (written, or still being written) or, if it came late, the finished run
    assert re.search(r"is in use by (process \d+ on \S+|a process that is starting)", refusal) or (
        "already holds a finished run" in refusal
    ), refusal


def test_resume_needs_a_checkpoint_and_the_same_settings(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Nothing to resume in .*seed: it holds no checkpoint.pt"):
        tiny_run(tmp_path, resume=True)
    first = tiny_run(tmp_path, epochs=2)
    (first.out_dir / "metrics.json").unlink()  # as if stopped after its last epoch's checkpoint
    checkpoint = (first.out_dir / "checkpoint.pt").read_bytes()
    with pytest.raises(
        ValueError,
        match=r"recipe_settings.batch_size 16 in the checkpoint, 8 now.*recipe_settings.stages.0.epochs 2 in",
    ):
        tiny_run(tmp_path, epochs=3, batch_size=8, resume=True)
    assert (first.out_dir / "checkpoint.pt").read_bytes() == checkpoint  # nothing trained, nothing mixed
    started, other = (
        first.metrics["precision"],
        {"bfloat16": "float32", "float32": "bfloat16"}[first.metrics["precision"]],
    )
    with pytest.raises(ValueError, match=rf"precision '{started}' in the checkpoint, '{other}' now"):
        tiny_run(tmp_path, epochs=2, resume=True, precision=other)
    resumed = tiny_run(tmp_path, epochs=2, resume=True)
    assert resumed.metrics["test_accuracy"] == first.metrics["test_accuracy"]


def test_a_checkpoint_from_before_precision_was_recorded_resumes_and_an_unknown_precision_fails_first(tmp_path):
    first = tiny_run(tmp_path, epochs=2)
    (first.out_dir / "metrics.json").unlink()
    state = torch.load(first.out_dir / "checkpoint.pt", weights_only=True)
    del state["meta"]["settings"]["precision"]
    torch.save(state, first.out_dir / "checkpoint.pt")
    assert tiny_run(tmp_path, epochs=2, resume=True).metrics["test_accuracy"] == first.metrics["test_accuracy"]
    with pytest.raises(ValueError, match=r"^Unknown precision 'fp16'; use bfloat16 or float32\.$"):
        tiny_run(tmp_path / "other", data=None, data_root=tmp_path / "no-data-here", precision="fp16")


def test_a_run_resumed_without_a_precision_trains_on_in_the_one_it_started_in(tmp_path) -> None:
    default = training_precision(torch.device("cpu"))
    other = {"bfloat16": "float32", "float32": "bfloat16"}[default]  # as if started on another machine
    first = tiny_run(tmp_path, epochs=2, precision=other)
    (first.out_dir / "metrics.json").unlink()
    resumed = tiny_run(tmp_path, epochs=2, resume=True)
    assert resumed.metrics["precision"] == other and resumed.metrics["test_accuracy"] == first.metrics["test_accuracy"]


def test_metrics_are_written_last_and_results_list_only_complete_runs(tmp_path, monkeypatch, capsys) -> None:
    finished = tiny_run(tmp_path).out_dir

    def full_disk(figure, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(visualize, "save_figure", full_disk)
    with pytest.raises(OSError, match="No space left"):
        tiny_run(tmp_path, quick=True)
    crashed = results_folder(RECIPE, tmp_path, quick=True)
    assert (crashed / "history.json").exists() and not (crashed / "metrics.json").exists()

    corrupt, partial = tmp_path / "lenet5" / "seed", tmp_path / "lenet5" / "improved"
    corrupt.mkdir(parents=True)
    partial.mkdir()
    (corrupt / "metrics.json").write_text("{not json")
    (corrupt / "history.json").write_text("{}")
    (partial / "metrics.json").write_text((finished / "metrics.json").read_text())  # no history.json
    rows, skipped = scan_results(tmp_path)
    assert [row["recipe"] for row in rows] == ["seed"] and len(skipped) == 2
    assert main(["results", "--dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 run folder(s), incomplete or damaged" in captured.err
    assert f"{corrupt / 'metrics.json'} is not a readable metrics file" in captured.err
    assert "no history.json" in captured.err and len(captured.out.splitlines()) == 3  # header, rule, one run


# ----------------------------------------------------------------------------- data folders as users have them


def _litter(part: Path) -> None:
    """What Jupyter and macOS leave next to the images."""
    (part / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (12, 12)).save(part / ".ipynb_checkpoints" / "0-checkpoint.png")
    (part / "__MACOSX").mkdir()
    (part / ".DS_Store").write_bytes(b"\0\1\2")
    for class_folder in (p for p in part.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
        (class_folder / "._0.png").write_bytes(b"\0\5\26\7 resource fork")
        (class_folder / ".ipynb_checkpoints").mkdir()


def test_hidden_folders_and_macos_files_are_not_classes_or_images(tiny_folder_dataset) -> None:
    root = tiny_folder_dataset / "dogs-vs-cats"
    _litter(root / "train")
    _litter(root / "validation")
    train, validation = dogs_vs_cats(tiny_folder_dataset, image_size=12)
    assert train.class_counts() == {"cat": 6, "dog": 6} and validation.class_counts() == {"cat": 3, "dog": 3}
    images, labels, classes = load_image_folder(root / "train")
    assert classes == ("cats", "dogs") and len(images) == 12 and labels.max() == 1


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [("channels", 2, r"channels is 3 \(RGB\) or 1"), ("size", 0, r"size is the side in pixels"), ("size", 1.5, "size")],
)
def test_an_image_folder_refuses_a_channel_count_or_size_it_cannot_make(tmp_path, option, value, problem) -> None:
    with pytest.raises(ValueError, match=rf"^{problem}.*, got {value!r}\.$"):
        load_image_folder(tmp_path, **{option: value})


def test_tiff_images_are_read_like_the_others(tmp_path, make_image_folder) -> None:
    make_image_folder(tmp_path / "folder", {"a": 2, "b": 1})
    for png in (tmp_path / "folder" / "a").glob("*.png"):
        Image.open(png).save(png.with_suffix(".tif"))
        png.unlink()
    images, labels, classes = load_image_folder(tmp_path / "folder", size=12)
    assert classes == ("a", "b") and labels.tolist() == [0, 0, 1] and images.shape == (3, 3, 12, 12)


def test_an_empty_class_folder_is_refused_by_name(tiny_folder_dataset) -> None:
    (tiny_folder_dataset / "dogs-vs-cats" / "train" / "zebra").mkdir()
    with pytest.raises(
        CorruptDataError, match=r"class folder .*zebra holds no images \(files named \*\.bmp, \*\.gif, .*\*\.webp\)"
    ):
        dogs_vs_cats(tiny_folder_dataset, image_size=12)


def test_a_missing_validation_folder_and_a_size_below_one_pixel_are_named(tiny_folder_dataset) -> None:
    with pytest.raises(ValueError, match=r"image_size is the side .* in pixels \(150 by default\), got 0"):
        dogs_vs_cats(tiny_folder_dataset, image_size=0)
    shutil.rmtree(tiny_folder_dataset / "dogs-vs-cats" / "validation")
    with pytest.raises(FileNotFoundError, match=r"dogs-vs-cats has no validation/ \(.*/\{train,validation\}/"):
        dogs_vs_cats(tiny_folder_dataset, image_size=12)


def test_a_missing_idx_file_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^No IDX file at .*absent-idx3-ubyte\.$"):
        read_idx(tmp_path / "absent-idx3-ubyte")


@pytest.mark.parametrize("content", [b"plain bytes, not gzip", None], ids=["not-gzip", "truncated"])
def test_a_broken_gz_idx_file_is_named_with_the_fix(tiny_mnist, content, capsys) -> None:
    raw = tiny_mnist / "MNIST" / "raw"
    plain = raw / "t10k-images-idx3-ubyte"
    packed = gzip.compress(plain.read_bytes())
    plain.unlink()
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(content or packed[: len(packed) // 2])
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte.gz is not a complete gzip file.*download=True"):
        read_idx(raw / "t10k-images-idx3-ubyte.gz")
    assert main(["evaluate", str(_lenet_file(tiny_mnist)), "--data", str(tiny_mnist)]) == 1
    err = one_line_error(capsys)
    assert "t10k-images-idx3-ubyte.gz" in err and "--download" in err


def test_a_corrupt_torchvision_cifar10_folder_is_named_without_claiming_a_download(tmp_path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(CorruptDataError, match=r"cifar-10-batches-py is incomplete or corrupt.*download=True"):
        cifar10(tmp_path)


def test_a_cifar10_image_folder_with_missing_classes_or_resized_images_is_refused(tmp_path, make_image_folder) -> None:
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    for part in ("train", "test"):
        make_image_folder(tmp_path / "cifar10" / part, {name: 1 for name in classes[:2]}, size=32)
    with pytest.raises(CorruptDataError, match=r"hold 2 of its 10 class folders; missing: bird, cat, .*, truck\."):
        cifar10(tmp_path)
    for part in ("train", "test"):
        make_image_folder(tmp_path / "cifar10" / part, {name: 1 for name in classes}, size=48)
    with pytest.raises(CorruptDataError, match=r"CIFAR-10 train are 48x48; CIFAR-10's are 32x32\. Export them"):
        cifar10(tmp_path)
    for part in ("train", "test"):
        make_image_folder(tmp_path / "cifar10" / part, {name: 1 for name in classes}, size=32)
    assert cifar10(tmp_path).train.images.shape == (10, 3, 32, 32)
    for part in ("train", "test"):
        make_image_folder(tmp_path / "cifar10" / part, {"aardvark": 1}, size=32)
    with pytest.raises(CorruptDataError, match=r"class folders that are not CIFAR-10's: aardvark\. Move them out"):
        cifar10(tmp_path)


@pytest.mark.parametrize("classes", [("dogs", "kittens"), ("cats",), ("cats", "dogs", "foxes")])
def test_a_dogs_vs_cats_folder_without_exactly_cats_and_dogs_is_refused(tmp_path, make_image_folder, classes) -> None:
    for part in ("train", "validation"):
        make_image_folder(tmp_path / "dogs-vs-cats" / part, dict.fromkeys(classes, 1))
    with pytest.raises(
        CorruptDataError, match=rf"needs two class folders, cats/ and dogs/.*found: {', '.join(classes)}\."
    ):
        dogs_vs_cats(tmp_path, image_size=12)


def test_a_dogs_vs_cats_archive_of_the_user_is_named_and_kept_where_a_download_is_removed(tmp_path, monkeypatch):
    archive = tmp_path / "cats_and_dogs_filtered.zip"
    archive.write_bytes(b"PK not the archive")
    with pytest.raises(CorruptDataError, match=r"is 18 bytes, not 68,606,236: it is not a complete copy.*Delete it"):
        download_dogs_vs_cats(tmp_path)
    assert archive.read_bytes() == b"PK not the archive"

    def cut_off(url, root, filename):  # as torchvision leaves a download that the network drops
        (Path(root) / filename).write_bytes(b"PK the first bytes")
        raise OSError("connection reset")

    monkeypatch.setattr("cnn_study.datasets.catalog.download_url", cut_off)
    with pytest.raises(OSError, match="Could not download Dogs vs Cats"):
        download_dogs_vs_cats(tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "cats_and_dogs_filtered.zip").exists()


def _lenet_file(folder: Path) -> Path:
    model = create_model("lenet5")
    meta = {"model": "lenet5", "num_classes": 10, "classes": list("0123456789"), "dataset": "mnist"}
    meta |= {"mean": [0.13], "std": [0.31]}
    return io.atomic_torch_save({"state_dict": model.state_dict(), "meta": meta}, folder / "lenet5.pt")


def test_the_decode_cache_keeps_one_entry_per_folder(tmp_path, isolated_cache, make_image_folder) -> None:
    folder = make_image_folder(tmp_path / "versions", {"cat": 2, "dog": 2})
    load_image_folder(folder)
    Image.new("RGB", (12, 12), "white").save(folder / "cat" / "0.png")  # an image changes
    images, _, _ = load_image_folder(folder)
    assert images[0].float().mean() == 255
    assert len(list((isolated_cache / "decoded").glob("versions-*.pt"))) == 1


def test_an_unreadable_or_unwritable_cache_is_a_warning_not_a_failure(
    tmp_path, isolated_cache, monkeypatch, make_image_folder
) -> None:
    folder = make_image_folder(tmp_path / "damaged", {"cat": 2, "dog": 2})
    expected, _, _ = load_image_folder(folder)
    [cache_file] = (isolated_cache / "decoded").glob("damaged-*.pt")
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=rf"unreadable image cache {cache_file}"):
        images, _, _ = load_image_folder(folder)
    assert torch.equal(images, expected)

    def full_disk(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    torch.save(
        {"images": expected[:3], "labels": torch.zeros(3, dtype=torch.int64), "classes": ["cat", "dog"]}, cache_file
    )
    with pytest.warns(UserWarning, match=r"does not hold 4 uint8 images and labels of the classes cat, dog"):
        images, _, _ = load_image_folder(folder)  # a readable cache of the wrong images: decoded again
    assert torch.equal(images, expected)

    def zip_writer_fails(obj, file):  # how a full disk reaches torch.save
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0 file write failed")

    cache_file.unlink()
    monkeypatch.setattr("cnn_study.files.torch.save", zip_writer_fails)
    with pytest.warns(
        UserWarning, match=rf"Could not write the image cache .*check the free space .*{cache_file.parent}"
    ):
        images, _, _ = load_image_folder(folder)
    assert torch.equal(images, expected)

    monkeypatch.setattr("cnn_study.datasets.sources.atomic_torch_save", full_disk)
    with pytest.warns(UserWarning, match="Could not write the image cache .*No space left"):
        images, _, _ = load_image_folder(folder)
    assert torch.equal(images, expected)


def test_a_cache_variable_that_names_a_file_is_a_clear_error(tmp_path, monkeypatch, make_image_folder) -> None:
    folder = make_image_folder(tmp_path / "pets", {"cat": 1})
    (tmp_path / "cache-file").write_text("")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache-file"))
    with pytest.raises(NotADirectoryError, match=rf"{CACHE_ENV}=.*cache-file is a file, not a folder"):
        load_image_folder(folder)


# ----------------------------------------------------------------------------- arguments and the command line


@pytest.mark.parametrize(("argument", "value"), [("epochs", 0), ("epochs", -1), ("batch_size", 0), ("batch_size", -4)])
def test_epochs_and_batch_size_must_be_positive(argument, value, tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match=rf"{argument} must be a positive whole number, got {value}"):
        tiny_run(tmp_path, **{argument: value})
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "lenet5", f"--{argument.replace('_', '-')}", str(value)])
    assert exit_info.value.code == 2 and "expected a positive whole number" in capsys.readouterr().err


@pytest.mark.parametrize("seed", ["abc", -1, 1.5, 2**32])
def test_a_seed_must_be_a_whole_number_from_zero_to_numpys_limit(seed, tmp_path) -> None:
    with pytest.raises(ValueError, match=rf"seed must be a whole number from 0 to 2\*\*32 - 1, got {seed!r}"):
        tiny_run(tmp_path, seed=seed)


@pytest.mark.parametrize("num_classes", [0, -3])
def test_num_classes_must_be_positive(num_classes) -> None:
    with pytest.raises(ValueError, match=rf"num_classes must be a positive whole number .* got {num_classes}"):
        create_model("lenet5", num_classes=num_classes)


def test_an_unwritable_results_folder_fails_before_any_data_is_loaded(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "a-file").write_text("")
    missing_data = tmp_path / "no-data-here"  # had the data been loaded first, this would be the error
    assert main(["run", "lenet5", "--data", str(missing_data), "--out", str(tmp_path / "a-file")]) == 1
    assert "Cannot write results into" in one_line_error(capsys)

    def full_disk(lock):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "_create_lock", full_disk)
    assert main(["run", "lenet5", "--data", str(missing_data), "--out", str(tmp_path / "runs")]) == 1
    assert "(No space left on device); choose another folder" in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()  # the folders made for the lock are gone with it


def test_debug_shows_the_traceback_of_an_expected_error(tmp_path, monkeypatch, capsys) -> None:
    assert main(["evaluate", str(tmp_path / "missing.pt")]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.pt"), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    for value, shown in (("1", True), ("true", True), ("false", False), ("0", False)):
        monkeypatch.setenv("CNN_STUDY_DEBUG", value)
        assert main(["evaluate", str(tmp_path / "missing.pt")]) == 1
        assert ("Traceback" in capsys.readouterr().err) is shown, value


def test_an_unexpected_error_keeps_its_traceback(monkeypatch) -> None:
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("cnn_study.cli.summary", bug)
    with pytest.raises(ZeroDivisionError):
        main(["summary", "lenet5"])


@pytest.mark.skipif(
    not hasattr(signal, "SIGTERM") or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL,
    reason="no SIGTERM on this platform, or the test runner handles it",
)
def test_kill_stops_a_run_as_ctrl_c_does_and_gives_back_the_run_it_was_replacing(tiny_mnist, tmp_path, monkeypatch):
    assert cli_run(tiny_mnist, tmp_path) == 0
    folder = tmp_path / "mnist_cnn" / "seed"
    kept = _run_files(folder)

    def killed_in_the_first_epoch(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill <pid>` does; the handler interrupts at once
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr("cnn_study.experiments.fit_stage", killed_in_the_first_epoch)
    sent_again = []  # sent again to its default action, it would end this test's process: recorded instead
    monkeypatch.setattr("cnn_study.cli.signal.raise_signal", sent_again.append)
    assert cli_run(tiny_mnist, tmp_path, "--overwrite") == 130
    assert _run_files(folder) == kept and sorted(path.name for path in folder.iterdir()) == sorted(kept)
    assert sent_again == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_command_leaves_an_ignored_or_handled_stop_signal_as_it_found_it(tiny_mnist, tmp_path, monkeypatch) -> None:
    seen = []

    def ran_with(*args, **kwargs):
        seen.append((signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM)))
        raise ValueError("stop here")

    monkeypatch.setattr("cnn_study.experiments.fit_stage", ran_with)
    callers = signal.signal(signal.SIGTERM, lambda *args: None)  # as a notebook kernel's own handler
    previous_hangup = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        assert cli_run(tiny_mnist, tmp_path) == 1
        assert seen == [(signal.SIG_IGN, signal.getsignal(signal.SIGTERM))]
    finally:
        signal.signal(signal.SIGTERM, callers)
        signal.signal(signal.SIGHUP, previous_hangup)


def test_evaluate_given_a_run_folder_or_its_checkpoint_points_to_the_model_file(tmp_path, capsys) -> None:
    folder = tiny_run(tmp_path).out_dir
    assert main(["evaluate", str(folder)]) == 1
    assert one_line_error(capsys).endswith(f"{folder} is a folder, not a trained model file: pass its model.pt.")
    assert main(["evaluate", str(folder / "checkpoint.pt")]) == 1
    assert "is a training checkpoint, not a trained model file" in one_line_error(capsys)


def test_ctrl_c_says_how_to_resume_and_exits_130(tiny_mnist, tmp_path, monkeypatch, capsys) -> None:
    assert cli_run(tiny_mnist, tmp_path) == 0  # leaves a checkpoint to resume from

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cnn_study.cli.run", interrupted)
    assert cli_run(tiny_mnist, tmp_path, "--overwrite") == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "cnn-study: interrupted. No epoch of the new run had finished: the run it was to replace is kept in "
        f"{tmp_path / 'mnist_cnn' / 'seed'}."
    )
    (tmp_path / "mnist_cnn" / "seed" / "metrics.json").unlink()  # as if stopped after an epoch's checkpoint
    assert cli_run(tiny_mnist, tmp_path, "--resume") == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cnn-study: interrupted. The finished epochs are saved in") and "mnist_cnn/seed" in err
    assert err.endswith("--resume") and "--overwrite" not in err and err.count("--resume") == 1
    monkeypatch.setenv("WORLD_SIZE", "2")  # as a rank of `torchrun --nproc-per-node 2` finds it
    assert cli_run(tiny_mnist, tmp_path, "--resume") == 130
    assert "continue with: torchrun --nproc-per-node 2 -m cnn_study run mnist_cnn" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "8")  # `torchrun --nnodes 2 --nproc-per-node 4`: two machines of four
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert cli_run(tiny_mnist, tmp_path, "--resume") == 130
    assert "continue with: torchrun --nnodes 2 --nproc-per-node 4 ... -m cnn_study run" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "5")  # another rank: the main rank alone says it (the folder is on its machine)
    assert cli_run(tiny_mnist, tmp_path, "--resume") == 130
    assert "interrupted" not in capsys.readouterr().err
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert cli_run(tiny_mnist, tmp_path / "elsewhere") == 130
    assert "No epoch had finished" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("typed", "suggested"), [("lenet", "lenet5"), ("mnist-cnn", "mnist_cnn"), ("ResNet", "resnet")]
)
def test_experiment_names_get_a_suggestion(typed, suggested, capsys) -> None:
    assert main(["run", typed, "--quick"]) == 1
    assert f"Did you mean '{suggested}'" in one_line_error(capsys)


def test_missing_data_names_the_command_line_options(tmp_path, capsys) -> None:
    assert main(["run", "lenet5", "--quick", "--data", str(tmp_path), "--out", str(tmp_path / "runs")]) == 1
    err = one_line_error(capsys)
    assert "--data" in err and "--download" in err and "root=" not in err and "download=True" not in err
    with pytest.raises(FileNotFoundError, match=r"root=\.\.\..*download=True"):  # the Python API names its own
        mnist(tmp_path)
    assert not (tmp_path / "runs" / "lenet5").exists()  # a run that wrote nothing leaves no folder


def test_evaluate_names_a_model_file_whose_metadata_lacks_keys(tmp_path, capsys) -> None:
    model_file = _lenet_file(tmp_path)
    content = torch.load(model_file, weights_only=True)
    del content["meta"]["dataset"], content["meta"]["mean"]
    torch.save(content, model_file)
    assert main(["evaluate", str(model_file)]) == 1
    expected = f"{model_file} is not a complete trained model file: its metadata lacks mean, dataset"
    assert expected in one_line_error(capsys)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("dataset", "imagenet", "was trained on 'imagenet', which cnn-study cannot load; name one with --dataset"),
        ("dataset", 7, "dataset is 7, not a name"),
        ("model", None, "model is None, not a name"),
        ("classes", "0123456789", "classes is '0123456789', not a list of two or more names"),
        ("classes", [0, 1], "classes is [0, 1], not a list of two or more names"),
        ("num_classes", "10", "num_classes is '10', not a whole number of outputs"),
        ("num_classes", True, "num_classes is True, not a whole number of outputs"),
        ("num_classes", 3, "num_classes is 3, but there are 10 classes"),
        ("mean", [0.1, 0.2], "mean is [0.1, 0.2], not one or three numbers"),
        ("std", ["wide"], "std is ['wide'], not one or three numbers"),
        ("std", [0.0], "std is [0.0]: a standard deviation must be positive"),
        ("model_kwargs", [1], "model_kwargs is [1], not a table of arguments"),
    ],
)
def test_evaluate_names_each_kind_of_damaged_metadata_in_one_line(tmp_path, capsys, key, value, problem) -> None:
    model_file = _lenet_file(tmp_path)
    content = torch.load(model_file, weights_only=True)
    content["meta"][key] = value
    torch.save(content, model_file)
    assert main(["evaluate", str(model_file)]) == 1
    err = one_line_error(capsys)
    assert str(model_file) in err and problem in err


def test_evaluate_refuses_a_model_on_data_with_other_classes(tmp_path, tiny_mnist, capsys) -> None:
    shipped = Path(cnn_study.models.__file__).parent / "weights" / "resnet20-cifar10.pt"
    assert main(["evaluate", str(shipped), "--dataset", "mnist", "--data", str(tiny_mnist)]) == 1
    err = one_line_error(capsys)
    assert "tells apart 10 classes (airplane, automobile, bird, cat, ...)" in err and "would mean nothing" in err


def test_export_weights_refuses_a_name_with_a_path_and_head_only_without_a_base(tmp_path, capsys) -> None:
    finished = tiny_run(tmp_path).out_dir
    out = tmp_path / "weights"
    for name in ("../../x", "a/b", ".hidden", ""):
        assert main(["export-weights", str(finished), "--name", name, "--out", str(out)]) == 1
        assert "is not a plain name" in one_line_error(capsys)
    assert main(["export-weights", str(finished), "--name", "tiny", "--out", str(out), "--head-only"]) == 1
    assert "trained mnist_cnn from scratch: it has no pretrained base to leave out" in one_line_error(capsys)
    assert not out.exists() and not (tmp_path / "x.pt").exists()


def test_export_weights_never_replaces_a_weights_file_unless_told(tmp_path, capsys) -> None:
    finished = tiny_run(tmp_path).out_dir
    out = tmp_path / "weights"
    assert main(["export-weights", str(finished), "--name", "tiny", "--out", str(out)]) == 0
    capsys.readouterr()
    shipped = out / "mnist_cnn-tiny.pt"
    first = shipped.read_bytes()
    assert main(["export-weights", str(finished), "--name", "tiny", "--out", str(out), "--float16"]) == 1
    assert f"{shipped} already exists; choose another name or folder, or add --overwrite" in one_line_error(capsys)
    assert shipped.read_bytes() == first
    assert main(["export-weights", str(finished), "--name", "tiny", "--out", str(out), "--float16", "--overwrite"]) == 0
    assert len(shipped.read_bytes()) < len(first)  # the half-precision file replaced it
    capsys.readouterr()
    assert main(["export-weights", str(finished), "--name", "tiny", "--out", str(shipped)]) == 1
    assert f"{shipped} is a file; the weights go into a folder" in one_line_error(capsys)


def test_a_backbone_for_an_experiment_without_one_is_refused(tmp_path, tiny_mnist, capsys) -> None:
    assert cli_run(tiny_mnist, tmp_path, "--backbone", "efficientnet_lite0") == 1
    assert "mnist_cnn trains mnist_cnn from scratch: --backbone chooses the pretrained base" in one_line_error(capsys)
    assert not tmp_path.joinpath("mnist_cnn").exists()
    with pytest.raises(ValueError, match=r"recipe\.on_backbone\(\.\.\.\) chooses"):
        get_recipe("lenet5").on_backbone("vgg16")
    with pytest.raises(ValueError, match="Unknown pretrained base 'resnet20'"):
        get_recipe("9").on_backbone("resnet20")


def test_a_damaged_checkpoint_is_named_in_one_sentence_without_torch_advice(tmp_path, capsys) -> None:
    finished = tiny_run(tmp_path).out_dir
    content = (finished / "checkpoint.pt").read_bytes()
    for cut in (10, len(content) // 2, len(content) - 30):
        (finished / "checkpoint.pt").write_bytes(content[:cut])
        with pytest.raises(ValueError) as raised:
            load_checkpoint_meta(finished / "checkpoint.pt")
        message = str(raised.value)
        assert (
            message.startswith(f"{finished / 'checkpoint.pt'} is not a readable checkpoint (") and "\n" not in message
        )
        assert "weights_only" not in message and "likely" not in message and "internal miniz error" not in message


def test_a_checkpoint_that_cannot_be_resumed_says_to_start_again(tmp_path) -> None:
    out_dir = tiny_run(tmp_path).out_dir
    (out_dir / "metrics.json").unlink()  # an unfinished run, as a killed one leaves it
    checkpoint = out_dir / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    checkpoint.write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"not a readable checkpoint .* start the run again with overwrite=True\.$"):
        tiny_run(tmp_path, resume=True)
    torch.save(state | {"optimizer": {}}, checkpoint)  # readable, but no optimizer state to go on from
    with pytest.raises(
        ValueError, match=r"holds no optimizer or schedule state .*: start the run again \(overwrite=True\)\.$"
    ):
        tiny_run(tmp_path, resume=True)


@pytest.mark.parametrize(
    ("stem", "content", "problem"),
    [
        ("t10k-images-idx3-ubyte", bytes([0, 0, 8, 0, 5]), "holds uint8 values of shape (), not N x height x width"),
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((20, 784), np.uint8)), "of shape (20, 784), not N x height"),
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((0, 28, 28), np.uint8)), "of shape (0, 28, 28), not N x"),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros((4, 5), np.uint8)), "of shape (4, 5), not N labels"),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.arange(20, dtype=np.uint8) % 12), "holds the label 11; MNIST has"),
    ],
)
def test_an_idx_file_of_the_wrong_shape_or_labels_is_named_in_one_line(tiny_mnist, stem, content, problem, capsys):
    (tiny_mnist / "MNIST" / "raw" / stem).write_bytes(content)
    shipped = Path(cnn_study.models.__file__).parent / "weights" / "lenet5-mnist.pt"
    assert main(["evaluate", str(shipped), "--data", str(tiny_mnist)]) == 1
    err = one_line_error(capsys)
    assert f"{tiny_mnist / 'MNIST' / 'raw' / stem} " in err and problem in err and err.endswith("(--download).")


def test_mnist_test_files_that_are_copies_of_the_training_files_are_refused(tiny_mnist, capsys) -> None:
    raw = tiny_mnist / "MNIST" / "raw"
    for kind in ("images-idx3", "labels-idx1"):
        (raw / f"t10k-{kind}-ubyte").write_bytes((raw / f"train-{kind}-ubyte").read_bytes())
    shipped = Path(cnn_study.models.__file__).parent / "weights" / "lenet5-mnist.pt"
    assert main(["evaluate", str(shipped), "--data", str(tiny_mnist)]) == 1
    assert f"The t10k files in {raw} hold the same images as the train files" in one_line_error(capsys)


class NotPlainData:
    """A class that a ``weights_only`` load refuses to rebuild."""


def test_a_file_with_code_is_refused_without_advising_to_load_it_unsafely(tmp_path, capsys) -> None:
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {}, "meta": NotPlainData()}, path)
    assert main(["evaluate", str(path)]) == 1
    err = one_line_error(capsys)
    assert f"{path} is not a cnn-study trained model file" in err and "could run code" in err
    assert "weights_only" not in err and "likely succeed" not in err


# ----------------------------------------------------------------------------- the Python API


def test_grad_cam_checks_its_input() -> None:
    model = create_model("lenet5")
    with pytest.raises(ValueError, match=r"one image of shape C x H x W, got shape \(2, 1, 28, 28\): pass images\[i\]"):
        visualize.grad_cam(model, torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="expects 1 input channel"):
        visualize.grad_cam(model, torch.zeros(3, 28, 28))
    with pytest.raises(ValueError, match="expects 28x28 images, got 32x32"):
        explain.grad_cam(model, torch.zeros(1, 1, 32, 32))
    with pytest.raises(
        ValueError, match=r"a batch of shape N x C x H x W, got shape \(1, 28, 28\): pass image\[None\]"
    ):
        explain.saliency(model, torch.zeros(1, 28, 28))


def test_confusion_matrix_names_labels_outside_the_classes() -> None:
    with pytest.raises(ValueError, match=r"labels holds classes 0\.\.3, outside the 3 classes 0\.\.2"):
        visualize.confusion_matrix([0, 1, 3], [0, 1, 2], ["a", "b", "c"])
    with pytest.raises(ValueError, match="predictions holds classes"):
        visualize.confusion_matrix([0, 1, 2], [0, 1, -1], ["a", "b", "c"])
    with pytest.raises(ValueError, match="labels has 3 entries, predictions 2"):
        visualize.confusion_matrix([0, 1, 2], [0, 1], ["a", "b", "c"])


def test_class_distribution_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="parts is empty"):
        visualize.class_distribution({})


def test_evaluate_and_misclassified_refuse_an_empty_loader() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="loader yielded no batches"):
        evaluate(model, TensorBatches(torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long)))
    no_images, no_labels = torch.zeros(0, 1, 2, 2, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
    empty = ImageData(no_images, no_labels, ("a", "b"), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="loader yielded no batches"):
        visualize.misclassified(model, BatchLoader(empty, 4))


@pytest.mark.parametrize("per_class", [0, -1])
def test_sample_needs_a_positive_count(per_class) -> None:
    data = ImageData(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), ("a", "b"), (0.5,), (0.5,))
    with pytest.raises(ValueError, match=rf"per_class must be a positive number of images per class, got {per_class}"):
        data.sample(per_class)
