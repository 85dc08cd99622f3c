"""The Convolution Lab's step-through of the sweep and its pooling view: every number on screen.

View code only: the arithmetic is `cnn_core.conv`. State lives under "conv_*" keys.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from cnn_core import conv
from cnn_core.data import images
from cnn_core.errors import CnnError

from .grids import grid_html, legend_html, render_html
from .widgets import literal, show_error

STEP_MAX_SIDE = 10    # the step-through shows every number, so it works on at most a 10x10 window
PLAY_SECONDS = 0.8    # one sweep step per this many seconds while "Play" runs
PADDING_LEGEND = ("background: repeating-linear-gradient(45deg,#f3f4f6,#f3f4f6 3px,#e5e7eb 3px,#e5e7eb 6px); "
                  "border-style: dashed")


# ------------------------------------------------------------------------------------------ input
def upload_to_gray(uploaded, max_side: int) -> np.ndarray:
    """An uploaded image as gray levels, shrunk to at most `max_side`; decoded once per file (kept in the
    session by Streamlit's file id), with a caption that says what it was."""
    cache = st.session_state.setdefault("conv_upload_cache", {})
    if uploaded.file_id not in cache:
        cache.clear()
        try:
            image = images.read_image(uploaded.getvalue(), name=uploaded.name, keep_alpha=True)
            image, background = _on_contrasting_background(image)
            pixels = np.asarray(image)
            colour = image.mode == "RGB" and not (pixels == pixels[..., :1]).all()  # a gray GIF's palette is RGB
            cache[uploaded.file_id] = (gray_levels(images.fit_within(image, max_side)), image.size, colour,
                                       background, image.info.get(images.FRAMES_KEY, 1))
        except CnnError as exc:
            cache[uploaded.file_id] = exc
    entry = cache[uploaded.file_id]
    if isinstance(entry, CnnError):
        raise entry
    gray, size, colour, background, frames = entry
    note = f"{literal(uploaded.name)}: {size[0]}×{size[1]} {'colour' if colour else 'grayscale'}"
    if max(size) > max_side:
        note += f", shrunk to {gray.shape[1]}×{gray.shape[0]}"
    if background:
        note += f"; its transparent background is shown {background} so the drawing stays visible"
    if frames > 1:
        note += f"; the first of its {frames} frames"
    st.caption(note + ".")
    return gray


def _on_contrasting_background(image):
    """An image with transparency on black when what is drawn is light (a white digit), else on white; with the
    background's name ("" when the image has no transparency)."""
    if image.mode != "RGBA":
        return image, ""
    alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
    drawn = np.asarray(image.convert("L"), dtype=np.float32)[alpha > 0.5]
    light = drawn.size > 0 and float(drawn.mean()) > 127
    flat = Image.new("RGBA", image.size, (0, 0, 0, 255) if light else (255, 255, 255, 255))
    return Image.alpha_composite(flat, image).convert("RGB"), "black" if light else "white"


def gray_levels(image) -> np.ndarray:
    """Gray levels 0-255 as float32: whole numbers keep the step-through's arithmetic readable."""
    return np.rint(images.to_grayscale_float(image) * 255.0).astype(np.float32)


# ------------------------------------------------------------------------------------------ sweep
def _move_step(delta: int | None, total: int) -> None:
    current = st.session_state.get("conv_step", 0)
    st.session_state["conv_step"] = 0 if delta is None else int(np.clip(current + delta, 0, total - 1))


def step_window(image: np.ndarray, stride: int = 1) -> tuple[int, int]:
    """Where the part of the image small enough to show every number starts: (0, 0) for all of it, else
    the top-left corner of a movable 10x10 window, on the stride's grid (`conv.crop_origin`)."""
    height, width = image.shape
    if max(height, width) <= STEP_MAX_SIDE:
        return 0, 0
    st.caption(f"Every number has to stay readable, so the sweep and the pooling below run on a "
               f"{STEP_MAX_SIDE}×{STEP_MAX_SIDE} window of the image. Move the window:")
    left, right = st.columns(2)
    top = left.slider("Window top row", 0, max(height - STEP_MAX_SIDE, 0),
                      max(height - STEP_MAX_SIDE, 0) // 2, key="conv_crop_top")
    start = right.slider("Window left column", 0, max(width - STEP_MAX_SIDE, 0),
                         max(width - STEP_MAX_SIDE, 0) // 2, key="conv_crop_left")
    return conv.crop_origin(image.shape, top, start, STEP_MAX_SIDE, stride)


def show_step_through(image: np.ndarray, origin: tuple[int, int], kernel: np.ndarray, settings: conv.ConvSettings,
                      value_range: tuple[float, float]) -> conv.ConvResult | None:
    """The sweep over the window of `image` at `origin`, whose surrounding cells are the image's own pixels
    (padding only beyond the image's edge); its result (None when the kernel has no place in the window)."""
    rows, cols = min(STEP_MAX_SIDE, image.shape[0]), min(STEP_MAX_SIDE, image.shape[1])
    whole = (rows, cols) == image.shape
    formula_h, formula_w = conv.plan_conv(rows, cols, kernel.shape[0], settings)
    if not whole and not (formula_h.fits and formula_w.fits):  # the image is large enough; the window is not
        st.info(f"The kernel covers {formula_h.span} cells, more than the {rows}×{cols} window the step-through can "
                "show (with its padding), so there is nothing to step through here. The feature map of the whole "
                "image above is computed; choose a smaller kernel or dilation to step through it.",
                icon=":material/zoom_out_map:")
        return None
    if reason := conv.no_output_reason(formula_h, formula_w):
        st.warning(f"No output for this input. {reason}", icon=":material/block:")
        return None
    origin = conv.crop_origin(image.shape, *origin, STEP_MAX_SIDE, settings.stride)  # as `convolve_window` moves it
    try:
        result = conv.convolve_window(image, kernel, settings, *origin, STEP_MAX_SIDE)
    except CnnError as exc:
        show_error(exc)
        return None
    _sweep(result, value_range, None if whole else origin)
    return result


def _output_origin(result: conv.ConvResult, origin: tuple[int, int] | None) -> tuple[int, int]:
    """The whole image's output cell that the window's output (0, 0) is (the window starts on the stride's grid)."""
    stride = result.settings.stride
    return (0, 0) if origin is None else (origin[0] // stride, origin[1] // stride)


def _sweep(result: conv.ConvResult, value_range: tuple[float, float], origin: tuple[int, int] | None) -> None:
    out_h, out_w = result.output.shape
    first_row, first_col = _output_origin(result, origin)
    total = out_h * out_w
    if st.session_state.pop("conv_stop_playing", False):  # the sweep reached its end in the last run
        st.session_state["conv_playing"] = False
    if st.session_state.get("conv_step", 0) > total - 1:
        st.session_state["conv_step"] = total - 1
    playing = bool(st.session_state.get("conv_playing"))

    # "Play" is a toggle, not a button: its state travels with every rerun, so a click made while the
    # timer is firing is never lost. The timer (run_every) is fixed per full run, hence the st.rerun().
    @st.fragment(run_every=PLAY_SECONDS if playing else None)
    def sweep_view() -> None:
        buttons = st.columns([1, 1, 1.2, 1.3, 6], vertical_alignment="center")
        buttons[0].button("", icon=":material/first_page:", key="conv_first", help="Back to the first output cell",
                          on_click=_move_step, args=(None, total), width="stretch")
        buttons[1].button("", icon=":material/chevron_left:", key="conv_back", help="One step back",
                          on_click=_move_step, args=(-1, total), width="stretch")
        buttons[2].button("Step", icon=":material/chevron_right:", key="conv_next", help="Move the kernel one step",
                          on_click=_move_step, args=(1, total), width="stretch")
        now_playing = buttons[3].toggle("Play", key="conv_playing", disabled=total == 1,
                                        help="Animate the sweep: one step every "
                                             f"{PLAY_SECONDS:g} s. Switch off to pause.")
        if now_playing != playing:
            if now_playing and st.session_state.get("conv_step", 0) >= total - 1:
                st.session_state["conv_step"] = 0
            st.rerun()  # the whole page, to start or stop the timer
        if now_playing:
            if st.session_state.get("conv_step", 0) >= total - 1:
                st.session_state["conv_stop_playing"] = True
                st.rerun()
            st.session_state["conv_step"] = st.session_state.get("conv_step", 0) + 1
        index = 0
        if total > 1:
            with buttons[4]:
                index = st.select_slider(
                    "Output cell (in sweep order)", list(range(total)), key="conv_step",
                    format_func=lambda i: "({}, {})".format(first_row + conv.sweep_position(i, out_w)[0],
                                                            first_col + conv.sweep_position(i, out_w)[1]),
                    label_visibility="collapsed",
                    help="The kernel visits the output cells row by row, left to right.")
        _show_step(result, index, value_range, origin)

    sweep_view()


def _show_step(result: conv.ConvResult, index: int, value_range: tuple[float, float],
               origin: tuple[int, int] | None) -> None:
    """Step `index` of the sweep: the window on the padded input, the products, the sum, the output so far.
    `origin` is the window's top-left pixel in the image (None when the window is the whole image)."""
    out_h, out_w = result.output.shape
    out_row, out_col = conv.sweep_position(index, out_w)
    step = conv.conv_step(result, out_row, out_col)
    first_row, first_col = _output_origin(result, origin)
    cell = f"({first_row + out_row}, {first_col + out_col})"  # the whole image's output cell
    hits = [(r, c) for r in step.rows for c in step.cols]
    done = [conv.sweep_position(i, out_w) for i in range(index + 1)]
    fmt = conv.format_number
    rows, cols = result.padded.shape
    p = result.settings.padding
    if origin is None:
        padded_title = f"Padded input {rows}×{cols}"
    else:  # the cells around the window are the image's own pixels, padding only beyond its edge
        padded_title = (f"{'Padded window' if p else 'Window'} {rows}×{cols}: image rows {origin[0] - p}–"
                        f"{origin[0] - p + rows - 1}, columns {origin[1] - p}–{origin[1] - p + cols - 1}")
    padded_title += f"; the orange cells are what output {cell} reads"
    input_grid = grid_html(result.padded, title=padded_title, fmt=fmt, value_range=value_range,
                           padding_mask=result.pad_mask, hits=hits, test_id="conv-padded-input",
                           first_index=(0, 0) if origin is None else (origin[0] - p, origin[1] - p))
    legend = legend_html([("outline: 2px solid #f97316", "receptive field"),
                          (PADDING_LEGEND, f"padding ({result.settings.padding_mode})")])
    kernel_grid = grid_html(result.kernel, title="Kernel weights", fmt=fmt, diverging=True,
                            show_indices=False, test_id="conv-kernel")
    bound = float(np.abs(step.products).max()) or 1.0
    product_grid = grid_html(step.products, title="Window × weights, cell by cell", fmt=fmt, diverging=True,
                             value_range=(-bound, bound), show_indices=False, test_id="conv-products")
    output_title = f"Output {out_h}×{out_w}" if origin is None else (
        f"Output rows {first_row}–{first_row + out_h - 1}, columns {first_col}–{first_col + out_w - 1}")
    output_grid = grid_html(result.output, title=f"{output_title} (faded: not computed yet)",
                            fmt=fmt, diverging=bool(result.output.min() < 0), current=(out_row, out_col),
                            dim_outside=done, test_id="conv-output", first_index=(first_row, first_col))
    st.markdown(f"**Output cell {cell}** — step {index + 1} of {out_h * out_w}")
    left, middle, right = st.columns([4.5, 3, 4.5], gap="medium")
    with left:
        render_html(input_grid, legend)
    with middle:
        render_html(kernel_grid, product_grid)
        terms = [f"{fmt(v)}·{fmt(w) if w >= 0 else f'({fmt(w)})'}"
                 for v, w in zip(step.window.ravel(), result.kernel.ravel())]
        expression = " + ".join(terms) if len(terms) <= 9 else f"the {len(terms)} products"
        st.markdown(f"Sum of {expression} = **{fmt(step.total)}**")
    with right:
        render_html(output_grid)
        st.caption(f"Output {cell} = {fmt(float(result.output[out_row, out_col]))}, "
                   "exactly the sum on the left, as PyTorch computed it.")


def show_pooling(window: np.ndarray, conv_output: np.ndarray | None, value_range: tuple[float, float]) -> None:
    """Pooling of the step-through's window (or of its convolution output), cell by cell."""
    st.markdown("Pooling shrinks a feature map without weights: each output keeps the **largest** value of "
                "its window (max) or their **mean** (average). It uses the same size formula with p = 0, "
                "d = 1, and the stride is usually the window size.")
    options = {"input": "the input"}
    if conv_output is not None:
        options["conv"] = "the convolution output (the feature map above)"
    controls = st.columns(4)
    what = controls[0].radio("Pool", list(options), format_func=options.get, key="conv_pool_source")
    kind = controls[1].radio("Kind", conv.POOL_KINDS, key="conv_pool_kind")
    pool_window = controls[2].slider("Window", 1, 4, 2, key="conv_pool_window",
                                     help="Each output reads a window × window block of cells.")
    pool_stride = controls[3].slider("Stride", 1, 4, 2, key="conv_pool_stride",
                                     help="Usually equal to the window, so windows do not overlap.")
    source = window if what == "input" or conv_output is None else conv_output
    try:
        pooled = conv.pool(source, kind, pool_window, pool_stride)
    except CnnError as exc:
        show_error(exc)
        return
    left, right = st.columns(2)
    left.latex(r"\text{height: }" + pooled.formula_h.latex(short=True))
    right.latex(r"\text{width: }" + pooled.formula_w.latex(short=True))
    note = f"PyTorch's {'max_pool2d' if kind == 'max' else 'avg_pool2d'} returned shape {pooled.torch_shape}."
    unused_rows, unused_cols = pooled.formula_h.unused, pooled.formula_w.unused
    if unused_rows or unused_cols:
        unread = [f"{count} {word}{'s' if count > 1 else ''}"
                  for count, word in ((unused_rows, "row"), (unused_cols, "column")) if count]
        note += (f" The last {' and '.join(unread)} are never read: the floor drops a window that would run "
                 "past the edge.")
    st.caption(note)
    out_h, out_w = pooled.output.shape
    cells = [(r, c) for r in range(out_h) for c in range(out_w)]
    chosen_index = 0 if len(cells) == 1 else st.select_slider(
        "Output cell", list(range(len(cells))), key=f"conv_pool_cell_{out_h}_{out_w}",
        format_func=lambda i: f"({cells[i][0]}, {cells[i][1]})")
    chosen = cells[chosen_index]
    cell = conv.pool_cell(pooled, *chosen)
    diverging = bool(source.min() < 0)
    grid_range = None if what == "conv" else value_range
    grids = st.columns(2)
    with grids[0]:
        render_html(grid_html(source, title=f"Pooled map: output {chosen} reads the orange window",
                              fmt=conv.format_number,
                              value_range=grid_range, diverging=diverging,
                              hits=[(r, c) for r in cell.rows for c in cell.cols], winner=cell.winner,
                              test_id="pool-input"),
                    legend_html([("outline: 2px solid #f97316", "window")]
                                + ([("box-shadow: inset 0 0 0 3px #facc15", "the maximum that won")]
                                   if cell.winner else [])))
    with grids[1]:
        render_html(grid_html(pooled.output, title=f"{kind.capitalize()} pooled {out_h}×{out_w}",
                              fmt=conv.format_number, value_range=grid_range, diverging=diverging,
                              current=chosen, test_id="pool-output"))
        winner = f", the winner sits at input {cell.winner}" if cell.winner else ""
        st.caption(f"Output {chosen} = {conv.format_number(cell.result)}{winner}.")
    with st.expander("Every output cell and the inputs it read"):
        st.dataframe(conv.pool_table(pooled), hide_index=True, width="stretch")
