"""`cnn_study.files`: folder locks that tell a live writer from a dead one, and writes that lose nothing."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
import torch

import cnn_study.files as io


def test_a_lock_still_being_written_is_held_and_an_unreadable_old_one_is_stale(tmp_path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / io.LOCK_NAME
    lock.write_text("")  # created (O_EXCL) by a process that has not written its pid yet
    with pytest.raises(io.FolderInUseError, match="in use by a process that is starting"):
        with io.folder_lock(folder):
            pass
    old = lock.stat().st_mtime - io._LOCK_WRITE_SECONDS - 1  # its writer died before writing: stale
    os.utime(lock, (old, old))
    with io.folder_lock(folder):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


@pytest.mark.parametrize(
    ("signal_outcome", "running"),
    [(None, True), (PermissionError, True), (ProcessLookupError, False)],
    ids=["signalled", "another-users-process", "no-such-process"],
)
def test_a_process_of_another_user_counts_as_running_and_a_missing_one_does_not(
    monkeypatch, signal_outcome, running
) -> None:
    def kill(pid: int, signal: int) -> None:
        assert signal == 0  # only asks whether the process exists
        if signal_outcome is not None:
            raise signal_outcome(pid)

    monkeypatch.setattr(io.os, "kill", kill)
    assert io.process_is_running(os.getpid() + 1) is running


def test_a_killed_writer_leaves_no_temporary_behind_for_long(tmp_path) -> None:
    target = tmp_path / "checkpoint.pt"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".checkpoint.pt.{int(finished.stdout)}.x1.tmp"
    older_kind = tmp_path / ".checkpoint.pt.ab12cd.tmp"  # named before temporaries carried their writer's pid
    alive = tmp_path / f".checkpoint.pt.{os.getpid()}.x2.tmp"
    other_file = tmp_path / f".model.pt.{int(finished.stdout)}.x3.tmp"
    for path in (dead, older_kind, alive, other_file):
        path.write_bytes(b"half" * 1000)
    io.atomic_torch_save({"x": torch.zeros(1)}, target)
    assert not dead.exists() and not older_kind.exists()
    assert alive.exists() and other_file.exists()  # a live writer's, and another file's (cleaned on its write)


@pytest.mark.parametrize("failure", ["full disk", "zip writer"])
def test_a_write_that_fails_leaves_the_old_file_and_names_the_folder_and_the_fix(
    tmp_path, failure, monkeypatch
) -> None:
    path = tmp_path / "run" / "checkpoint.pt"
    io.atomic_torch_save({"epoch": 1}, path)
    before = path.read_bytes()

    def fail(obj, file):
        file.write(b"part of a checkpoint")
        if failure == "full disk":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr("cnn_study.files.torch.save", fail)
    with pytest.raises(OSError) as raised:
        io.atomic_torch_save({"epoch": 2}, path)
    message = str(raised.value)
    assert str(path.parent) in message and "\n" not in message
    assert (
        "is full. Free some space, or write elsewhere." if failure == "full disk" else "check the free space"
    ) in message
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]
