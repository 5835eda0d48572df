"""Model registry, architectures, parameter counts, weights and transfer models."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnn_study._messages import command_line_messages
from cnn_study.datasets import BatchLoader, DownloadError, ImageData
from cnn_study.models import (
    ImageClassifier,
    InputSpec,
    available_weights,
    create_model,
    get_model_info,
    list_models,
    load_trained_model,
    register_model,
    save_trained_model,
    summary,
)

needs_offline = pytest.mark.usefixtures("offline_extra")
LIGHT_MODELS = [name for name in list_models() if not name.startswith(("vgg16", "efficientnet"))]


def test_registry_lists_every_architecture_of_the_study() -> None:
    expected = {
        "mnist_cnn",
        "fashion_cnn",
        "lenet5",
        "alexnet_cifar",
        "zfnet_cifar",
        "vgg16",
        "vgg16_transfer",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
    }
    assert expected <= set(list_models())
    assert list_models() == sorted(list_models())
    assert list_models("resnet*") == ["resnet110", "resnet20", "resnet32", "resnet44", "resnet56"]


def test_unknown_model_name_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"Unknown model 'resnet2'.*'resnet20'"):
        create_model("resnet2")
    with pytest.raises(ValueError, match=r"named by a string, got None\. Registered models: alexnet_cifar"):
        create_model(None)


def test_registering_a_name_twice_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5", paper="x", year=2000)(lambda **_: None)
    with pytest.raises(TypeError, match="must be annotated with the model class it returns"):
        register_model("unannotated_net", paper="x", year=2000)(lambda **_: None)


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_forward_pass_gives_one_logit_row_per_image(name: str) -> None:
    model = create_model(name).eval()
    info = get_model_info(name)
    with torch.no_grad():
        logits = model(torch.randn(3, *model.input_size))
    assert logits.shape == (3, info.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["vgg16", "vgg16_transfer"])
def test_vgg16_forward_pass(name: str) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, *model.input_size))
    assert logits.shape == (1, get_model_info(name).num_classes)


@pytest.mark.parametrize(
    ("name", "paper_millions"),
    [("resnet20", 0.27), ("resnet32", 0.46), ("resnet44", 0.66), ("resnet56", 0.85), ("resnet110", 1.7)],
)
def test_cifar_resnet_parameter_counts_match_he_et_al_table_6(name: str, paper_millions: float) -> None:
    count = sum(parameter.numel() for parameter in create_model(name).parameters())
    assert count / 1e6 == pytest.approx(paper_millions, rel=0.02)


def test_lenet5_parameter_count() -> None:
    # 156 (C1) + 2,416 (C3, fully connected to S2) + 48,120 (C5) + 10,164 (F6) + 850 (output);
    # LeCun et al. report "about 60,000" with C3's sparse connection table.
    count = sum(parameter.numel() for parameter in create_model("lenet5").parameters())
    assert count == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    assert count == pytest.approx(60_000, rel=0.03)


def test_vgg16_and_mnist_cnn_parameter_counts() -> None:
    assert sum(p.numel() for p in create_model("vgg16").parameters()) == 138_357_544  # Simonyan & Zisserman: 138M
    assert sum(p.numel() for p in create_model("mnist_cnn").parameters()) == 1_199_882  # the PyTorch example


@pytest.mark.parametrize("name", LIGHT_MODELS + ["vgg16_transfer"])
def test_torchinfo_summary_runs_for_every_model(name: str) -> None:
    stats = summary(name)
    assert stats.total_params == sum(p.numel() for p in create_model(name).parameters())
    assert stats.summary_list[-1].output_size[0] == 1


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("lenet5", (2, 3, 28, 28), "expects 1 input channel"),
        ("mnist_cnn", (2, 1, 32, 32), "expects 28x28 images"),
        ("alexnet_cifar", (2, 3, 64, 64), "expects 32x32 images"),
        ("resnet20", (2, 1, 32, 32), "expects 3 input channel"),
        ("resnet20", (3, 32, 32), "Add a batch dimension"),
        ("zfnet_cifar", (2, 3, 28, 28), "^ZFNetCIFAR expects 32x32 images"),
    ],
)
def test_wrong_input_shape_says_what_the_model_expects(name: str, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model(name)(torch.zeros(shape))


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "fast_cifar"])
def test_integer_images_are_refused_with_how_to_scale_them(name: str) -> None:
    model = create_model(name)
    images = torch.zeros((2, *get_model_info(name).input_size), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"expects floating-point images, got a uint8 tensor\. Scale them"):
        model(images)


def test_num_classes_that_disagree_with_the_weights_raise_before_any_download() -> None:
    with pytest.raises(ValueError, match="1000 classes, but num_classes=10"):
        create_model("vgg16", weights="IMAGENET1K_V1", num_classes=10)


def test_unknown_weights_name_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        create_model("vgg16", weights="imagenet")
    with pytest.raises(ValueError, match=r"^weights names the weights to load, got True: one of mnist for lenet5"):
        create_model("lenet5", weights=True)


def test_vgg16_loads_a_local_state_dict_file_to_identical_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    original = create_model("vgg16").eval()
    path = tmp_path / "vgg16.pth"
    torch.save(original.state_dict(), path)
    reloaded = create_model("vgg16", weights=path).eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(original(image), reloaded(image))


def test_weights_for_another_class_count_give_a_clear_error(tmp_path) -> None:
    path = tmp_path / "lenet.pt"
    torch.save(create_model("lenet5", num_classes=5).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit lenet5 with num_classes=10"):
        create_model("lenet5", weights=path)


def test_corrupt_weights_file_is_reported(tmp_path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch weights file"):
        create_model("lenet5", weights=path)


def test_every_model_offers_features_head_and_classifier() -> None:
    for name in LIGHT_MODELS:
        model = create_model(name).eval()
        assert isinstance(model, ImageClassifier)
        x = torch.randn(2, *model.input_size)
        with torch.no_grad():
            features = model.forward_features(x)
            assert features.dim() == 4
            assert torch.allclose(model.forward_head(features), model(x))
        assert model.get_classifier().out_features == model.num_classes


def test_transfer_model_trains_only_what_it_is_told_to() -> None:
    model = create_model("vgg16_transfer")

    def trainable() -> int:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    head = sum(p.numel() for p in model.head.parameters())
    assert head == 512 * 4 * 4 * 256 + 256 + 256 + 1  # Flatten(512x4x4 at 150 px) -> 256 -> 1
    assert trainable() == head
    model.set_trainable("last_block")
    block5 = 3 * (512 * 512 * 9 + 512)  # conv5_1 .. conv5_3
    assert trainable() == head + block5
    model.set_trainable("all")
    assert trainable() == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="trainable must be"):
        model.set_trainable("everything")


def test_pretrained_vgg16_without_internet_explains_how_to_work_offline(monkeypatch, tmp_path) -> None:
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no copy of the weights from an earlier download
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    create_model("vgg16_transfer")  # a random base unless asked: nothing to download
    with pytest.raises(DownloadError, match=r"(?s)Could not download the VGG16 IMAGENET1K_FEATURES.*offline"):
        create_model("vgg16_transfer", base_weights="imagenet")
    with command_line_messages(), pytest.raises(DownloadError, match="--backbone efficientnet_lite0 for an exp"):
        create_model("vgg16_transfer", base_weights="imagenet")  # as `cnn-study run` words it


@pytest.mark.parametrize("content", [b"garbage\n", b"PK\x03\x04 truncated"], ids=["garbage", "truncated zip"])
def test_a_damaged_copy_of_the_vgg16_weights_is_named_with_the_way_out(monkeypatch, tmp_path, content) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "vgg16_features-amdegroot-88682ab5.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(cached))}, torchvision's copy .* is damaged .* Delete it"):
        create_model("vgg16_transfer", base_weights="imagenet")


def test_the_vgg16_features_base_is_fed_pixels_on_its_own_0_to_255_scale(monkeypatch) -> None:
    import torchvision.models._api as api

    state = create_model("vgg16").state_dict()  # stands in for the download: only its shapes matter here
    monkeypatch.setattr(api, "load_state_dict_from_url", lambda *args, **kwargs: state)
    model = create_model("vgg16_transfer", base_weights="imagenet", num_classes=1)
    assert model.mean == pytest.approx((0.48235, 0.45882, 0.40784)) and model.std == pytest.approx((1 / 255,) * 3)
    pixels, labels = torch.full((1, 3, 150, 150), 255, dtype=torch.uint8), torch.zeros(1, dtype=torch.long)
    white = ImageData(pixels, labels, ("cat", "dog"), mean=(0.5,) * 3, std=(0.5,) * 3)  # the model's own wins
    fed = BatchLoader.for_model(white, model).transform(white.images)
    assert fed[0, :, 0, 0].tolist() == pytest.approx([255 - 123.0, 255 - 117.0, 255 - 104.0], abs=0.01)
    classifier = create_model("vgg16", weights="IMAGENET1K_V1")  # the classifier keeps its own normalisation
    assert classifier.mean == pytest.approx((0.485, 0.456, 0.406)) and classifier.std == pytest.approx(
        (0.229, 0.224, 0.225)
    )


@needs_offline
def test_efficientnet_lite0_recognises_real_cats_and_dogs(data_dir) -> None:
    from cnn_study.datasets import dogs_vs_cats
    from cnn_study.datasets.loader import BatchLoader

    weights = available_weights("efficientnet_lite0")["IMAGENET1K"]
    model = create_model("efficientnet_lite0", weights="IMAGENET1K").eval()
    _, validation = dogs_vs_cats(data_dir, image_size=224)
    sample = validation.sample(4, seed=0)  # 4 cats, 4 dogs
    images, labels = next(iter(BatchLoader(sample, 8, mean=weights.meta["mean"], std=weights.meta["std"])))
    with torch.no_grad():
        top5 = model(images).topk(5).indices
    cat_ids, dog_ids = set(range(281, 286)), set(range(151, 269))  # ImageNet-1k domestic cats, dog breeds
    hits = [bool(set(row.tolist()) & (dog_ids if label else cat_ids)) for row, label in zip(top5, labels)]
    assert sum(hits) >= 6, hits
    classes = weights.meta["classes"]  # the ImageNet-1k names, in torchvision's order
    assert (len(classes), classes[151], classes[207], classes[281]) == (1000, "Chihuahua", "golden retriever", "tabby")


@needs_offline
def test_frozen_efficientnet_base_keeps_batch_norm_statistics() -> None:
    model = create_model("efficientnet_lite0_transfer", base_weights="imagenet").train()
    batch_norms = [m for m in model.base.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and not any(m.training for m in batch_norms)
    before = batch_norms[0].running_mean.clone()
    model(torch.randn(2, 3, 224, 224))
    assert torch.equal(before, batch_norms[0].running_mean)


@needs_offline
def test_fine_tuning_trains_the_last_block_with_its_imagenet_statistics() -> None:
    model = create_model("efficientnet_lite0_transfer", base_weights="imagenet")
    model.set_trainable("last_block")
    model.train()
    last = model.base._bn1  # the batch norm after the 1x1 head convolution, in the last block
    before = last.running_var.clone()
    model(torch.randn(4, 3, 224, 224)).sum().backward()
    assert not last.training and torch.equal(before, last.running_var)
    assert last.weight.grad is not None and model.base._conv_head.weight.grad is not None
    assert model.base._conv_stem.weight.grad is None


def test_the_registry_reads_input_size_and_classes_from_the_model() -> None:
    for name in [*LIGHT_MODELS, "vgg16_transfer"]:
        info, model = get_model_info(name), create_model(name)
        assert info.input_size == model.input_size and info.num_classes == model.num_classes, name
        assert isinstance(model, info.model_class)
    assert get_model_info("vgg16_transfer").input_size == (3, 150, 150)  # the builder's image_size default
    assert create_model("vgg16_transfer", image_size=64).input_size == (3, 64, 64)


def test_each_model_says_how_to_feed_it() -> None:
    assert create_model("resnet20").input_spec() == InputSpec((3, 32, 32))  # normalised with its data's statistics
    vgg = create_model("vgg16_transfer")
    assert vgg.input_spec() == InputSpec((3, 150, 150), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), resize=True)
    assert create_model("lenet5", weights="mnist").input_spec().mean == (0.1307,)  # as its weights were trained


def test_a_loader_for_a_model_feeds_it_as_it_was_trained() -> None:
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    data = ImageData(images, torch.arange(6) % 2, ("cat", "dog"), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    transfer = create_model("vgg16_transfer")
    batch, _ = next(iter(BatchLoader.for_model(data, transfer, 4)))
    assert batch.shape == (4, 3, 150, 150) and batch.is_contiguous(memory_format=torch.channels_last)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)
    upscaled = nn.functional.interpolate(images[:4].float(), size=(150, 150), mode="bilinear", align_corners=False)
    assert torch.allclose(batch, (upscaled / 255 - mean) / std, atol=1e-5)  # ImageNet's statistics, not the data's
    scratch, _ = next(iter(BatchLoader.for_model(data, create_model("resnet20"))))
    assert scratch.shape == (6, 3, 32, 32)  # no resizing; one inference batch
    assert torch.allclose(scratch, (images.float() / 255 - 0.5) / 0.25, atol=1e-5)  # the data's statistics


def test_transfer_cut_points_compose_to_the_model() -> None:
    model = create_model("vgg16_transfer", pooling="avg", image_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.feature_extractor()(x)
        assert features.shape == (2, 512, 1, 1)  # the base, then the parameter-free average pooling
        assert torch.allclose(model.classifier_head()(features), model(x))
    assert not any(True for _ in model.feature_extractor()[1].parameters())
    head_parameters = {id(p) for p in model.classifier_head().parameters()}
    assert head_parameters == {id(p) for p in model.head.parameters()}


def test_a_trained_model_file_reloads_with_its_normalisation(tmp_path) -> None:
    model = create_model("resnet20").eval()
    meta = {
        "model": "resnet20",
        "num_classes": 10,
        "classes": list("abcdefghij"),
        "mean": [0.4, 0.5, 0.6],
        "std": [0.2, 0.2, 0.2],
        "dataset": "cifar10",
    }
    reloaded, reloaded_meta = load_trained_model(save_trained_model(model, meta, tmp_path / "model.pt"))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reloaded(x))
    assert reloaded.input_spec() == InputSpec((3, 32, 32), (0.4, 0.5, 0.6), (0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="lacks dataset"):
        save_trained_model(model, {key: value for key, value in meta.items() if key != "dataset"}, tmp_path / "x.pt")


def test_a_plain_resnet_is_the_same_network_without_the_shortcuts() -> None:
    residual = create_model("resnet20").eval()
    plain = create_model("resnet20", shortcuts=False).eval()
    plain.load_state_dict(residual.state_dict())  # the same parameters, name for name
    x = torch.randn(2, 16, 8, 8)
    # an identity shortcut, and the option-A one at the start of stage 2: subsample, pad 16 zero channels
    for path, shortcut in (("stage1.1", x), ("stage2.0", nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 16)))):
        block = residual.get_submodule(path)
        inner = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        assert torch.allclose(plain.get_submodule(path)(x), torch.relu(inner))
        assert torch.allclose(block(x), torch.relu(inner + shortcut))
    with pytest.raises(ValueError, match=r"^shortcuts is True \(the residual network\) or False .*, got 'False'\.$"):
        create_model("resnet20", shortcuts="False")


def test_fast_cifar_parameters_are_its_layers_and_only_the_whitening_weights_and_norm_scales_are_frozen() -> None:
    model = create_model("fast_cifar")
    whiten = 24 * 3 * 2 * 2 + 24
    convs = 9 * (24 * 32 + 32 * 32 + 32 * 128 + 128 * 128 + 128 * 128 + 128 * 128)
    norms = 2 * 2 * (32 + 128 + 128)  # scale and shift of two batch norms per group
    assert sum(p.numel() for p in model.parameters()) == whiten + convs + norms + 128 * 10 == 498_104
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    norm_scales = {f"features.{group}.{layer}.weight" for group in (2, 3, 4) for layer in (2, 5)}
    assert frozen == {"whiten.weight"} | norm_scales
    norms = [model.get_submodule(name.removesuffix(".weight")) for name in norm_scales]
    assert all(isinstance(norm, nn.BatchNorm2d) and (norm.momentum, norm.eps) == (0.4, 1e-12) for norm in norms)
    plain = create_model("fast_cifar", whitening=False, fast_batch_norm=False)
    assert all(p.requires_grad for p in plain.parameters())
    assert {m.momentum for m in plain.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}


def test_fast_cifar_identity_init_starts_every_3x3_convolution_as_the_identity_on_its_first_filters() -> None:
    torch.manual_seed(0)
    plain = create_model("fast_cifar")
    torch.manual_seed(0)
    identity = create_model("fast_cifar", identity_init=True)
    convs = [name for name, module in identity.named_modules() if isinstance(module, nn.Conv2d) and name != "whiten"]
    assert len(convs) == 6
    x = torch.randn(1, 128, 5, 5)
    for name in convs:
        conv, random_conv = identity.get_submodule(name), plain.get_submodule(name)
        inputs = x[:, : conv.in_channels]
        with torch.no_grad():
            assert torch.equal(conv(inputs)[:, : conv.in_channels], inputs), name  # copies its input channels
            assert not torch.equal(random_conv(inputs)[:, : conv.in_channels], inputs), name
        extra = slice(conv.in_channels, None)  # the filters beyond the input channels keep their random start
        assert torch.equal(conv.weight[extra], random_conv.weight[extra]), name


def test_fast_cifar_whitening_layer_decorrelates_the_patches_it_was_fitted_on() -> None:
    generator = torch.Generator().manual_seed(0)
    # correlated images: smooth noise, so neighbouring pixels and the three channels move together
    images = F.avg_pool2d(torch.randn(64, 1, 34, 34, generator=generator), 3, stride=1).repeat(1, 3, 1, 1)
    images = images + 0.3 * torch.randn(64, 3, 32, 32, generator=generator)
    model = create_model("fast_cifar")
    model.initialise_from_data([(images[:32], None), (images[32:], None)])
    with torch.no_grad():
        outputs = F.conv2d(images, model.whiten.weight)  # without the bias
    channels = outputs.transpose(0, 1).reshape(24, -1)
    covariance = channels[:12] @ channels[:12].T / channels.shape[1]
    assert torch.allclose(covariance, torch.diag(covariance.diagonal()), atol=1e-3)  # uncorrelated
    assert covariance.diagonal().max() <= 1 and covariance.diagonal().min() > 0.8  # unit variance but for eps
    assert torch.equal(model.whiten.weight[12:], -model.whiten.weight[:12])
    unwhitened = create_model("fast_cifar", whitening=False)
    before = unwhitened.whiten.weight.clone()
    unwhitened.initialise_from_data([(images, None)])
    assert torch.equal(unwhitened.whiten.weight, before)
