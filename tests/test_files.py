"""`cnn_study.files`: folder locks that tell a live writer from a dead one, and writes that lose nothing."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
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


@pytest.mark.parametrize("failure", ["full disk", "zip writer", "zip writer position"])
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
        if failure == "zip writer":
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 12928 vs 12880")  # a full tmpfs

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
        ("Use weights_only=False. Or do not.", "RuntimeError"),
        ("Unknown format X.", "Unknown format X"),  # torch's advice to load unsafely: left out
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


@pytest.fixture
def umask_022():
    """A known umask (022, the usual one) while the test runs."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_an_atomic_write_goes_through_a_named_temporary_beside_the_file_into_new_folders(tmp_path, umask_022) -> None:
    path = tmp_path / "a" / "b" / "metrics.json"
    seen = []

    def write(file) -> None:
        seen.extend(path.parent.iterdir())  # the temporary being written, and nothing else yet
        file.write(b"{}")

    assert io.atomic_write(path, write) == path and path.read_bytes() == b"{}"
    [temporary] = seen
    assert temporary.parent == path.parent and not temporary.exists()
    assert temporary.name.startswith(f".metrics.json.{os.getpid()}.") and temporary.name.endswith(".tmp")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # 0o666 less the umask, not mkstemp's private 0o600


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_or_quota_keeps_its_error_number(tmp_path, code) -> None:
    def fail(file) -> None:
        raise OSError(code, os.strerror(code))

    with pytest.raises(OSError) as raised:
        io.atomic_write(tmp_path / "x.pt", fail)
    assert raised.value.errno == code
    assert str(raised.value) == (
        f"[Errno {code}] Cannot write {tmp_path / 'x.pt'}: the disk of {tmp_path} is full. Free some space, or "
        "write elsewhere."
    )


def test_torchs_zip_writer_error_becomes_an_input_output_error_and_other_errors_pass_unchanged(tmp_path) -> None:
    def zip_writer(file) -> None:
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed\nmore detail")

    with pytest.raises(OSError) as raised:
        io.atomic_write(tmp_path / "x.pt", zip_writer)
    assert raised.value.errno == errno.EIO
    assert raised.value.strerror == (
        f"Cannot write {tmp_path / 'x.pt'} (PytorchStreamWriter failed writing file data/0: file write failed): "
        f"check the free space and permissions of {tmp_path}, or write elsewhere."
    )

    def bug(file) -> None:
        raise RuntimeError("a bug in the caller")

    with pytest.raises(RuntimeError, match="^a bug in the caller$"):
        io.atomic_write(tmp_path / "x.pt", bug)
    with pytest.raises(KeyError):
        io.atomic_write(tmp_path / "x.pt", lambda file: {}["write"])  # not an OSError, whatever it says
    assert list(tmp_path.iterdir()) == []


def test_what_atomic_torch_save_writes_safe_torch_load_reads_back(tmp_path) -> None:
    state = {"weight": torch.arange(6.0).reshape(2, 3), "meta": {"epochs": 3}}
    io.atomic_torch_save(state, tmp_path / "state.pt")
    loaded = io.safe_torch_load(tmp_path / "state.pt", "checkpoint")
    assert torch.equal(loaded["weight"], state["weight"]) and loaded["meta"] == {"epochs": 3}


def test_safe_torch_load_never_builds_objects_and_maps_onto_the_cpu_on_every_torch(tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(io.torch, "load", lambda path, **kwargs: calls.append(kwargs) or {})
    io.safe_torch_load(__file__, "checkpoint")
    io.safe_torch_load(__file__, "checkpoint", mmap=True)
    assert calls == [  # weights_only written out: torch before 2.6 defaults to False
        {"map_location": "cpu", "weights_only": True, "mmap": False},
        {"map_location": "cpu", "weights_only": True, "mmap": True},
    ]


def test_safe_torch_load_names_a_damaged_file_and_a_pickle_that_is_not_a_pytorch_file(tmp_path) -> None:
    path = tmp_path / "damaged.pt"
    path.write_bytes(b"garbage bytes here")  # torch's unpickler refuses it, and advises loading it unsafely
    with pytest.raises(ValueError) as error:
        io.safe_torch_load(path, "checkpoint")
    assert str(error.value) == f"{path} is not a readable checkpoint (damaged, or not a PyTorch file)."
    path.write_bytes(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.")  # a plain pickle of {"a": 1}
    with pytest.raises(ValueError) as error:
        io.safe_torch_load(path, "checkpoint")
    assert str(error.value) == f"{path} is not a readable checkpoint (Invalid magic number; corrupt file?)."


@pytest.mark.parametrize(
    "error",
    [KeyError(174812789), RuntimeError("mmap can only be used with files saved with torch.save(...), please ...")],
    ids=["bare key", "advice on saving"],
)
def test_safe_torch_load_calls_a_file_damaged_where_torchs_message_would_not_help(tmp_path, monkeypatch, error) -> None:
    def fail(*args, **kwargs):
        raise error

    (tmp_path / "x.pt").write_bytes(b"x")
    monkeypatch.setattr("cnn_study.files.torch.load", fail)
    with pytest.raises(ValueError) as raised:
        io.safe_torch_load(tmp_path / "x.pt", "checkpoint")
    assert str(raised.value) == f"{tmp_path / 'x.pt'} is not a readable checkpoint (damaged, or not a PyTorch file)."


def test_read_json_names_invalid_json_and_every_missing_key_in_order(tmp_path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("{not json")
    with pytest.raises(ValueError) as error:
        io.read_json(path, "metrics file")
    assert str(error.value).startswith(f"{path} is not a readable metrics file (invalid JSON: Expecting property")
    path.write_text('{"quick": false, "name": "lenet5"}')
    with pytest.raises(ValueError) as error:
        io.read_json(path, "metrics file", ("experiment", "name", "recipe", "quick"))
    assert str(error.value) == f"{path} is not a complete metrics file: it lacks experiment, recipe."
    assert io.read_json(path, "metrics file", ("name", "quick")) == {"quick": False, "name": "lenet5"}


def test_a_lock_holds_its_host_and_pid_and_reads_as_its_owner(tmp_path, umask_022) -> None:
    with io.folder_lock(tmp_path / "run") as lock:
        assert json.loads(lock.read_text()) == {"host": socket.gethostname(), "pid": os.getpid()}
        assert stat.S_IMODE(lock.stat().st_mode) == 0o644
        assert io._lock_owner(lock) == f"process {os.getpid()} on {socket.gethostname()}"


def test_a_lock_of_a_dead_process_here_is_stale_but_one_from_another_host_is_held(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(io, "process_is_running", lambda pid: pid == 41)
    lock = tmp_path / io.LOCK_NAME
    for host, pid, owner in (
        (socket.gethostname(), 40, None),  # this machine, no such process: stale
        (socket.gethostname(), 41, f"process 41 on {socket.gethostname()}"),
        ("another-machine", 40, "process 40 on another-machine"),  # cannot be asked: held
    ):
        lock.write_text(json.dumps({"host": host, "pid": pid}))
        assert io._lock_owner(lock) == owner, (host, pid)


def test_the_weights_hash_covers_names_dtypes_shapes_and_values_but_not_order_or_layout() -> None:
    state = {"weight": torch.arange(4.0).reshape(2, 2), "bias": torch.zeros(2)}
    digest = io.state_dict_sha256(state)
    assert len(digest) == 64 and digest == io.state_dict_sha256(dict(reversed(state.items())))
    assert digest == io.state_dict_sha256({**state, "weight": torch.arange(4.0).reshape(2, 2).t().contiguous().t()})
    for changed in (
        {"weights": state["weight"], "bias": state["bias"]},
        {**state, "weight": state["weight"].double()},
        {**state, "weight": state["weight"].reshape(4)},
        {**state, "bias": torch.tensor([0.0, 1e-7])},
    ):
        assert io.state_dict_sha256(changed) != digest
