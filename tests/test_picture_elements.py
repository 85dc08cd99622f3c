"""The browser-drawn picture elements: the gallery's thumbnail rows and the Convolution Lab's value maps.

What they send must decode to the right pixels and values; the browser tests click and hover them.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_explorer_ui import thumbnails, value_maps


def _decode(uri: str, mode: str | None = None) -> tuple[str, np.ndarray]:
    """(the URI's header, its picture as an array; converted to `mode` if given, e.g. a palette to "RGB")."""
    header, payload = uri.split(",", 1)
    picture = Image.open(io.BytesIO(base64.b64decode(payload)))
    return header, np.asarray(picture.convert(mode) if mode else picture)


def test_small_images_travel_pixel_for_pixel_as_png():
    grey = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    header, picture = _decode(thumbnails.data_uri(grey))
    assert header == "data:image/png;base64"
    np.testing.assert_array_equal(picture, grey[0].numpy())
    colour = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    header, picture = _decode(thumbnails.data_uri(colour))
    assert header == "data:image/png;base64"
    np.testing.assert_array_equal(picture, colour.permute(1, 2, 0).numpy())


def test_large_images_are_shrunk_to_a_jpeg_thumbnail():
    image = torch.zeros((3, 224, 224), dtype=torch.uint8)
    image[0, :, 112:] = 255  # right half red
    header, picture = _decode(thumbnails.data_uri(image))
    assert header == "data:image/jpeg;base64"
    assert picture.shape == (thumbnails.SHRUNK_PX, thumbnails.SHRUNK_PX, 3)
    assert picture[50, 100, 0] > 200 and picture[50, 10, 0] < 50  # the halves stay where they were


def test_thumbnail_data_uri_refuses_a_batch():
    from cnn_core.errors import DataError

    with pytest.raises(DataError):
        thumbnails.data_uri(torch.zeros((2, 1, 28, 28), dtype=torch.uint8))


def test_value_map_sends_every_value_and_a_colour_per_value():
    values = np.array([[-2.0, 0.0, 1.0], [0.5, 2.0, -1.0]])
    payload = value_maps.value_map_payload(values, "Feature map")
    assert (payload["width"], payload["height"]) == (3, 2)
    sent = np.frombuffer(base64.b64decode(payload["values"]), dtype="<f4").reshape(2, 3)
    np.testing.assert_array_equal(sent, values.astype(np.float32))
    header, picture = _decode(payload["png"], "RGB")
    assert header == "data:image/png;base64" and picture.shape == (2, 3, 3)
    table = value_maps.colour_table("RdBu_r")  # signed: symmetric around 0, so 0 is the middle colour
    np.testing.assert_array_equal(picture[0, 0], table[0])
    np.testing.assert_array_equal(picture[1, 1], table[-1])
    np.testing.assert_array_equal(picture[0, 1], table[len(table) // 2])
    assert payload["ticks"] == ["-2", "0", "2"]


def test_value_map_of_an_image_is_grey_from_its_min_to_its_max():
    image = np.array([[0.0, 255.0], [127.5, 255.0]])
    payload = value_maps.value_map_payload(image, "Input", gray=True, robust=False)
    _, picture = _decode(payload["png"], "RGB")
    assert picture[0, 0].tolist() == value_maps.colour_table("gray")[0].tolist()
    assert picture[0, 1].tolist() == value_maps.colour_table("gray")[-1].tolist()
    assert payload["ticks"] == ["0", "255"]


def test_value_map_draws_non_finite_values_in_their_own_colour_and_refuses_other_shapes():
    payload = value_maps.value_map_payload(np.array([[1.0, np.nan], [np.inf, 3.0]]), "Map")
    _, picture = _decode(payload["png"], "RGB")
    assert picture[0, 1].tolist() == list(value_maps.NOT_FINITE_RGB) == picture[1, 0].tolist()
    assert picture[0, 0].tolist() != list(value_maps.NOT_FINITE_RGB)
    for bad in (np.zeros(4), np.zeros((0, 3)), np.zeros((2, 2, 2))):
        with pytest.raises(ValueError, match="2-D"):
            value_maps.value_map_payload(bad, "Map")


def test_colour_tables_follow_plotlys_scales():
    gray = value_maps.colour_table("gray")
    assert gray.shape == (value_maps.LEVELS, 3) and gray.dtype == np.uint8
    assert gray[0].tolist() == [0, 0, 0] and gray[-1].min() >= 250
    viridis = value_maps.colour_table("Viridis")
    assert viridis[0].tolist() == [68, 1, 84] and viridis[-1].tolist() == [253, 231, 37]


def test_thumbnail_rows_need_one_alt_caption_and_id_per_picture():
    pictures = [torch.zeros((1, 28, 28), dtype=torch.uint8)] * 2
    assert thumbnails.ThumbnailRow("3", pictures, ["a", "b"], ids=["train/1", "train/2"]).ids == ["train/1", "train/2"]
    with pytest.raises(ValueError, match="2 pictures but 1 alts"):
        thumbnails.ThumbnailRow("3", pictures, ["a"])
    with pytest.raises(ValueError, match="2 pictures but 3 ids"):
        thumbnails.ThumbnailRow("3", pictures, ["a", "b"], ids=["x", "y", "z"])


def test_thumbnail_data_uri_refuses_two_or_four_channels():
    from cnn_core.errors import DataError

    for channels in (2, 4):
        with pytest.raises(DataError, match="1 or 3 channels"):
            thumbnails.data_uri(torch.zeros((channels, 28, 28), dtype=torch.uint8))
