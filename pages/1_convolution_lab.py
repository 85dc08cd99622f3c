"""Convolution Lab: slide a kernel over an image, one multiplication at a time, then over the whole image.

A thin view: the arithmetic is `cnn_core.conv`, image reading is `cnn_core.images`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cnn_core import conv, images
from cnn_core.errors import CnnError, ConfigError
from cnn_explorer_ui import grid_html, heatmap_figure, legend_html, render_html, show_error

FULL_MAX_SIDE = 512   # larger inputs are shrunk for the full-image view (and the 200 ms budget)
STEP_MAX_SIDE = 10    # the step-through shows every number, so it works on at most a 10x10 window
PLAY_SECONDS = 0.8    # one sweep step per this many seconds while "Play" runs
DATASET_CHOICES = {"mnist": "MNIST digit", "pathmnist": "PathMNIST patch", "brain_mri": "Brain MRI"}

st.title(":material/grid_on: Convolution Lab")
st.markdown(
    "A convolution layer slides a small grid of weights, the **kernel**, over the image. At every stop it "
    "multiplies the pixels under the kernel by the weights and adds the products up: that sum is one pixel "
    "of the output, the **feature map**. A CNN learns its kernels; here you choose them."
)


# ------------------------------------------------------------------------------------------ input
@st.cache_resource(show_spinner="Loading test images…", max_entries=3)
def _dataset_test_images(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from cnn_core import data

    split = data.load_split(name, "test")
    return split.images.numpy(), split.labels.numpy(), tuple(split.info.class_names)


def _present_datasets() -> dict[str, str] | str:
    """Data sets from DATASET_CHOICES that are present, or why none can be offered."""
    from cnn_core import data

    present = {}
    for name, label in DATASET_CHOICES.items():
        try:
            if data.dataset_status(name).available:
                present[name] = label
        except CnnError:
            continue
    if not present:
        return ("None of MNIST, PathMNIST or the brain MRI folder was found under CNN_DATA_DIR; "
                "the home page says where they were looked for and how to get them.")
    return present


def _upload_to_gray(uploaded) -> np.ndarray:
    """Decode an upload once per file (cached in the session by Streamlit's file id)."""
    cache = st.session_state.setdefault("conv_upload_cache", {})
    if uploaded.file_id not in cache:
        cache.clear()
        try:
            image = images.read_image(uploaded.getvalue(), name=uploaded.name)
            cache[uploaded.file_id] = (_levels(images.fit_within(image, FULL_MAX_SIDE)),
                                       image.size, image.mode)
        except CnnError as exc:
            cache[uploaded.file_id] = exc
    entry = cache[uploaded.file_id]
    if isinstance(entry, CnnError):
        raise entry
    gray, size, mode = entry
    note = f"{uploaded.name}: {size[0]}×{size[1]} {'colour' if mode == 'RGB' else 'grayscale'}"
    if max(size) > FULL_MAX_SIDE:
        note += f", shrunk to {gray.shape[1]}×{gray.shape[0]}"
    st.caption(note + ".")
    return gray


def _levels(image) -> np.ndarray:
    """Gray levels 0-255 as float32: whole numbers keep the step-through's arithmetic readable."""
    return np.rint(images.to_grayscale_float(image) * 255.0).astype(np.float32)


def choose_input() -> tuple[np.ndarray, float] | None:
    """The image to convolve (float32 [H, W]) and its brightest possible value; None when there is none."""
    sources = {"digit": "Tiny 7×7 digit", "photo": "Sample photo", "dataset": "Data-set image",
               "upload": "Your own image"}
    source = st.segmented_control("Input", list(sources), format_func=sources.get, default="digit",
                                  required=True, key="conv_source")
    if source == "digit":
        st.caption("A hand-made 7 with brightness 0 (black) to 9 (white): small enough to check every "
                   "multiplication by hand.")
        return conv.DIGIT_GRID_7X7.copy(), 9.0
    if source == "photo":
        name = st.selectbox("Photo", list(images.SAMPLE_PHOTOS), key="conv_photo",
                            format_func=lambda key: key.replace("_", " ").capitalize())
        st.caption(images.SAMPLE_PHOTOS[name][1] + " Ships with scikit-image. Gray levels run from 0 (black) "
                   "to 255 (white).")
        try:
            photo = images.fit_within(images.load_sample_photo(name), FULL_MAX_SIDE)
        except CnnError as exc:
            show_error(exc)
            return None
        return _levels(photo), 255.0
    if source == "dataset":
        present = _present_datasets()
        if isinstance(present, str):
            st.info(present)
            return None
        name = st.selectbox("Data set", list(present), format_func=present.get, key="conv_dataset")
        try:
            pictures, labels, class_names = _dataset_test_images(name)
        except CnnError as exc:
            show_error(exc)
            return None
        index = st.number_input(f"Test image number (0–{len(pictures) - 1})", 0, len(pictures) - 1, 0,
                                key=f"conv_dataset_index_{name}")
        picture = images.fit_within(images.tensor_to_image(pictures[index]), FULL_MAX_SIDE)
        label = labels[index]
        if np.ndim(label) == 0 and 0 <= int(label) < len(class_names):
            st.caption(f"Test image {index}: class **{class_names[int(label)]}**.")
        return _levels(picture), 255.0
    uploaded = st.file_uploader("Upload an image", type=[s.lstrip(".") for s in images.IMAGE_SUFFIXES],
                                key="conv_upload",
                                help="PNG, JPEG, BMP, GIF, TIFF or WebP. Colour is turned into gray; images "
                                     f"larger than {FULL_MAX_SIDE} px are shrunk.")
    if uploaded is None:
        st.info("Choose an image file to convolve it.")
        return None
    try:
        return _upload_to_gray(uploaded), 255.0
    except CnnError as exc:
        show_error(exc)
        return None


# ------------------------------------------------------------------------------------------ kernel
def _set_padding(value: int) -> None:
    st.session_state["conv_padding"] = value


def choose_kernel_and_settings() -> tuple[np.ndarray | None, conv.ConvSettings]:
    """Kernel (None when the table holds something invalid) and the layer's stride/padding/dilation."""
    presets = {**{key: preset.title for key, preset in conv.KERNEL_PRESETS.items()}, "custom": "Custom"}
    controls, table = st.columns([5, 4], gap="large")
    with controls:
        left, right = st.columns(2)
        with left:
            preset_key = st.selectbox("Kernel preset", list(presets), format_func=presets.get,
                                      index=list(presets).index("sobel_x"),
                                      key="conv_preset",
                                      help="Classic hand-made kernels. A trained CNN finds its own.")
        sizes = conv.KERNEL_PRESETS[preset_key].sizes if preset_key != "custom" else tuple(range(1, 8))
        default = conv.KERNEL_PRESETS[preset_key].default_size if preset_key != "custom" else 3
        with right:
            size = st.select_slider("Kernel size k", sizes, value=default, key=f"conv_size_{preset_key}",
                                    help="The kernel is k×k. Bigger kernels see more at once.")
        left, right = st.columns(2)
        with left:
            stride = st.slider("Stride s", 1, 5, 1, key="conv_stride",
                               help="How many cells the kernel jumps between two outputs.")
            st.caption("Stride 2 skips every other position: the output is about half as large.")
        with right:
            dilation = st.slider("Dilation d", 1, 4, 1, key="conv_dilation",
                                 help="Spread the kernel's cells apart: d − 1 cells are skipped between them.")
            st.caption("Dilation lets a small kernel see a wider area without more weights.")
        left, right = st.columns(2)
        with left:
            padding = st.number_input("Padding p", 0, 10, 0, key="conv_padding",
                                      help="Cells added around the border before the kernel slides.")
            same = conv.same_padding(size, dilation)
            buttons = st.columns(2)
            buttons[0].button("same", key="conv_same", on_click=_set_padding, args=(same.padding,),
                              help=same.note, width="stretch")
            buttons[1].button("valid", key="conv_valid", on_click=_set_padding, args=(0,),
                              help="No padding: the kernel only goes where it fits entirely.",
                              width="stretch")
        with right:
            mode = st.radio("Padding mode", conv.PADDING_MODES, key="conv_padding_mode", horizontal=True,
                            help="What the added cells hold: zeros, the image mirrored at its edge "
                                 "(reflect), or the edge pixel repeated (replicate).")
            st.caption("Padding lets the kernel centre sit on edge pixels, so the output can keep the "
                       "input's size ('same'). Without it ('valid') the output shrinks.")
    with table:
        base = (conv.preset_kernel(preset_key, size) if preset_key != "custom"
                else conv.preset_kernel("identity", size) if size % 2 else np.zeros((size, size)))
        st.markdown(f"**Kernel weights ({size}×{size})** — edit any cell")
        frame = pd.DataFrame(base, columns=[str(c) for c in range(size)])
        column_config = {str(c): st.column_config.NumberColumn(str(c), format="%.4g", step=0.001,
                                                               width=58 if size > 5 else None)
                         for c in range(size)}
        edited = st.data_editor(frame, key=f"conv_kernel_{preset_key}_{size}", column_config=column_config,
                                hide_index=True, width="content")
        if preset_key != "custom":
            st.caption(conv.KERNEL_PRESETS[preset_key].what_it_does)
        try:
            kernel = conv.validate_kernel(edited.to_numpy(dtype=np.float64, na_value=np.nan))
        except ConfigError as exc:
            show_error(exc)
            kernel = None
        if kernel is not None and not np.allclose(kernel, base):
            st.caption(":material/edit: Edited: this is your own kernel now.")
    return kernel, conv.ConvSettings(stride=stride, padding=int(padding), padding_mode=mode, dilation=dilation)


# ------------------------------------------------------------------------------------------ output size
def show_output_size(image: np.ndarray, kernel: np.ndarray, settings: conv.ConvSettings) -> conv.ConvResult | None:
    formula_h, formula_w = conv.plan_conv(*image.shape, kernel.shape[0], settings)
    st.markdown(
        "Each axis follows PyTorch's formula  "
        r"$\lfloor (n + 2p - d(k-1) - 1)/s \rfloor + 1$ — with dilation 1 it is seed 002's "
        r"$\lfloor (n - k + 2p)/s \rfloor + 1$."
    )
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Height** (n = {formula_h.n})")
        st.latex(formula_h.latex())
    with right:
        st.markdown(f"**Width** (n = {formula_w.n})")
        st.latex(formula_w.latex())
    reason = conv.no_output_reason(formula_h, formula_w)
    metrics = st.columns(4)
    metrics[0].metric("Input (H × W)", f"{formula_h.n} × {formula_w.n}")
    metrics[1].metric("Padded input", f"{formula_h.padded} × {formula_w.padded}")
    metrics[2].metric("Formula says", f"{formula_h.size} × {formula_w.size}" if not reason else "no output")
    if reason:
        metrics[3].metric("conv2d returns", "—")
        st.warning(f"**No output.** {reason}", icon=":material/block:")
        return None
    try:
        result = conv.convolve(image, kernel, settings)
    except CnnError as exc:
        metrics[3].metric("conv2d returns", "—")
        show_error(exc)
        return None
    torch_hw = result.torch_shape[-2:]
    metrics[3].metric("conv2d returns", f"{torch_hw[0]} × {torch_hw[1]}")
    agree = torch_hw == result.output.shape == (formula_h.size, formula_w.size)
    st.caption(f"`torch.nn.functional.conv2d` returned a tensor of shape {result.torch_shape} "
               "(batch, channels, height, width): "
               + (":material/check_circle: the same as the formula" if agree else ":material/cancel: they differ!"))
    return result


# ------------------------------------------------------------------------------------------ step-through
def _move_step(delta: int | None, total: int) -> None:
    current = st.session_state.get("conv_step", 0)
    st.session_state["conv_step"] = 0 if delta is None else int(np.clip(current + delta, 0, total - 1))


def step_window(image: np.ndarray) -> np.ndarray:
    """The part of the image small enough to show every number: all of it, or a movable 10x10 window."""
    height, width = image.shape
    if max(height, width) <= STEP_MAX_SIDE:
        return image
    st.caption(f"Every number has to stay readable, so the sweep and the pooling below run on a "
               f"{STEP_MAX_SIDE}×{STEP_MAX_SIDE} window of the image. Move the window:")
    left, right = st.columns(2)
    top = left.slider("Window top row", 0, max(height - STEP_MAX_SIDE, 0),
                      max(height - STEP_MAX_SIDE, 0) // 2, key="conv_crop_top")
    start = right.slider("Window left column", 0, max(width - STEP_MAX_SIDE, 0),
                         max(width - STEP_MAX_SIDE, 0) // 2, key="conv_crop_left")
    return conv.crop(image, top, start, STEP_MAX_SIDE)


def show_step_through(window: np.ndarray, kernel: np.ndarray, settings: conv.ConvSettings,
                      value_range: tuple[float, float]) -> conv.ConvResult | None:
    """The sweep over `window`; its result (None when the kernel has no place in this window)."""
    formula_h, formula_w = conv.plan_conv(*window.shape, kernel.shape[0], settings)
    reason = conv.no_output_reason(formula_h, formula_w)
    if reason:
        st.warning(f"No output for this small window. {reason}", icon=":material/block:")
        return None
    try:
        result = conv.convolve(window, kernel, settings)
    except CnnError as exc:
        show_error(exc)
        return None
    _sweep(result, value_range)
    return result


def _sweep(result: conv.ConvResult, value_range: tuple[float, float]) -> None:
    out_h, out_w = result.output.shape
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
                    format_func=lambda i: "({}, {})".format(*conv.sweep_position(i, out_w)),
                    label_visibility="collapsed",
                    help="The kernel visits the output cells row by row, left to right.")
        out_row, out_col = conv.sweep_position(index, out_w)
        step = conv.conv_step(result, out_row, out_col)
        mask = conv.padding_mask(*result.input_shape, result.settings.padding)
        hits = [(r, c) for r in step.rows for c in step.cols]
        done = [conv.sweep_position(i, out_w) for i in range(index + 1)]
        fmt = conv.format_number
        padded_title = (f"Padded input {result.padded.shape[0]}×{result.padded.shape[1]}: the orange cells are "
                        f"what output ({out_row}, {out_col}) reads")
        input_grid = grid_html(result.padded, title=padded_title, fmt=fmt, value_range=value_range,
                               padding_mask=mask, hits=hits, test_id="conv-padded-input")
        legend = legend_html([("outline: 2px solid #f97316", "receptive field"),
                              ("background: repeating-linear-gradient(45deg,#f3f4f6,#f3f4f6 3px,#e5e7eb 3px,"
                               "#e5e7eb 6px); border-style: dashed", f"padding ({result.settings.padding_mode})")])
        kernel_grid = grid_html(result.kernel, title="Kernel weights", fmt=fmt, diverging=True,
                                show_indices=False, test_id="conv-kernel")
        bound = float(np.abs(step.products).max()) or 1.0
        product_grid = grid_html(step.products, title="Window × weights, cell by cell", fmt=fmt, diverging=True,
                                 value_range=(-bound, bound), show_indices=False, test_id="conv-products")
        output_grid = grid_html(result.output, title=f"Output {out_h}×{out_w} (faded: not computed yet)",
                                fmt=fmt, diverging=bool(result.output.min() < 0), current=(out_row, out_col),
                                dim_outside=done, test_id="conv-output")
        st.markdown(f"**Output cell ({out_row}, {out_col})** — step {index + 1} of {total}")
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
            st.caption(f"Output ({out_row}, {out_col}) = {fmt(float(result.output[out_row, out_col]))}, "
                       "exactly the sum on the left, as PyTorch computed it.")

    sweep_view()


# ------------------------------------------------------------------------------------------ full image
def show_full_image(image: np.ndarray, result: conv.ConvResult) -> None:
    left, right = st.columns(2)
    left.plotly_chart(heatmap_figure(image, f"Input {image.shape[0]}×{image.shape[1]}", gray=True, robust=False),
                      key="conv_full_input")
    right.plotly_chart(heatmap_figure(result.output, f"Feature map {result.output.shape[0]}×{result.output.shape[1]}"),
                       key="conv_full_output")
    st.caption("Hover to read any value. Red is positive, blue negative, white zero; "
               "a map with no negative values uses one colour ramp.")
    if st.toggle("Sobel edge magnitude √(gx² + gy²) — one click", key="conv_sobel",
                 help="Seed 003's example: combine the x and y Sobel responses into one edge strength."):
        sobel = conv.sobel_magnitude(image)
        views = {"magnitude": ("Edge magnitude √(gx² + gy²)", sobel.magnitude),
                 "gx": ("gx (Sobel x)", sobel.gx), "gy": ("gy (Sobel y)", sobel.gy)}
        left, right = st.columns(2)
        with left:
            shown = st.segmented_control("Show", list(views), default="magnitude", required=True,
                                         key="conv_sobel_view")
            st.caption("gx is large on vertical edges and gy on horizontal ones (signed: which side is "
                       "brighter). Their magnitude lights up every edge whatever its direction. Replicate "
                       "padding keeps the map as large as the image.")
        title, values = views[shown]
        right.plotly_chart(heatmap_figure(values, title, gray=shown == "magnitude"), key="conv_sobel_map")


# ------------------------------------------------------------------------------------------ pooling
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


# ------------------------------------------------------------------------------------------ self-check
def show_self_check() -> None:
    number = st.session_state.setdefault("conv_question", 0)
    question = conv.size_question(number)
    st.markdown(question.text())
    with st.form(key=f"conv_check_form_{number}", border=False):
        left, right = st.columns([1, 3])
        guess = left.number_input("Your answer", min_value=0, max_value=10_000, value=None, step=1,
                                  key=f"conv_guess_{number}", placeholder="pixels")
        checked = st.form_submit_button("Check")
    if checked:
        if guess is None:
            st.info("Type a number first.")
        else:
            right_answer, explanation = question.check(int(guess))
            (st.success if right_answer else st.error)(explanation)
    if st.button("Another question", key="conv_new_question"):
        st.session_state["conv_question"] = number + 1
        st.rerun()


# ------------------------------------------------------------------------------------------ page
st.header("1 · Input", divider="gray")
chosen = choose_input()
if chosen is not None and st.session_state.get("conv_source") != "digit":
    st.caption("The lab convolves one gray channel. A real conv layer on a colour image holds one k×k slice of "
               "weights per colour channel and adds the three sums into one output number.")
st.header("2 · Kernel and layer settings", divider="gray")
kernel, settings = choose_kernel_and_settings()

if chosen is not None and kernel is not None:
    image, brightest = chosen
    value_range = (0.0, brightest)
    st.header("3 · Output size", divider="gray")
    result = show_output_size(image, kernel, settings)
    window = image
    window_result = None
    if result is not None:
        st.header("4 · Step through the sweep", divider="gray")
        st.markdown("Pick an output cell, or press **Play**: the kernel's window (orange) moves over the padded "
                    "input, each weight multiplies the pixel under it, and the products add up to one output "
                    "number. Hatched cells are padding, not part of the image.")
        st.caption("The kernel is not flipped first. Mathematicians' convolution (seed 002's definition) "
                   "mirrors it; CNN layers, PyTorch's conv2d included, skip the mirror (a cross-correlation). "
                   "For a learned kernel it makes no difference: training would simply learn the mirror image.")
        window = step_window(image)
        window_result = show_step_through(window, kernel, settings, value_range)
        st.header("5 · The whole image", divider="gray")
        show_full_image(image, result)
    else:
        window = conv.crop(image, (image.shape[0] - STEP_MAX_SIDE) // 2, (image.shape[1] - STEP_MAX_SIDE) // 2,
                           STEP_MAX_SIDE)
    st.header("6 · Pooling", divider="gray")
    show_pooling(window, window_result.output if window_result is not None else None, value_range)
elif chosen is not None:
    st.info("Fix the kernel table above to see the convolution.")

st.header("7 · Check yourself", divider="gray")
show_self_check()
