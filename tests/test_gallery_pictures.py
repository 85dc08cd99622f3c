"""cnn_core.gallery's display helpers the pages share: whole-pixel enlarging and square pictures."""

from __future__ import annotations

import numpy as np
import torch

from cnn_core import gallery


def test_repeat_pixels_enlarges_gray_and_colour_pictures_without_blur():
    gray = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    big = gallery.repeat_pixels(gray, 3)
    assert big.shape == (6, 6) and set(np.unique(big).tolist()) == {0, 255}
    assert (big[:3, :3] == 0).all() and (big[:3, 3:] == 255).all()
    colour = np.zeros((2, 3, 3), dtype=np.uint8)
    assert gallery.repeat_pixels(colour, 2).shape == (4, 6, 3)
    assert gallery.repeat_pixels(gray, 1) is gray


def test_square_picture_blows_up_small_images_and_shrinks_large_ones():
    digit = np.zeros((1, 28, 28), dtype=np.uint8)
    digit[0, 10:18, 12:14] = 255
    shown = gallery.square_picture(digit, 196)  # 7 x 28: every pixel a crisp 7 x 7 block
    assert shown.shape == (196, 196) and set(np.unique(shown).tolist()) == {0, 255}
    assert (shown[70:126, 84:98] == 255).all()
    scan = torch.full((3, 300, 300), 128, dtype=torch.uint8)
    small = gallery.square_picture(scan, 224)
    assert small.shape == (224, 224, 3) and int(small.min()) == int(small.max()) == 128
