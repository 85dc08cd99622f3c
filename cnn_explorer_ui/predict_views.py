"""The Predict page's answers: the probabilities, why the model decided (Grad-CAM, saliency), what its
convolution layers saw, and how sure it is (Monte Carlo dropout).

View code only: the explanations are `cnn_core.explain`, feature maps `cnn_core.graph`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from cnn_core import gallery
from cnn_core.inference import explain
from cnn_core.inference import graph
from cnn_core.models.checkpoints import LoadedCheckpoint
from cnn_core.models.registry import list_models
from cnn_core.errors import CnnError

from .exports import onnx_download
from .widgets import classroom_scale, literal, scaled, show_error

OVERLAY_SIDE = 224     # px: Grad-CAM and saliency overlays
MAP_GRID_PX = 640      # px: the feature-map grid is enlarged by whole pixels to about this width
AUTO = "auto"          # the automatic choice in the Grad-CAM selectors
MAX_LAYER_RADIOS = 6   # more feature-map layers than this are offered in a select box


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


def show_model_downloads(loaded: LoadedCheckpoint) -> None:
    """The model's file for other tools: the checkpoint as ONNX (input preparation included)."""
    onnx_download(loaded.path, key="predict_download_onnx")


def probability_chart(names: list[str], probabilities: np.ndarray, errors: np.ndarray | None = None,
                       title: str = "") -> go.Figure:
    """Horizontal bars, the top class darker; with `errors`, ± whiskers and the numbers in a column at the right."""
    top = int(np.argmax(probabilities))
    colours = ["#3b6ea5" if i == top else "#9fb7d3" for i in range(len(names))]
    bar = go.Bar(x=probabilities, y=names, orientation="h", marker_color=colours,
                 hovertemplate="%{y}: %{x:.2%}<extra></extra>")
    right_edge = 1.15
    if errors is None:
        bar.text = [explain.percent(p) for p in probabilities]
        bar.textposition = "outside"
        bar.cliponaxis = False
        figure = go.Figure(bar)
    else:
        # whiskers stop at 0 % and 100 % (a probability's range); the numbers say the full ± std
        bar.error_x = dict(type="data", symmetric=False, array=np.minimum(errors, 1 - probabilities),
                           arrayminus=np.minimum(errors, probabilities), visible=True, color="#1f2933",
                           thickness=1.5, width=4)
        bar.customdata = errors
        bar.hovertemplate = "%{y}: mean %{x:.2%}, standard deviation %{customdata:.2%}<extra></extra>"
        right_edge = 1.35
        numbers = go.Scatter(x=[1.04] * len(names), y=names, mode="text", textposition="middle right",
                             text=[f"{explain.percent(p)} (sd {explain.percent(e)})" for p, e in zip(probabilities, errors)],
                             hoverinfo="skip", cliponaxis=False)
        figure = go.Figure([bar, numbers])
    # The axis title sits below the tick labels with room of its own (it overlapped the 50% tick).
    figure.update_xaxes(range=[0, right_edge], tickvals=[0, 0.25, 0.5, 0.75, 1], tickformat=".0%",
                        title=dict(text="probability", standoff=12), automargin=True)
    figure.update_yaxes(autorange="reversed", type="category")
    zoom = classroom_scale()  # taller bars and bigger text on a projector
    figure.update_xaxes(tickfont=dict(size=round(12 * zoom)), title_font=dict(size=round(13 * zoom)))
    figure.update_yaxes(tickfont=dict(size=round(12 * zoom)))
    figure.update_layout(height=round((90 + 26 * len(names)) * zoom),
                         margin=dict(l=10, r=10, t=round(30 * zoom) if title else 10, b=round(50 * zoom)),
                         font=dict(size=round(12 * zoom)),
                         title=dict(text=title, font=dict(size=round(14 * zoom))) if title else None, showlegend=False)
    return figure


def show_prediction(loaded: LoadedCheckpoint, prediction, trust: explain.TrustAssessment) -> None:
    names = list(prediction.probabilities)
    values = np.array([prediction.probabilities[name] for name in names])
    left, right = st.columns([1, 2], gap="large")
    with left:
        st.metric("Predicted class", literal(prediction.label), help="The class with the highest probability.")
        st.markdown(f"with probability **{explain.percent(prediction.probability)}**")
        truth = st.session_state.get("predict_truth") if st.session_state.get("predict_source") == "sample" else None
        if truth is not None:
            if truth == prediction.label:
                st.markdown(f":green[:material/check_circle: Right: the true label is **{literal(truth)}**.]")
            else:
                st.markdown(f":red[:material/cancel: Wrong: the true label is **{literal(truth)}**.]")
        if trust.trustworthy:
            st.success(trust.message, icon=":material/verified:")
        else:
            st.warning(trust.message, icon=":material/report:")
    with right:
        st.plotly_chart(probability_chart(names, values, title="Every class's probability (softmax)"),
                        key="predict_probabilities")


def show_why(loaded: LoadedCheckpoint, model_input: explain.ModelInput, prediction) -> None:
    model, names = loaded.model, list(loaded.card.class_names)
    st.markdown(
        "**Grad-CAM** weighs each feature map of a convolution layer by how much it raises the class's score "
        "(the mean gradient) and adds them up: red is where the evidence for the class lies. Evidence can be "
        + ("empty paper too: a 3 differs from an 8 by the gaps on its left, so Grad-CAM may colour blank places. "
           if explain.is_digit_model(loaded.card) else "a place where something is missing, so Grad-CAM may colour "
           "empty background. ")
        + "The **saliency map** is the plain gradient: how much each input pixel would change the class's score.")
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
                 "layers are sharper but less specific. A convolution's output is taken before the BatchNorm "
                 "and ReLU that follow it; a block's output after them, so the two can differ at one size.")
        layer = None if layer == AUTO else layer
    side = scaled(OVERLAY_SIDE)  # larger with the classroom display on: then two pictures a row, not four
    columns = st.columns(4) if side == OVERLAY_SIDE else [*st.columns(2), *st.columns(2)]
    # "stretch": each picture fits its column (a fixed width ran past a narrow page: a sidebar, 150-200 % zoom)
    columns[0].image(gallery.square_picture(model_input.pixels, side), caption="Input", width="stretch")
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
            kind = "predicted" if index == prediction.index else explain.percent(prediction.probabilities[names[index]])
            st.image(explain.overlay(model_input.pixels, heat.values, side), width="stretch",
                     caption=f"Grad-CAM for {literal(names[index])} ({kind}) at {heat.layer}")
            if heat.empty:
                st.caption(f"Nothing at {heat.layer} raises the score of {literal(names[index])}: every weighted sum of "
                           "its maps is ≤ 0, so the map is blank. Try another layer, or read the saliency map.")
            elif heat.skipped:
                st.caption(f"At {', '.join(heat.skipped)} nothing raised the score of {literal(names[index])} (the "
                           f"weighted maps sum to ≤ 0 everywhere), so this map is from an earlier layer inside it, "
                           f"{heat.layer}.")
    with columns[3]:
        try:
            saliency = explain.gradient_saliency(model, model_input.tensor, prediction.index)
        except CnnError as exc:
            show_error(exc)
        else:
            st.image(explain.overlay(model_input.pixels, saliency.values, side), width="stretch",
                     caption=f"Saliency for {literal(prediction.label)}")


def show_feature_maps(loaded: LoadedCheckpoint, model_input: explain.ModelInput) -> None:
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
    labels = {index: f"{_block_name(name)} — {tensor.shape[0]} maps of {tensor.shape[1]}×{tensor.shape[2]}"
              for index, (name, tensor) in enumerate(maps)}
    key = f"predict_map_layer_{Path(loaded.path).stem}"
    if len(labels) <= MAX_LAYER_RADIOS:
        chosen = st.radio("Layer", list(labels), format_func=labels.get, horizontal=True, key=key)
    else:  # EfficientNet has about 50 conv layers: a list to pick from, not a wall of radio buttons
        chosen = st.selectbox(f"Layer ({len(labels)} conv layers, input side first)", list(labels),
                              format_func=labels.get, key=key)
    name, tensor = maps[chosen]
    grid = graph.feature_map_grid(tensor, columns=8, max_maps=32)
    picture = gallery.repeat_pixels(grid, max(1, scaled(MAP_GRID_PX) // max(grid.shape)))
    shown = min(32, tensor.shape[0])
    st.image(picture, caption=f"{name}: {shown} of {tensor.shape[0]} maps, each scaled to its own range "
                              "(black = its lowest value, white = its highest)")


def _block_name(name: str) -> str:
    """A conv layer's name as a block and its part: "stages.3._expand_conv" -> "stages.3 · expand conv"."""
    block, _, part = name.rpartition(".")
    if not block or part.isdigit():
        return name
    return f"{block} · {part.strip('_').replace('_', ' ')}"


def show_uncertainty(loaded: LoadedCheckpoint, model_input: explain.ModelInput) -> explain.McDropoutResult | None:
    layers = explain.dropout_layers(loaded.model)
    if not layers:
        title = next((spec.title for spec in list_models() if spec.name == loaded.card.model), loaded.card.model)
        st.info(f"This model ({title}) has no dropout layers, so Monte Carlo dropout does not apply: with dropout "
                "off, every pass gives exactly the same answer. Models with dropout, such as the Small ResNet (the "
                "default for small MedMNIST sets), show error bars here.", icon=":material/info:")
        return None
    passes = st.slider("Dropout passes (T)", 10, 200, 50, step=10, key="predict_mc_passes",
                       help="How many times the image goes through the network, each time with other neurons "
                            "switched off at random (T in Gal & Ghahramani, 2016). More passes give steadier "
                            "means and standard deviations, and take longer.")
    try:
        result = _remembered(("mc", str(loaded.path), _fingerprint(model_input), passes),
                             lambda: explain.mc_dropout(loaded.model, model_input.tensor, passes=passes))
    except CnnError as exc:
        show_error(exc)
        return None
    names = list(loaded.card.class_names)
    st.markdown(f"Dropout ({', '.join(result.dropout_layers)}) stays **on** while BatchNorm uses its running "
                f"statistics; the image goes through the network {result.passes} times with different random "
                "neurons switched off. The bars are the mean probability, the whiskers ± one standard deviation "
                "(sd), cut at 0 % and 100 %. The mean can differ from the prediction above, which is one pass with "
                "dropout off.")
    st.plotly_chart(probability_chart(names, result.mean, result.std,
                                       title=f"Mean and standard deviation (sd) over {result.passes} dropout passes"),
                    key="predict_mc_chart")
    st.caption(f"{result.agreement:.0%} of the passes agree on the top class "
               f"{names[int(np.argmax(result.mean))]}. Wide whiskers mean the answer hangs on a few neurons.")
    return result
