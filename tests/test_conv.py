"""Unit tests of the Convolution Lab's arithmetic (cnn_core.conv) and safe image reading (cnn_core.data.images)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from image_samples import png_bomb
import torch
import torch.nn.functional as F
from PIL import Image

from cnn_core import conv, conv_quiz
from cnn_core.data import images
from cnn_core.errors import ConfigError, ImageError

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------ sizes
@pytest.mark.parametrize(
    "n,k,s,p,d",
    [combo for combo in itertools.product((1, 5, 7, 28), (1, 2, 3, 5, 7), (1, 2, 3), (0, 1, 3), (1, 2))],
)
def test_output_size_matches_conv2d(n, k, s, p, d):
    formula = conv.size_formula(n, k, s, p, d)
    x = torch.zeros(1, 1, n, n)
    w = torch.zeros(1, 1, k, k)
    if formula.fits:
        assert F.conv2d(x, w, stride=s, padding=p, dilation=d).shape[-1] == formula.size == conv.conv_output_size(
            n, k, s, p, d)
    else:
        assert formula.size == 0
        with pytest.raises(RuntimeError):
            F.conv2d(x, w, stride=s, padding=p, dilation=d)


def test_formula_text_fills_in_every_number():
    formula = conv.size_formula(7, 3, stride=2, padding=1, dilation=1)
    assert formula.text() == "⌊(7 + 2·1 − 1·(3 − 1) − 1) / 2⌋ + 1 = ⌊6 / 2⌋ + 1 = 4"
    assert r"\frac{7 + 2\cdot1 - 1\cdot(3-1) - 1}{2}" in formula.latex()
    assert formula.latex().endswith("= 4")
    assert formula.latex(short=True).startswith(r"\left\lfloor \frac{7 - 3 + 2\cdot1}{2}")


def test_formula_unused_cells_is_the_floor_remainder():
    assert conv.size_formula(7, 2, stride=2).unused == 1   # 7x7 pooled 2/2: row 6 never read
    assert conv.size_formula(8, 2, stride=2).unused == 0


@pytest.mark.parametrize("bad", [dict(n=0), dict(k=0), dict(stride=0), dict(padding=-1), dict(dilation=0),
                                 dict(n=2.5), dict(k=True)])
def test_size_formula_rejects_values_no_layer_accepts(bad):
    args = dict(n=7, k=3, stride=1, padding=0, dilation=1) | bad
    with pytest.raises(ConfigError, match="whole number"):
        conv.size_formula(**args)


def test_kernel_larger_than_padded_input_explains_instead_of_failing():
    formula_h, formula_w = conv.plan_conv(3, 4, 7, conv.ConvSettings(padding=1))
    assert not formula_h.fits and not formula_w.fits
    reason = conv.no_output_reason(formula_h, formula_w)
    assert "covers 7 cells" in reason and "3 + 2·1 = 5 cells high" in reason and "wide" in reason
    assert "Use padding of at least 2 (1 more than now), a smaller kernel" in reason  # "add 2" read as 3 in all
    assert "Use padding of at least 2, a smaller" in conv.no_output_reason(*conv.plan_conv(3, 3, 7, conv.ConvSettings()))
    with pytest.raises(ConfigError) as pooled:  # pooling has no padding or dilation to offer
        conv.pool(np.ones((1, 1)), "max", 2)
    assert str(pooled.value) == ("The pooling window covers 2 cells but the map is only 1 cell high and wide, so "
                                 "there is no place to put it even once. Choose a window of at most 1.")
    with pytest.raises(ConfigError, match="no place to put it"):
        conv.convolve(np.ones((3, 4)), np.ones((7, 7)), conv.ConvSettings(padding=1))
    assert conv.no_output_reason(*conv.plan_conv(3, 3, 7, conv.ConvSettings())).count("covers") == 1
    dilated = conv.size_formula(5, 3, dilation=3)
    assert dilated.span == 7 and "dilation 3" in dilated.why_no_output()


def test_same_padding_keeps_size_for_odd_span_and_says_when_it_cannot():
    for k in range(1, 8):
        for d in (1, 2, 3):
            same = conv.same_padding(k, d)
            size = conv.conv_output_size(20, k, 1, same.padding, d)
            assert size == (20 if same.exact else 19)
    assert "not a whole number" in conv.same_padding(4).note


# ------------------------------------------------------------------------------------------ convolution
@pytest.mark.parametrize("mode", conv.PADDING_MODES)
@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 3, 1)])
def test_convolve_equals_nn_conv2d(mode, stride, padding, dilation):
    image = RNG.random((11, 9)).astype(np.float32)
    kernel = RNG.normal(size=(3, 3))
    settings = conv.ConvSettings(stride=stride, padding=padding, padding_mode=mode, dilation=dilation)
    result = conv.convolve(image, kernel, settings)
    layer = torch.nn.Conv2d(1, 1, 3, stride=stride, padding=padding, dilation=dilation, bias=False,
                            padding_mode=mode)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(kernel.astype(np.float32))[None, None])
        expected = layer(torch.from_numpy(image)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(result.output, expected, rtol=1e-5, atol=1e-5)
    assert result.torch_shape == (1, 1, *expected.shape)
    assert (result.formula_h.size, result.formula_w.size) == expected.shape
    assert result.padded.shape == (11 + 2 * padding, 9 + 2 * padding)
    assert result.input_shape == (11, 9)


def test_convolution_is_cross_correlation_like_a_cnn_layer():
    ramp = np.tile(np.arange(6, dtype=np.float32), (6, 1))  # brighter to the right
    result = conv.convolve(ramp, conv.preset_kernel("sobel_x"))
    assert (result.output == 8).all()  # not flipped: right minus left, weights 1+2+1, step 2


def test_padding_modes_fill_cells_like_pytorch():
    image = np.arange(9, dtype=np.float32).reshape(3, 3)
    assert conv.pad(image, 1, "zeros")[0].tolist() == [0, 0, 0, 0, 0]
    assert conv.pad(image, 1, "replicate")[0].tolist() == [0, 0, 1, 2, 2]
    assert conv.pad(image, 1, "reflect")[0].tolist() == [4, 3, 4, 5, 4]
    with pytest.raises(ConfigError, match="at most 2 cells"):
        conv.pad(image, 3, "reflect")
    with pytest.raises(ConfigError, match="Unknown padding mode"):
        conv.pad(image, 1, "circular-ish")
    mask = conv.padding_mask(3, 3, 1)
    assert mask.sum() == 25 - 9 and not mask[1:4, 1:4].any()


def test_every_step_sums_to_its_output_cell():
    image = RNG.random((8, 7)).astype(np.float32)
    kernel = RNG.normal(size=(3, 3))
    result = conv.convolve(image, kernel, conv.ConvSettings(stride=2, padding=2, padding_mode="reflect",
                                                            dilation=2))
    out_h, out_w = result.output.shape
    for index in range(out_h * out_w):
        row, col = conv.sweep_position(index, out_w)
        step = conv.conv_step(result, row, col)
        assert step.rows == (row * 2, row * 2 + 2, row * 2 + 4)  # stride 2, dilation 2
        np.testing.assert_allclose(step.products, step.window * kernel)
        assert step.total == pytest.approx(float(result.output[row, col]), abs=1e-4)
    with pytest.raises(ConfigError, match="outside"):
        conv.conv_step(result, out_h, 0)


def test_digit_grid_worked_example():
    result = conv.convolve(conv.DIGIT_GRID_7X7, conv.preset_kernel("sobel_x"))
    assert result.output.shape == (5, 5)
    step = conv.conv_step(result, 0, 0)
    # top-left window [[0,0,0],[0,9,9],[0,0,0]] times Sobel x: 9*0 + 9*2 = 18
    assert step.total == 18 and result.output[0, 0] == 18


# ------------------------------------------------------------------------------------------ kernels
def test_presets_come_in_their_sizes():
    for preset in conv.KERNEL_PRESETS.values():
        for size in preset.sizes:
            kernel = preset.kernel(size)
            assert kernel.shape == (size, size) and np.isfinite(kernel).all()
        assert preset.kernel().shape[0] == preset.default_size
        assert preset.what_it_does
    for size in (2, 3, 5, 7):
        assert conv.preset_kernel("box_blur", size).sum() == pytest.approx(1)
    for size in (3, 5, 7):
        gaussian = conv.preset_kernel("gaussian_blur", size)
        assert gaussian.sum() == pytest.approx(1) and gaussian.argmax() == (size * size) // 2
        assert conv.preset_kernel("sobel_x", size).sum() == 0
    for size in (3, 5):  # the Laplacian comes in two sizes; both ignore flat areas and even slopes
        laplacian = conv.preset_kernel("laplacian", size)
        slope = np.add.outer(np.arange(9.0), 2 * np.arange(9.0))
        assert laplacian.sum() == 0 and np.allclose(conv.convolve(slope, laplacian).output, 0)
    with pytest.raises(ConfigError, match="comes in sizes 3"):
        conv.preset_kernel("sharpen", 5)
    with pytest.raises(ConfigError, match="Unknown kernel preset"):
        conv.preset_kernel("blurry")


def test_sobel_5x5_is_the_standard_extension():
    expected = np.array([[-1, -2, 0, 2, 1], [-4, -8, 0, 8, 4], [-6, -12, 0, 12, 6],
                         [-4, -8, 0, 8, 4], [-1, -2, 0, 2, 1]])
    np.testing.assert_array_equal(conv.preset_kernel("sobel_x", 5), expected)
    np.testing.assert_array_equal(conv.preset_kernel("sobel_y", 5), expected.T)


def test_identity_with_same_padding_returns_the_image():
    image = RNG.random((6, 5)).astype(np.float32)
    for size in (1, 3, 5, 7):
        same = conv.same_padding(size)
        result = conv.convolve(image, conv.preset_kernel("identity", size), conv.ConvSettings(padding=same.padding))
        np.testing.assert_allclose(result.output, image)


@pytest.mark.parametrize("kernel,message", [
    ([[1, 2], [3]], "number"),
    (np.ones((2, 3)), "square"),
    (np.ones((8, 8)), "between 1 and 7"),
    ([[1, np.nan], [0, 1]], "finite"),
    ([["a", 1], [0, 1]], "number"),
])
def test_validate_kernel_says_what_is_wrong(kernel, message):
    with pytest.raises(ConfigError, match=message):
        conv.validate_kernel(kernel)


def test_sobel_magnitude_finds_a_vertical_edge():
    image = np.zeros((8, 8), np.float32)
    image[:, 4:] = 1.0
    sobel = conv.sobel_magnitude(image)
    assert sobel.magnitude.shape == image.shape
    np.testing.assert_allclose(sobel.gy, 0, atol=1e-6)
    np.testing.assert_allclose(sobel.magnitude, np.abs(sobel.gx), atol=1e-6)
    assert set(np.argwhere(sobel.magnitude == sobel.magnitude.max())[:, 1]) == {3, 4}
    assert sobel.magnitude[:, :2].max() == 0


# ------------------------------------------------------------------------------------------ pooling
def test_max_pool_matches_torch_and_names_the_winner():
    image = RNG.random((7, 7)).astype(np.float32)
    result = conv.pool(image, "max", 2, 2)
    expected = F.max_pool2d(torch.from_numpy(image)[None, None], 2, 2)[0, 0].numpy()
    np.testing.assert_array_equal(result.output, expected)
    assert result.torch_shape == (1, 1, 3, 3) and result.formula_h.size == 3
    for r, c in itertools.product(range(3), range(3)):
        cell = conv.pool_cell(result, r, c)
        assert cell.rows == (2 * r, 2 * r + 1)
        assert image[cell.winner] == cell.result == cell.values.max()
    table = conv.pool_table(result)
    assert len(table) == 9 and table[0]["input rows"] == "0–1" and "winner at" in table[0]


def test_average_pool_with_overlapping_windows():
    image = RNG.random((6, 5)).astype(np.float32)
    result = conv.pool(image, "average", 3, 1)
    expected = F.avg_pool2d(torch.from_numpy(image)[None, None], 3, 1)[0, 0].numpy()
    np.testing.assert_allclose(result.output, expected, rtol=1e-6)
    cell = conv.pool_cell(result, 1, 2)
    assert cell.winner is None and cell.result == pytest.approx(float(cell.values.mean()), rel=1e-6)
    assert "winner at" not in conv.pool_table(result)[0]


def test_pool_window_larger_than_input_explains():
    with pytest.raises(ConfigError, match="pooling window covers 4 cells"):
        conv.pool(np.ones((3, 3)), "max", 4, 1)
    with pytest.raises(ConfigError, match="max' or 'average"):
        conv.pool(np.ones((3, 3)), "median", 2)


# ------------------------------------------------------------------------------------------ display data
def test_heatmap_data_is_symmetric_for_signed_maps():
    signed = conv.heatmap_data(np.array([[-2.0, 1.0]]))
    assert signed.diverging and (signed.zmin, signed.zmax) == (-2.0, 2.0)
    positive = conv.heatmap_data(np.array([[0.5, 3.0]]))
    assert not positive.diverging and (positive.zmin, positive.zmax) == (0.5, 3.0)
    flat = conv.heatmap_data(np.zeros((2, 2)))
    assert flat.zmax > flat.zmin
    assert signed.z.dtype == np.float32 and not signed.clipped


def test_a_map_of_one_value_is_drawn_as_that_value_not_as_the_bottom_of_the_scale():
    # An all-white image was drawn black under a colour bar "255 ... 256" (a gray level that does not exist).
    for value in (255.0, 200.0, 18.0):
        data = conv.heatmap_data(np.full((20, 20), value), robust=False)
        assert (data.zmin, data.zmax) == (0.0, value)  # the top of its scale
    zeros = conv.heatmap_data(np.zeros((4, 4)))
    assert (zeros.zmin, zeros.zmax) == (0.0, 1.0)  # black, at the bottom


def test_heatmap_range_of_large_maps_ignores_a_few_extremes():
    edges = np.zeros((100, 100), np.float32)
    edges[:, 50] = 1.0
    edges[0, :10] = 50.0  # ten outliers out of 10,000 cells
    data = conv.heatmap_data(edges)
    assert data.clipped and data.zmax < 50 and data.zmax >= 1.0
    assert conv.heatmap_data(edges, robust=False).zmax == 50.0
    signed = conv.heatmap_data(-edges)
    assert signed.diverging and signed.clipped and signed.zmin == -signed.zmax
    np.testing.assert_array_equal(data.z, edges)  # the values themselves are never changed


@pytest.mark.parametrize("value,text", [(3.0, "3"), (-0.25, "-0.25"), (1 / 9, "0.111"), (-0.0, "0"),
                                        (-0.0001, "-0.0001"), (1 / 4096, "0.00024"), (1e-7, "0"),
                                        (float("nan"), "nan")])
def test_format_number(value, text):
    assert conv.format_number(value) == text


def test_crop_stays_inside_the_image():
    image = np.arange(100).reshape(10, 10)
    assert conv.crop(image, 8, 8, 4).shape == (4, 4) and conv.crop(image, 8, 8, 4)[0, 0] == 66
    assert conv.crop(image, -3, 2, 4)[0, 0] == 2
    assert conv.crop(np.ones((3, 5)), 0, 0, 4).shape == (3, 4)


# ------------------------------------------------------------------------------------------ self-check
def test_first_question_is_seed_002s_first_layer_on_mnist():
    question = conv_quiz.size_question(0)
    assert (question.n, question.k, question.stride, question.padding) == (28, 5, 1, 0)
    assert question.answer == 24
    right, explanation = question.check(24)
    assert right and "⌊(28 − 5 + 2·0) / 1⌋ + 1 = ⌊23 / 1⌋ + 1 = 24" in explanation
    wrong, explanation = question.check(23)
    assert not wrong and "you said 23" in explanation


def test_random_questions_are_answerable_and_reproducible():
    for seed in range(1, 60):
        question = conv_quiz.size_question(seed)
        assert question == conv_quiz.size_question(seed)
        assert question.answer >= 1
        assert question.answer == F.conv2d(torch.zeros(1, 1, question.n, question.n),
                                           torch.zeros(1, 1, question.k, question.k), stride=question.stride,
                                           padding=question.padding).shape[-1]
    assert len({conv_quiz.size_question(seed) for seed in range(1, 30)}) > 20


def test_floor_hint_when_the_stride_does_not_divide():
    question = conv_quiz.SizeQuestion(n=8, k=3, stride=2, padding=0)  # (8-3)/2 = 2.5 -> 2 + 1 = 3
    right, explanation = question.check(4)
    assert not right and "floor" in explanation


# ------------------------------------------------------------------------------------------ images
def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    gradient = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint8)
    return Image.fromarray(gradient, "RGB")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"])
def test_read_image_formats(photo, fmt):
    image = images.read_image(_encode(photo, fmt), name=f"photo.{fmt.lower()}")
    assert image.size == (64, 48) and image.mode in ("RGB", "L")


def test_read_image_from_path_and_file_object(tmp_path, photo):
    path = tmp_path / "scan one.png"
    photo.save(path)
    assert images.read_image(path).size == (64, 48)
    assert images.read_image(str(path)).mode == "RGB"
    with open(path, "rb") as handle:
        assert images.read_image(handle).size == (64, 48)
    with pytest.raises(ImageError, match="'missing.png' was not found"):
        images.read_image(tmp_path / "missing.png")


def test_non_image_and_empty_files_get_clear_messages():
    with pytest.raises(ImageError, match="'notes.png' is not an image this app can read.*PNG, JPEG"):
        images.read_image(b"hello, this is text renamed to .png\n" * 10, name="notes.png")
    with pytest.raises(ImageError, match="empty"):
        images.read_image(b"", name="empty.png")


def test_formats_outside_the_allow_list_are_refused():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError, match="not an image this app can read"):
        images.read_image(eps, name="drawing.eps")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_reported(photo, fmt):
    noisy = Image.fromarray(RNG.integers(0, 255, (120, 160, 3), dtype=np.uint8), "RGB")
    data = _encode(noisy, fmt)
    with pytest.raises(ImageError, match="truncated|damaged") as caught:
        images.read_image(data[: len(data) // 2], name=f"cut.{fmt.lower()}")
    assert "'cut." in str(caught.value)


def test_decompression_bomb_20000_square_is_refused_from_the_header():
    bomb = png_bomb(20_000)
    assert len(bomb) < 100_000  # 400 megapixels in under 100 kB
    with pytest.raises(ImageError, match="'bomb.png' declares 400 megapixels.*decompression bomb.*40 megapixels"):
        images.read_image(bomb, name="bomb.png")


def test_images_above_our_own_limit_are_refused_before_decoding():
    data = png_bomb(8_000)  # 64 megapixels: below Pillow's own alarm, above ours
    with pytest.raises(ImageError, match="8000x8000 pixels .64 megapixels.*limit of 40 megapixels"):
        images.read_image(data, name="big.png")
    small = _encode(Image.new("L", (100, 100)), "PNG")
    with pytest.raises(ImageError, match="limit of 0 megapixels"):
        images.read_image(small, max_pixels=5_000)


def test_a_phone_jpeg_above_the_limit_is_decoded_at_a_fraction_of_its_side(tmp_path, monkeypatch):
    # A 48 MP iPhone photo (8064x6048) was "unreadable, convert it to PNG or JPEG" in a folder and a decompression
    # bomb on Predict (Nandaka/PixivUtil2#1103); a JPEG decodes at 1/2, 1/4 or 1/8 of its side for little memory.
    from cnn_core.data import folders

    photo = Image.new("RGB", (2001, 1501), (200, 30, 30))  # odd sides: the decoder's half is 1001 x 751
    image = images.read_image(_encode(photo, "JPEG"), max_pixels=1_000_000, name="IMG_4000.jpg")
    assert image.size == (1001, 751) and image.getpixel((500, 375))[0] > 150
    several = io.BytesIO()  # an MPO (a JPEG holding several pictures: Samsung, iPhone HDR), Pillow's format "MPO"
    photo.save(several, "MPO", save_all=True, append_images=[photo.resize((200, 150))])
    assert images.read_image(several.getvalue(), max_pixels=1_000_000, name="IMG_4001.jpg").size == (1001, 751)
    with pytest.raises(ImageError, match="2001x1501 pixels .3 megapixels.*limit of 1 megapixels"):
        images.read_image(_encode(photo, "PNG"), max_pixels=1_000_000, name="scan.png")  # no such decoder
    (tmp_path / "IMG_4000.jpg").write_bytes(_encode(photo, "JPEG"))
    monkeypatch.setattr(folders, "MAX_IMAGE_PIXELS", 1_000_000)
    assert folders.read_folder_image(tmp_path / "IMG_4000.jpg", 64, 3).shape == (3, 64, 64)


def test_a_jpeg_over_pillows_own_refusal_is_still_decoded_at_a_fraction(tmp_path, monkeypatch):
    # Pillow refuses more than 2 x Image.MAX_IMAGE_PIXELS (~179 MP) at open, before a smaller decode can be asked
    # for: a 200 MP phone photo (16320x12240, Samsung's 200 MP mode) was a "decompression bomb". Here Pillow's limit
    # is lowered so that a 3 MP JPEG stands for it; a PNG that size (no scaled decoder) is still refused.
    from cnn_core.data import folders

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # Pillow refuses above 2 MP
    photo = Image.new("RGB", (2001, 1501), (200, 30, 30))
    image = images.read_image(_encode(photo, "JPEG"), max_pixels=1_000_000, name="20231224_120000.jpg")
    assert image.size == (1001, 751) and image.getpixel((500, 375))[0] > 150
    (tmp_path / "big.jpg").write_bytes(_encode(photo, "JPEG"))
    monkeypatch.setattr(folders, "MAX_IMAGE_PIXELS", 1_000_000)
    assert folders.read_folder_image(tmp_path / "big.jpg", 64, 3).shape == (3, 64, 64)
    with pytest.raises(ImageError, match="'scan.png' declares 3 megapixels.*decompression bomb"):
        images.read_image(_encode(photo, "PNG"), max_pixels=1_000_000, name="scan.png")
    with pytest.raises(ImageError, match="damaged|truncated"):  # JPEG's own refusal path still reads the file
        images.read_image(_encode(photo, "JPEG")[:5000], max_pixels=1_000_000, name="cut.jpg")


def test_16_bit_images_are_stretched_to_8_bit():
    values = np.linspace(100, 4095, 32 * 16).reshape(16, 32).astype(np.uint16)  # a 12-bit scan in 16 bits
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = images.read_image(data)
    array = np.asarray(image)
    assert image.mode == "L" and array.min() == 0 and array.max() == 255
    assert (np.diff(array.astype(int).ravel()) >= 0).all()  # order preserved


def test_palette_images_with_transparency_become_rgb_on_white():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 1), 1)
    data = _encode(palette, "PNG", transparency=0)
    image = images.read_image(data)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)  # transparent red became white
    assert image.getpixel((1, 1)) == (0, 0, 255)
    plain = images.read_image(_encode(palette, "GIF"))
    assert plain.mode == "RGB"


def test_rgba_and_la_are_composited_over_white():
    rgba = Image.new("RGBA", (3, 3), (10, 20, 30, 0))
    rgba.putpixel((2, 2), (10, 20, 30, 255))
    image = images.read_image(_encode(rgba, "PNG"))
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((2, 2)) == (10, 20, 30)
    la = Image.new("LA", (2, 2), (40, 255))
    assert images.read_image(_encode(la, "PNG")).mode == "L"


def test_cmyk_and_exif_rotation(photo):
    cmyk = images.read_image(_encode(photo.convert("CMYK"), "JPEG"))
    assert cmyk.mode == "RGB" and cmyk.size == (64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated = images.read_image(_encode(photo, "JPEG", exif=exif))
    assert rotated.size == (48, 64)


def test_grayscale_float_from_images_and_arrays(photo):
    gray = images.to_grayscale_float(photo)
    assert gray.shape == (48, 64) and gray.dtype == np.float32 and 0 <= gray.min() and gray.max() <= 1
    chw = np.asarray(photo).transpose(2, 0, 1)
    np.testing.assert_allclose(images.to_grayscale_float(chw), gray, atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(images.to_grayscale_float(np.full((2, 2), 255, np.uint8)), 1.0)
    np.testing.assert_allclose(images.to_grayscale_float(np.full((1, 2, 2), 0.5)), 0.5)
    with pytest.raises(ImageError, match="shape"):
        images.to_grayscale_float(np.zeros((2, 2, 2, 2)))
    assert images.to_uint8_array(photo, "L").shape == (48, 64)
    assert images.to_uint8_array(photo, "RGB").shape == (48, 64, 3)


def test_fit_within_and_tensor_to_image(photo):
    assert images.fit_within(photo, 32).size == (32, 24)
    assert images.fit_within(photo, 500) is photo
    assert images.tensor_to_image(np.zeros((1, 5, 6), np.uint8)).mode == "L"
    rgb = images.tensor_to_image(np.zeros((3, 5, 6), np.uint8))
    assert rgb.mode == "RGB" and rgb.size == (6, 5)
    with pytest.raises(ImageError, match="1 or 3 channels"):
        images.tensor_to_image(np.zeros((2, 5, 6), np.uint8))


def test_sample_photos_ship_with_scikit_image():
    camera = images.load_sample_photo("camera")
    assert camera.mode == "L" and camera.size == (512, 512)
    assert images.load_sample_photo("astronaut").mode == "RGB"
    assert images.load_sample_photo("shepp_logan_phantom").mode == "L"
    with pytest.raises(ImageError, match="Unknown sample photo"):
        images.load_sample_photo("mona_lisa")


# ------------------------------------------------------------------------------------------ the page, headless
@pytest.fixture
def lab_app(monkeypatch):
    """The Convolution Lab page run by Streamlit's AppTest (no browser): quick coverage of many settings."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root))  # the page imports cnn_explorer_ui from the repository root
    app = AppTest.from_file(str(root / "pages" / "1_convolution_lab.py"), default_timeout=120)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _messages(app) -> list[str]:
    return [e.value for e in app.exception] + [e.value for e in app.error]


def test_lab_page_survives_every_preset_padding_mode_and_extreme(lab_app):
    for preset in [*conv.KERNEL_PRESETS, "custom"]:
        lab_app.selectbox(key="conv_preset").set_value(preset).run()
        assert not _messages(lab_app), (preset, _messages(lab_app))
    for mode in conv.PADDING_MODES:
        lab_app.radio(key="conv_padding_mode").set_value(mode).run()
        for stride, dilation, padding in [(1, 1, 0), (5, 1, 3), (2, 3, 6), (1, 4, 0)]:
            lab_app.slider(key="conv_stride").set_value(stride)
            lab_app.slider(key="conv_dilation").set_value(dilation)
            lab_app.number_input(key="conv_padding").set_value(padding).run()
            assert not lab_app.exception, [e.value for e in lab_app.exception]
            messages = " ".join(_messages(lab_app) + [w.value for w in lab_app.warning])
            formula = conv.size_formula(7, 3, stride, padding, dilation)
            if mode == "reflect" and padding >= 7:
                assert "Reflect padding" in messages
            elif not formula.fits:
                assert "No output." in messages
            else:
                metrics = {m.label: m.value for m in lab_app.metric}
                assert metrics["Formula says"] == metrics["conv2d returns"] == f"{formula.size} × {formula.size}"
    for kind in conv.POOL_KINDS:
        lab_app.radio(key="conv_pool_kind").set_value(kind).run()
        assert not _messages(lab_app)


def test_lab_page_with_a_photo_and_the_sobel_magnitude(lab_app):
    lab_app.session_state["conv_source"] = "photo"
    lab_app.run()
    lab_app.toggle(key="conv_sobel").set_value(True).run()
    assert not _messages(lab_app)
    metrics = {m.label: m.value for m in lab_app.metric}
    assert metrics["Input (H × W)"] == "512 × 512" and metrics["conv2d returns"] == "510 × 510"
    lab_app.radio(key="conv_pool_source").set_value("conv").run()
    assert not _messages(lab_app)


def test_a_window_from_the_middle_reads_the_image_around_it_not_padding():
    """A 10x10 window in the middle of a 20x20 image with p = 1: its 12x12 grid is image rows 4-15 and columns
    6-17 (no padding cell), and its output is exactly that part of the whole image's output."""
    image = np.arange(400, dtype=np.float32).reshape(20, 20)  # pixel (r, c) holds 20 r + c
    settings = conv.ConvSettings(padding=1)
    kernel = conv.preset_kernel("sobel_x")
    window = conv.convolve_window(image, kernel, settings, 5, 7, 10)
    assert window.padded.shape == (12, 12) and window.input_shape == (10, 10)
    np.testing.assert_array_equal(window.padded, image[4:16, 6:18])
    assert window.padded[0, 0] == 86 and window.padded[11, 11] == 317  # (4, 6) and (15, 17)
    assert not window.pad_mask.any()
    whole = conv.convolve(image, kernel, settings)
    np.testing.assert_array_equal(window.output, whole.output[5:15, 7:17])
    assert np.all(window.output == 8)  # Sobel x on a ramp rising by 1 per column: 4 * (1 + 1) = 8


@pytest.mark.parametrize("stride,padding,dilation", [(2, 1, 1), (3, 2, 1), (2, 0, 2), (4, 3, 1)])
def test_a_window_with_stride_shows_cells_of_the_whole_images_output(stride, padding, dilation):
    # Stride 2 with the window at an odd row (251): the sweep's outputs were values found nowhere in the
    # photo's real feature map, though the page said "exactly as PyTorch computed it".
    image = np.random.default_rng(3).integers(0, 256, (41, 37)).astype(np.float32)
    settings = conv.ConvSettings(stride=stride, padding=padding, dilation=dilation)
    kernel = conv.preset_kernel("sobel_x")
    whole = conv.convolve(image, kernel, settings).output
    for top, left in ((0, 0), (11, 13), (25, 27), (31, 30)):
        window = conv.convolve_window(image, kernel, settings, top, left, 10)
        top0, left0 = conv.crop_origin(image.shape, top, left, 10, stride)
        assert top0 % stride == left0 % stride == 0 and top0 <= top and left0 <= left
        out_h, out_w = window.output.shape
        np.testing.assert_array_equal(
            window.output, whole[top0 // stride:top0 // stride + out_h, left0 // stride:left0 // stride + out_w])


def test_a_window_at_the_corner_has_padding_only_beyond_the_image_edge():
    image = np.arange(400, dtype=np.float32).reshape(20, 20)
    window = conv.convolve_window(image, np.ones((3, 3)), conv.ConvSettings(padding=1), 0, 0, 10)
    expected_mask = np.zeros((12, 12), dtype=bool)
    expected_mask[0, :] = expected_mask[:, 0] = True  # above row 0 and left of column 0 only
    np.testing.assert_array_equal(window.pad_mask, expected_mask)
    assert window.padded[0, 5] == 0 and window.padded[1, 1] == 0 and window.padded[11, 11] == 210  # pixel (10, 10)
    assert window.output[0, 0] == 0 + 1 + 20 + 21  # the zeros of the padding add nothing
    # replicate padding repeats the edge pixel; the window past the last row/column is moved back inside
    edge = conv.convolve_window(image, np.ones((3, 3)), conv.ConvSettings(padding=2, padding_mode="replicate"),
                                15, 15, 10)
    assert edge.padded.shape == (14, 14) and edge.padded[0, 0] == 8 * 20 + 8  # origin (10, 10), border from (8, 8)
    assert edge.pad_mask[-2:, :].all() and not edge.pad_mask[:-2, :-2].any()
    assert edge.padded[-1, -1] == 399
    np.testing.assert_array_equal(edge.output, conv.convolve(image, np.ones((3, 3)), edge.settings).output[10:22, 10:22])
