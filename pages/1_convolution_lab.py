"""Convolution Lab: slide a kernel over an image, one multiplication at a time, then over the whole image.

A thin view: the arithmetic is `cnn_core.conv`, image reading is `cnn_core.images`; the step-through and
the pooling view are `cnn_explorer_ui.conv_views`. State lives under "conv_*" keys.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cnn_core import conv, conv_quiz
from cnn_core.data import images
from cnn_core.errors import CnnError, ConfigError
from cnn_explorer_ui import present_datasets, show_error, test_split
from cnn_explorer_ui.conv_views import (STEP_MAX_SIDE, gray_levels, show_pooling, show_step_through, step_window,
                                        upload_to_gray)
from cnn_explorer_ui.data_sets import label_of
from cnn_explorer_ui.value_maps import value_map
from cnn_explorer_ui.widgets import keep, kept

FULL_MAX_SIDE = 512   # larger inputs are shrunk for the full-image view (and the 200 ms budget)
DATASET_CHOICES = {"mnist": "MNIST digit", "pathmnist": "PathMNIST patch", "brain_mri": "Brain MRI"}

st.title(":material/grid_on: Convolution Lab")
st.markdown(
    "A convolution layer slides a small grid of weights, the **kernel**, over the image. At every stop it "
    "multiplies the pixels under the kernel by the weights and adds the products up: that sum is one pixel "
    "of the output, the **feature map**. A CNN learns its kernels; here you choose them."
)


# ------------------------------------------------------------------------------------------ input
def _present_choices() -> dict[str, str]:
    """The data sets of DATASET_CHOICES whose files are here."""
    present = present_datasets()
    return {name: label for name, label in DATASET_CHOICES.items() if name in present}


def choose_input() -> tuple[np.ndarray, float] | None:
    """The image to convolve (float32 [H, W]) and its brightest possible value; None when there is none."""
    sources = {"digit": "Tiny 7×7 digit", "photo": "Sample photo", "dataset": "Data-set image",
               "upload": "Your own image"}
    source = st.segmented_control("Input", list(sources), format_func=sources.get, required=True,
                                  key=kept("conv_source", "digit"))
    if source == "digit":
        st.caption("A hand-made 7 with brightness 0 (black) to 9 (white): small enough to check every "
                   "multiplication by hand.")
        return conv.DIGIT_GRID_7X7.copy(), 9.0
    if source == "photo":
        name = st.selectbox("Photo", list(images.SAMPLE_PHOTOS), key=kept("conv_photo", next(iter(images.SAMPLE_PHOTOS))),
                            format_func=lambda key: key.replace("_", " ").capitalize())
        st.caption(images.SAMPLE_PHOTOS[name][1] + " Ships with scikit-image. Gray levels run from 0 (black) "
                   "to 255 (white).")
        try:
            photo = images.fit_within(images.load_sample_photo(name), FULL_MAX_SIDE)
        except CnnError as exc:
            show_error(exc)
            return None
        return gray_levels(photo), 255.0
    if source == "dataset":
        present = _present_choices()
        if not present:
            st.info("None of MNIST, PathMNIST or the brain MRI folder was found under CNN_DATA_DIR; the home page "
                    "says where they were looked for and how to get them.")
            return None
        name = st.selectbox("Data set", list(present), format_func=present.get, key="conv_dataset")
        try:
            pictures, labels, class_names, _ = test_split(name)
        except CnnError as exc:
            show_error(exc)
            return None
        index = st.number_input(f"Test image number (0–{len(pictures) - 1})", 0, len(pictures) - 1, 0,
                                key=f"conv_dataset_index_{name}")
        picture = images.fit_within(images.tensor_to_image(pictures[index]), FULL_MAX_SIDE)
        if (label := label_of(labels, index, class_names)) is not None:
            st.caption(f"Test image {index}: class **{label}**.")
        return gray_levels(picture), 255.0
    uploaded = st.file_uploader("Upload an image", type=list(images.UPLOAD_EXTENSIONS),
                                key="conv_upload",
                                help="PNG, JPEG, BMP, GIF, TIFF or WebP. Colour is turned into gray; images "
                                     f"larger than {FULL_MAX_SIDE} px are shrunk.")
    if uploaded is None:
        st.info("Choose an image file to convolve it.")
        return None
    try:
        return upload_to_gray(uploaded, FULL_MAX_SIDE), 255.0
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
                                      key=kept("conv_preset", "sobel_x"),
                                      help="Classic hand-made kernels. A trained CNN finds its own.")
        sizes = conv.KERNEL_PRESETS[preset_key].sizes if preset_key != "custom" else tuple(range(1, 8))
        default = conv.KERNEL_PRESETS[preset_key].default_size if preset_key != "custom" else 3
        with right:
            if len(sizes) > 1:
                size = st.select_slider("Kernel size k", sizes, key=kept(f"conv_size_{preset_key}", default),
                                        help="The kernel is k×k. Bigger kernels see more at once. This preset "
                                             f"comes in {', '.join(map(str, sizes))}.")
            else:  # no slider that cannot move: say that the preset fixes the size
                size = sizes[0]
                st.markdown(f"Kernel size k = **{size}**")
                st.caption(f"{presets[preset_key]} is defined as {size}×{size} only. Pick another preset or "
                           "Custom for other sizes.")
        left, right = st.columns(2)
        with left:
            stride = st.slider("Stride s", 1, 5, key=kept("conv_stride", 1),
                               help="How many cells the kernel jumps between two outputs.")
            st.caption("Stride 2 skips every other position: the output is about half as large.")
        with right:
            dilation = st.slider("Dilation d", 1, 4, key=kept("conv_dilation", 1),
                                 help="Spread the kernel's cells apart: d − 1 cells are skipped between them.")
            st.caption("Dilation lets a small kernel see a wider area without more weights.")
        left, right = st.columns(2)
        with left:
            # No default value here: "same" and "valid" set it through session state, and a widget given
            # both logs Streamlit's widget-state warning. It starts at its minimum, 0.
            padding = st.number_input("Padding p", 0, 10, key=kept("conv_padding", 0),
                                      help="Cells added around the border before the kernel slides.")
            same = conv.same_padding(size, dilation)
            buttons = st.columns(2)
            buttons[0].button("same", key="conv_same", on_click=_set_padding, args=(same.padding,),
                              help=same.note, width="stretch")
            buttons[1].button("valid", key="conv_valid", on_click=_set_padding, args=(0,),
                              help="No padding: the kernel only goes where it fits entirely.",
                              width="stretch")
        with right:
            mode = st.radio("Padding mode", conv.PADDING_MODES, key=kept("conv_padding_mode", conv.PADDING_MODES[0]),
                            horizontal=True,
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
        r"$\lfloor (n + 2p - d(k-1) - 1)/s \rfloor + 1$ — with dilation 1 it is the standard output-size "
        r"formula $\lfloor (n + 2p - k)/s \rfloor + 1$ (Dumoulin & Visin, 2016)."
    )
    for axis, formula in (("Height", formula_h), ("Width", formula_w)):  # one under the other: in two columns a
        st.markdown(f"**{axis}** (n = {formula.n})")                     # projector at 200 % zoom cut them off
        st.latex(formula.latex())
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


# ------------------------------------------------------------------------------------------ full image
def show_full_image(image: np.ndarray, result: conv.ConvResult) -> None:
    left, right = st.columns(2)
    with left:
        value_map(image, f"Input {image.shape[0]}×{image.shape[1]}", key="conv_full_input", gray=True, robust=False)
    with right:
        value_map(result.output, f"Feature map {result.output.shape[0]}×{result.output.shape[1]}",
                  key="conv_full_output")
    st.caption("Tap or hover to read any value. Red is positive, blue negative, white zero; "
               "a map with no negative values uses one colour ramp.")
    if st.toggle("Sobel edge magnitude √(gx² + gy²) — one click", key="conv_sobel",
                 help="A Sobel edge-strength example: combine the x and y Sobel responses into one edge strength."):
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
        with right:
            value_map(values, title, key="conv_sobel_map", gray=shown == "magnitude")


# ------------------------------------------------------------------------------------------ self-check
def show_self_check() -> None:
    number = st.session_state.setdefault("conv_question", 0)
    question = conv_quiz.size_question(number)
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
keep()

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
        st.caption("The kernel is not flipped first. Convolution as mathematicians define it mirrors the "
                   "kernel; CNN layers, PyTorch's conv2d included, skip the mirror (a cross-correlation). "
                   "For a learned kernel it makes no difference: training would simply learn the mirror image.")
        origin = step_window(image, settings.stride)
        window = conv.crop(image, *origin, STEP_MAX_SIDE)  # the same window the sweep runs on
        window_result = show_step_through(image, origin, kernel, settings, value_range)
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
