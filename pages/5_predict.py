"""Predict: draw a digit, upload a scan or pick a test image, get the model's answer and see why it decided.

A thin view: preprocessing, Grad-CAM, saliency, Monte Carlo dropout and the trust hint are
`cnn_core.explain` (shown by `cnn_explorer_ui.predict_views`); checkpoints come from `cnn_core.checkpoints`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from cnn_core import data, gallery
from cnn_core.inference import explain
from cnn_core.data import images
from cnn_core.models.checkpoints import CheckpointEntry, LoadedCheckpoint, load_checkpoint
from cnn_core.errors import CheckpointError, CnnError
from cnn_explorer_ui import checkpoint_entries, present_datasets, scaled, show_error, test_split
from cnn_explorer_ui.widgets import keep, kept, literal
from cnn_explorer_ui.cards import dataset_title, input_caption
from cnn_explorer_ui.data_sets import label_of, sample_as_trained
from cnn_explorer_ui.pickers import checkpoint_picker
from cnn_explorer_ui.predict_views import (show_feature_maps, show_model_downloads, show_prediction,
                                           show_uncertainty, show_why)

CANVAS_SIDE = 280      # px: ten times MNIST's 28, so a brush of about 20 px gives MNIST's stroke width
SEEN_SIDE = 196        # px: the 28x28 input enlarged 7x (nearest neighbour, pixels stay visible)
PREVIEW_SIDE = 280     # px: largest side of an uploaded image's preview
SOURCES = {"draw": "Draw a digit", "upload": "Upload an image", "sample": "Test image"}

st.title(":material/online_prediction: Predict")
st.markdown(
    "Give a trained network an image and see what it answers: **draw a digit**, **upload** a scan or photo, "
    "or take a random **test image** from a data set. Then look at *why*: which pixels the answer rests on "
    "(Grad-CAM and saliency), what each convolution layer saw, and how sure the model really is."
)

SWITCH = "Treat it as a handwritten digit"
DIGIT_CHOICE_KEY = "predict_digit_choice"  # the switch's last setting, kept while the switch is not drawn
NO_INK = ("No digit found in '{name}': there is no ink on it (one flat colour, or blank paper). Give a picture of a "
          f"digit, or switch off “{SWITCH}” above: the picture then goes to the model only resized.")


# ------------------------------------------------------------------------------------------ models
def _load(path: str) -> LoadedCheckpoint:
    """The checkpoint, loaded once per session (each session gets its own model object: hooks and
    dropout switches in `explain` then never touch another student's model)."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"The checkpoint {file.name} is gone (was it deleted?); choose another model.")
    stat = file.stat()
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    cache = st.session_state.setdefault("predict_loaded", {})
    if key not in cache:
        cache.clear()
        st.session_state.pop("predict_memo", None)  # results of the previous model
        cache[key] = load_checkpoint(file)
    return cache[key]


def choose_model(entries: list[CheckpointEntry], source: str) -> LoadedCheckpoint | None:
    """The model selector; None (with a message) when nothing can be used for this input."""
    if source == "draw":
        entries = [entry for entry in entries if explain.is_digit_model(entry.card)]
        if not entries:
            st.warning("Drawing needs a model trained on MNIST digits, and none was found. Train one in the "
                       "Training Studio or with `python -m cnn_core train --data mnist`.",
                       icon=":material/draw:")
            return None
    entry = checkpoint_picker(entries, key=kept("predict_model"), label="Model",
                             help="Shipped checkpoints (models/) and the ones trained in this session. The "
                                  "checkpoint's card says how to prepare the image and what the classes are.")
    try:
        loaded = _load(str(entry.path))
    except CnnError as exc:
        show_error(exc)
        return None
    names = loaded.card.class_names
    shown = ", ".join(map(literal, names[:10])) + (f" … ({len(names)} in all)" if len(names) > 10 else "")
    st.caption(f"{input_caption(loaded.card)}. Classes: {shown}.")
    show_model_downloads(loaded)
    return loaded


# ------------------------------------------------------------------------------------------ inputs
def draw_input(loaded: LoadedCheckpoint) -> explain.ModelInput | None:
    from streamlit_drawable_canvas import st_canvas

    version = st.session_state.setdefault("predict_canvas_version", 0)
    side = scaled(CANVAS_SIDE)  # larger with the classroom display on; the brush grows with it
    # The classroom display's larger canvas takes the page's width, "what the model sees" below it: beside it, the
    # canvas ran past its column on a projector at 150-200 % zoom, where half of it could not be drawn on.
    canvas_column, seen_column = ((st.container(), st.container()) if side > CANVAS_SIDE
                                  else st.columns([3, 2], gap="medium"))
    with canvas_column:
        controls = st.columns([3, 1], vertical_alignment="bottom")
        brush = controls[0].slider("Brush size", 6, 40, 20, key="predict_brush",
                                   help=f"About 20 gives MNIST's stroke width on this {side} px canvas.")
        if controls[1].button("Clear", icon=":material/ink_eraser:", key="predict_clear", width="stretch"):
            st.session_state["predict_canvas_version"] = version = version + 1
        # The canvas's own toolbar pops up above its top edge: room for it, so it never covers "Clear".
        st.space(44)
        result = st_canvas(stroke_width=round(brush * side / CANVAS_SIDE), stroke_color="#FFFFFF",
                           background_color="#000000", width=side, height=side, drawing_mode="freedraw",
                           return_image_data=True, update_streamlit=True, key=f"predict_canvas_{version}_{side}")
        st.caption("Draw one digit, white on black like MNIST, with the mouse or a finger. The prediction "
                   "updates when you lift it. Tap or hover over the canvas for its toolbar: undo, redo and reset.")
    drawing = result.image_data if result is not None else None
    with seen_column:
        if drawing is None:
            st.info(explain.EMPTY_CANVAS_MESSAGE, icon=":material/draw:")
            return None
        try:
            model_input = explain.prepare_input(drawing, loaded.card, empty_message=explain.EMPTY_CANVAS_MESSAGE)
        except explain.EmptyDrawingError as exc:
            st.info(str(exc), icon=":material/draw:")
            return None
        except CnnError as exc:
            show_error(exc)
            return None
        _show_seen(model_input)
    return model_input


def _show_seen(model_input: explain.ModelInput) -> None:
    channels, size = model_input.pixels.shape[0], model_input.pixels.shape[-1]
    st.markdown(f"**What the model sees** ({size}×{size}{', gray' if channels == 1 else ', RGB'})")
    st.image(gallery.square_picture(model_input.pixels, scaled(SEEN_SIDE)), width=scaled(SEEN_SIDE))
    if model_input.notes:
        st.caption("Your image was " + "; ".join(model_input.notes) + ".")


def upload_input(loaded: LoadedCheckpoint) -> explain.ModelInput | None:
    uploaded = st.file_uploader(
        "Upload an image", type=list(images.UPLOAD_EXTENSIONS), key="predict_upload",
        help="PNG, JPEG (also .jfif), HEIC from an iPhone, BMP, TIFF, GIF or WebP, of any size, gray or colour, 8 "
             "or 16 bit. It is prepared exactly like the model's training images.")
    if uploaded is None:
        st.info("Choose an image file. Any size works; the checkpoint's card says how it is resized.",
                icon=":material/upload:")
        return None
    try:
        picture = explain.read_input(uploaded.getvalue(), name=uploaded.name)  # as the CLI reads files
    except CnnError as exc:
        show_error(exc)
        return None
    digit_style = False
    if explain.is_digit_model(loaded.card):
        # Streamlit forgets a widget's state in a run that does not draw it (no file, or one that failed to
        # read): the choice is kept beside it. Not `kept`: a keyed toggle seeded that way ignored the next click
        # in Chromium (the browser test's switch stayed on), a keyless one whose value follows the copy does not.
        digit_style = st.toggle(
            f"{SWITCH} (crop to the ink, centre it, white on black: MNIST's recipe)",
            value=st.session_state.get(DIGIT_CHOICE_KEY, True),
            help="Off: the image is only resized, as for any data set (the CLI's `predict --raw`). A photo or "
                 "scan of a digit on paper, or a drawing on a transparent background, needs this.")
        st.session_state[DIGIT_CHOICE_KEY] = digit_style
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.image(images.fit_within(picture, scaled(PREVIEW_SIDE)),
                 caption=f"{literal(uploaded.name)}: {picture.size[0]}×{picture.size[1]}, "
                         f"{ {'RGB': 'colour', 'RGBA': 'with transparency'}.get(picture.mode, 'grayscale')}")
    with right:
        try:  # the one preparation the CLI's `predict` uses too
            model_input = explain.prepare_input(picture, loaded.card, raw=not digit_style, name=uploaded.name,
                                                empty_message=NO_INK.format(name=uploaded.name))
        except explain.EmptyDrawingError as exc:  # no digit's strokes found: a photo of something else, say so
            hint = ("" if SWITCH in str(exc) else f" If this is not a handwritten digit, switch off “{SWITCH}” above: "
                    "the picture then goes to the model only resized.")
            show_error(f"{literal(str(exc))}{hint}")
            return None
        except CnnError as exc:
            show_error(exc)
            return None
        _show_seen(model_input)
    return model_input


def _ask_for_sample(name: str, entries: list[CheckpointEntry]) -> None:
    """Button callback: remember the request and switch to a model trained on that data set if needed."""
    st.session_state["predict_sample_request"] = name
    current = st.session_state.get("predict_model")
    current_entry = next((entry for entry in entries if str(entry.path) == current), None)
    if current_entry is None or not data.same_images_kind(current_entry.card.dataset, name):
        match = (next((entry for entry in entries if entry.card.dataset == name), None)
                 or next((entry for entry in entries if data.same_images_kind(entry.card.dataset, name)), None))
        if match is not None:
            st.session_state["predict_model"] = str(match.path)
            st.session_state["predict_switched"] = match.title


def sample_buttons(entries: list[CheckpointEntry]) -> None:
    """One button per data set found here; drawn before the model selector so a click can switch models."""
    present = {name: info.title for name, info in present_datasets().items()}
    if not present:
        st.info("No data set was found under CNN_DATA_DIR, so there are no test images to pick; the home page "
                "says where data sets were looked for and how to get them.")
        return
    st.markdown("Pick a random image from a data set's **test split** (the model never trained on it):")
    columns = st.columns(min(len(present), 4))
    for index, (name, title) in enumerate(present.items()):
        columns[index % len(columns)].button(
            f"Random {title}", key=f"predict_sample_{name}", icon=":material/shuffle:", width="stretch",
            on_click=_ask_for_sample, args=(name, entries))


def sample_input(loaded: LoadedCheckpoint) -> explain.ModelInput | None:
    request = st.session_state.pop("predict_sample_request", None)
    if request is not None:
        try:
            with st.spinner(f"Loading the test split of {request}…"):
                pictures, _, _, _ = test_split(request)
        except CnnError as exc:
            show_error(exc)
            return None
        st.session_state["predict_sample"] = (request, int(np.random.default_rng().integers(len(pictures))))
    chosen = st.session_state.get("predict_sample")
    if chosen is None:
        st.info("Press a button above to pick a test image.", icon=":material/shuffle:")
        return None
    name, index = chosen
    try:
        pictures, labels, class_names, title = test_split(name)
    except CnnError as exc:
        show_error(exc)
        return None
    switched = st.session_state.pop("predict_switched", None)
    if switched:
        st.caption(f":material/swap_horiz: Switched the model to **{literal(switched)}**, trained on {literal(title)}.")
    truth = label_of(labels, index, class_names) or gallery.label_text(labels[index], class_names)  # multi-label
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.image(gallery.square_picture(pictures[index], scaled(PREVIEW_SIDE)), width=scaled(PREVIEW_SIDE),
                 caption=f"{literal(title)}, test image #{index}")
        st.markdown(f"True label: **{literal(truth)}**")
        same_kind = data.same_images_kind(loaded.card.dataset, name)  # a MedMNIST set at another size counts
        st.session_state["predict_truth"] = truth if same_kind else None
    if not same_kind:
        st.warning(f"This model was trained on {literal(dataset_title(loaded.card))}, "
                   f"not on {literal(title)}: its classes are different, so its answer cannot be right. Watch how sure "
                   "it sounds anyway.", icon=":material/warning:")
        st.session_state["predict_foreign"] = f"the image comes from {title}, which this model never saw"
    else:
        st.session_state["predict_foreign"] = None
    try:
        picture = sample_as_trained(pictures, name, index, loaded.card.image_size if same_kind else None)
        model_input = explain.prepare_pixels(picture, loaded.card)
    except CnnError as exc:
        show_error(exc)
        return None
    with right:
        if model_input.notes:
            _show_seen(model_input)
        else:
            st.caption("The model sees exactly this image: it has the size and channels of its training images.")
    return model_input


# ------------------------------------------------------------------------------------------ page
entries = checkpoint_entries()
if not entries:
    st.info("No trained model was found: neither shipped checkpoints in models/ nor models trained in this "
            "session. Train one in the Training Studio, or run `python -m cnn_core train --data mnist`.",
            icon=":material/inventory_2:")
    st.stop()

st.header("1 · Input and model", divider="gray")
source = st.segmented_control("Input", list(SOURCES), format_func=SOURCES.get, required=True,
                              key=kept("predict_source", "draw"))
if source == "sample":
    sample_buttons(entries)
loaded = choose_model(entries, source)
keep()  # still chosen after a visit to another page
if loaded is None:
    st.stop()

if source == "draw":
    model_input = draw_input(loaded)
elif source == "upload":
    model_input = upload_input(loaded)
else:
    model_input = sample_input(loaded)
if model_input is None:
    st.stop()

try:
    prediction = explain.predict_input(loaded, model_input)
except CnnError as exc:
    show_error(exc)
    st.stop()

st.header("2 · Prediction", divider="gray")
prediction_area = st.container()
st.header("3 · Why this answer?", divider="gray")
show_why(loaded, model_input, prediction)
st.header("4 · How sure is it? (Monte Carlo dropout)", divider="gray")
mc_result = show_uncertainty(loaded, model_input)
with prediction_area:
    foreign = st.session_state.get("predict_foreign") if source == "sample" else model_input.unlike_training
    show_prediction(loaded, prediction, explain.assess_trust(prediction.probabilities, mc=mc_result,
                                                             foreign_input=foreign))
st.header("5 · Inside the network: feature maps", divider="gray")
show_feature_maps(loaded, model_input)
