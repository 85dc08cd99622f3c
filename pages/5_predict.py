"""Predict: draw a digit, upload a scan or pick a test image, get the model's answer and see why it decided.

A thin view: preprocessing, Grad-CAM, saliency, Monte Carlo dropout and the trust hint are
`cnn_core.explain`; checkpoints come from `cnn_core.checkpoints`, feature maps from `cnn_core.graph`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from cnn_core import explain, images, settings
from cnn_core.checkpoints import LoadedCheckpoint, list_checkpoints, load_checkpoint
from cnn_core.errors import CheckpointError, CnnError
from cnn_explorer_ui import browser_id, show_error

CANVAS_SIDE = 280      # px: ten times MNIST's 28, so a brush of about 20 px gives MNIST's stroke width
SEEN_SIDE = 196        # px: the 28x28 input enlarged 7x (nearest neighbour, pixels stay visible)
PREVIEW_SIDE = 280     # px: largest side of an uploaded image's preview
OVERLAY_SIDE = 224     # px: Grad-CAM and saliency overlays
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "gif", "webp"]
AUTO = "auto"           # the automatic choice in the Grad-CAM selectors
SOURCES = {"draw": "Draw a digit", "upload": "Upload an image", "sample": "Test image"}

st.title(":material/online_prediction: Predict")
st.markdown(
    "Give a trained network an image and see what it answers: **draw a digit**, **upload** a scan or photo, "
    "or take a random **test image** from a data set. Then look at *why*: which pixels the answer rests on "
    "(Grad-CAM and saliency), what each convolution layer saw, and how sure the model really is."
)


# ------------------------------------------------------------------------------------------ models
@st.cache_data(max_entries=8, show_spinner=False)
def _cached_cards(stamp: tuple) -> list[dict]:
    return list_checkpoints()


def _checkpoint_cards() -> list[dict]:
    """Every checkpoint card, read again whenever a file is added to or removed from a checkpoint folder."""
    stamp = tuple((str(folder), folder.stat().st_mtime_ns if folder.is_dir() else 0)
                  for folder in (settings.models_dir(), settings.runs_dir()))
    return _cached_cards(stamp)


def _card_label(card: dict) -> str:
    where = "shipped" if card.get("shipped") else "trained here"
    title = card.get("dataset_title") or card.get("dataset", "?")
    accuracy = ((card.get("metrics") or {}).get("test") or {}).get("accuracy")
    score = f", test accuracy {accuracy:.1%}" if isinstance(accuracy, (int, float)) else ""
    return f"{card.get('name', '?')} — {card.get('model', '?')} on {title} ({where}{score})"


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


def choose_model(cards: list[dict], source: str) -> LoadedCheckpoint | None:
    """The model selector; None (with a message) when nothing can be used for this input."""
    if source == "draw":
        cards = [card for card in cards if explain.is_digit_model(card)]
        if not cards:
            st.warning("Drawing needs a model trained on MNIST digits, and none was found. Train one in the "
                       "Training Studio or with `python -m cnn_core train --data mnist`.",
                       icon=":material/draw:")
            return None
    paths = [card["path"] for card in cards]
    labels = {card["path"]: _card_label(card) for card in cards}
    if st.session_state.get("predict_model") not in paths:
        st.session_state.pop("predict_model", None)  # e.g. a PathMNIST model while drawing digits
    path = st.selectbox("Model", paths, format_func=labels.get, key="predict_model",
                        help="Shipped checkpoints (models/) and the ones trained in this session. The "
                             "checkpoint's card says how to prepare the image and what the classes are.")
    try:
        loaded = _load(path)
    except CnnError as exc:
        show_error(exc)
        return None
    card = loaded.card
    names = [str(name) for name in card["class_names"]]
    shown = ", ".join(names[:10]) + (f" … ({len(names)} in all)" if len(names) > 10 else "")
    st.caption(f"Takes {card['image_size']}×{card['image_size']} "
               f"{'gray' if int(card['channels']) == 1 else 'RGB'} images, normalized with mean "
               f"{_numbers(card['normalization']['mean'])} and std {_numbers(card['normalization']['std'])}. "
               f"Classes: {shown}.")
    return loaded


def _numbers(values) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in values) + ")"


# ------------------------------------------------------------------------------------------ inputs
def _enlarged(pixels: np.ndarray, side: int = SEEN_SIDE) -> np.ndarray:
    """uint8 [C, H, W] as an enlarged [side, side(, 3)] picture with visible pixels."""
    from PIL import Image

    picture = images.tensor_to_image(pixels)
    smaller = picture.width > side  # large inputs (transfer models) are shrunk smoothly, small ones blown up
    picture = picture.resize((side, side), Image.Resampling.LANCZOS if smaller else Image.Resampling.NEAREST)
    return np.asarray(picture)


def draw_input(loaded: LoadedCheckpoint) -> explain.ModelInput | None:
    from streamlit_drawable_canvas import st_canvas

    version = st.session_state.setdefault("predict_canvas_version", 0)
    canvas_column, seen_column = st.columns([3, 2], gap="medium")
    with canvas_column:
        controls = st.columns([3, 1], vertical_alignment="bottom")
        brush = controls[0].slider("Brush size", 6, 40, 20, key="predict_brush",
                                   help="About 20 px on this 280 px canvas gives MNIST's stroke width.")
        if controls[1].button("Clear", icon=":material/ink_eraser:", key="predict_clear", width="stretch"):
            st.session_state["predict_canvas_version"] = version = version + 1
        result = st_canvas(stroke_width=brush, stroke_color="#FFFFFF", background_color="#000000",
                           width=CANVAS_SIDE, height=CANVAS_SIDE, drawing_mode="freedraw",
                           return_image_data=True, update_streamlit=True, key=f"predict_canvas_{version}")
        st.caption("Draw one digit, white on black like MNIST. The prediction updates when you lift the mouse. "
                   "Hover over the canvas for its toolbar: undo, redo and reset.")
    drawing = result.image_data if result is not None else None
    with seen_column:
        if drawing is None:
            st.info(explain.EMPTY_CANVAS_MESSAGE, icon=":material/draw:")
            return None
        try:
            model_input = explain.prepare_drawing(drawing, loaded.card)
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
    st.image(_enlarged(model_input.pixels), width=SEEN_SIDE)
    if model_input.notes:
        st.caption("Your image was " + "; ".join(model_input.notes) + ".")


def upload_input(loaded: LoadedCheckpoint) -> explain.ModelInput | None:
    uploaded = st.file_uploader(
        "Upload an image", type=UPLOAD_TYPES, key="predict_upload",
        help="PNG, JPEG, BMP, TIFF (also GIF, WebP) of any size, gray or colour, 8 or 16 bit. It is prepared "
             "exactly like the model's training images.")
    if uploaded is None:
        st.info("Choose an image file. Any size works; the checkpoint's card says how it is resized.",
                icon=":material/upload:")
        return None
    try:
        picture = images.read_image(uploaded.getvalue(), name=uploaded.name)
    except CnnError as exc:
        show_error(exc)
        return None
    digit_style = False
    if explain.is_digit_model(loaded.card):
        digit_style = st.toggle(
            "Treat it as a handwritten digit (crop to the ink, centre it, white on black: MNIST's recipe)",
            value=True, key="predict_upload_digit",
            help="Off: the image is only resized, as for any data set. A photo of a digit on paper needs this.")
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.image(images.fit_within(picture, PREVIEW_SIDE),
                 caption=f"{uploaded.name}: {picture.size[0]}×{picture.size[1]}, "
                         f"{'colour' if picture.mode == 'RGB' else 'grayscale'}")
    with right:
        try:
            if digit_style:
                model_input = explain.prepare_drawing(
                    picture, loaded.card,
                    empty_message=f"No digit found in '{uploaded.name}': it is one flat colour. Upload a picture "
                                  "of a digit, or turn off the handwritten-digit option.")
            else:
                model_input = explain.prepare_image(picture, loaded.card)
        except CnnError as exc:
            show_error(exc)
            return None
        _show_seen(model_input)
    return model_input


@st.cache_data(ttl=60, show_spinner=False)
def _present_datasets(owner: str) -> dict[str, str]:
    """Registry data sets whose files are here (name -> title), at their own size: the shared ones and
    `owner`'s uploads."""
    from cnn_core import data

    present = {}
    for info in data.list_datasets(owner=owner):
        try:
            if data.dataset_status(info.name).available:
                present[info.name] = info.title
        except CnnError:
            continue
    return present


@st.cache_resource(show_spinner=False, max_entries=4)
def _test_split(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    from cnn_core import data

    split = data.load_split(name, "test")
    return split.images.numpy(), split.labels.numpy(), tuple(split.info.class_names), split.info.title


def _ask_for_sample(name: str, cards: list[dict]) -> None:
    """Button callback: remember the request and switch to a model trained on that data set if needed."""
    st.session_state["predict_sample_request"] = name
    current = st.session_state.get("predict_model")
    current_card = next((card for card in cards if card["path"] == current), None)
    if current_card is None or current_card.get("dataset") != name:
        match = next((card for card in cards if card.get("dataset") == name), None)
        if match is not None:
            st.session_state["predict_model"] = match["path"]
            st.session_state["predict_switched"] = match.get("name", "")


def sample_buttons(cards: list[dict]) -> None:
    """One button per data set found here; drawn before the model selector so a click can switch models."""
    present = _present_datasets(browser_id())
    if not present:
        st.info("No data set was found under CNN_DATA_DIR, so there are no test images to pick; the home page "
                "says where data sets were looked for and how to get them.")
        return
    st.markdown("Pick a random image from a data set's **test split** (the model never trained on it):")
    columns = st.columns(min(len(present), 4))
    for index, (name, title) in enumerate(present.items()):
        columns[index % len(columns)].button(
            f"Random {title}", key=f"predict_sample_{name}", icon=":material/shuffle:", width="stretch",
            on_click=_ask_for_sample, args=(name, cards))


def sample_input(loaded: LoadedCheckpoint) -> explain.ModelInput | None:
    request = st.session_state.pop("predict_sample_request", None)
    if request is not None:
        try:
            with st.spinner(f"Loading the test split of {request}…"):
                pictures, _, _, _ = _test_split(request)
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
        pictures, labels, class_names, title = _test_split(name)
    except CnnError as exc:
        show_error(exc)
        return None
    switched = st.session_state.pop("predict_switched", None)
    if switched:
        st.caption(f":material/swap_horiz: Switched the model to **{switched}**, trained on {title}.")
    label = labels[index]
    truth = class_names[int(label)] if np.ndim(label) == 0 and 0 <= int(label) < len(class_names) else str(label)
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.image(_enlarged(pictures[index], PREVIEW_SIDE), width=PREVIEW_SIDE,
                 caption=f"{title}, test image #{index}")
        st.markdown(f"True label: **{truth}**")
        st.session_state["predict_truth"] = truth if loaded.card.get("dataset") == name else None
    if loaded.card.get("dataset") != name:
        st.warning(f"This model was trained on {loaded.card.get('dataset_title') or loaded.card.get('dataset')}, "
                   f"not on {title}: its classes are different, so its answer cannot be right. Watch how sure "
                   "it sounds anyway.", icon=":material/warning:")
        st.session_state["predict_foreign"] = f"the image comes from {title}, which this model never saw"
    else:
        st.session_state["predict_foreign"] = None
    try:
        model_input = explain.prepare_pixels(pictures[index], loaded.card)
    except CnnError as exc:
        show_error(exc)
        return None
    with right:
        if model_input.notes:
            _show_seen(model_input)
        else:
            st.caption("The model sees exactly this image: it has the size and channels of its training images.")
    return model_input


# ------------------------------------------------------------------------------------------ results
def _fingerprint(model_input: explain.ModelInput) -> str:
    return hashlib.sha1(model_input.pixels.tobytes()).hexdigest()


def _remembered(key: tuple, compute):
    """A result kept for this session, so a rerun caused by another widget does not redo slow work."""
    memo = st.session_state.setdefault("predict_memo", {})
    if key not in memo:
        if len(memo) >= 16:
            memo.clear()
        memo[key] = compute()
    return memo[key]


def _probability_chart(names: list[str], probabilities: np.ndarray, errors: np.ndarray | None = None,
                       title: str = "") -> go.Figure:
    """Horizontal bars, the top class darker; with `errors`, ± whiskers and the numbers in a column at the right."""
    top = int(np.argmax(probabilities))
    colours = ["#3b6ea5" if i == top else "#9fb7d3" for i in range(len(names))]
    bar = go.Bar(x=probabilities, y=names, orientation="h", marker_color=colours,
                 hovertemplate="%{y}: %{x:.2%}<extra></extra>")
    right_edge = 1.15
    if errors is None:
        bar.text = [f"{p:.1%}" for p in probabilities]
        bar.textposition = "outside"
        bar.cliponaxis = False
        figure = go.Figure(bar)
    else:
        bar.error_x = dict(type="data", array=errors, visible=True, color="#1f2933", thickness=1.5, width=4)
        bar.hovertemplate = "%{y}: %{x:.2%} ± %{error_x.array:.2%}<extra></extra>"
        right_edge = 1.35
        numbers = go.Scatter(x=[1.04] * len(names), y=names, mode="text", textposition="middle right",
                             text=[f"{p:.1%} ± {e:.1%}" for p, e in zip(probabilities, errors)],
                             hoverinfo="skip", cliponaxis=False)
        figure = go.Figure([bar, numbers])
    figure.update_xaxes(range=[0, right_edge], tickvals=[0, 0.25, 0.5, 0.75, 1], tickformat=".0%",
                        title="probability")
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_layout(height=60 + 26 * len(names), margin=dict(l=10, r=10, t=30 if title else 10, b=10),
                         title=dict(text=title, font=dict(size=14)) if title else None, showlegend=False)
    return figure


def show_prediction(loaded: LoadedCheckpoint, prediction, trust: explain.TrustAssessment) -> None:
    names = list(prediction.probabilities)
    values = np.array([prediction.probabilities[name] for name in names])
    left, right = st.columns([1, 2], gap="large")
    with left:
        st.metric("Predicted class", prediction.label, help="The class with the highest probability.")
        st.markdown(f"with probability **{prediction.probability:.1%}**")
        truth = st.session_state.get("predict_truth") if st.session_state.get("predict_source") == "sample" else None
        if truth is not None:
            if truth == prediction.label:
                st.markdown(f":green[:material/check_circle: Right: the true label is **{truth}**.]")
            else:
                st.markdown(f":red[:material/cancel: Wrong: the true label is **{truth}**.]")
        if trust.trustworthy:
            st.success(trust.message, icon=":material/verified:")
        else:
            st.warning(trust.message, icon=":material/report:")
    with right:
        st.plotly_chart(_probability_chart(names, values, title="Every class's probability (softmax)"),
                        key="predict_probabilities")


def show_why(loaded: LoadedCheckpoint, model_input: explain.ModelInput, prediction) -> None:
    model, names = loaded.model, [str(name) for name in loaded.card["class_names"]]
    st.markdown(
        "**Grad-CAM** weighs each feature map of a convolution layer by how much it raises the class's score "
        "(the mean gradient) and adds them up: red is where the evidence for the class lies. The **saliency "
        "map** is the plain gradient: how much each input pixel would change the class's score.")
    try:
        layers = explain.cam_layers(model, model_input.tensor)
    except CnnError as exc:
        show_error(exc)
        return
    ranked = sorted(range(len(names)), key=lambda i: -prediction.probabilities[names[i]])
    runner_up = ranked[1] if len(ranked) > 1 else ranked[0]
    model_key = Path(loaded.path).stem  # widgets per model: their options are the model's classes and layers
    controls = st.columns(2)
    other = controls[0].selectbox(
        "Compare with class", [AUTO, *range(len(names))], key=f"predict_cam_class_{model_key}",
        format_func=lambda i: "the runner-up (second most likely)" if i == AUTO else names[i],
        help="Grad-CAM for a second class: where does the model see evidence for it?")
    other = runner_up if other == AUTO else other
    layer = None
    if layers:
        labels = {candidate.name: candidate.label for candidate in layers}
        layer = controls[1].selectbox(
            "Grad-CAM layer", [AUTO, *labels], key=f"predict_cam_layer_{model_key}",
            format_func=lambda name: f"automatic (the last conv block: {layers[-1].name})" if name == AUTO
            else labels[name],
            help="The last convolution block is the usual choice: its maps are the most about classes. When "
                 "nothing there speaks for the class, the automatic choice goes one layer earlier. Earlier "
                 "layers are sharper but less specific.")
        layer = None if layer == AUTO else layer
    columns = st.columns(4)
    columns[0].image(_enlarged(model_input.pixels, OVERLAY_SIDE), caption="Input", width=OVERLAY_SIDE)
    for column, index in ((columns[1], prediction.index), (columns[2], other)):
        with column:
            if not layers:
                st.info("No convolution layer with maps larger than 1×1: Grad-CAM has nothing to weigh.")
                continue
            try:
                heat = explain.grad_cam(model, model_input.tensor, index, layer=layer)
            except CnnError as exc:
                show_error(exc)
                continue
            kind = "predicted" if index == prediction.index else f"{prediction.probabilities[names[index]]:.1%}"
            st.image(explain.overlay(model_input.pixels, heat.values, OVERLAY_SIDE), width=OVERLAY_SIDE,
                     caption=f"Grad-CAM for {names[index]} ({kind}) at {heat.layer}")
            if heat.empty:
                st.caption(f"Nothing at {heat.layer} raises the score of {names[index]}: every weighted sum of "
                           "its maps is ≤ 0, so the map is blank. Try another layer, or read the saliency map.")
            elif heat.skipped:
                st.caption(f"At {', '.join(heat.skipped)} nothing raised the score of {names[index]} (the "
                           f"weighted maps sum to ≤ 0 everywhere), so this is the next layer, {heat.layer}.")
    with columns[3]:
        try:
            saliency = explain.gradient_saliency(model, model_input.tensor, prediction.index)
        except CnnError as exc:
            show_error(exc)
        else:
            st.image(explain.overlay(model_input.pixels, saliency.values, OVERLAY_SIDE), width=OVERLAY_SIDE,
                     caption=f"Saliency for {prediction.label}")


def show_feature_maps(loaded: LoadedCheckpoint, model_input: explain.ModelInput) -> None:
    from cnn_core import graph

    try:
        with explain.single_threaded():
            maps = graph.activation_maps(loaded.model, model_input.tensor)
    except CnnError as exc:
        show_error(exc)
        return
    if not maps:
        st.info("This model has no convolution layers to show.")
        return
    st.markdown("Each convolution layer turns the image into a stack of **feature maps**, one per filter: "
                "bright where the filter found its pattern. Early layers find edges and strokes; later ones, "
                "smaller and more numerous, respond to larger parts of the image.")
    labels = {index: f"{name} — {tensor.shape[0]} maps of {tensor.shape[1]}×{tensor.shape[2]}"
              for index, (name, tensor) in enumerate(maps)}
    chosen = st.radio("Layer", list(labels), format_func=labels.get, horizontal=True,
                      key=f"predict_map_layer_{Path(loaded.path).stem}")
    name, tensor = maps[chosen]
    grid = graph.feature_map_grid(tensor, columns=8, max_maps=32)
    scale = max(1, 640 // max(grid.shape))
    from PIL import Image

    picture = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST)
    shown = min(32, tensor.shape[0])
    st.image(picture, caption=f"{name}: {shown} of {tensor.shape[0]} maps, each scaled to its own range "
                              "(black = its lowest value, white = its highest)")


def show_uncertainty(loaded: LoadedCheckpoint, model_input: explain.ModelInput) -> explain.McDropoutResult | None:
    layers = explain.dropout_layers(loaded.model)
    if not layers:
        st.info(f"This model ({loaded.card['model']}) has no dropout layers, so Monte Carlo dropout does not "
                "apply: with dropout off, every pass gives exactly the same answer. Models with dropout, such as "
                "resnet_small, show error bars here.", icon=":material/info:")
        return None
    passes = st.slider("Passes T", 10, 200, 50, step=10, key="predict_mc_passes",
                       help="More passes give steadier means and standard deviations, and take longer.")
    try:
        result = _remembered(("mc", str(loaded.path), _fingerprint(model_input), passes),
                             lambda: explain.mc_dropout(loaded.model, model_input.tensor, passes=passes))
    except CnnError as exc:
        show_error(exc)
        return None
    names = [str(name) for name in loaded.card["class_names"]]
    st.markdown(f"Dropout ({', '.join(result.dropout_layers)}) stays **on** while BatchNorm uses its running "
                f"statistics; the image goes through the network {result.passes} times with different random "
                "neurons switched off. The bars are the mean probability, the whiskers ± one standard deviation.")
    st.plotly_chart(_probability_chart(names, result.mean, result.std,
                                       title=f"Mean ± std over {result.passes} dropout passes"),
                    key="predict_mc_chart")
    st.caption(f"{result.agreement:.0%} of the passes agree on the top class "
               f"{names[int(np.argmax(result.mean))]}. Wide whiskers mean the answer hangs on a few neurons.")
    return result


# ------------------------------------------------------------------------------------------ page
cards = _checkpoint_cards()
if not cards:
    st.info("No trained model was found: neither shipped checkpoints in models/ nor models trained in this "
            "session. Train one in the Training Studio, or run `python -m cnn_core train --data mnist`.",
            icon=":material/inventory_2:")
    st.stop()

st.header("1 · Input and model", divider="gray")
source = st.segmented_control("Input", list(SOURCES), format_func=SOURCES.get, default="draw", required=True,
                              key="predict_source")
if source == "sample":
    sample_buttons(cards)
loaded = choose_model(cards, source)
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
    foreign = st.session_state.get("predict_foreign") if source == "sample" else None
    show_prediction(loaded, prediction, explain.assess_trust(prediction.probabilities, mc=mc_result,
                                                             foreign_input=foreign))
st.header("5 · Inside the network: feature maps", divider="gray")
show_feature_maps(loaded, model_input)
