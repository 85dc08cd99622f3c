"""The Convolution Lab's arithmetic: kernels, output sizes, padding, the step-by-step sweep and pooling.

Everything is computed with PyTorch's own `conv2d` / `max_pool2d` / `avg_pool2d`, so what the lab shows is
what a CNN layer computes (a cross-correlation: the kernel is not flipped). The lab works on one 2-D
grayscale channel at a time; numbers are float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError

#: Padding modes as PyTorch's `nn.Conv2d(padding_mode=...)` names them.
PADDING_MODES = ("zeros", "reflect", "replicate")
MAX_KERNEL_SIZE = 7
POOL_KINDS = ("max", "average")


# --------------------------------------------------------------------------------------------- kernels
def _binomial(size: int) -> np.ndarray:
    """Row `size - 1` of Pascal's triangle: the discrete stand-in for a Gaussian."""
    return np.array([math.comb(size - 1, i) for i in range(size)], dtype=np.float64)


def _identity(size: int) -> np.ndarray:
    kernel = np.zeros((size, size))
    kernel[size // 2, size // 2] = 1.0
    return kernel


def _box(size: int) -> np.ndarray:
    return np.full((size, size), 1.0 / (size * size))


def _gaussian(size: int) -> np.ndarray:
    row = _binomial(size)
    kernel = np.outer(row, row)
    return kernel / kernel.sum()


def _sobel_x(size: int) -> np.ndarray:
    """Sobel's kernel generalised as OpenCV does: smoothing down the rows times a derivative across."""
    smooth = _binomial(size)
    derivative = np.convolve(_binomial(size - 2), [1.0, 0.0, -1.0])[::-1]  # [-1, 0, 1] for size 3
    return np.outer(smooth, derivative)


def _fixed(values: list[list[float]]) -> Callable[[int], np.ndarray]:
    array = np.array(values, dtype=np.float64)
    return lambda size: array.copy()


#: The 3x3 Laplacian and a common 5x5 one (an approximation of the Laplacian of a Gaussian).
_LAPLACIANS = {3: np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64), 5: np.array(
    [[0, 0, 1, 0, 0], [0, 1, 2, 1, 0], [1, 2, -16, 2, 1], [0, 1, 2, 1, 0], [0, 0, 1, 0, 0]], dtype=np.float64)}


@dataclass(frozen=True)
class KernelPreset:
    """A named kernel with the sizes it comes in and one sentence on what it does."""

    key: str
    title: str
    sizes: tuple[int, ...]
    what_it_does: str
    build: Callable[[int], np.ndarray] = field(repr=False)

    @property
    def default_size(self) -> int:
        return 3 if 3 in self.sizes else self.sizes[0]

    def kernel(self, size: int | None = None) -> np.ndarray:
        size = self.default_size if size is None else size
        if size not in self.sizes:
            sizes = ", ".join(str(s) for s in self.sizes)
            raise ConfigError(f"The {self.title} kernel comes in sizes {sizes}, not {size}.")
        return self.build(size).astype(np.float64)


KERNEL_PRESETS: dict[str, KernelPreset] = {
    preset.key: preset
    for preset in (
        KernelPreset("identity", "Identity", (1, 3, 5, 7),
                     "A single 1 in the middle: every output equals the input pixel under the centre.",
                     _identity),
        KernelPreset("box_blur", "Box blur", (2, 3, 4, 5, 6, 7),
                     "Every weight is 1/k²: each output is the plain average of its window, so detail smears.",
                     _box),
        KernelPreset("gaussian_blur", "Gaussian blur", (3, 5, 7),
                     "Weights from Pascal's triangle, largest in the middle: a softer blur that keeps edges "
                     "in place better than the box.", _gaussian),
        KernelPreset("sharpen", "Sharpen", (3,),
                     "5 times the centre minus its four neighbours: differences from the surroundings grow.",
                     _fixed([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])),
        KernelPreset("sobel_x", "Sobel x", (3, 5, 7),
                     "Right column minus left column: large where brightness changes from left to right "
                     "(vertical edges); positive when it gets brighter to the right.", _sobel_x),
        KernelPreset("sobel_y", "Sobel y", (3, 5, 7),
                     "Bottom row minus top row: large where brightness changes from top to bottom "
                     "(horizontal edges).", lambda size: _sobel_x(size).T.copy()),
        KernelPreset("laplacian", "Laplacian", (3, 5),
                     "The neighbours minus a multiple of the centre (weights add up to 0): zero on flat areas "
                     "and on even slopes, large on spots and thin lines; the 5×5 one reacts to wider ones.",
                     lambda size: _LAPLACIANS[size].copy()),
        KernelPreset("emboss", "Emboss", (3,),
                     "Bottom-right minus top-left plus the centre: the picture looks lit from one side.",
                     _fixed([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])),
        KernelPreset("outline", "Outline", (3,),
                     "8 times the centre minus all eight neighbours: flat areas go to 0, every edge lights up.",
                     _fixed([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])),
    )
}


def preset_kernel(key: str, size: int | None = None) -> np.ndarray:
    """The kernel of preset `key` (see `KERNEL_PRESETS`) at `size` (its default size when None)."""
    if key not in KERNEL_PRESETS:
        raise ConfigError(f"Unknown kernel preset {key!r}; choose one of {', '.join(KERNEL_PRESETS)}.")
    return KERNEL_PRESETS[key].kernel(size)


def validate_kernel(kernel: np.ndarray | list) -> np.ndarray:
    """A square float64 kernel of side 1..7 with finite numbers, or a `ConfigError` that says what is wrong."""
    try:
        array = np.array(kernel, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError("Every kernel cell must be a number.") from exc
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ConfigError(f"A kernel must be a square grid of numbers, got shape {array.shape}.")
    if not 1 <= array.shape[0] <= MAX_KERNEL_SIZE:
        raise ConfigError(f"Kernel size must be between 1 and {MAX_KERNEL_SIZE}, got {array.shape[0]}.")
    if not np.isfinite(array).all():
        raise ConfigError("Every kernel cell needs a finite number: fill in the empty cells.")
    return array


# ---------------------------------------------------------------------------------------- output size
def conv_output_size(n: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """floor((n + 2p - d(k-1) - 1) / s) + 1, PyTorch's formula; 0 when the kernel does not fit."""
    return size_formula(n, k, stride, padding, dilation).size


@dataclass(frozen=True)
class SizeFormula:
    """One axis of the output-size formula with every number filled in."""

    n: int
    k: int
    stride: int
    padding: int
    dilation: int

    @property
    def span(self) -> int:
        """How many input cells the (dilated) kernel covers: d(k-1) + 1."""
        return self.dilation * (self.k - 1) + 1

    @property
    def padded(self) -> int:
        return self.n + 2 * self.padding

    @property
    def numerator(self) -> int:
        return self.padded - self.span

    @property
    def fits(self) -> bool:
        return self.padded >= self.span

    @property
    def size(self) -> int:
        return self.numerator // self.stride + 1 if self.fits else 0

    @property
    def unused(self) -> int:
        """Cells at the far edge of the padded input that no kernel position reaches (the floor's loss)."""
        return self.numerator % self.stride if self.fits else 0

    def text(self) -> str:
        """'⌊(7 + 2·1 − 1·(3 − 1) − 1) / 2⌋ + 1 = ⌊5 / 2⌋ + 1 = 3' (plain Unicode, no LaTeX needed)."""
        head = (f"⌊({self.n} + 2·{self.padding} − {self.dilation}·({self.k} − 1) − 1) / {self.stride}⌋ + 1 "
                f"= ⌊{self.numerator} / {self.stride}⌋ + 1")
        if not self.fits:
            return f"{head} = {self.numerator // self.stride + 1} → no output"
        return f"{head} = {self.size}"

    def latex(self, *, short: bool = False) -> str:
        """The same with LaTeX floor brackets, for st.latex.

        `short` uses the standard form ⌊(n + 2p − k)/s⌋ + 1 (Dumoulin & Visin 2016; the same number when the
        dilation is 1), or ⌊(n − k)/s⌋ + 1 when there is no padding either, as for pooling.
        """
        result = str(self.size) if self.fits else f"{self.numerator // self.stride + 1} < 1"
        if short and self.dilation == 1:
            padding = rf" + 2\cdot{self.padding}" if self.padding else ""
            return (rf"\left\lfloor \frac{{{self.n} - {self.k}{padding}}}{{{self.stride}}} \right\rfloor + 1 = "
                    rf"\left\lfloor \frac{{{self.numerator}}}{{{self.stride}}} \right\rfloor + 1 = {result}")
        return (rf"\left\lfloor \frac{{{self.n} + 2\cdot{self.padding} - {self.dilation}\cdot({self.k}-1) - 1}}"
                rf"{{{self.stride}}} \right\rfloor + 1 = \left\lfloor \frac{{{self.numerator}}}{{{self.stride}}}"
                rf" \right\rfloor + 1 = {result}")

    def why_no_output(self, extent: str = "high", pooling: bool = False) -> str:
        """Plain words on why there is no output along this axis ('' when there is one), with what would give
        one: padding p ≥ ⌈(span − n) / 2⌉ in all, a smaller kernel or dilation, a larger input; for `pooling`
        (no padding, no dilation) a smaller window.

        `extent` names the axis as an adjective: "high", "wide" or "high and wide".
        """
        if self.fits:
            return ""
        if pooling:
            return (f"The pooling window covers {self.k} cells but the map is only {self.n} cell"
                    f"{'s' if self.n != 1 else ''} {extent}, so there is no place to put it even once. Choose a "
                    f"window of at most {self.n}.")
        dilated = f" (a {self.k}-cell kernel with dilation {self.dilation})" if self.dilation > 1 else ""
        needed = math.ceil((self.span - self.n) / 2)
        more = f" ({needed - self.padding} more than now)" if self.padding else ""
        return (f"The kernel covers {self.span} cells{dilated} but the padded input is only "
                f"{self.n} + 2·{self.padding} = {self.padded} cells {extent}, so there is no place to put it "
                f"even once. Use padding of at least {needed}{more}, a smaller kernel or dilation, or a larger "
                "input.")


def size_formula(n: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> SizeFormula:
    """The filled-in formula for one axis; `ConfigError` for values no conv layer accepts."""
    for name, value, low in (("input size", n, 1), ("kernel size", k, 1), ("stride", stride, 1),
                             ("padding", padding, 0), ("dilation", dilation, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"The {name} must be a whole number of at least {low}, got {value!r}.")
    return SizeFormula(int(n), int(k), int(stride), int(padding), int(dilation))


@dataclass(frozen=True)
class SamePadding:
    """The padding that keeps the output as large as the input at stride 1, and whether it is exact."""

    padding: int
    exact: bool
    note: str


def same_padding(k: int, dilation: int = 1) -> SamePadding:
    """p = d(k-1)/2. With an even span it is not a whole number: we round down and say so."""
    total = dilation * (k - 1)
    if total % 2 == 0:
        return SamePadding(total // 2, True,
                           f"Padding {total // 2} = {dilation}·({k} − 1)/2 keeps the output as large as the "
                           "input at stride 1.")
    return SamePadding(total // 2, False,
                       f"{dilation}·({k} − 1)/2 = {total / 2} is not a whole number: equal padding on both "
                       f"sides cannot keep the size, so padding {total // 2} gives one cell less. (PyTorch's "
                       "padding='same' pads one side more than the other instead.)")


# ------------------------------------------------------------------------------------------- padding
@dataclass(frozen=True)
class ConvSettings:
    """The knobs of one conv layer (square kernel, same stride/padding/dilation on both axes)."""

    stride: int = 1
    padding: int = 0
    padding_mode: str = "zeros"
    dilation: int = 1


def pad(image: np.ndarray, padding: int, mode: str = "zeros") -> np.ndarray:
    """The image with `padding` cells added on every side, filled the way `nn.Conv2d` would fill them."""
    array = _as_2d_float(image)
    if mode not in PADDING_MODES:
        raise ConfigError(f"Unknown padding mode {mode!r}; choose one of {', '.join(PADDING_MODES)}.")
    if padding < 0:
        raise ConfigError(f"Padding cannot be negative, got {padding}.")
    if padding == 0:
        return array.copy()
    height, width = array.shape
    if mode == "reflect" and padding >= min(height, width):
        raise ConfigError(
            f"Reflect padding mirrors the image without repeating its edge, so it can add at most "
            f"{min(height, width) - 1} cells to a {height}×{width} input; you asked for {padding}. "
            "Use less padding, or 'replicate' or 'zeros'.")
    # numpy's "reflect" mirrors without repeating the edge and "edge" repeats it: exactly PyTorch's
    # reflect and replicate (tests compare with nn.Conv2d); numpy avoids a thread-pool round trip.
    numpy_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
    return np.pad(array, padding, mode=numpy_mode)


def padding_mask(height: int, width: int, padding: int) -> np.ndarray:
    """Boolean [H + 2p, W + 2p]: True on the added padding cells, False on the image's own pixels."""
    mask = np.ones((height + 2 * padding, width + 2 * padding), dtype=bool)
    mask[padding:padding + height, padding:padding + width] = False
    return mask


def _as_2d_float(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 2:
        raise ConfigError(f"The lab convolves one 2-D channel; got an array of shape {array.shape}.")
    if array.size == 0:
        raise ConfigError("The input image is empty.")
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------------------- convolution
@dataclass(frozen=True)
class ConvResult:
    """A full convolution: the padded input, the output, and the size formula next to PyTorch's shape."""

    output: np.ndarray
    padded: np.ndarray
    kernel: np.ndarray
    settings: ConvSettings
    formula_h: SizeFormula
    formula_w: SizeFormula
    torch_shape: tuple[int, ...]
    pad_mask: np.ndarray  # like `padded`: True on padding cells, False on the image's own pixels

    @property
    def input_shape(self) -> tuple[int, int]:
        p = self.settings.padding
        return self.padded.shape[0] - 2 * p, self.padded.shape[1] - 2 * p


def plan_conv(height: int, width: int, kernel_size: int, settings: ConvSettings) -> tuple[SizeFormula, SizeFormula]:
    """Both axes' formulas, checking the settings; the result may not fit (see `SizeFormula.fits`)."""
    if settings.padding_mode not in PADDING_MODES:
        raise ConfigError(f"Unknown padding mode {settings.padding_mode!r}; choose one of {', '.join(PADDING_MODES)}.")
    formula_h = size_formula(height, kernel_size, settings.stride, settings.padding, settings.dilation)
    formula_w = size_formula(width, kernel_size, settings.stride, settings.padding, settings.dilation)
    return formula_h, formula_w


def no_output_reason(formula_h: SizeFormula, formula_w: SizeFormula, pooling: bool = False) -> str:
    """Why a kernel (a pooling window) has nowhere to go ('' when it fits on both axes)."""
    if not formula_h.fits and not formula_w.fits and formula_h.n == formula_w.n:
        return formula_h.why_no_output("high and wide", pooling)
    return " ".join(r for r in (formula_h.why_no_output("high", pooling), formula_w.why_no_output("wide", pooling))
                    if r)


def convolve(image: np.ndarray, kernel: np.ndarray, settings: ConvSettings = ConvSettings()) -> ConvResult:
    """Convolve one channel with `torch.nn.functional.conv2d` (no bias), padding as `nn.Conv2d` does.

    Raises `ConfigError` with an explanation when the kernel is larger than the padded input.
    """
    array = _as_2d_float(image)
    weights = validate_kernel(kernel)
    formula_h, formula_w = plan_conv(*array.shape, weights.shape[0], settings)
    reason = no_output_reason(formula_h, formula_w)
    if reason:
        raise ConfigError(reason)
    padded = pad(array, settings.padding, settings.padding_mode)
    weight = torch.from_numpy(weights.astype(np.float32))[None, None]
    with torch.no_grad():
        if settings.padding_mode == "zeros":  # let conv2d pad by itself: its own shape is what we check
            out = F.conv2d(torch.from_numpy(array)[None, None], weight, stride=settings.stride,
                           padding=settings.padding, dilation=settings.dilation)
        else:  # what nn.Conv2d does for other padding modes: pad first, then convolve without padding
            out = F.conv2d(torch.from_numpy(np.ascontiguousarray(padded))[None, None], weight,
                           stride=settings.stride, dilation=settings.dilation)
    return ConvResult(output=out[0, 0].numpy(), padded=padded, kernel=weights, settings=settings,
                      formula_h=formula_h, formula_w=formula_w, torch_shape=tuple(out.shape),
                      pad_mask=padding_mask(*array.shape, settings.padding))


@dataclass(frozen=True)
class ConvStep:
    """One output cell of the sweep: where the kernel sits, what it read, the products and their sum."""

    out_row: int
    out_col: int
    rows: tuple[int, ...]      # padded-input row of each kernel row
    cols: tuple[int, ...]      # padded-input column of each kernel column
    window: np.ndarray         # the input values under the kernel [k, k]
    products: np.ndarray       # window * kernel [k, k]
    total: float               # products.sum(): the output value


def sweep_position(index: int, out_width: int) -> tuple[int, int]:
    """The kernel sweeps row by row, left to right: step `index` is output cell (row, col)."""
    return divmod(int(index), int(out_width))


def conv_step(result: ConvResult, out_row: int, out_col: int) -> ConvStep:
    """The arithmetic behind output cell (out_row, out_col) of `result`."""
    out_h, out_w = result.output.shape
    if not (0 <= out_row < out_h and 0 <= out_col < out_w):
        raise ConfigError(f"Output cell ({out_row}, {out_col}) is outside the {out_h}×{out_w} output.")
    k = result.kernel.shape[0]
    s, d = result.settings.stride, result.settings.dilation
    rows = tuple(out_row * s + i * d for i in range(k))
    cols = tuple(out_col * s + j * d for j in range(k))
    window = result.padded[np.ix_(rows, cols)].astype(np.float64)
    products = window * result.kernel
    return ConvStep(out_row, out_col, rows, cols, window, products, float(products.sum()))


@dataclass(frozen=True)
class SobelResult:
    gx: np.ndarray
    gy: np.ndarray
    magnitude: np.ndarray


def sobel_magnitude(image: np.ndarray) -> SobelResult:
    """gx, gy and sqrt(gx² + gy²) with 3×3 Sobel kernels and replicate padding (output = input size)."""
    settings = ConvSettings(stride=1, padding=1, padding_mode="replicate")
    gx = convolve(image, preset_kernel("sobel_x", 3), settings).output
    gy = convolve(image, preset_kernel("sobel_y", 3), settings).output
    return SobelResult(gx, gy, np.sqrt(gx * gx + gy * gy))


# ------------------------------------------------------------------------------------------- pooling
@dataclass(frozen=True)
class PoolResult:
    kind: str
    window: int
    stride: int
    input: np.ndarray
    output: np.ndarray
    formula_h: SizeFormula
    formula_w: SizeFormula
    torch_shape: tuple[int, ...]
    winners: np.ndarray | None  # max pooling: flat input index of each output's maximum [out_h, out_w]


@dataclass(frozen=True)
class PoolCell:
    """What one pooled output read: rows/cols of its window, the values, the result and (max) the winner."""

    out_row: int
    out_col: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    values: np.ndarray
    result: float
    winner: tuple[int, int] | None


def pool(image: np.ndarray, kind: str = "max", window: int = 2, stride: int | None = None) -> PoolResult:
    """Max or average pooling (no padding) with PyTorch; `stride` defaults to the window, as in PyTorch."""
    array = _as_2d_float(image)
    if kind not in POOL_KINDS:
        raise ConfigError(f"Unknown pooling {kind!r}; choose 'max' or 'average'.")
    stride = window if stride is None else stride
    formula_h = size_formula(array.shape[0], window, stride, 0, 1)
    formula_w = size_formula(array.shape[1], window, stride, 0, 1)
    reason = no_output_reason(formula_h, formula_w, pooling=True)
    if reason:
        raise ConfigError(reason)
    tensor = torch.from_numpy(array)[None, None]
    winners = None
    with torch.no_grad():
        if kind == "max":
            out, indices = F.max_pool2d(tensor, window, stride, return_indices=True)
            winners = indices[0, 0].numpy()
        else:
            out = F.avg_pool2d(tensor, window, stride)
    return PoolResult(kind, window, stride, array, out[0, 0].numpy(), formula_h, formula_w,
                      tuple(out.shape), winners)


def pool_cell(result: PoolResult, out_row: int, out_col: int) -> PoolCell:
    out_h, out_w = result.output.shape
    if not (0 <= out_row < out_h and 0 <= out_col < out_w):
        raise ConfigError(f"Output cell ({out_row}, {out_col}) is outside the {out_h}×{out_w} output.")
    rows = tuple(range(out_row * result.stride, out_row * result.stride + result.window))
    cols = tuple(range(out_col * result.stride, out_col * result.stride + result.window))
    values = result.input[np.ix_(rows, cols)]
    winner = None
    if result.winners is not None:
        winner = divmod(int(result.winners[out_row, out_col]), result.input.shape[1])
    return PoolCell(out_row, out_col, rows, cols, values, float(result.output[out_row, out_col]), winner)


def pool_table(result: PoolResult) -> list[dict[str, object]]:
    """One row per output cell: which inputs it read, the result and (max) which input won."""
    rows = []
    for r in range(result.output.shape[0]):
        for c in range(result.output.shape[1]):
            cell = pool_cell(result, r, c)
            row: dict[str, object] = {
                "output cell": f"({r}, {c})",
                "input rows": f"{cell.rows[0]}–{cell.rows[-1]}" if len(cell.rows) > 1 else str(cell.rows[0]),
                "input columns": f"{cell.cols[0]}–{cell.cols[-1]}" if len(cell.cols) > 1 else str(cell.cols[0]),
                "values read": " ".join(format_number(v) for v in cell.values.ravel()),
                "result": format_number(cell.result),
            }
            if cell.winner is not None:
                row["winner at"] = f"({cell.winner[0]}, {cell.winner[1]})"
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ heatmap, numbers
#: Maps with at least this many cells get a colour range that ignores the most extreme 0.5 %.
ROBUST_RANGE_MIN_CELLS = 4096
ROBUST_PERCENTILE = 99.5


@dataclass(frozen=True)
class HeatmapData:
    """What a heatmap of a feature map needs: values, colour range, and whether the scale is two-sided.

    `clipped` says the colour range stops short of the extremes (hover still shows every exact value).
    """

    z: np.ndarray
    zmin: float
    zmax: float
    diverging: bool
    clipped: bool = False


def heatmap_data(values: np.ndarray, *, robust: bool = True) -> HeatmapData:
    """Signed maps (edges) get a range symmetric around 0 so 0 is the neutral colour; others run min..max.

    With `robust`, large maps saturate at the 99.5th percentile: a handful of very strong edges would
    otherwise push every other edge into the background colour.
    """
    z = np.asarray(values, dtype=np.float32)
    finite = z[np.isfinite(z)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    use_robust = robust and finite.size >= ROBUST_RANGE_MIN_CELLS
    if low < 0:
        bound = max(abs(low), abs(high))
        clipped = False
        if use_robust:
            robust_bound = float(np.percentile(np.abs(finite), ROBUST_PERCENTILE))
            if 0 < robust_bound < bound:
                bound, clipped = robust_bound, True
        bound = bound or 1.0
        return HeatmapData(z, -bound, bound, True, clipped)
    clipped = False
    if use_robust:
        robust_high = float(np.percentile(finite, ROBUST_PERCENTILE))
        if low < robust_high < high:
            high, clipped = robust_high, True
    if high <= low:  # one value everywhere: from 0 up to it (a white image is white, not the scale's bottom)
        low, high = (0.0, high) if high > 0 else (low, low + 1.0)
    return HeatmapData(z, low, high, False, clipped)


def format_number(value: float) -> str:
    """Short numbers for small grids: '3', '-0.25', '0.111', and two significant digits below 0.001 ('0.00024',
    a 7×7 Gaussian's corner weight, not '0')."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value - round(value)) < 1e-6:
        return str(int(round(value)))
    return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) >= 1e-3 else f"{value:.2g}"


# ------------------------------------------------------------------------------------ sample inputs
#: A 7x7 "7" with intensities 0-9: small enough to follow every multiplication by hand.
DIGIT_GRID_7X7 = np.array([[int(cell) for cell in row] for row in (
    "0000000", "0999990", "0000850", "0003900", "0008500", "0039000", "0076000")], dtype=np.float32)


def crop_origin(shape: tuple[int, ...], top: int, left: int, size: int, stride: int = 1) -> tuple[int, int]:
    """The top-left corner of a `size`×`size` window at (top, left), moved inside an image of `shape` and down
    to a multiple of `stride`: only there does the window's first output sit on the whole image's output grid
    (output row i reads padded rows from i·s), so the window's outputs are output cells of the whole image."""
    top, left = min(max(top, 0), max(shape[0] - size, 0)), min(max(left, 0), max(shape[1] - size, 0))
    return int(top - top % stride), int(left - left % stride)


def crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """A `size`×`size` window (smaller at the border of a small image), clamped inside the image."""
    array = np.asarray(image)
    top, left = crop_origin(array.shape, top, left, size)
    return array[top:top + size, left:left + size]


def convolve_window(image: np.ndarray, kernel: np.ndarray, settings: ConvSettings, top: int, left: int,
                    size: int) -> ConvResult:
    """A `size`×`size` window of a larger image convolved as in the whole image: the p cells around it are the
    image's own pixels where it goes on, padding only beyond its edge (`pad_mask`); the output is that part of
    the full output, from cell (top // s, left // s) (the window starts at `crop_origin`, on the stride's grid)."""
    array, weights = _as_2d_float(image), validate_kernel(kernel)
    top, left = crop_origin(array.shape, top, left, size, settings.stride)
    rows, cols, p = min(size, array.shape[0]), min(size, array.shape[1]), settings.padding
    formula_h, formula_w = plan_conv(rows, cols, weights.shape[0], settings)
    if reason := no_output_reason(formula_h, formula_w):
        raise ConfigError(reason)
    block = np.ascontiguousarray(pad(array, p, settings.padding_mode)[top:top + rows + 2 * p, left:left + cols + 2 * p])
    mask = padding_mask(*array.shape, p)[top:top + rows + 2 * p, left:left + cols + 2 * p]
    with torch.no_grad():
        out = F.conv2d(torch.from_numpy(block)[None, None], torch.from_numpy(weights.astype(np.float32))[None, None],
                       stride=settings.stride, dilation=settings.dilation)
    return ConvResult(output=out[0, 0].numpy(), padded=block, kernel=weights, settings=settings, formula_h=formula_h,
                      formula_w=formula_w, torch_shape=tuple(out.shape), pad_mask=mask)
