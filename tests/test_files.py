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


def test_a_lock_written_exactly_the_writing_time_ago_is_stale(tmp_path, monkeypatch) -> None:
    lock = tmp_path / io.LOCK_NAME
    lock.write_text("")
    monkeypatch.setattr(io.time, "time", lambda: lock.stat().st_mtime + io._LOCK_WRITE_SECONDS)
    assert io._lock_owner(lock) is None
    monkeypatch.setattr(io.time, "time", lambda: lock.stat().st_mtime + io._LOCK_WRITE_SECONDS - 0.5)
    assert io._lock_owner(lock) == "a process that is starting"


class _Kernel32:
    """``ctypes.windll.kernel32`` as Windows answers for one running process, recording the calls."""

    def __init__(self, running_pid: int) -> None:
        self.running_pid, self.calls = running_pid, []

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:  # noqa: N802 (the Windows API's name)
        self.calls.append(("OpenProcess", access, inherit, pid))
        return 77 if pid == self.running_pid else 0

    def CloseHandle(self, handle: int) -> None:  # noqa: N802
        self.calls.append(("CloseHandle", handle))


def test_on_windows_a_process_is_asked_for_by_a_query_handle_that_is_closed_again(monkeypatch) -> None:
    import ctypes
    import types

    kernel32 = _Kernel32(running_pid=4242)
    monkeypatch.setattr(ctypes, "windll", types.SimpleNamespace(kernel32=kernel32), raising=False)
    monkeypatch.setattr(io.os, "name", "nt")
    assert io.process_is_running(4242) is True
    assert io.process_is_running(4243) is False
    assert kernel32.calls == [
        ("OpenProcess", 0x1000, False, 4242),  # PROCESS_QUERY_LIMITED_INFORMATION, not inherited
        ("CloseHandle", 77),
        ("OpenProcess", 0x1000, False, 4243),  # no handle: nothing to close
    ]


def test_json_is_written_indented_by_two_in_the_order_given(tmp_path) -> None:
    path = io.atomic_json_dump({"b": 1, "a": [1]}, tmp_path / "x.json")
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    1\n  ]\n}\n'


def test_read_json_names_a_missing_file_and_a_file_that_holds_no_object(tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        io.read_json(tmp_path / "metrics.json", "metrics file")
    assert str(error.value) == f"No metrics file at {tmp_path / 'metrics.json'}."
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError) as error:
        io.read_json(tmp_path / "list.json", "metrics file")
    assert str(error.value) == f"{tmp_path / 'list.json'} is not a metrics file: it holds a JSON list, not an object."


class _Code:
    """A Python object in a pickle: what ``weights_only=True`` refuses to build."""


def test_safe_torch_load_names_a_missing_a_damaged_and_an_unsafe_file_in_one_sentence(tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        io.safe_torch_load(tmp_path / "none.pt", "checkpoint")
    assert str(error.value) == f"No checkpoint at {tmp_path / 'none.pt'}."
    torch.save({"x": _Code()}, tmp_path / "code.pt")
    with pytest.raises(ValueError) as error:
        io.safe_torch_load(tmp_path / "code.pt", "checkpoint")
    assert str(error.value) == (
        f"{tmp_path / 'code.pt'} is not a cnn-study checkpoint: it holds Python objects other than tensors and "
        "plain data, which could run code when loaded, so cnn-study does not load it."
    )
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.")  # a plain pickle
    with pytest.raises(ValueError) as error:
        io.safe_torch_load(tmp_path / "pickle.pt", "checkpoint")
    assert str(error.value).startswith(f"{tmp_path / 'pickle.pt'} is not a readable checkpoint (")


@pytest.mark.parametrize(
    ("message", "sentence"),
    [
        (
            "PytorchStreamReader failed reading zip archive. Extra text.",
            "PytorchStreamReader failed reading zip archive",
        ),
        ("  first line.\nsecond line", "first line"),
        ("Weights only load failed. Re-running with weights_only=False will work.", "Weights only load failed"),
        ("Use weights_only=False. Or do not.", "RuntimeError"),  # torch's advice to load unsafely: left out
        ("", "RuntimeError"),
        (".hidden", ".hidden"),
    ],
)
def test_an_error_is_told_by_its_first_sentence_without_torchs_unsafe_advice(message, sentence) -> None:
    assert io._first_sentence(RuntimeError(message)) == sentence


def test_a_state_dict_that_does_not_fit_names_both_last_tensors() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 5))
    other = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 7)).state_dict()
    with pytest.raises(ValueError) as error:
        io.load_model_state(model, other, "lenet5.pt")
    assert str(error.value) == (
        "lenet5.pt does not fit this Sequential: it holds 4 tensors (last 1.bias (7,)), the model has 4 "
        "(last 1.bias (5,)). It was saved from another model or number of classes."
    )
    with pytest.raises(ValueError, match=r"holds 0 tensors \(last \? None\), the model has 4 \(last 1.bias \(5,\)\)"):
        io.load_model_state(model, {}, "empty.pt")
