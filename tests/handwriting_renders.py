"""Handwritten digits as people deliver them: a digit's ink (MNIST's, or synthetic strokes) rendered on
paper of any brightness and tint, in a shadow, on ruled or squared paper, in pencil, with dirt, small,
large or off-centre, photographed (blur, noise, JPEG), as chalk on a board, or as a transparent PNG.

Used by the unit tests (tests/test_ink.py) and by benchmarks/bench_handwriting.py. Every function takes the
ink as float [H, W] in [0, 1] (1 = full ink) and a numpy Generator, and returns the encoded file's bytes
(PNG, or JPEG for photos) with its file name, so what is measured is exactly what a user uploads.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CANVAS = 160  # px: the side of a rendered picture
SCALE = 4     # MNIST's 28 px become 112 px at the normal size


def synthetic_ink(digit: str, side: int = 112, width: int = 10) -> np.ndarray:
    """A digit drawn with strokes (for tests that must not need MNIST): float [side, side] in [0, 1]."""
    image = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(image)
    s = side / 112
    if digit == "1":
        draw.line([(56 * s, 14 * s), (56 * s, 98 * s)], fill=255, width=width)
    elif digit == "7":
        draw.line([(26 * s, 18 * s), (86 * s, 18 * s), (46 * s, 98 * s)], fill=255, width=width, joint="curve")
    elif digit == "0":
        draw.ellipse([30 * s, 14 * s, 82 * s, 98 * s], outline=255, width=width)
    elif digit == "4":
        draw.line([(70 * s, 14 * s), (26 * s, 70 * s), (88 * s, 70 * s)], fill=255, width=width, joint="curve")
        draw.line([(70 * s, 14 * s), (70 * s, 98 * s)], fill=255, width=width)
    else:
        raise ValueError(digit)
    return np.asarray(image.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float32) / 255


def enlarge(digit: np.ndarray, scale: float) -> np.ndarray:
    """A 28x28 uint8 MNIST digit as ink, enlarged `scale` times (bicubic, like a smooth pen)."""
    side = max(4, round(digit.shape[0] * scale))
    image = Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image, dtype=np.float32) / 255, 0, 1)


def tight(ink: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero((ink > 0.1).any(axis=1)), np.flatnonzero((ink > 0.1).any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def place(ink: np.ndarray, side: int = CANVAS, at: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """The ink on an empty square canvas, its centre at `at` (fractions of the canvas, kept inside)."""
    canvas = np.zeros((side, side), np.float32)
    ink = ink[:side, :side]
    height, width = ink.shape
    top = int(np.clip(round(at[1] * side - height / 2), 0, side - height))
    left = int(np.clip(round(at[0] * side - width / 2), 0, side - width))
    canvas[top : top + height, left : left + width] = ink
    return canvas


def on_paper(ink: np.ndarray, paper, pen) -> np.ndarray:
    """RGB uint8: paper colour where there is no ink, pen colour where there is (alpha blending)."""
    paper = np.broadcast_to(np.asarray(paper, np.float32), ink.shape + (3,)) if np.ndim(paper) <= 1 else paper
    pen = np.asarray(pen, np.float32)
    rgb = paper * (1 - ink[..., None]) + pen * ink[..., None]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def encode(rgb: np.ndarray, name: str, quality: int | None = None) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image = Image.fromarray(rgb)
    if quality is None:
        image.save(buffer, format="PNG")
        return buffer.getvalue(), f"{name}.png"
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue(), f"{name}.jpg"


# ---------------------------------------------------------------------------------------------- kinds
# Each kind: (ink [H, W] at the normal size, strength index, rng) -> (bytes, file name). Strengths run
# from mild to harsh; a benchmark spreads its digits over all of them.

def white_paper(ink, strength, rng):
    return encode(on_paper(place(ink), 255, 15), "white")


PAPER_BRIGHTNESS = (1.0, 0.9, 0.8, 0.7, 0.62, 0.55)


def gray_paper(ink, strength, rng):
    level = 255 * PAPER_BRIGHTNESS[strength % len(PAPER_BRIGHTNESS)]
    return encode(on_paper(place(ink), level, 0.12 * level), f"gray{level:.0f}")


TINTS = (((250, 240, 200), (20, 40, 140)), ((220, 232, 250), (10, 10, 10)), ((250, 222, 228), (60, 20, 90)),
         ((215, 240, 215), (30, 30, 30)), ((235, 215, 170), (40, 30, 20)))


def tinted_paper(ink, strength, rng):
    paper, pen = TINTS[strength % len(TINTS)]
    return encode(on_paper(place(ink), paper, pen), f"tint{strength % len(TINTS)}")


SHADOW_LOW = (220, 190, 165, 140)


def shadow(ink, strength, rng):
    """Brightness falling from 250 to `SHADOW_LOW` across the picture, in a random direction."""
    low = SHADOW_LOW[strength % len(SHADOW_LOW)]
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:CANVAS, 0:CANVAS] / (CANVAS - 1) - 0.5
    t = np.clip((x * np.cos(angle) + y * np.sin(angle)) / 0.7071 / 2 + 0.5, 0, 1)
    light = (250 - (250 - low) * t)[..., None] / 255
    rgb = on_paper(place(ink), 255, 20).astype(np.float32) * light
    return encode(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), f"shadow{low}")


#: (how much darker the shaded part is, the edge's softness in pixels) of a cast shadow (`shadow_edge`)
SHADOW_EDGES = ((0.9, 0), (0.45, 0), (0.6, 25), (0.8, 0), (0.55, 60), (0.7, 8))


def shadow_edge(ink, strength, rng):
    """A hand's or a phone's shadow: part of the page darker, its edge sharp or soft, through or beside the digit
    (a shadow's edge read as a stroke the picture's height, and a half-page shadow as the desk around a sheet)."""
    share, soft = SHADOW_EDGES[strength % len(SHADOW_EDGES)]
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:CANVAS, 0:CANVAS] - (CANVAS - 1) / 2
    along = x * np.cos(angle) + y * np.sin(angle) - rng.uniform(-0.25, 0.25) * CANVAS  # the edge: a line
    dark = 1 / (1 + np.exp(-along / max(soft / 4, 0.3)))  # 1 in the shadow
    light = (1 - (1 - share) * dark)[..., None]
    rgb = on_paper(place(ink), 245, 20).astype(np.float32) * light
    return encode(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), f"shadow_edge{share:.2f}_{soft}")


#: (width as a share of the picture, how much darker) of a narrow shadow across the digit (`shadow_band`)
#: (Wider bands, 8-15 % of the picture and half as bright, still fool the ink finder about a third of the time.)
SHADOW_BANDS = ((0.03, 0.35), (0.06, 0.35), (0.03, 0.5), (0.05, 0.5), (0.05, 0.4), (0.04, 0.45))


def shadow_band(ink, strength, rng):
    """A pen's, a ruler's or an arm's shadow: a band narrower than the digit's height, across it (kept whole as
    ink when it joined a stroke: a "1" the picture's height)."""
    share, depth = SHADOW_BANDS[strength % len(SHADOW_BANDS)]
    angle = rng.uniform(0.3, 1.3) * rng.choice([-1, 1])
    y, x = np.mgrid[0:CANVAS, 0:CANVAS] - (CANVAS - 1) / 2
    across = np.abs(x * np.cos(angle) + y * np.sin(angle) + rng.uniform(-0.1, 0.1) * CANVAS)
    light = (1 - depth * (across < share * CANVAS / 2))[..., None]
    rgb = on_paper(place(ink), 245, 20).astype(np.float32) * light
    return encode(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), f"shadow_band{share:.2f}_{depth}")


def transparent(ink, strength, rng, colour=(255, 255, 255)):
    """A drawing tool's export: the stroke colour everywhere, the ink as opacity."""
    canvas = place(ink)
    rgba = np.zeros(canvas.shape + (4,), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)
    return encode(rgba, "transparent")


def transparent_white(ink, strength, rng):
    return transparent(ink, strength, rng, (255, 255, 255))


def transparent_black(ink, strength, rng):
    return transparent(ink, strength, rng, (0, 0, 0))


RULINGS = ((16, (170, 200, 230), 1), (12, (150, 150, 150), 1), (20, (120, 160, 220), 2), (10, (190, 190, 190), 1))


def _ruled(ink, strength, rows: bool, cols: bool, name: str, rng):
    spacing, colour, thickness = RULINGS[strength % len(RULINGS)]
    paper = np.full((CANVAS, CANVAS, 3), 250, np.float32)
    offset = int(rng.integers(0, spacing))
    for start in range(offset, CANVAS, spacing):
        if rows:
            paper[start : start + thickness] = colour
        if cols:
            paper[:, start : start + thickness] = colour
    return encode(on_paper(place(ink), paper, (25, 25, 60)), f"{name}{strength % len(RULINGS)}")


def squared_paper(ink, strength, rng):
    return _ruled(ink, strength, True, True, "squared", rng)


def lined_paper(ink, strength, rng):
    return _ruled(ink, strength, True, False, "lined", rng)


PENCIL = ((1, 0.75), (2, 0.6), (3, 0.5), (2, 0.4))  # (erosion in px at 4x, darkness)


def pencil(ink, strength, rng):
    """Thin, light strokes: the ink eroded and lightened, with a little graphite grain."""
    from scipy import ndimage

    erode, darkness = PENCIL[strength % len(PENCIL)]
    thin = ndimage.grey_erosion(place(ink), size=(2 * erode + 1, 2 * erode + 1))
    grain = 1 - 0.25 * rng.random(thin.shape)
    return encode(on_paper(np.clip(thin * darkness * grain, 0, 1), 250, 0), f"pencil{strength % len(PENCIL)}")


SPECKS = (4, 8, 14, 20)


def specks(ink, strength, rng):
    """Dots of dirt (1-3 px radius) scattered over white paper."""
    count = SPECKS[strength % len(SPECKS)]
    image = Image.fromarray(on_paper(place(ink), 250, 15))
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        x, y = rng.uniform(4, CANVAS - 4, 2)
        r = rng.uniform(0.8, 3.0)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(20, 110, 3)))
    return encode(np.asarray(image), f"specks{count}")


SMALL_SCALES = (2.0, 1.6, 1.3)


def small(digit_ink_source, strength, rng):
    return encode(on_paper(place(digit_ink_source("small", SMALL_SCALES[strength % 3]),
                                 at=tuple(rng.uniform(0.25, 0.75, 2))), 255, 15), f"small{strength % 3}")


def large(digit_ink_source, strength, rng):
    """The digit filling the picture, 2-8 % of the side left as margin."""
    shape = digit_ink_source("tight", 1.0)
    margin = (0.02, 0.05, 0.08)[strength % 3]
    scale = CANVAS * (1 - 2 * margin) / max(shape.shape)
    image = Image.fromarray(np.rint(shape * 255).astype(np.uint8))
    size = (max(1, round(shape.shape[1] * scale)), max(1, round(shape.shape[0] * scale)))
    big = np.asarray(image.resize(size, Image.Resampling.BICUBIC), np.float32) / 255
    return encode(on_paper(place(big), 255, 15), f"large{strength % 3}")


def off_centre(digit_ink_source, strength, rng):
    corner = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)][strength % 4]
    return encode(on_paper(place(digit_ink_source("small", 2.5), at=corner), 255, 15), f"offcentre{strength % 4}")


PHOTO = ((0.8, 3, 85), (1.2, 5, 60), (1.8, 7, 40), (2.4, 9, 30))  # (blur radius, noise sigma, JPEG quality)


def photo(ink, strength, rng):
    """A phone photo: slightly gray paper, blur, sensor noise, JPEG."""
    blur, noise, quality = PHOTO[strength % len(PHOTO)]
    rgb = Image.fromarray(on_paper(place(ink), (205, 200, 190), (35, 35, 45))).filter(ImageFilter.GaussianBlur(blur))
    noisy = np.asarray(rgb, np.float32) + rng.normal(0, noise, (CANVAS, CANVAS, 1))
    return encode(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), f"photo{strength % len(PHOTO)}", quality=quality)


BOARDS = (((0, 0, 0), (255, 255, 255)), ((40, 50, 45), (230, 230, 220)), ((20, 30, 70), (250, 220, 90)),
          ((90, 90, 90), (240, 240, 240)))


def inverted(ink, strength, rng):
    """Light strokes on a dark background (chalk on a board, a white pen on black, a dark-mode app)."""
    board, chalk = BOARDS[strength % len(BOARDS)]
    return encode(on_paper(place(ink), board, chalk), f"inverted{strength % len(BOARDS)}")


#: Kinds that render the digit's ink at the normal size.
SHEET_SHARES = (0.6, 0.7, 0.8, 0.92)  # of the photo's side taken by the sheet


def sheet_on_desk(ink, strength, rng):
    """A phone photo of the sheet lying on a darker desk, a little turned: the desk frames the sheet."""
    share = SHEET_SHARES[strength % len(SHEET_SHARES)]
    desk = tuple(int(v) for v in rng.integers(40, 110, 3))
    sheet = Image.fromarray(on_paper(place(ink), (238, 236, 228), (20, 20, 30)))
    sheet = sheet.rotate(float(rng.uniform(-5, 5)), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=desk)
    side = round(max(sheet.size) / share)
    photo = Image.new("RGB", (side, round(side * 0.8) if share < 0.8 else side), desk)
    photo.paste(sheet, ((photo.width - sheet.width) // 2, (photo.height - sheet.height) // 2))
    return encode(np.asarray(photo), f"desk{round(share * 100)}", quality=88)


def lined_page_scan(ink, strength, rng):
    """A scan of a lined page at 800 px: 2-px blue rules and a red margin, which the reading reduces to
    512 px, so each rule spreads over three rows, fainter at its edges than at its core."""
    page = Image.fromarray(on_paper(place(ink), (250, 250, 246), (70, 70, 80)))
    page = page.resize((800, 800), Image.Resampling.BICUBIC)
    rgb = np.asarray(page).copy()
    spacing = (40, 36, 44)[strength % 3]
    for top in range(int(rng.integers(10, spacing)), 800, spacing):
        rgb[top : top + 2] = np.minimum(rgb[top : top + 2], np.array((150, 180, 225), np.uint8))
    rgb[:, 90:92] = np.minimum(rgb[:, 90:92], np.array((220, 120, 120), np.uint8))
    return encode(rgb, f"lined_scan{spacing}")


INK_KINDS = {
    "white paper": white_paper, "gray paper 100-55%": gray_paper, "tinted paper": tinted_paper,
    "shadow 250->140": shadow, "shadow's edge across the page": shadow_edge,
    "narrow shadow across the digit": shadow_band, "transparent, white strokes": transparent_white,
    "transparent, black strokes": transparent_black, "squared paper": squared_paper, "lined paper": lined_paper,
    "thin pencil": pencil, "specks of dirt": specks, "photo (blur, noise, JPEG)": photo,
    "light on dark (inverted)": inverted, "sheet photographed on a desk": sheet_on_desk,
    "lined page scanned at 800 px": lined_page_scan,
}
#: Kinds that choose the digit's size themselves (they get a function (how, scale) -> ink).
SIZE_KINDS = {"small": small, "large": large, "off-centre": off_centre}
