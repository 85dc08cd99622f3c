"""BatchPreprocessor: normalization, and each on-device augmentation doing what its name says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnn_core.data.augment import ORIENTATIONS, AugmentConfig, BatchPreprocessor, default_augment, orient, orientations_taught

CPU = torch.device("cpu")


def _batch(n: int = 16, channels: int = 3, side: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, side, side), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def _plain(images: torch.Tensor) -> torch.Tensor:
    """The images as floats in [0, 1], the way the preprocessor sees them before normalizing."""
    return images.float() / 255.0


def _identity_preprocessor(augment: AugmentConfig | None = None, channels: int = 3) -> BatchPreprocessor:
    return BatchPreprocessor([0.0] * channels, [1.0] * channels, CPU, augment)


def test_normalizes_with_the_data_sets_mean_and_std_and_returns_channels_last():
    images = _batch()
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    out = BatchPreprocessor(mean, std, CPU)(images)
    expected = (_plain(images) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_grayscale_images_are_repeated_for_a_three_channel_model():
    images = _batch(channels=1)
    out = _identity_preprocessor()(images)
    assert out.shape == (16, 3, 8, 8)
    torch.testing.assert_close(out[:, 2], _plain(images)[:, 0])


def test_evaluation_never_augments():
    images = _batch()
    everything = AugmentConfig(shift=2, hflip=True, vflip=True, color_jitter=0.3, rotate90=True, grayscale=1.0)
    out = _identity_preprocessor(everything)(images, train=False)
    torch.testing.assert_close(out, _plain(images))


def test_flips_turn_some_images_and_leave_the_others():
    images = _batch(n=64)
    out = _identity_preprocessor(AugmentConfig(hflip=True))(images, train=True, generator=torch.Generator().manual_seed(1))
    plain = _plain(images)
    flipped = torch.tensor([torch.equal(o, p.flip(2)) for o, p in zip(out, plain)])
    kept = torch.tensor([torch.equal(o, p) for o, p in zip(out, plain)])
    assert bool((flipped | kept).all())
    assert 10 < int(flipped.sum()) < 54


def test_shift_moves_the_batch_and_fills_with_zeros():
    images = _batch(n=4)
    out = _identity_preprocessor(AugmentConfig(shift=2))(images, train=True, generator=torch.Generator().manual_seed(3))
    plain = _plain(images)
    matches = []
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            moved = torch.nn.functional.pad(plain, (2, 2, 2, 2))[..., 2 + dy : 10 + dy, 2 + dx : 10 + dx]
            matches.append(torch.equal(out, moved))
    assert sum(matches) >= 1


def test_colour_jitter_changes_colour_balance_and_contrast_within_range():
    images = torch.full((32, 3, 8, 8), 128, dtype=torch.uint8)
    images[:, :, :4] = 200  # two tones, so contrast has something to act on
    out = _identity_preprocessor(AugmentConfig(color_jitter=0.2))(images, train=True,
                                                                  generator=torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1
    # The gain is per channel: the red/green ratio of the same pixel differs between images.
    ratio = out[:, 0, 6, 6] / out[:, 1, 6, 6]
    assert ratio.std() > 0.05
    # Contrast varies: the gap between the two tones is not the same in every image.
    gap = out[:, 0, 0, 0] - out[:, 0, 6, 6]
    assert gap.std() > 0.01


def test_augmentation_is_reproducible_from_the_generator_seed():
    images = _batch()
    config = AugmentConfig(shift=2, hflip=True, vflip=True, color_jitter=0.1)
    first = _identity_preprocessor(config)(images, train=True, generator=torch.Generator().manual_seed(7))
    again = _identity_preprocessor(config)(images, train=True, generator=torch.Generator().manual_seed(7))
    other = _identity_preprocessor(config)(images, train=True, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)


def test_defaults_suit_the_data():
    assert default_augment("mnist", "multi-class") == AugmentConfig(shift=2)  # no flips for digits
    tissue = default_augment("medmnist", "multi-class")
    assert tissue.hflip and tissue.vflip and tissue.rotate90 and tissue.color_jitter > 0 and tissue.grayscale == 0.25
    scans = default_augment("folder", "binary")
    assert not scans.vflip and not scans.rotate90  # scans have an up and a down
    assert not scans.grayscale  # cached transfer features could not honour it


@pytest.mark.parametrize("name, views", [
    ("pathmnist", 8), ("pathmnist_128", 8), ("dermamnist", 8), ("bloodmnist", 8), ("tissuemnist", 8), ("retinamnist", 8),
    ("breastmnist", 2), ("pneumoniamnist_64", 2), ("octmnist", 2), ("chestmnist", 2),  # an up and down: mirrors only
    ("organamnist", 1), ("organcmnist_224", 1), ("organsmnist", 1),  # kidney-left is no kidney-right mirrored
])
def test_medmnist_sets_are_flipped_and_turned_only_where_that_keeps_the_class(name, views):
    from cnn_core.data.augment import orientations_taught

    augment = default_augment("medmnist", "multi-class", name)
    assert len(orientations_taught(augment)) == views  # and test-time augmentation averages exactly those
    if views == 1:
        assert not (augment.hflip or augment.vflip or augment.rotate90) and augment.shift == 2
    if views == 2:
        assert augment.hflip and not augment.vflip and not augment.rotate90


def test_rotate90_transposes_some_images_and_leaves_the_others():
    images = _batch(n=64)
    out = _identity_preprocessor(AugmentConfig(rotate90=True))(images, train=True,
                                                               generator=torch.Generator().manual_seed(2))
    plain = _plain(images)
    turned = torch.tensor([torch.equal(o, p.transpose(1, 2)) for o, p in zip(out, plain)])
    kept = torch.tensor([torch.equal(o, p) for o, p in zip(out, plain)])
    assert bool((turned | kept).all())
    assert 10 < int(turned.sum()) < 54


def test_grayscale_makes_some_colour_images_gray_and_leaves_gray_data_alone():
    images = _batch(n=200)
    out = _identity_preprocessor(AugmentConfig(grayscale=0.25))(images, train=True,
                                                                generator=torch.Generator().manual_seed(4))
    plain = _plain(images)
    luma = 0.299 * plain[:, 0] + 0.587 * plain[:, 1] + 0.114 * plain[:, 2]
    gray = torch.tensor([torch.allclose(o, l.expand(3, -1, -1)) for o, l in zip(out, luma)])
    kept = torch.tensor([torch.equal(o, p) for o, p in zip(out, plain)])
    assert bool((gray | kept).all())
    assert 25 < int(gray.sum()) < 75  # about a quarter
    single = _batch(n=8, channels=1)
    out = BatchPreprocessor([0.0], [1.0], CPU, AugmentConfig(grayscale=1.0))(single, train=True)
    torch.testing.assert_close(out, _plain(single))


def test_test_time_augmentation_uses_the_orientations_the_training_taught():
    assert orientations_taught(AugmentConfig(shift=2)) == ("identity",)  # digits: one view, no extra cost
    assert orientations_taught(AugmentConfig(hflip=True)) == ("identity", "hflip")
    assert orientations_taught(AugmentConfig(vflip=True)) == ("identity", "vflip")
    assert orientations_taught(AugmentConfig(hflip=True, vflip=True)) == ("identity", "hflip", "vflip", "rotate180")
    assert orientations_taught(AugmentConfig(rotate90=True)) == ("identity", "transpose")
    assert set(orientations_taught(AugmentConfig(hflip=True, rotate90=True))) == set(ORIENTATIONS)  # all 8


def test_orientations_are_the_eight_symmetries_of_a_square():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    seen = {name: orient(x, name) for name in ORIENTATIONS}
    assert len({tuple(v.flatten().tolist()) for v in seen.values()}) == 8  # all different
    for k, name in ((1, "rotate90"), (2, "rotate180"), (3, "rotate270")):
        assert torch.equal(seen[name], torch.rot90(x, k, dims=(2, 3)))
    assert torch.equal(seen["anti-transpose"], torch.rot90(x, 1, dims=(2, 3)).flip(3))


def _one_image_at_a_time(images: torch.Tensor, augment: AugmentConfig, mean: list[float], std: list[float],
                         seed: int) -> torch.Tensor:
    """The augmentation's definition, image by image in float, drawing the generator's numbers in the
    preprocessor's order (orientation coins, the batch's shift, jitter, gray coins), every augmentation on."""
    assert augment.rotate90 and augment.hflip and augment.vflip and augment.shift and augment.color_jitter
    assert augment.grayscale
    g = torch.Generator().manual_seed(seed)
    n, channels = images.shape[:2]
    turn, mirror, upend = ((torch.rand(n, generator=g) < 0.5) for _ in range(3))
    dy, dx = torch.randint(-augment.shift, augment.shift + 1, (2,), generator=g).tolist()
    contrast, gain, brightness = (2 * torch.rand(*shape, generator=g) - 1 for shape in ((n,), (n, channels), (n,)))
    gray = torch.rand(n, generator=g) < augment.grayscale
    out = []
    for i, image in enumerate(_plain(images)):
        image = image.transpose(1, 2) if turn[i] else image
        image = image.flip(2) if mirror[i] else image
        image = image.flip(1) if upend[i] else image
        s = augment.shift
        image = F.pad(image, (s, s, s, s))[:, s + dy : s + dy + image.shape[1], s + dx : s + dx + image.shape[2]]
        j, centre = augment.color_jitter, image.mean()
        image = ((image - centre) * (1 + 2 * j * contrast[i]) + centre) * (1 + 1.5 * j * gain[i].view(-1, 1, 1))
        image = (image + j * brightness[i]).clamp(0, 1)
        if gray[i]:
            image = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).expand_as(image)
        out.append((image - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1))
    return torch.stack(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_batch_augmentation_matches_its_image_by_image_definition(seed):
    """PathMNIST's default augmentation, done on the whole batch at once, gives the images its definition
    gives one by one."""
    images = _batch(n=32, side=6, seed=seed)
    augment, mean, std = default_augment("medmnist", "multi-class", "pathmnist"), [0.7, 0.5, 0.7], [0.2, 0.25, 0.2]
    out = BatchPreprocessor(mean, std, CPU, augment)(images, train=True, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(out, _one_image_at_a_time(images, augment, mean, std, seed), rtol=1e-5, atol=1e-5)
