"""fit / evaluate on real data, checkpoints, resume equivalence, device selection."""

from __future__ import annotations

import contextlib
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import tqdm
from torch import nn

from cnn_study import training
from cnn_study.datasets import BatchLoader, ImageData
from cnn_study.models import create_model
from cnn_study.training import (
    EpochRecord,
    History,
    TensorBatches,
    compile_for_training,
    evaluate,
    extract_features,
    fit,
    load_checkpoint,
    save_checkpoint,
    select_device,
)


@pytest.fixture(scope="module")
def small_mnist(mnist_data) -> tuple[ImageData, ImageData]:
    train, test = mnist_data
    return train.sample(200, seed=0), test.sample(50, seed=0)


class InterruptedLoader(BatchLoader):
    """A loader whose epoch ``stop_at`` is cut short by a KeyboardInterrupt, as a user pressing Ctrl-C."""

    def __init__(self, *args, stop_at: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop_at, self.epochs_started = stop_at, 0

    def __iter__(self):
        self.epochs_started += 1
        for step, batch in enumerate(super().__iter__()):
            if self.epochs_started == self.stop_at and step == 3:
                raise KeyboardInterrupt
            yield batch


def _train_lenet(
    train: ImageData, epochs: int, interrupt_in_epoch: int | None = None, model_name: str = "lenet5", **kwargs
) -> tuple[torch.nn.Module, History]:
    torch.manual_seed(0)
    model = create_model(model_name)
    if interrupt_in_epoch is None:
        loader = BatchLoader(train, 64, shuffle=True, seed=0)
    else:
        loader = InterruptedLoader(train, 64, shuffle=True, seed=0, stop_at=interrupt_in_epoch)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    history = fit(
        model, loader, epochs=epochs, optimizer=optimizer, scheduler=scheduler, device="cpu", quiet=True, **kwargs
    )
    return model, history


def test_lenet5_learns_mnist_from_2000_images(small_mnist) -> None:
    train, test = small_mnist
    model, history = _train_lenet(train, 3, val_loader=BatchLoader(test, 250))
    assert len(history) == 3
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    result = evaluate(model, BatchLoader(test, 250))
    assert result.accuracy > 0.85
    monitored = evaluate(model, BatchLoader(test, 250), precision=training.training_precision(torch.device("cpu")))
    assert monitored.accuracy == pytest.approx(history.epochs[-1].val_accuracy)  # watched in the training precision
    assert result.probabilities.shape == (500, 10)
    assert torch.allclose(result.probabilities.sum(1), torch.ones(500))


def _random_digits(n: int = 256) -> ImageData:
    """MNIST-shaped noise with labels: enough to check that resuming repeats a run, which needs no learning."""
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ImageData(images, torch.arange(n) % 10, tuple("0123456789"), (0.1307,), (0.3081,), "noise")


@pytest.mark.parametrize(
    ("model_name", "data"),
    [("lenet5", "mnist"), ("mnist_cnn", "mnist"), ("mnist_cnn", "noise")],  # the MNIST CNN has dropout
)
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(request, tmp_path, model_name, data) -> None:
    train = request.getfixturevalue("small_mnist")[0] if data == "mnist" else _random_digits()
    uninterrupted, full_history = _train_lenet(train, 2, model_name=model_name)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        _train_lenet(train, 2, interrupt_in_epoch=2, checkpoint=checkpoint, model_name=model_name)
    assert len(load_checkpoint(checkpoint)["history"]["epochs"]) == 1
    first_epoch = load_checkpoint(checkpoint)["history"]["epochs"][0]
    torch.manual_seed(1234)  # whatever the global generator holds now, resuming restores the checkpoint's
    resumed, resumed_history = _train_lenet(train, 2, checkpoint=checkpoint, resume=True, model_name=model_name)
    assert len(resumed_history) == 2
    assert asdict(resumed_history.epochs[0]) == first_epoch  # epoch 1 was restored, not trained again
    for name, tensor in uninterrupted.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert resumed_history.column("train_loss") == pytest.approx(full_history.column("train_loss"))


def test_compiled_training_follows_the_eager_run(small_mnist, tmp_path, monkeypatch) -> None:
    train, _ = small_mnist
    eager, eager_history = _train_lenet(train, 1)
    compiled_modules = []

    def compile_and_record(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        compiled_modules.append(compile_for_training(model, device))
        return compiled_modules[-1]

    monkeypatch.setattr(training, "compile_for_training", compile_and_record)
    _, compiled_history = _train_lenet(train, 1, compile_model=True, checkpoint=tmp_path / "c.pt")
    assert len(compiled_modules) == 1  # fit trained through torch.compile
    assert compiled_history.column("train_loss") == pytest.approx(eager_history.column("train_loss"), rel=1e-3)
    assert load_checkpoint(tmp_path / "c.pt")["model"].keys() == eager.state_dict().keys()  # the plain model's names


def test_checkpoint_reloads_to_identical_outputs(small_mnist, tmp_path) -> None:
    train, test = small_mnist
    model, history = _train_lenet(train, 1, checkpoint=tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")
    reloaded = create_model("lenet5")
    reloaded.load_state_dict(state["model"])
    images, _ = next(iter(BatchLoader(test, 32)))
    model.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.equal(model(images), reloaded(images))
    assert History.from_dict(state["history"]).to_dict() == history.to_dict()
    assert not list(tmp_path.glob(".c.pt.*"))  # no temporary files left behind


def test_bad_checkpoint_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a cnn-study training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_save_checkpoint_writes_atomically(tmp_path, monkeypatch) -> None:
    model = create_model("lenet5")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, optimizer, None, History(), TensorBatches(torch.zeros(1), torch.zeros(1)))
    good = path.read_bytes()
    import cnn_study.files as io

    monkeypatch.setattr(io.torch, "save", lambda obj, file: (file.write(b"half"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        save_checkpoint(path, model, optimizer, None, History(), TensorBatches(torch.zeros(1), torch.zeros(1)))
    assert path.read_bytes() == good


def test_binary_head_uses_one_logit_and_bce() -> None:
    torch.manual_seed(0)
    features = torch.randn(400, 8)
    labels = (features[:, 0] > 0).long()
    head = torch.nn.Linear(8, 1)
    fit(
        head,
        TensorBatches(features, labels, 50, shuffle=True),
        epochs=10,
        optimizer=torch.optim.Adam(head.parameters(), lr=0.05),
        device="cpu",
        quiet=True,
    )
    result = evaluate(head, TensorBatches(features, labels, 100))
    assert result.accuracy > 0.95
    assert result.probabilities.shape == (400, 2)


def test_evaluate_can_average_every_image_with_its_mirror_image() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 8, 3))  # not mirror-symmetric
    images, labels = torch.randn(8, 1, 8, 8), torch.arange(8) % 3
    with torch.no_grad():
        expected = ((model(images) + model(images.flip(3))) / 2).softmax(1)
    averaged = evaluate(model, TensorBatches(images, labels, 4), average_mirror=True)
    single_view = evaluate(model, TensorBatches(images, labels, 4))
    assert torch.allclose(averaged.probabilities, expected, atol=1e-6)
    assert not torch.allclose(single_view.probabilities, expected, atol=1e-2)


FLOAT32 = torch.autocast("cpu", enabled=False)


def test_extract_features_matches_the_base_output() -> None:
    base = create_model("lenet5").features.eval()
    images = torch.randn(10, 1, 28, 28)
    batches = TensorBatches(images, torch.arange(10), 4)
    features, labels = extract_features(base, batches, "cpu", quiet=True, precision=FLOAT32)
    with torch.no_grad():
        expected = base(images)
    assert torch.allclose(features, expected) and features.shape == (10, 120, 1, 1)
    assert labels.tolist() == list(range(10))
    default, _ = extract_features(base, batches, "cpu", quiet=True)  # bfloat16 where the CPU has it natively
    assert default.dtype == torch.float32
    if training.cpu_has_native_bfloat16():
        assert not torch.equal(default, expected) and torch.allclose(default, expected, rtol=0.05, atol=0.05)
    else:
        assert torch.equal(default, features)


def test_extract_features_follows_a_channels_last_loader() -> None:
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    data = ImageData(images, torch.arange(6) % 2, ("a", "b"), (0.5,) * 3, (0.25,) * 3)
    model = create_model("zfnet_cifar", num_classes=2).eval()
    plain, _ = extract_features(model.features, BatchLoader(data, 3), "cpu", quiet=True, precision=FLOAT32)
    fast, _ = extract_features(
        model.features, BatchLoader(data, 3, channels_last=True), "cpu", quiet=True, precision=FLOAT32
    )
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(fast, plain, atol=1e-5)


def test_device_override() -> None:
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            select_device("cuda")
    with pytest.raises(ValueError, match=r"^Device meta is not available here; use 'auto' or 'cpu'\.$"):
        select_device("meta")  # a device type the package does not train on
    for name in ("gpu", "", "cuda:x"):  # torch's own error would list its 20-odd device types
        with pytest.raises(ValueError, match=rf"^Unknown device '{name}'; use auto, cpu, cuda, cuda:1 or mps\.$"):
            select_device(name)


def test_an_explicit_mps_device_is_used_where_apple_silicon_has_one(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("mps") == torch.device("mps")


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_device_names_and_precisions_per_device(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"GPU at {device}")
    assert training.device_name(torch.device("cuda", 1)) == "GPU at cuda:1"
    assert training.device_name(torch.device("mps")) == "mps"
    cuda = training.mixed_precision(torch.device("cuda"))  # an autocast can be built without a GPU
    assert (cuda.device, cuda.fast_dtype) == ("cuda", torch.bfloat16)
    assert isinstance(training.mixed_precision(torch.device("cpu")), contextlib.nullcontext)
    monkeypatch.setattr(training, "cpu_has_native_bfloat16", lambda: True)
    cpu = training.extraction_precision(torch.device("cpu"))
    assert (cpu.device, cpu.fast_dtype) == ("cpu", torch.bfloat16)
    assert training.extraction_precision(torch.device("cuda")).device == "cuda"
    assert isinstance(training.extraction_precision(torch.device("mps")), contextlib.nullcontext)
    monkeypatch.setattr(training, "cpu_has_native_bfloat16", lambda: False)
    assert isinstance(training.extraction_precision(torch.device("cpu")), contextlib.nullcontext)


def test_training_precision_is_bfloat16_on_cuda_and_on_cpus_that_compute_it_natively(monkeypatch) -> None:
    monkeypatch.setattr(training, "cpu_has_native_bfloat16", lambda: True)
    assert training.training_precision(torch.device("cpu")) == "bfloat16"
    assert training.training_precision(torch.device("cuda")) == "bfloat16"
    assert training.training_precision(torch.device("mps")) == "float32"
    monkeypatch.setattr(training, "cpu_has_native_bfloat16", lambda: False)
    assert training.training_precision(torch.device("cpu")) == "float32"
    with pytest.raises(ValueError, match=r"^Unknown precision 'float16'; use bfloat16 or float32\.$"):
        training.autocast(torch.device("cpu"), "float16")


def _one_step(precision: str | None) -> tuple[nn.Module, list[torch.dtype]]:
    """One SGD step of a small network; the dtypes of its training forward's outputs (its evaluation's too)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
    images, labels = torch.randn(16, 3, 8, 8), torch.arange(16) % 2
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = TensorBatches(images, labels, 16)
    fit(model, loader, epochs=1, optimizer=optimizer, val_loader=loader, device="cpu", quiet=True, precision=precision)
    return model, seen


def test_a_bfloat16_step_computes_its_forward_in_bfloat16_and_lands_near_the_float32_step() -> None:
    in_float32, float32_outputs = _one_step("float32")
    in_bfloat16, bfloat16_outputs = _one_step("bfloat16")
    assert float32_outputs == [torch.float32, torch.float32]  # the training step, then the epoch's evaluation
    assert bfloat16_outputs == [torch.bfloat16, torch.bfloat16]  # the epoch is monitored in its own precision
    reported = []
    in_bfloat16.register_forward_hook(lambda module, inputs, output: reported.append(output.dtype))
    evaluate(in_bfloat16, TensorBatches(torch.randn(4, 3, 8, 8), torch.arange(4) % 2, 4))
    assert reported == [torch.float32]  # a reported accuracy: float32 on a CPU
    for trained, reference in zip(in_bfloat16.parameters(), in_float32.parameters()):
        assert trained.dtype == torch.float32  # autocast: the parameters and their update stay float32
        assert not torch.equal(trained, reference)
        torch.testing.assert_close(trained, reference, rtol=0.02, atol=0.02)
    _, default_outputs = _one_step(None)
    assert default_outputs[0] == getattr(torch, training.training_precision(torch.device("cpu")))


class FakeFile:
    """Stands in for ``pathlib.Path`` of one file: reading ``path`` gives ``contents[path]``, or fails."""

    contents: dict[str, str] = {}

    def __init__(self, path: str) -> None:
        self.path = path

    def read_text(self) -> str:
        if self.path not in self.contents:
            raise OSError(f"no {self.path} here")
        return self.contents[self.path]


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        ("flags\t: fpu sse avx512f avx512_bf16 avx512_vnni", True),  # Cooper Lake, Zen 4
        ("flags\t: fpu sse avx512f amx_bf16 amx_tile", True),  # Sapphire Rapids
        ("flags\t: fpu sse avx2 avx512f avx512_vnni", False),
        (None, False),  # no /proc/cpuinfo: not Linux
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(monkeypatch, cpuinfo, native) -> None:
    monkeypatch.setattr(FakeFile, "contents", {} if cpuinfo is None else {"/proc/cpuinfo": cpuinfo})
    monkeypatch.setattr(training, "Path", FakeFile)
    training.cpu_has_native_bfloat16.cache_clear()  # read once per process: read these flags
    try:
        assert training.cpu_has_native_bfloat16() is native
    finally:
        training.cpu_has_native_bfloat16.cache_clear()  # the real flags for the tests after this one


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_automatic_device_prefers_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert select_device(None).type == select_device("auto").type == expected
    if cuda:
        assert select_device("cuda:1") == torch.device("cuda:1")  # an explicit choice of an available device


def test_label_smoothing_gives_the_smoothed_cross_entropy() -> None:
    logits, labels = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]), torch.tensor([0, 2])
    log_p = logits.log_softmax(1)
    smoothing = 0.2
    by_hand = (-(1 - smoothing) * log_p[torch.arange(2), labels] - smoothing * log_p.mean(1)).mean()
    loss, predictions = training.loss_and_predictions(logits, labels, label_smoothing=smoothing)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6) and predictions.tolist() == [0, 1]
    one_logit, binary_labels = torch.tensor([[1.5], [-0.5]]), torch.tensor([1, 0])
    targets = torch.tensor([1 - smoothing / 2, smoothing / 2])  # 1 and 0 pulled towards 0.5
    probability = torch.sigmoid(one_logit[:, 0])
    by_hand = -(targets * probability.log() + (1 - targets) * (1 - probability).log()).mean()
    loss, predictions = training.loss_and_predictions(one_logit, binary_labels, label_smoothing=smoothing)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6) and predictions.tolist() == [1, 0]


def test_fit_trains_with_the_label_smoothing_it_is_given() -> None:
    torch.manual_seed(0)
    features, labels = 4 * torch.randn(32, 5), torch.arange(32) % 3  # large logits: smoothing matters
    model = torch.nn.Linear(5, 3)
    with torch.no_grad():
        plain = torch.nn.functional.cross_entropy(model(features), labels).item()
        smoothed = torch.nn.functional.cross_entropy(model(features), labels, label_smoothing=0.3).item()
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # the loss of the unchanged model is recorded
    batches = TensorBatches(features, labels, 32)
    history = fit(
        model, batches, epochs=1, optimizer=frozen, label_smoothing=0.3, device="cpu", quiet=True, precision="float32"
    )  # float32, as the loss computed by hand
    assert history.epochs[0].train_loss == pytest.approx(smoothed, rel=1e-5) and abs(smoothed - plain) > 0.05


def test_fit_steps_the_optimizer_and_the_schedule_once_per_batch() -> None:
    torch.manual_seed(0)
    features, labels = torch.randn(40, 4), torch.arange(40) % 2
    model = torch.nn.Linear(4, 2)
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    batches = TensorBatches(features, labels, 8)
    history = fit(model, batches, epochs=2, optimizer=optimizer, scheduler=scheduler, device="cpu", quiet=True)
    assert not torch.equal(model.weight, before)
    assert scheduler.last_epoch == 10 and history.column("learning_rate") == pytest.approx([0.1 / 6, 0.1 / 11])


def _frozen_fit(epochs: int = 1, **kwargs) -> tuple[torch.nn.Module, History, dict[str, torch.Tensor]]:
    """A linear classifier that does not learn (learning rate 0), so its metrics can be computed by hand."""
    torch.manual_seed(0)
    data = {"x": torch.randn(50, 4), "y": torch.arange(50) % 3}
    data |= {"val_x": torch.randn(20, 4), "val_y": torch.arange(20) % 3}
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train, val = TensorBatches(data["x"], data["y"], 16), TensorBatches(data["val_x"], data["val_y"], 8)
    history = fit(model, train, epochs=epochs, optimizer=optimizer, val_loader=val, device="cpu", **kwargs)
    return model, history, data


def test_fit_records_the_loss_and_accuracy_of_every_image_and_the_validation_metrics(monkeypatch) -> None:
    clock, real_clock = iter([100.0, 102.5]), time.perf_counter  # the epoch's start and end, read from this clock
    monkeypatch.setattr("cnn_study.training.time.perf_counter", lambda: next(clock, None) or real_clock())
    model, history, data = _frozen_fit(quiet=True, precision="float32")  # computed by hand in float32
    with torch.no_grad():
        logits, val_logits = model(data["x"]), model(data["val_x"])
    [record] = history.epochs
    assert record.train_loss == pytest.approx(F.cross_entropy(logits, data["y"]).item(), rel=1e-5)
    assert record.train_accuracy == pytest.approx((logits.argmax(1) == data["y"]).float().mean().item())
    assert record.val_loss == pytest.approx(F.cross_entropy(val_logits, data["val_y"]).item(), rel=1e-5)
    assert record.val_accuracy == pytest.approx((val_logits.argmax(1) == data["val_y"]).float().mean().item())
    assert record.seconds == 2.5 and record.epoch == 1 and record.learning_rate == 0.0


def test_fit_shows_progress_unless_quiet(capsys) -> None:
    _frozen_fit(epochs=2)
    shown = capsys.readouterr()
    assert "epoch 2/2: train loss" in shown.out and ", val loss" in shown.out  # a line per epoch
    assert "epoch 1/2:" in shown.err and "batch/s" in shown.err  # the progress bar
    _frozen_fit(epochs=2, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_the_progress_bar_shows_the_running_loss_and_accuracy_every_20_batches_then_clears(capsys, monkeypatch) -> None:
    # tqdm also redraws by its clock (every 0.1 s): stopped here, the bar shows only what fit writes into it
    monkeypatch.setattr(tqdm.std, "time", lambda: 0.0)
    torch.manual_seed(0)
    features, labels = torch.randn(50, 4), torch.arange(50) % 3
    model = nn.Linear(4, 3)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)
    fit(
        model, TensorBatches(features, labels, 2), epochs=1, optimizer=frozen, device="cpu", precision="float32"
    )  # 25 batches
    shown = capsys.readouterr()
    with torch.no_grad():
        logits = model(features)
    losses, right = F.cross_entropy(logits, labels, reduction="none"), (logits.argmax(1) == labels).float()
    after = (2, 42)  # images seen after batches 1 and 21, where the bar is updated
    expected = [(f"{right[:seen].mean():.3f}", f"{losses[:seen].mean():.3f}") for seen in after]
    assert re.findall(r"acc=([\d.]+), loss=([\d.]+)\]", shown.err) == expected
    assert shown.err.endswith("\r") and "25/25" not in shown.err  # the bar is cleared, not left at 100%
    line = f"epoch 1/1: train loss {losses.mean():.4f} acc {right.mean():.2%} ("  # no validation: no val part
    assert shown.out.startswith(line) and re.fullmatch(r"\d+\.\d s\)\n", shown.out.removeprefix(line))


def test_fit_leaves_the_cudnn_setting_alone_on_a_cpu_and_the_layout_of_a_loader_without_one() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    images, labels = torch.randn(4, 3, 4, 4), torch.tensor([0, 1, 0, 1])
    benchmark = torch.backends.cudnn.benchmark
    optimizer = torch.optim.SGD(model.parameters())
    fit(model, TensorBatches(images, labels), epochs=1, optimizer=optimizer, device="cpu", quiet=True)
    assert torch.backends.cudnn.benchmark == benchmark  # a CUDA setting, made only for CUDA runs
    assert model[0].weight.is_contiguous()  # TensorBatches says nothing about channels-last: left as it was


def test_a_run_without_schedule_or_loader_generator_resumes_exactly(tmp_path) -> None:
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, generator=generator), torch.tensor([0, 1, 0, 1])) for _ in range(3)]

    def run(epochs: int, loader=batches, **options) -> tuple[nn.Module, History]:
        torch.manual_seed(1)
        model = nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # momentum: state to restore
        return model, fit(model, loader, epochs=epochs, optimizer=optimizer, device="cpu", quiet=True, **options)

    uninterrupted, _ = run(3)
    run(1, checkpoint=tmp_path / "run.pt")  # a list of batches: no generator to save
    assert load_checkpoint(tmp_path / "run.pt")["rng"]["loader"] is None
    resumed, history = run(3, checkpoint=tmp_path / "run.pt", resume=True)
    assert torch.equal(resumed.weight, uninterrupted.weight) and len(history) == 3
    run(1, checkpoint=tmp_path / "again.pt")
    same_batches = TensorBatches(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]), 4)
    resumed, _ = run(3, loader=same_batches, checkpoint=tmp_path / "again.pt", resume=True)  # it has a generator
    assert torch.equal(resumed.weight, uninterrupted.weight)


def test_a_schedule_is_restored_only_where_the_checkpoint_and_the_resumed_run_both_have_one(tmp_path) -> None:
    batches = TensorBatches(torch.randn(8, 3), torch.arange(8) % 2, 4)

    def run(epochs: int, checkpoint: str, scheduled: bool, resume: bool = False) -> list[float]:
        model = nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6) if scheduled else None
        options = {"checkpoint": tmp_path / checkpoint, "resume": resume, "quiet": True}
        return fit(model, batches, epochs=epochs, optimizer=optimizer, scheduler=scheduler, **options).column(
            "learning_rate"
        )

    run(1, "scheduled.pt", scheduled=True)
    kept = pytest.approx([0.075, 0.075], abs=1e-9)  # resumed without one: the optimizer keeps its last rate
    assert run(3, "scheduled.pt", scheduled=False, resume=True)[1:] == kept
    run(1, "constant.pt", scheduled=False)
    halfway_from_the_start = pytest.approx([0.075, 0.025], abs=1e-9)  # the cosine starts anew
    assert run(3, "constant.pt", scheduled=True, resume=True)[1:] == halfway_from_the_start


def test_resuming_into_another_model_names_the_checkpoint(tmp_path) -> None:
    batches = TensorBatches(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    options = {"device": "cpu", "checkpoint": tmp_path / "run.pt", "quiet": True}
    three_classes, two_classes = nn.Linear(3, 3), nn.Linear(3, 2)
    fit(three_classes, batches, epochs=1, optimizer=torch.optim.SGD(three_classes.parameters()), **options)
    with pytest.raises(ValueError, match=r"run\.pt does not fit this Linear: it holds 2 tensors"):
        fit(two_classes, batches, epochs=2, optimizer=torch.optim.SGD(two_classes.parameters()), resume=True, **options)


def test_a_checkpoint_needs_its_model_optimizer_and_history_and_nothing_more(tmp_path) -> None:
    torch.save({"model": {}, "optimizer": {}, "history": {"epochs": []}}, tmp_path / "least.pt")
    assert set(load_checkpoint(tmp_path / "least.pt")) == {"model", "optimizer", "history"}
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.pt is not a readable checkpoint"):
        training.load_checkpoint_meta(tmp_path / "junk.pt")


def test_tensor_batches_default_to_128_in_a_seeded_order() -> None:
    inputs, labels = torch.arange(129.0), torch.arange(129)
    assert [len(y) for _, y in TensorBatches(inputs, labels)] == [128, 1]
    order = torch.cat([y for _, y in TensorBatches(inputs, labels, shuffle=True)])
    assert torch.equal(order, torch.randperm(129, generator=torch.Generator().manual_seed(0)))  # seed 0
    torch.manual_seed(5)  # the global generator plays no part
    again = TensorBatches(inputs, labels, 50, shuffle=True, seed=0)
    assert torch.equal(torch.cat([y for _, y in again]), order)


def test_fit_saves_its_meta_and_starts_afresh_unless_told_to_resume(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    _, first, _ = _frozen_fit(checkpoint=path, meta={"run": "first"}, quiet=True)
    assert load_checkpoint(path)["meta"] == {"run": "first"}
    torch.manual_seed(5)
    model = torch.nn.Linear(4, 3)  # another start: a fresh run's first epoch differs from the saved one
    batches = TensorBatches(torch.randn(50, 4), torch.arange(50) % 3, 16)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)
    again = fit(model, batches, epochs=1, optimizer=frozen, device="cpu", checkpoint=path, quiet=True)
    assert again.epochs[0].train_loss != first.epochs[0].train_loss


def test_fit_trains_in_the_loaders_memory_format(monkeypatch) -> None:
    data = ImageData(torch.zeros(8, 3, 8, 8, dtype=torch.uint8), torch.arange(8) % 2, ("a", "b"), (0.5,) * 3, (2,) * 3)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 2))
    compiled = []
    monkeypatch.setattr(training, "compile_for_training", lambda module, device: compiled.append(device) or module)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(model, BatchLoader(data, 4), epochs=1, optimizer=optimizer, device="cpu", quiet=True)
    assert not model[0].weight.is_contiguous(memory_format=torch.channels_last) and compiled == []
    loader = BatchLoader(data, 4, channels_last=True)
    fit(model, loader, epochs=1, optimizer=optimizer, device="cpu", quiet=True, compile_model=True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert compiled == [torch.device("cpu")]


def test_a_later_stage_numbers_its_epochs_on() -> None:
    first = History([EpochRecord(1, 1.0, 0.5, None, None, 0.1, 1.0), EpochRecord(2, 0.9, 0.6, None, None, 0.1, 1.0)])
    second = History([EpochRecord(1, 0.5, 0.8, None, None, 0.01, 2.0)])
    joined = first.followed_by(second)
    assert joined.column("epoch") == [1, 2, 3] and joined.column("train_loss") == [1.0, 0.9, 0.5]
    assert second.column("epoch") == [1]  # the stage itself is left as it was


def test_checkpoint_meta_is_read_without_the_rest(tmp_path) -> None:
    model = torch.nn.Linear(2, 2)
    optimizer, batches = torch.optim.SGD(model.parameters()), TensorBatches(torch.zeros(1, 2), torch.zeros(1))
    path = save_checkpoint(tmp_path / "c.pt", model, optimizer, None, History(), batches, meta={"settings": {"e": 3}})
    assert training.load_checkpoint_meta(path) == {"settings": {"e": 3}}
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a cnn-study training checkpoint"):
        training.load_checkpoint_meta(tmp_path / "other.pt")


def test_seed_everything_repeats_python_numpy_and_torch_draws() -> None:
    import random

    import numpy as np

    def draws() -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    training.seed_everything(3)
    first = draws()
    training.seed_everything(3)
    assert draws() == first
    training.seed_everything(4)
    assert all(a != b for a, b in zip(draws(), first))


def test_device_name_and_compile_modes(monkeypatch) -> None:
    assert training.device_name(torch.device("cpu")) == f"cpu ({torch.get_num_threads()} threads)"
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, **options: calls.append(options) or model)
    model = torch.nn.Linear(2, 2)
    assert compile_for_training(model, torch.device("cpu")) is model
    compile_for_training(model, torch.device("cuda"))
    assert calls == [{"mode": None, "dynamic": False}, {"mode": "reduce-overhead", "dynamic": False}]


def test_micro_batches_take_the_same_step_as_whole_batches() -> None:
    """Gradient accumulation: chunks of 3 of a batch of 8 give the whole batch's mean-loss gradient."""
    torch.manual_seed(0)
    images, labels = torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,))
    trained = []
    for micro_batch_size in (None, 3):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
        history = fit(
            model,
            TensorBatches(images, labels, 8),
            epochs=2,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9),
            label_smoothing=0.1,
            device="cpu",
            quiet=True,
            micro_batch_size=micro_batch_size,
            precision="float32",  # bfloat16 rounds a chunk's sum differently from the whole batch's
        )
        trained.append((model.state_dict(), history.epochs[-1]))
    (whole, whole_record), (chunked, chunked_record) = trained
    assert all(torch.allclose(whole[name], chunked[name], atol=1e-5) for name in whole)
    assert not torch.equal(whole["3.weight"], nn.Linear(64, 3).weight)  # it trained
    assert chunked_record.train_loss == pytest.approx(whole_record.train_loss, abs=1e-5)
    assert chunked_record.train_accuracy == whole_record.train_accuracy


# ----------------------------------------------------------------------------- optimizers, schedules, stages


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("adam", torch.optim.Adam, {"lr": 0.02, "weight_decay": 0.001}),
        ("adamw", torch.optim.AdamW, {"lr": 0.02, "weight_decay": 0.001}),
        ("sgd", torch.optim.SGD, {"lr": 0.02, "weight_decay": 0.001, "momentum": 0.8, "nesterov": True}),
        ("rmsprop", torch.optim.RMSprop, {"lr": 0.02, "weight_decay": 0.001, "momentum": 0}),  # as Keras's
    ],
)
def test_make_optimizer_builds_the_named_optimizer_with_its_settings(name, kind, expected) -> None:
    parameter = nn.Parameter(torch.zeros(3))
    optimizer = training.make_optimizer(name, [parameter], 0.02, momentum=0.8, nesterov=True, weight_decay=0.001)
    [group] = optimizer.param_groups
    assert type(optimizer) is kind and group["params"] == [parameter]
    assert {key: group[key] for key in expected} == expected


def test_make_optimizer_defaults_and_unknown_names() -> None:
    [group] = training.make_optimizer("sgd", [nn.Parameter(torch.zeros(1))], 0.1).param_groups
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, False, 0.0)
    with pytest.raises(ValueError, match=r"^Unknown optimizer 'lion'; use adam, adamw, sgd or rmsprop\.$"):
        training.make_optimizer("lion", [nn.Parameter(torch.zeros(1))], 0.1)


def _learning_rates(schedule: str, steps: int, lr: float = 0.1) -> list[float]:
    """The learning rate of each of ``steps`` batches under ``schedule``, and after the last one."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = training.make_scheduler(schedule, optimizer, steps)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates + [optimizer.param_groups[0]["lr"]]


def test_schedules_shape_the_learning_rate_over_the_steps_they_are_given() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    assert training.make_scheduler("constant", optimizer, 10) is None
    cosine = _learning_rates("cosine", 10)
    assert cosine[0] == 0.1 and cosine[5] == pytest.approx(0.05) and cosine[10] == pytest.approx(0.0, abs=1e-12)
    onecycle = _learning_rates("onecycle", 100)  # a quarter of the steps warm up to the optimizer's rate
    assert max(onecycle) == pytest.approx(0.1) and onecycle.index(max(onecycle)) == 24
    assert onecycle[0] == pytest.approx(0.1 / 25) and onecycle[99] == pytest.approx(0.1 / 25 / 1e4)  # torch's ends
    for steps, peak in ((4, 1), (6, 1), (8, 1), (12, 2)):  # at least two warm-up steps in short (quick) runs
        rates = _learning_rates("onecycle", steps)
        assert rates.index(max(rates)) == peak, steps


def test_schedule_errors_name_the_problem() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(
        ValueError, match=r"^The one-cycle schedule needs at least 4 steps .* has 3: use a smaller batch"
    ):
        training.make_scheduler("onecycle", optimizer, 3)
    with pytest.raises(ValueError, match=r"^Unknown schedule 'step'; use constant, cosine, onecycle or triangle\.$"):
        training.make_scheduler("step", optimizer, 10)


@pytest.mark.parametrize(
    ("stage", "reference_optimizer", "reference_schedule"),
    [
        (
            training.Stage(
                epochs=2,
                optimizer="sgd",
                lr=0.1,
                momentum=0.5,
                nesterov=True,
                weight_decay=0.01,
                schedule="cosine",
                label_smoothing=0.2,
            ),
            lambda parameters: torch.optim.SGD(parameters, lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.01),
            lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6),
        ),
        (
            training.Stage(epochs=2, optimizer="adamw", lr=0.01, weight_decay=0.1, schedule="onecycle"),
            lambda parameters: torch.optim.AdamW(parameters, lr=0.01, weight_decay=0.1),
            lambda optimizer: torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.01, total_steps=6, pct_start=1 / 3),
        ),
        (
            training.Stage(epochs=2, optimizer="rmsprop", lr=0.01, weight_decay=0.1),
            lambda parameters: torch.optim.RMSprop(parameters, lr=0.01, weight_decay=0.1),
            lambda optimizer: None,
        ),
        (
            training.Stage(epochs=2, optimizer="sgd", lr=0.1, weight_decay=0.01, schedule="triangle", bias_lr_scale=4),
            lambda parameters: torch.optim.SGD(
                [
                    {"params": [p for p in parameters if p.ndim == 2]},
                    {"params": [p for p in parameters if p.ndim == 1], "lr": 0.4, "weight_decay": 0.0025},
                ],
                lr=0.1,
                momentum=0.9,
                weight_decay=0.01,
            ),
            # a fifth of the peak, up to the peak in the first fifth of the 6 steps (1.2), then down to 0 at 6
            lambda optimizer: torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: min(0.2 + 0.8 * step / 1.2, (6 - step) / 4.8)
            ),
        ),
    ],
    ids=["sgd-nesterov-cosine-smoothing", "adamw-onecycle", "rmsprop-constant", "sgd-bias-rate-triangle"],
)
def test_fit_stage_takes_the_steps_its_stage_names_on_the_trainable_parameters_only(
    stage, reference_optimizer, reference_schedule
) -> None:
    torch.manual_seed(0)
    features, labels = torch.randn(20, 4), torch.arange(20) % 3
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3))
    model[0].requires_grad_(False)  # a frozen layer, as a transfer model's base
    by_hand = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3))
    by_hand.load_state_dict(model.state_dict())
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    batches = TensorBatches(features, labels, 8)  # 3 batches per epoch: the schedule spans 6 steps
    history = training.fit_stage(model, batches, stage, device="cpu", quiet=True, precision="float32")
    optimizer = reference_optimizer(list(by_hand[2].parameters()))
    scheduler = reference_schedule(optimizer)
    rates = []
    for _ in range(stage.epochs):
        for images, targets in batches:
            loss = F.cross_entropy(by_hand(images), targets, label_smoothing=stage.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    trained, expected = model.state_dict(), by_hand.state_dict()
    assert all(torch.allclose(trained[name], expected[name], atol=1e-6) for name in expected)
    assert torch.equal(trained["0.weight"], initial["0.weight"]) and torch.equal(trained["0.bias"], initial["0.bias"])
    assert (trained["2.weight"] - initial["2.weight"]).abs().max() > 1e-3  # the trainable layer learned
    assert history.column("learning_rate") == pytest.approx(rates, abs=1e-9) and history.column("epoch") == [1, 2]


def test_the_one_cycle_schedule_cycles_a_momentum_and_gives_none_to_an_optimizer_without_one() -> None:
    def momenta(optimizer: torch.optim.Optimizer) -> list[float]:
        scheduler = training.make_scheduler("onecycle", optimizer, 8)
        seen = []
        for _ in range(8):
            seen.append(optimizer.param_groups[0]["momentum"])
            optimizer.step()
            scheduler.step()
        return seen

    cycled = momenta(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9))
    assert cycled[0] == pytest.approx(0.95) and min(cycled) == pytest.approx(0.85)
    assert momenta(torch.optim.RMSprop([nn.Parameter(torch.zeros(1))], lr=0.1)) == [0] * 8


def test_the_triangle_schedule_warms_up_from_a_fifth_over_a_fifth_then_falls_to_zero() -> None:
    rates = _learning_rates("triangle", 100)
    assert rates[0] == pytest.approx(0.02) and rates[10] == pytest.approx(0.06) and rates[20] == pytest.approx(0.1)
    assert max(rates) == rates[20] and rates[60] == pytest.approx(0.05) and rates[100] == 0


def test_lookahead_pulls_the_weights_back_towards_the_slow_ones_more_and_more() -> None:
    weight = nn.Parameter(torch.zeros(1))
    optimizer = training.Lookahead(torch.optim.SGD([weight], lr=1.0), total_steps=10, steps=5, final_pull=0.8)
    seen = []
    for _ in range(10):
        weight.grad = torch.tensor([-1.0])  # every fast step adds 1
        optimizer.step()
        seen.append(weight.item())
    # step 5: pull 0.8 * (5/10)**3 = 0.1, slow = 0 + 0.9 * 5 = 4.5; step 10: pull 0.8, slow = 4.5 + 0.2 * 5 = 5.5
    assert seen == pytest.approx([1, 2, 3, 4, 4.5, 5.5, 6.5, 7.5, 8.5, 5.5])
    assert optimizer.pull() == pytest.approx(0.8) and optimizer.slow_weights[0].item() == pytest.approx(5.5)


def _fit_resuming(model: nn.Module, batches, optimizer, epochs: int, checkpoint, total_steps: int = 9) -> None:
    """`fit` quietly on the CPU in float32 for ``epochs`` under a triangle schedule of ``total_steps``, resuming from
    ``checkpoint`` where it exists."""
    training.fit(
        model,
        batches,
        epochs=epochs,
        optimizer=optimizer,
        scheduler=training.make_scheduler("triangle", optimizer, total_steps),
        device="cpu",
        quiet=True,
        checkpoint=checkpoint,
        resume=True,
        precision="float32",
    )


def test_lookahead_without_a_pull_is_its_optimizer_and_resumes_from_its_state(tmp_path) -> None:
    torch.manual_seed(0)
    features, labels = torch.randn(24, 4), torch.arange(24) % 3
    plain, wrapped = nn.Linear(4, 3), nn.Linear(4, 3)
    wrapped.load_state_dict(plain.state_dict())
    batches = TensorBatches(features, labels, 8)
    stage = training.Stage(epochs=2, optimizer="sgd", lr=0.5, momentum=0.9)
    training.fit_stage(plain, batches, stage, device="cpu", quiet=True, precision="float32")
    sgd = torch.optim.SGD(wrapped.parameters(), lr=0.5, momentum=0.9)
    training.fit(
        wrapped,
        batches,
        epochs=2,
        optimizer=training.Lookahead(sgd, total_steps=6, steps=2, final_pull=0.0),
        device="cpu",
        quiet=True,
        precision="float32",
    )
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain.parameters(), wrapped.parameters()))

    def lookahead_run(epochs: int, checkpoint) -> nn.Module:
        torch.manual_seed(1)
        model = nn.Linear(4, 3)
        optimizer = training.Lookahead(torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9), total_steps=9)
        _fit_resuming(model, TensorBatches(features, labels, 8, shuffle=True, seed=0), optimizer, epochs, checkpoint)
        return model

    lookahead_run(2, tmp_path / "resumed.pt")  # interrupted after 2 of 3 epochs, mid-way between two pulls
    resumed, uninterrupted = lookahead_run(3, tmp_path / "resumed.pt"), lookahead_run(3, None)
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), uninterrupted.parameters()))


@pytest.mark.parametrize("shape", [(8, 72), (72, 8)], ids=["wide", "tall"])
def test_orthogonalise_keeps_the_singular_vectors_and_brings_a_tenfold_spread_of_singular_values_near_one(
    shape,
) -> None:
    torch.manual_seed(0)
    u, _, vt = torch.linalg.svd(torch.randn(shape), full_matrices=False)
    matrix = u @ torch.diag(torch.logspace(0, 1, min(shape))) @ vt  # singular values from 1 to 10
    result = training.orthogonalise(matrix)
    assert result.shape == matrix.shape and result.dtype == matrix.dtype
    core = u.T @ result @ vt.T  # diagonal if the singular vectors are kept; the diagonal holds the new values
    values = core.diagonal()
    assert values.min() > 0.5 and values.max() < 1.5 and values.max() / values.min() < 2
    assert (core - torch.diag(values)).abs().max() < 0.05


def test_muon_rescales_each_filter_bank_and_steps_along_its_orthogonalised_momentum() -> None:
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(6, 2, 3, 3) * 3)
    optimizer = training.Muon([weight], lr=0.01, momentum=0.5, nesterov=False)
    gradients = [torch.randn(6, 2, 3, 3), torch.randn(6, 2, 3, 3)]
    for gradient in gradients:
        before = weight.detach().clone()
        weight.grad = gradient
        optimizer.step()
    buffer = gradients[1] + 0.5 * gradients[0]  # the momentum after two steps (no Nesterov)
    rescaled = before * 6**0.5 / before.norm()
    expected = rescaled - 0.01 * training.orthogonalise(buffer.view(6, -1)).view_as(weight)
    assert torch.allclose(weight.detach(), expected, atol=1e-6)
    assert weight.norm().item() == pytest.approx(6**0.5, rel=0.05)  # each step turns the bank, about no longer


def test_a_muon_stage_trains_the_filters_by_muon_and_the_rest_by_sgd_and_resumes_exactly(tmp_path) -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(48, 1, 6, 6), torch.arange(48) % 3
    images[labels == 1, :, :3] += 1  # classes a convolution can tell apart
    images[labels == 2, :, 3:] += 1
    stage = training.Stage(epochs=3, optimizer="muon", lr=0.1, muon_lr=0.05, muon_momentum=0.6, bias_lr_scale=4)

    def model_and_batches() -> tuple[nn.Module, TensorBatches]:
        torch.manual_seed(1)
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)
        )
        return model, TensorBatches(images, labels, 16, shuffle=True, seed=0)

    model, batches = model_and_batches()
    history = training.fit_stage(model, batches, stage, device="cpu", quiet=True, precision="float32")
    sgd, muon = training.stage_optimizer(stage, model).optimizers
    assert type(sgd) is torch.optim.SGD and type(muon) is training.Muon
    assert [p.shape for group in muon.param_groups for p in group["params"]] == [(4, 1, 3, 3)]
    assert [group["lr"] for group in sgd.param_groups] == [0.1, 0.4]  # the head; its bias and shifts at 4 times
    assert model[0].weight.norm().item() == pytest.approx(2, rel=0.1)  # Muon's filters: rescaled to sqrt(4 rows)
    assert history.epochs[-1].train_accuracy > 0.7  # of 3 classes

    def muon_run(epochs: int, checkpoint) -> nn.Module:  # under Lookahead, whose state is saved too
        model, batches = model_and_batches()
        optimizer = training.Lookahead(training.stage_optimizer(stage, model), total_steps=9)
        _fit_resuming(model, batches, optimizer, epochs, checkpoint)
        return model

    muon_run(2, tmp_path / "muon.pt")  # interrupted after 2 of 3 epochs
    resumed, uninterrupted = muon_run(3, tmp_path / "muon.pt"), muon_run(3, None)
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), uninterrupted.state_dict().values()))
    # the one-cycle schedule drives a combined optimizer's rates and leaves each optimizer's momentum alone
    onecycle_stage = training.Stage(
        epochs=2, optimizer="muon", lr=0.1, muon_lr=0.05, muon_momentum=0.6, schedule="onecycle"
    )
    model, batches = model_and_batches()
    training.fit_stage(model, batches, onecycle_stage, device="cpu", quiet=True, precision="float32")
    assert model[0].weight.norm().item() == pytest.approx(2, rel=0.1)


def test_a_muon_stage_leaves_a_convolution_with_a_bias_and_a_frozen_one_to_sgd_and_to_nobody() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 2),  # with a bias and no batch norm after it, as a first layer without whitening
        nn.Conv2d(4, 8, 3, bias=False),
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, bias=False),
        nn.BatchNorm2d(8),
    )
    model[3].weight.requires_grad_(False)
    stage = training.Stage(epochs=1, optimizer="muon", lr=0.1, muon_lr=0.05, muon_momentum=0.6)
    sgd, muon = training.stage_optimizer(stage, model).optimizers
    assert [p is model[1].weight for group in muon.param_groups for p in group["params"]] == [True]
    sgd_trained = [p for group in sgd.param_groups for p in group["params"]]
    assert [p.shape for p in sgd_trained] == [(4, 3, 2, 2), (4,), (8,), (8,), (8,), (8,)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("filters", [4, 64])
def test_muon_keeps_a_filter_bank_of_zeros_at_zero(dtype, filters) -> None:
    weight = nn.Parameter(torch.zeros(filters, 2, 3, 3, dtype=dtype))
    optimizer = training.Muon([weight], lr=0.1, momentum=0.6)
    weight.grad = torch.zeros_like(weight)
    optimizer.step()
    assert torch.equal(weight.detach(), torch.zeros_like(weight))


def test_lookahead_over_a_combined_optimizer_steps_with_a_closure() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(18, 2))
    stage = training.Stage(epochs=1, optimizer="muon", lr=0.1, muon_lr=0.05, muon_momentum=0.6)
    optimizer = training.Lookahead(training.stage_optimizer(stage, model), total_steps=4)
    images, labels = torch.randn(4, 1, 5, 5), torch.tensor([0, 1, 0, 1])

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        return loss

    before = model[3].weight.detach().clone()
    assert optimizer.step(closure) > 0 and not torch.equal(model[3].weight, before)


def test_lookahead_keeps_its_slow_weights_where_the_model_trains_after_it_was_built() -> None:
    model = nn.Linear(3, 2)
    optimizer = training.Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), total_steps=2, steps=1)
    model.double()  # as fit moves the model to its device after fit_stage built the optimizer
    model(torch.randn(4, 3, dtype=torch.float64)).sum().backward()
    optimizer.step()
    assert [slow.dtype for slow in optimizer.slow_weights] == [torch.float64, torch.float64]


def test_a_stage_names_muon_with_its_settings_or_not_at_all() -> None:
    with pytest.raises(ValueError, match=r"^optimizer='muon' needs muon_lr and muon_momentum"):
        training.Stage(epochs=1, optimizer="muon", lr=0.1, muon_lr=0.1)
    with pytest.raises(ValueError, match=r"^muon_lr and muon_momentum are settings of optimizer='muon', not 'sgd'\."):
        training.Stage(epochs=1, optimizer="sgd", lr=0.1, muon_momentum=0.6)


def test_fit_stage_continues_the_history_it_is_given() -> None:
    model = nn.Linear(2, 2)
    batches = TensorBatches(torch.randn(8, 2), torch.arange(8) % 2, 4)
    stage = training.Stage(epochs=2, optimizer="sgd", lr=0.1)
    first = training.fit_stage(model, batches, stage, device="cpu", quiet=True)
    both = training.fit_stage(model, batches, stage, history=first, device="cpu", quiet=True)
    assert len(first) == 2 and both.column("epoch") == [1, 2, 3, 4] and both.epochs[:2] == first.epochs


class CountingFlatten(nn.Module):
    """A frozen 'extractor' without parameters that counts the images it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.images_seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(images)
        return images.flatten(1)


def test_fit_head_on_features_runs_the_extractor_once_per_image_and_view_and_trains_on_all_views(capsys) -> None:
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(12, 1, 2, 2, generator=generator), torch.arange(12) % 2
    val_images, val_labels = torch.randn(6, 1, 2, 2, generator=generator), torch.arange(6) % 2
    views = [TensorBatches(images, labels, 5), TensorBatches(-images, labels, 5)]  # plain and a second view
    extractor = CountingFlatten()
    head = nn.Linear(4, 2)
    frozen = training.Stage(epochs=1, optimizer="sgd", lr=0.0)  # the head stays as it is: its loss by hand
    history = training.fit_head_on_features(
        extractor,
        head,
        views,
        TensorBatches(val_images, val_labels),
        frozen,
        batch_size=8,
        device="cpu",
        quiet=True,
        precision="float32",  # as the losses computed by hand
    )
    assert extractor.images_seen == 2 * 12 + 6 and capsys.readouterr() == ("", "")
    with torch.no_grad():
        train_logits = head(torch.cat([images, -images]).flatten(1))
        val_logits = head(val_images.flatten(1))
    [record] = history.epochs
    assert record.train_loss == pytest.approx(F.cross_entropy(train_logits, labels.repeat(2)).item(), rel=1e-5)
    assert record.val_loss == pytest.approx(F.cross_entropy(val_logits, val_labels).item(), rel=1e-5)
    assert record.val_accuracy == pytest.approx((val_logits.argmax(1) == val_labels).float().mean().item())

    torch.manual_seed(0)
    head, by_hand = nn.Linear(4, 2), nn.Linear(4, 2)
    by_hand.load_state_dict(head.state_dict())
    cosine = training.Stage(epochs=2, optimizer="sgd", lr=0.1, schedule="cosine")
    options = {"device": "cpu", "quiet": True}
    history = training.fit_head_on_features(CountingFlatten(), head, views, None, cosine, batch_size=8, **options)
    features = torch.cat([images, -images]).flatten(1)
    shuffled = TensorBatches(features, labels.repeat(2), 8, shuffle=True, seed=0)  # the default seed
    expected = training.fit_stage(by_hand, shuffled, cosine, **options)
    assert torch.equal(head.weight, by_hand.weight) and torch.equal(head.bias, by_hand.bias)
    assert history.column("train_loss") == expected.column("train_loss") and history.column("val_loss") == [None] * 2


def test_fit_head_on_features_passes_on_checkpoints_and_shows_progress_unless_quiet(tmp_path, capsys, monkeypatch):
    views = [TensorBatches(torch.randn(8, 1, 2, 2), torch.arange(8) % 2)]
    validation = TensorBatches(torch.randn(4, 1, 2, 2), torch.arange(4) % 2)
    stage = training.Stage(epochs=1, optimizer="sgd", lr=0.1)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # where tqdm would draw (quiet=None draws here)
    training.fit_head_on_features(
        CountingFlatten(), nn.Linear(4, 2), views, validation, stage, batch_size=4, quiet=True
    )
    assert capsys.readouterr() == ("", "")
    training.fit_head_on_features(
        CountingFlatten(),
        nn.Linear(4, 2),
        views,
        validation,
        stage,
        batch_size=4,
        checkpoint=tmp_path / "head.pt",
        meta={"run": "head"},
    )
    shown = capsys.readouterr()
    assert shown.out.startswith("epoch 1/1: train loss") and "extracting features" in shown.err
    assert load_checkpoint(tmp_path / "head.pt")["meta"] == {"run": "head"}


# ----------------------------------------------------------------------------- peak memory


def test_peak_rss_is_the_kernels_high_water_mark_else_getrusage_else_none(monkeypatch) -> None:
    import resource
    import sys
    from types import SimpleNamespace

    monkeypatch.setattr(training, "Path", FakeFile)
    status = "Name:\tpython\nVmPeak:\t  999999 kB\nVmHWM:\t  204851 kB\nVmRSS:\t 1 kB\n"
    monkeypatch.setattr(FakeFile, "contents", {"/proc/self/status": status})
    assert training.peak_memory(torch.device("cpu")) == {"peak_rss_mb": 200.0, "peak_cuda_mb": None}  # to 0.1 MB
    monkeypatch.setattr(FakeFile, "contents", {})  # not Linux: getrusage, in KiB, or in bytes on macOS
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=409651 if who == 0 else 1))
    assert resource.RUSAGE_SELF == 0 and training._peak_rss_mb() == 400.0
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=419_482_619))
    assert training._peak_rss_mb() == 400.0
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows has no resource module
    assert training._peak_rss_mb() is None


def test_peak_cuda_memory_is_reported_in_mb(monkeypatch) -> None:
    asked = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: asked.append(device) or 3.25 * 2**20)
    assert training.peak_memory(torch.device("cuda", 1))["peak_cuda_mb"] == 3.2  # rounded to 0.1 MB
    assert asked == [torch.device("cuda", 1)]


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="reads the resident size from /proc (Linux)")
def test_peak_rss_reaches_what_a_fresh_process_holds_after_a_large_allocation() -> None:
    import subprocess
    import sys

    script = (
        "import os, numpy, torch\n"
        "from cnn_study.training import peak_memory\n"
        "resident = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20\n"
        "block = numpy.ones(40_000_000)  # 305.2 MB, every page written\n"
        "print(peak_memory(torch.device('cpu'))['peak_rss_mb'] - resident)\n"
    )
    grown = float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert 300 < grown < 320
