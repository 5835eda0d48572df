"""Exact, seeded reference tests for the batch augmentations and for `BatchLoader`'s augment and shuffle.

Each test computes what an augmentation must do from its definition (the crop offsets, the square, the
affine map) and compares pixel by pixel, so that an augmentation that does something plausible but wrong
(only the flip, an offset one short, another fill value, augmenting before normalising) fails.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnn_study.datasets import BatchLoader, CropFlip, Cutout, ImageData, Mirror, ShearZoomFlip, random_flip
from cnn_study.datasets.augment import _uniform


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def distinct_images(n: int, size: int = 8, channels: int = 1) -> torch.Tensor:
    """Random images no two crops or mirror images of which coincide."""
    return torch.randn(n, channels, size, size, generator=seeded(1))


def test_random_flip_mirrors_about_half_and_leaves_the_rest() -> None:
    batch = distinct_images(4000)
    flipped = random_flip(batch, seeded())
    mirrored = (flipped == batch.flip(3)).flatten(1).all(1)
    kept = (flipped == batch).flatten(1).all(1)
    assert torch.all(mirrored ^ kept)  # every image is exactly itself or exactly its mirror image
    assert abs(mirrored.float().mean().item() - 0.5) < 0.03  # 4 standard deviations of a fair coin over 4,000


def _crop_offsets(images: torch.Tensor, crops: torch.Tensor, padding: int) -> list[tuple[int, int] | None]:
    """For each crop, the ``(row, column)`` offset into the zero-padded image that it equals, if any."""
    padded = F.pad(images, (padding,) * 4)
    size = images.shape[-1]
    offsets = []
    for image, crop in zip(padded, crops):
        found = [
            (row, col)
            for row in range(2 * padding + 1)
            for col in range(2 * padding + 1)
            if torch.equal(image[:, row : row + size, col : col + size], crop)
        ]
        offsets.append(found[0] if len(found) == 1 else None)
    return offsets


def test_crop_is_a_window_of_the_zero_padded_image_at_every_offset_within_the_padding() -> None:
    padding = 2
    images = distinct_images(1500)
    cropped = CropFlip(padding, flip=False)(images, seeded())
    offsets = _crop_offsets(images, cropped, padding)
    assert None not in offsets  # every output is exactly one window, padded with zeros (the mean)
    assert set(offsets) == {(row, col) for row in range(2 * padding + 1) for col in range(2 * padding + 1)}


def test_crop_flip_mirrors_about_half_of_the_crops() -> None:
    padding = 1
    images = distinct_images(800)
    augmented = CropFlip(padding, flip=True)(images, seeded())
    plain = _crop_offsets(images, augmented, padding)
    mirrored = _crop_offsets(images, augmented.flip(3), padding)
    assert all((a is None) != (b is None) for a, b in zip(plain, mirrored))
    assert 0.44 < sum(offset is not None for offset in mirrored) / len(images) < 0.56


def test_cutout_blanks_exactly_one_square_of_the_documented_size_with_zero() -> None:
    size, side = 4, 16
    batch = torch.rand(500, 3, side, side, generator=seeded(2)) + 0.5  # no pixel is zero before
    cut = Cutout(size)(batch, seeded())
    blank = (cut == 0).all(1)  # N x H x W, the same square in every channel
    assert torch.equal(cut[~blank[:, None].expand_as(cut)], batch[~blank[:, None].expand_as(batch)])
    for mask in blank:
        rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
        assert torch.equal(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].float().mean(), torch.tensor(1.0))
        assert mask.sum() == len(rows) * len(cols)  # one rectangle
        inside = (0 < rows[0] and rows[-1] < side - 1) and (0 < cols[0] and cols[-1] < side - 1)
        if inside:  # clipped only by the border
            assert (len(rows), len(cols)) == (size, size)
    assert sum(int(mask.sum()) == size * size for mask in blank) > 200


def test_cutout_centres_its_square_on_a_uniformly_drawn_pixel() -> None:
    size, side, n = 8, 32, 4000
    blank = Cutout(size)(torch.ones(n, 1, side, side), seeded())[:, 0] == 0
    # The documented square: rows centre - size // 2 up to centre - size // 2 + size, clipped, the centre
    # uniform over the rows; the mean blanked row over every centre, weighting each by its blanked rows.
    spans = [range(max(0, centre - size // 2), min(side, centre - size // 2 + size)) for centre in range(side)]
    expected = sum(sum(span) for span in spans) / sum(len(span) for span in spans)  # 15.27: 4 rows up, 3 down
    positions = torch.arange(side, dtype=torch.float32)
    mean_row = (blank.sum(2) * positions).sum() / blank.sum()
    mean_col = (blank.sum(1) * positions).sum() / blank.sum()
    assert abs(mean_row - expected) < 0.3 and abs(mean_col - expected) < 0.3  # 4,000 squares: error about 0.1


def _affine_parameters(n: int, augmentation: ShearZoomFlip, generator: torch.Generator):
    """The shear, scale and mirror factor of each image, drawn in the order `ShearZoomFlip` documents."""
    shear = _uniform(n, -augmentation.shear, augmentation.shear, generator, torch.device("cpu"))
    scale = _uniform(n, 1 - augmentation.zoom, 1 + augmentation.zoom, generator, torch.device("cpu"))
    mirror = torch.where(_uniform(n, 0, 1, generator, torch.device("cpu")) < 0.5, -1.0, 1.0)
    return shear, scale, mirror


def test_shear_zoom_flip_moves_a_marked_pixel_where_its_affine_map_says() -> None:
    n, side = 64, 64
    images = torch.zeros(n, 1, side, side)
    row, col = 20, 44
    images[:, 0, row - 1 : row + 2, col - 1 : col + 2] = 1.0  # a 3x3 mark off the centre and off the diagonal
    augmentation = ShearZoomFlip(shear=0.2, zoom=0.2)
    warped = augmentation(images, seeded(5))
    shear, scale, mirror = _affine_parameters(n, augmentation, seeded(5))

    def normalised(index: float) -> float:  # pixel index -> [-1, 1] coordinate (align_corners=False)
        return (2 * index + 1) / side - 1

    # The warp samples input (x_in, y_in) = (scale*mirror*x + scale*shear*y, scale*y) at output (x, y): invert it.
    y_in, x_in = normalised(row), normalised(col)
    y_out = y_in / scale
    x_out = (x_in - scale * shear * y_out) / (scale * mirror)
    expected_row = ((y_out + 1) * side - 1) / 2
    expected_col = ((x_out + 1) * side - 1) / 2
    weights = warped[:, 0] / warped[:, 0].sum((1, 2), keepdim=True)
    positions = torch.arange(side, dtype=torch.float32)
    found_row = (weights.sum(2) * positions).sum(1)  # the mark's centre of mass
    found_col = (weights.sum(1) * positions).sum(1)
    assert torch.all((found_row - expected_row).abs() < 0.5), (found_row - expected_row).abs().max()
    assert torch.all((found_col - expected_col).abs() < 0.5), (found_col - expected_col).abs().max()
    assert (mirror < 0).any() and (mirror > 0).any() and (scale > 1).any() and (scale < 1).any()


def test_shear_zoom_flip_repeats_the_border_where_it_zooms_out() -> None:
    constant = torch.full((16, 3, 20, 20), 5.0)  # Keras' fill_mode="nearest": no black (zero) corners
    assert torch.allclose(ShearZoomFlip(shear=0.3, zoom=0.5)(constant, seeded()), constant)


def test_shear_zoom_flip_without_shear_zoom_or_flip_is_the_identity() -> None:
    images = torch.randn(4, 3, 16, 16, generator=seeded())
    assert torch.allclose(ShearZoomFlip(0.0, 0.0, flip=False)(images, seeded()), images, atol=1e-5)


def _numbered(n: int = 40, side: int = 6) -> ImageData:
    """Images whose pixels all equal their own index (so a batch says which images it holds)."""
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 1, side, side).contiguous()
    return ImageData(images, torch.arange(n) % 2, ("even", "odd"), (0.0,), (1 / 255,))


def test_loader_applies_its_augmentations_after_normalising() -> None:
    data = _numbered()
    normalised = torch.cat([images for images, _ in BatchLoader(data, 16)])
    assert torch.equal(normalised[:, 0, 0, 0], torch.arange(40.0))  # mean 0, std 1/255: the raw values
    mirrored = torch.cat([images for images, _ in BatchLoader(data, 16, augment=[Mirror()])])
    assert torch.equal(mirrored, normalised.flip(3))
    cut = torch.cat([images for images, _ in BatchLoader(_numbered(), 16, augment=[Cutout(2)])])
    blank = cut != normalised
    assert torch.all(cut[blank] == 0) and blank.flatten(1).any(1)[1:].all()  # zero after normalising: the mean


def test_loader_applies_augmentations_in_order() -> None:
    data = _numbered(8)

    def add(value: float):
        return lambda batch, generator: batch + value

    def double(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return batch * 2

    images, _ = next(iter(BatchLoader(data, 8, augment=[add(1), double])))
    assert torch.equal(images[:, 0, 0, 0], (torch.arange(8.0) + 1) * 2)


def test_shuffle_visits_every_image_once_per_epoch_in_a_new_order() -> None:
    data = _numbered()
    loader = BatchLoader(data, 7, shuffle=True, seed=3)
    epochs = [torch.cat([images[:, 0, 0, 0] for images, _ in loader]).long() for _ in range(2)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(40))
    assert not torch.equal(epochs[0], torch.arange(40)) and not torch.equal(epochs[0], epochs[1])
    labels = torch.cat([labels for _, labels in BatchLoader(data, 7, shuffle=True, seed=3)])
    assert torch.equal(labels, epochs[0] % 2)  # labels travel with their images
    unshuffled = torch.cat([images[:, 0, 0, 0] for images, _ in BatchLoader(data, 7)]).long()
    assert torch.equal(unshuffled, torch.arange(40))


def test_alternating_flip_mirrors_a_random_half_then_each_image_every_other_epoch() -> None:
    # 1x2 images: the left pixel is the image's index, the right one 255, so the pixels say which image it is
    # and whether it is mirrored (normalised by mean 0 and std 1/255, values stay as they were)
    images = torch.stack([torch.arange(200), torch.full((200,), 255)], 1).to(torch.uint8).view(200, 1, 1, 2)
    data = ImageData(images, torch.arange(200) % 2, ("even", "odd"), (0.0,), (1 / 255,))
    loader = BatchLoader(data, 64, shuffle=True, seed=5, alternating_flip=True)

    def mirrored_in(epoch: int) -> torch.Tensor:
        loader.set_epoch(epoch)
        left, right = torch.cat([batch for batch, _ in loader]).view(-1, 2).long().T
        mirrored = left == 255
        shown = torch.where(mirrored, right, left)
        assert sorted(shown.tolist()) == list(range(200))  # every image once per epoch
        return torch.zeros(200, dtype=torch.bool).index_put((shown,), mirrored)

    first, second, third = mirrored_in(1), mirrored_in(2), mirrored_in(3)
    assert 72 < first.sum() < 128  # a random half (4 standard deviations of 200 fair coins: 100 +- 28)
    assert torch.equal(second, ~first) and torch.equal(third, first)  # each image once each way in two epochs
    again = BatchLoader(data, 64, shuffle=True, seed=5, alternating_flip=True)
    assert torch.equal(again.flipped_in_odd_epochs, first)  # the choice follows the seed
    assert BatchLoader(data, 64).flipped_in_odd_epochs is None


def test_shuffled_orders_repeat_with_the_seed_and_differ_between_seeds() -> None:
    def order(seed: int) -> torch.Tensor:
        return torch.cat([images[:, 0, 0, 0] for images, _ in BatchLoader(_numbered(), 40, shuffle=True, seed=seed)])

    assert torch.equal(order(0), order(0)) and not torch.equal(order(0), order(1))


def test_drop_last_skips_only_the_short_batch() -> None:
    sizes = [len(labels) for _, labels in BatchLoader(_numbered(), 16, drop_last=True)]
    assert sizes == [16, 16]
    assert [len(labels) for _, labels in BatchLoader(_numbered(), 16)] == [16, 16, 8]


def test_loader_defaults_batch_128_seed_0_and_the_plain_layout() -> None:
    zeros = torch.zeros(300, 3, 4, 4, dtype=torch.uint8)
    data = ImageData(zeros, torch.arange(300) % 2, ("a", "b"), (0.5,) * 3, (2,) * 3)
    assert [len(labels) for _, labels in BatchLoader(data)] == [128, 128, 44]
    default = torch.cat([labels for _, labels in BatchLoader(_numbered(), shuffle=True)])
    assert torch.equal(default, torch.cat([labels for _, labels in BatchLoader(_numbered(), shuffle=True, seed=0)]))
    images, _ = next(iter(BatchLoader(data)))
    assert images.is_contiguous() and not images.is_contiguous(memory_format=torch.channels_last)


def test_loader_resizes_like_bilinear_interpolation_without_aligned_corners() -> None:
    pixels = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=seeded())
    data = ImageData(pixels, torch.arange(4) % 2, ("a", "b"), (0.0,) * 3, (1 / 255,) * 3)
    images, _ = next(iter(BatchLoader(data, 4, image_size=12)))
    expected = F.interpolate(data.images.float(), size=(12, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(images, expected, atol=1e-4)


AUGMENTATIONS = [random_flip, CropFlip(2), ShearZoomFlip(), Cutout(3)]


def test_augmentations_draw_only_from_the_generator_they_are_given() -> None:
    batch = torch.randn(16, 3, 8, 8, generator=seeded(7))
    for augmentation in AUGMENTATIONS:
        torch.manual_seed(1)
        first = augmentation(batch, seeded(3))
        torch.manual_seed(2)  # another global random state changes nothing
        assert torch.equal(first, augmentation(batch, seeded(3))), augmentation
        assert not torch.equal(first, augmentation(batch, seeded(4))), augmentation


def test_augmentations_keep_the_batch_dtype() -> None:
    batch = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=seeded())
    assert [augmentation(batch, seeded()).dtype for augmentation in AUGMENTATIONS] == [torch.float64] * 4
