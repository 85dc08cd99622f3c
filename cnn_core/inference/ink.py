"""Finding the ink of a handwritten digit in whatever people deliver: scans, phone photos, drawings.

`ink_map` turns an image into how much ink each pixel holds (float32 in [0, 1], bright ink on black), so
that `prepare.center_digit` can crop, scale and centre it the way MNIST's digits were. It copes with:

- strokes on a transparent background, of either colour: when the opacity varies, ink is the opacity,
  decided *before* anything is composited;
- dark ink on white, gray or tinted paper and light strokes on a dark background: the side the ink lies
  on is the one whose pixels stand out most from the local background;
- uneven lighting and shadows: the background is estimated locally (a large-window percentile filter on a
  thumbnail, a robust cousin of the median background), and ink is the difference from it *relative to the
  local paper brightness*, so a stroke in the shadow counts as much as one in the light;
- squared or lined paper: long straight lines across the image (found by grey-level opening with a long
  line) have their own level subtracted, so strokes that cross them survive;
- thin pencil strokes: the threshold comes from the image (Otsu's method on the background-subtracted image,
  with hysteresis so faint parts connected to firm ones are kept), and strokes much thinner than MNIST's
  are thickened to MNIST's share of the digit's size;
- specks of dirt: small connected pieces far from the digit are dropped;
- the digit small, large or off-centre: nothing here depends on where the digit is or how big;
- a photographed sheet with the desk around it: the desk is painted the sheet's colour first (`paper_only`).

Only scipy.ndimage and numpy are used (the arrays are reduced to at most `WORK_SIDE` pixels first, so a
12-megapixel photo costs about as much as a scan).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import ImageError

#: Images are analysed at most this many pixels on their longer side (area-averaged); MNIST's digit is 20 px.
WORK_SIDE = 512
#: The background is estimated on a thumbnail of at most this many pixels on its longer side ...
THUMB_SIDE = 64
#: ... with a window of this share of the thumbnail's longer side, as this percentile (paper side).
BACKGROUND_WINDOW = 0.25
BACKGROUND_PERCENTILE = 85
#: Below this contrast (a share of the local paper's brightness) nothing counts as ink: JPEG noise, paper grain.
MIN_CONTRAST = 0.08
#: ... and below this many times the paper's noise (a robust standard deviation).
NOISE_SIGMAS = 5.0
#: A straight line alone in its direction counts as ruled paper only when it crosses this share of the image.
LINE_SPAN = 0.85
#: Pictures smaller than this (px, either side) are crops of a digit: no ruled lines are looked for.
MIN_RULED_SIDE = 64
#: Pieces smaller than this share of the largest piece are dropped when away from the digit, and always
#: when smaller than `SPECK_SHARE`.
PART_SHARE = 0.15
SPECK_SHARE = 0.02
#: A photographed sheet on a desk (`paper_only`): the sheet covers at least this share of the picture, is at least
#: this solid (its ink aside), and leaves at least this share of desk around it.
PAPER_MIN_SHARE = 0.2
PAPER_SOLID = 0.85
DESK_MIN_SHARE = 0.03
#: Ink under this share of the firm ink's level is kept only within this many stroke widths of firm ink
#: (`_clean`'s hysteresis).
FAINT_SHARE = 0.7
HYSTERESIS_REACH = 2.0
#: MNIST's stroke width as a share of the digit box's longer side (the median over MNIST training digits,
#: measured with `stroke_width` on them enlarged 10x); strokes thinner than `THIN_SHARE` of it are thickened to it.
MNIST_STROKE_SHARE = 0.12
THIN_SHARE = 0.6


def to_arrays(image: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(gray float32 [H, W] in [0, 1], opacity float32 [H, W] or None) of a PIL image or an array."""
    if isinstance(image, Image.Image):
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):
            image = Image.fromarray(_stretch(np.asarray(image, dtype=np.float64)), mode="L")
        array = np.asarray(image.convert("RGBA" if has_alpha else "L"))
    else:
        array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or min(array.shape[:2]) < 1:
        raise ImageError(f"Expected a grayscale, RGB or RGBA image, got an array of shape {array.shape}.")
    scale = 255.0 if np.issubdtype(array.dtype, np.integer) else 1.0
    values = np.clip(array.astype(np.float32) / scale, 0.0, 1.0)
    alpha = None
    if values.ndim == 3:
        if values.shape[-1] == 4:
            alpha = values[..., 3]
        gray = values[..., 0] * 0.299 + values[..., 1] * 0.587 + values[..., 2] * 0.114
    else:
        gray = values
    return gray.astype(np.float32), alpha


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    scaled = np.zeros_like(values) if high <= low else (values - low) / (high - low) * 255
    return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)


def _resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float array resized to (height, width): area-averaged when reduced, bilinear when enlarged."""
    height, width = size
    if values.shape == (height, width):
        return values.astype(np.float32, copy=True)
    image = Image.fromarray(values.astype(np.float32), mode="F")
    method = Image.Resampling.BOX if height <= values.shape[0] else Image.Resampling.BILINEAR
    return np.asarray(image.resize((width, height), method), dtype=np.float32)


def _reduced(values: np.ndarray, longest: int) -> np.ndarray:
    height, width = values.shape
    scale = longest / max(height, width)
    if scale >= 1:
        return values.astype(np.float32, copy=False)
    return _resize(values, (max(1, round(height * scale)), max(1, round(width * scale))))


def ink_map(image: Image.Image | np.ndarray) -> np.ndarray:
    """How much ink each pixel holds, float32 [H, W] in [0, 1], bright ink on black, whatever the colours.

    The map has the image's size, or at most `WORK_SIDE` pixels on its longer side for larger images.
    A blank image (one flat colour, paper without a mark) gives an all-zero map.
    """
    gray, alpha = to_arrays(image)
    gray = _reduced(gray, WORK_SIDE)
    if alpha is not None:
        alpha = _reduced(alpha, WORK_SIDE)
        if float(alpha.max() - alpha.min()) > 0.25:
            opaque = alpha > 0.5
            if opaque.mean() < 0.6:  # strokes on a transparent background: ink is what is painted
                return _clean(alpha, noise=0.0)
            # a picture with transparent margins: fill them with its own paper, then read it as a picture
            paper = float(np.median(gray[opaque]))
            gray = gray * alpha + paper * (1 - alpha)
        else:
            gray = gray * alpha + (1 - alpha)  # (nearly) opaque: as a viewer shows it, over white
    residual, noise = contrast_map(paper_only(gray))
    return _clean(residual, noise)


def paper_only(gray: np.ndarray) -> np.ndarray:
    """A photo of a sheet on a darker desk: the desk around the sheet painted the sheet's colour (float32, same
    shape), so that neither the desk nor the sheet's edge reads as ink; other images unchanged.

    The sheet is the large bright regions (Otsu's threshold, on a thumbnail) when they are solid (ink aside,
    `PAPER_SOLID` of it is bright), covers `PAPER_MIN_SHARE` of the picture but leaves `DESK_MIN_SHARE` of it
    outside, the desk lines at least three of the picture's four sides (a shadow darkens a side or a corner),
    the sheet is broad (a bold white digit on black is not a sheet), the sheet's edge is a step: across the edge the brightness falls by at least half the sheet-to-desk
    difference, where a shadow's gradual slope falls by a few hundredths, and no stroke crosses it (ink goes on
    into a shadow, not onto a desk).
    """
    from scipy import ndimage

    if min(gray.shape) < MIN_RULED_SIDE:
        return gray  # a picture this small is a crop of the digit (like MNIST's own), not a photo of a sheet
    thumb = _reduced(gray, 128)
    bright = thumb > otsu_threshold(thumb)
    labels, count = ndimage.label(bright)
    if not count:
        return gray
    areas = ndimage.sum_labels(np.ones_like(thumb), labels, index=np.arange(1, count + 1))
    # the sheet: the bright regions of some size, not the largest alone (a digit's stroke that reaches into a
    # shadow cuts the paper in two, and the smaller part is paper too, not desk)
    sheet = np.isin(labels, np.flatnonzero(areas >= max(0.02 * thumb.size, 0.1 * areas.max())) + 1)
    filled = ndimage.binary_fill_holes(sheet)
    desk = ~filled
    framed = sum(float(side.mean()) >= 0.5 for side in (desk[0], desk[-1], desk[:, 0], desk[:, -1]))
    if not (sheet.mean() >= PAPER_MIN_SHARE and sheet.sum() >= PAPER_SOLID * filled.sum()
            and desk.mean() >= DESK_MIN_SHARE and framed >= 3):  # a shadow darkens a side or a corner, not a frame
        return gray
    # a sheet is broad: most of it survives an erosion by 5 % of the picture, where a bold white digit's strokes
    # on black (the drawing canvas's export) vanish
    core = ndimage.binary_erosion(filled, iterations=max(3, round(0.05 * max(thumb.shape))))
    if core.sum() < 0.5 * filled.sum():
        return gray
    paper, desk_level = float(np.median(thumb[sheet])), float(np.median(thumb[desk]))
    inside = filled & ndimage.binary_dilation(desk, iterations=2)  # the two sides of the sheet's edge
    outside = desk & ndimage.binary_dilation(filled, iterations=2)
    if not inside.any() or not outside.any():
        return gray
    step = float(np.median(thumb[inside]) - np.median(thumb[outside]))
    if paper - desk_level < MIN_CONTRAST or step < 0.5 * (paper - desk_level):
        return gray
    # ink goes on across a shadow's edge, never across a sheet's: strokes far darker than the "desk" beside it
    # make that region a shadow on the paper (half a page in a hand's shadow is framed like a desk)
    ink_beyond = outside & (thumb < desk_level - 0.5 * (paper - desk_level))
    if ink_beyond.sum() >= 3:
        return gray
    # the sheet at full size, pulled in by a few pixels: its edge is often shaded
    inner = ndimage.binary_erosion(filled, iterations=1, border_value=1)
    mask = _resize(inner.astype(np.float32), gray.shape) > 0.5
    return np.where(mask, gray, np.float32(paper)).astype(np.float32)


def contrast_map(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """(how far each pixel stands out from the local background towards the ink's side, as a share of the
    local paper's brightness, clipped to [0, 1]; the paper's noise level in the same units)."""
    from scipy import ndimage

    # The side the ink lies on: the background is most of the border (even when a large digit touches it),
    # and the ink is the side whose strongest pixels depart furthest from it.
    band = max(1, round(0.03 * max(gray.shape)))  # a few rows: a ruled line along an edge is not the paper
    border = np.concatenate([gray[:band].ravel(), gray[-band:].ravel(), gray[:, :band].ravel(),
                             gray[:, -band:].ravel()])
    deviation = gray - float(np.median(border))
    dark, light = _extreme(-deviation), _extreme(deviation)
    # A shadow across the page splits the border in two levels, and the lit paper departs from their median as
    # far as ink: light ink must also stand out above the border's lighter level, more than dark ink does below
    # its darker one (a shaded page read as light lit paper on dark, and the digit was lost).
    darker, lighter = np.percentile(border, [5, 95])
    split_border = _extreme(darker - gray) > _extreme(gray - lighter) + MIN_CONTRAST
    ink_is_light = light > dark and not split_border  # light strokes on a dark background
    # The thumbnail keeps the paper's level: thin lines and strokes narrower than its pixels are filtered out
    # (a maximum filter for dark ink, a minimum for light) before the pixels are averaged.
    step = max(gray.shape) / THUMB_SIDE
    if step > 1:
        spread = ndimage.minimum_filter if ink_is_light else ndimage.maximum_filter
        thumb = _reduced(spread(gray, size=int(np.ceil(step)) + 1), THUMB_SIDE)
    else:
        thumb = gray
    window = max(3, round(max(thumb.shape) * BACKGROUND_WINDOW)) | 1
    level = paper_level(thumb, window, ink_is_light)
    page = 1.0 - gray if ink_is_light else gray  # from here on as dark ink on bright paper
    paper = upsampled_paper(1.0 - level if ink_is_light else level, page)
    signed = (paper - page) / np.maximum(paper, 0.05)
    # The percentile sits a little above the paper where the light changes (a shadow's slope): take the
    # paper's own local level (the median, where ink is the minority) back out, by at most a small amount.
    local = ndimage.median_filter(_reduced(signed, THUMB_SIDE), size=window, mode="reflect")
    signed = signed - _resize(np.clip(local, -MIN_CONTRAST, MIN_CONTRAST), gray.shape)
    paper = signed[np.abs(signed) < MIN_CONTRAST]  # the paper (and the ink's faintest edges): its spread
    noise = 1.4826 * float(np.median(np.abs(paper))) if paper.size else 0.0
    return np.clip(signed, 0.0, 1.0).astype(np.float32), noise


def paper_level(thumb: np.ndarray, window: int, ink_is_light: bool) -> np.ndarray:
    """The paper's brightness under the ink (float32, the thumbnail's shape): a rank-order closing (an opening
    for light ink). The `BACKGROUND_PERCENTILE` filter over a `window`-pixel square removes strokes narrower than
    most of the window; the opposite percentile filter then moves the edge of a shadow back where it was. One
    percentile filter alone carried the bright paper a third of a window into a shadow, where the shaded paper
    then read as a stroke along the shadow's edge and the digit was misread. For a straight edge the two
    filters cancel exactly (ranks of a step: 85 % of a window past the edge, then 15 %)."""
    from scipy import ndimage

    first, second = (100 - BACKGROUND_PERCENTILE, BACKGROUND_PERCENTILE) if ink_is_light else (
        BACKGROUND_PERCENTILE, 100 - BACKGROUND_PERCENTILE)
    level = ndimage.percentile_filter(thumb, first, size=window, mode="reflect")
    return ndimage.percentile_filter(level, second, size=window, mode="reflect")


def upsampled_paper(level: np.ndarray, page: np.ndarray) -> np.ndarray:
    """The paper's brightness at every pixel of `page` (dark ink on bright paper, float32 [H, W]) from its level
    on the thumbnail (`level`, [h, w]): interpolated, but never above the lowest level of the nine thumbnail
    cells around the pixel that it could be paper of (a level above the pixel's, or at most `MIN_CONTRAST` of
    itself below it: paper noise). Across a shadow's edge the interpolation mixes the shaded and the lit paper over a cell's width,
    and the shaded paper beside the edge read as a stroke the height of the picture."""
    smooth = _resize(level, page.shape)
    h, w = level.shape
    rows = np.minimum((np.arange(page.shape[0]) + 0.5) * h / page.shape[0], h - 1).astype(int)  # nearest cell
    cols = np.minimum((np.arange(page.shape[1]) + 0.5) * w / page.shape[1], w - 1).astype(int)
    padded = np.pad(level, 1, mode="edge")
    lowest = np.full(page.shape, np.inf, np.float32)
    for dy in range(3):
        for dx in range(3):
            candidate = padded[dy:dy + h, dx:dx + w][rows[:, None], cols[None, :]]
            lowest = np.where((candidate >= page * (1 - MIN_CONTRAST)) & (candidate < lowest), candidate, lowest)
    return np.minimum(smooth, lowest).astype(np.float32)  # inf where no cell qualifies: the interpolation


def _extreme(values: np.ndarray) -> float:
    """The mean of the 0.2 % largest values: how far the strongest marks reach on that side."""
    flat = values.ravel()
    count = max(1, flat.size // 500)
    return float(np.partition(flat, flat.size - count)[flat.size - count :].mean())


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the split that maximizes the between-class variance."""
    if values.size == 0:
        return 1.0
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts).astype(np.float64)
    total = weight[-1]
    mass = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = mass / weight
        mean_high = (mass[-1] - mass) / (total - weight)
        between = weight * (total - weight) * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between[:-1])
    if not between.size:
        return 1.0
    # Between two separate clusters every split in the gap scores the same: take the gap's middle, not its
    # first bin (faint paper shading at 0.07 beside strokes at 0.9 split at 0.08 kept the shading as ink).
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9)) if between.max() > 0 else np.zeros(1, int)
    return float(edges[(int(best[0]) + int(best[-1])) // 2 + 1])  # one value only: just above the lowest


def remove_lines(residual: np.ndarray, floor: float) -> np.ndarray:
    """Ruled and squared paper: long straight lines across the image are removed.

    A line is where a grey-level opening with a straight element of 60 % of the image's side stays above
    `floor`, and it is thin: thinner than the pen's strokes elsewhere. Two or more parallel lines are ruled paper
    or a form's box; a single one must cross `LINE_SPAN` of the image and hold less than half the ink (else it
    is the digit: a tightly cropped 1). What on a line is no darker than 1.5 × its own level (`_line_level`) is removed, so a stroke that crosses or follows it stays. Rows and columns are found on the same input
    (squared paper's crossings would otherwise break the columns).
    """
    from scipy import ndimage

    if min(residual.shape) < MIN_RULED_SIDE:
        return residual  # a picture this small is a crop of the digit (like MNIST's own), not a ruled page
    found_by_axis = []
    for axis in (1, 0):  # rows (ruled paper), then columns
        length = residual.shape[axis]
        size = (1, max(3, round(length * 0.6))) if axis == 1 else (max(3, round(length * 0.6)), 1)
        widened = ndimage.maximum_filter(residual, size=(3, 1) if axis == 1 else (1, 3))  # a slight tilt
        labels, count = ndimage.label(ndimage.grey_opening(widened, size=size) > floor)
        if not count:
            continue
        slices = ndimage.find_objects(labels)
        areas = ndimage.sum_labels(np.ones_like(residual), labels, index=np.arange(1, count + 1))
        thin = max(3.0, 0.02 * residual.shape[1 - axis]) + 2  # a ruled line is thin (+2: the widening)
        spans = {index + 1: where[axis].stop - where[axis].start for index, where in enumerate(slices)}
        found_by_axis.append((axis, labels, {label: areas[label - 1] / span - 2 for label, span in spans.items()
                                             if areas[label - 1] / span <= thin}, spans))
    if not found_by_axis:
        return residual
    # A ruled line is thinner than the pen's strokes (measured on what is not a line candidate); a digit's own
    # straight strokes, in a small picture above all, are as thick as its others.
    candidates = np.zeros(residual.shape, bool)
    for _, labels, thickness, _ in found_by_axis:
        candidates |= np.isin(labels, list(thickness))
    rest = (residual > 2 * floor) & ~ndimage.binary_dilation(candidates, iterations=1)
    pen = stroke_width(rest) if rest.sum() >= 16 else np.inf
    remove = np.zeros(residual.shape, bool)
    inked = float((residual > floor).sum())
    for axis, labels, thickness, spans in found_by_axis:
        length = residual.shape[axis]
        lines = [label for label, width in thickness.items() if width <= 0.75 * pen]
        if not lines or (len(lines) == 1 and spans[lines[0]] < LINE_SPAN * length):
            continue  # one straight stroke that does not cross the image: the digit's (a 1, a 7's bar)
        found = np.zeros(residual.shape, bool)
        for label in lines:
            band = ndimage.binary_dilation(labels == label, iterations=1) & (residual > 0)
            if band.any():
                level = _line_level(residual, band, along=axis)
                found |= band & (residual <= 1.5 * level)
        if len(lines) >= 2 or float((found & (residual > floor)).sum()) <= 0.5 * inked:
            remove |= found
    return np.where(remove, 0.0, residual).astype(np.float32)


def _line_level(residual: np.ndarray, band: np.ndarray, along: int) -> float:
    """A ruled line's own contrast: at each position along it (`along`: 1 for a row, 0 for a column) the
    strongest pixel across its width, and the median of those. A line resampled over three rows is fainter at
    its edges than at its core, and the strokes that cross it hold a minority of its positions."""
    across = 0 if along == 1 else 1
    core = np.where(band, residual, 0.0).max(axis=across)
    return float(np.median(core[band.any(axis=across)]))


def _clean(residual: np.ndarray, noise: float) -> np.ndarray:
    """From a contrast map to an ink map: lines out, thresholded, specks dropped, thin strokes thickened."""
    from scipy import ndimage

    residual = remove_lines(residual, MIN_CONTRAST / 2)
    floor = max(MIN_CONTRAST / 2, NOISE_SIGMAS * noise / 2)
    candidates = residual[residual > floor]
    if candidates.size == 0:
        return np.zeros_like(residual)
    high = max(otsu_threshold(candidates), MIN_CONTRAST, NOISE_SIGMAS * noise)
    low = max(high / 2, floor)
    structure = np.ones((3, 3), bool)
    strong = residual >= high
    # Hysteresis: ink counts where it joins firm ink; ink much fainter than the firm ink (under FAINT_SHARE of its
    # level) only within HYSTERESIS_REACH stroke widths of it. Joined alone, a shadow's band across the digit (a
    # pen's or a ruler's: 0.3-0.5 beside ink's 0.9) was kept whole, a stroke the picture's height.
    faint = residual < FAINT_SHARE * float(np.median(residual[strong])) if strong.any() else residual > 0
    near = ndimage.binary_dilation(strong, iterations=max(2, round(HYSTERESIS_REACH * stroke_width(strong))))
    weak = (residual > low) & (~faint | near)
    labels, count = ndimage.label(weak, structure=structure)
    if not count:
        return np.zeros_like(residual)
    firm = np.unique(labels[strong])
    areas = ndimage.sum_labels(np.ones_like(residual), labels, index=np.arange(1, count + 1))
    keep = np.zeros(count + 1, bool)
    keep[firm[firm > 0]] = True  # hysteresis: a piece counts when part of it is firmly inked
    if not keep.any():
        return np.zeros_like(residual)
    keep = _drop_specks(labels, keep, areas)
    mask = keep[labels]
    level = float(np.median(residual[mask]))
    ink = np.where(mask, np.clip(residual / max(level, 1e-6), 0.0, 1.0), 0.0).astype(np.float32)
    return _thicken(ink, mask)


def _drop_specks(labels: np.ndarray, keep: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Keep the big pieces, and the smaller ones that lie near them; drop dirt."""
    from scipy import ndimage

    kept_areas = np.where(keep[1:], areas, 0.0)
    largest = float(kept_areas.max())
    big = keep.copy()
    big[1:] &= kept_areas >= PART_SHARE * largest
    slices = ndimage.find_objects(labels)
    big_boxes = [slices[i - 1] for i in np.flatnonzero(big) if slices[i - 1] is not None]
    top = min(s[0].start for s in big_boxes)
    bottom = max(s[0].stop for s in big_boxes)
    left = min(s[1].start for s in big_boxes)
    right = max(s[1].stop for s in big_boxes)
    margin = 0.15 * max(bottom - top, right - left)
    result = big.copy()
    for index in np.flatnonzero(keep & ~big):
        where = slices[index - 1]
        if where is None or kept_areas[index - 1] < SPECK_SHARE * largest:
            continue
        near = (where[0].stop >= top - margin and where[0].start <= bottom + margin
                and where[1].stop >= left - margin and where[1].start <= right + margin)
        result[index] = near
    return result


def stroke_width(mask: np.ndarray) -> float:
    """The typical stroke width of a binary mask in pixels, from the distance transform (about 4 × its mean
    inside the strokes, less 3 for the discrete profile: 1 px for a hairline, 5 for a 5-px stroke)."""
    from scipy import ndimage

    if not mask.any():
        return 0.0
    distance = ndimage.distance_transform_edt(mask)
    return max(1.0, 4.0 * float(distance[mask].mean()) - 3.0)


def _thicken(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Strokes much thinner than MNIST's (a fine pen on a large digit) grow to MNIST's share of the digit."""
    from scipy import ndimage

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    width, target = stroke_width(mask), MNIST_STROKE_SHARE * box
    if width >= THIN_SHARE * target:
        return ink
    radius = (target - width) / 2
    outside = ndimage.distance_transform_edt(~mask)
    grown = np.clip(radius + 1.0 - outside, 0.0, 1.0)
    return np.maximum(ink, grown).astype(np.float32)


#: A piece of ink is as tall as a digit when it spans this share of the ink's height (`digits_side_by_side`) ...
DIGIT_HEIGHT_SHARE = 0.5
#: ... and two such pieces are two digits when this share of that height, or more, lies between them.
DIGIT_GAP_SHARE = 0.15


def digits_side_by_side(ink: np.ndarray) -> int:
    """How many digits an ink map (`ink_map`) seems to hold side by side ("42" written on one sheet): groups of
    pieces each at least `DIGIT_HEIGHT_SHARE` of the ink's height, apart by `DIGIT_GAP_SHARE` of it or more.
    Measured: 20 of 20 photo-like renders of "42" count 2; of 3,000 MNIST test digits, 2 count 2 (zeros written
    in two halves); 0 for a blank map."""
    from scipy import ndimage

    mask = ink > 0
    if not mask.any():
        return 0
    rows = np.flatnonzero(mask.any(axis=1))
    height = rows[-1] - rows[0] + 1
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    spans = sorted((where[1].start, where[1].stop) for where in ndimage.find_objects(labels)
                   if where[0].stop - where[0].start >= DIGIT_HEIGHT_SHARE * height)
    groups: list[list[int]] = []
    for start, stop in spans:
        if groups and start - groups[-1][1] < DIGIT_GAP_SHARE * height:
            groups[-1][1] = max(groups[-1][1], stop)
        else:
            groups.append([start, stop])
    return len(groups)
