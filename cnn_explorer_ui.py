"""Streamlit helpers shared by the app's pages: the page list, who the browser is, zip uploads, error display,
and small HTML number grids.

View code only: every number shown comes from `cnn_core`. Lives beside app.py (not in pages/) so it is
never mistaken for a page.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from cnn_core import data, zipfolder
from cnn_core.conv import heatmap_data
from cnn_core.errors import CnnError

ROOT = Path(__file__).resolve().parent
PAGES_DIR = ROOT / "pages"
BROWSER_COOKIE = "cnn_explorer_browser"  # one id per browser, shared by its tabs: its runs and its uploads


@dataclass(frozen=True)
class PageSpec:
    """One page of the app: its file under pages/, how the sidebar names it, and a line for the home card."""

    file: str
    title: str
    icon: str          # a Material Symbols name (":material/grid_on:"): renders without an emoji font
    url_path: str
    summary: str

    @property
    def path(self) -> Path:
        return ROOT / self.file


#: The app's pages in teaching order. A page appears once its file exists, so pages can land one by one.
PLANNED_PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/1_convolution_lab.py", "Convolution Lab", ":material/grid_on:", "convolution-lab",
             "Slide a kernel over an image step by step: stride, padding, dilation, pooling and the "
             "output-size formula with your numbers."),
    PageSpec("pages/2_dataset_gallery.py", "Dataset Gallery", ":material/photo_library:", "dataset-gallery",
             "Browse MNIST, MedMNIST and your own image folders: samples per class, counts and pixel values."),
    PageSpec("pages/3_training_studio.py", "Training Studio", ":material/model_training:", "training-studio",
             "Train a CNN and watch loss and accuracy move live; compare runs and keep the best checkpoint."),
    PageSpec("pages/4_model_graph.py", "Model Graph", ":material/account_tree:", "model-graph",
             "See a network's layers, shapes and parameter counts, its autograd graph and its feature maps."),
    PageSpec("pages/5_predict.py", "Predict", ":material/online_prediction:", "predict",
             "Draw a digit or upload a scan, get a prediction and see why the model decided (Grad-CAM)."),
)

_LEGACY_NAME = re.compile(r"^(?:\d+[_ ]*)?(?P<rest>.+)$")


def available_pages() -> list[PageSpec]:
    """The planned pages whose files exist, then any other `pages/*.py` (not starting with "_")."""
    specs = [spec for spec in PLANNED_PAGES if spec.path.is_file()]
    known = {spec.path.resolve() for spec in specs}
    for path in sorted(PAGES_DIR.glob("*.py")):
        if path.name.startswith("_") or path.resolve() in known or path.stem.startswith("test"):
            continue
        specs.append(_spec_from_file_name(path))
    return specs


def _spec_from_file_name(path: Path) -> PageSpec:
    """Streamlit's old `pages/` convention: "2_🖼️_Dataset_Gallery.py" → icon 🖼️, title "Dataset Gallery"."""
    rest = _LEGACY_NAME.match(path.stem).group("rest")  # type: ignore[union-attr]
    icon = ""
    first, _, remainder = rest.partition("_")
    if remainder and first and not any(ch.isalnum() for ch in first):
        icon, rest = first, remainder
    title = rest.replace("_", " ").strip() or path.stem
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or path.stem
    return PageSpec(f"pages/{path.name}", title, icon or ":material/description:", slug, "")


# ----------------------------------------------------------------------------------- who is asking
def browser_id() -> str:
    """This browser's id: a cookie shared by its tabs (set on the first visit), else a new one.

    It owns the browser's training runs and uploaded data sets, so on a shared classroom server a student
    sees their own uploads and runs, and nobody else's.
    """
    owner = st.session_state.get("browser_id")
    if owner is None:
        cookie = st.context.cookies.get(BROWSER_COOKIE)
        owner = cookie if isinstance(cookie, str) and re.fullmatch(r"[0-9a-f]{32}", cookie) else uuid.uuid4().hex
        st.session_state["browser_id"] = owner
    return owner


def remember_browser() -> None:
    """Store `browser_id()` in a cookie once, so this browser's other tabs and reloads share it.

    Streamlit only reads the cookies a session's first request carried, so the tab that sets it keeps its
    id in session state.
    """
    owner = browser_id()
    if st.context.cookies.get(BROWSER_COOKIE) != owner and not st.session_state.get("browser_cookie_sent"):
        st.session_state["browser_cookie_sent"] = True
        st.html(f"<script>document.cookie = '{BROWSER_COOKIE}={owner}; path=/; max-age=31536000; "
                "SameSite=Strict';</script>", unsafe_allow_javascript=True)


def browser_datasets() -> list[data.DatasetInfo]:
    """The registry as this browser sees it: every shared data set plus its own uploads."""
    return data.list_datasets(owner=browser_id())


def import_zip_upload(key: str, label: str) -> str | None:
    """A file uploader whose zip of class folders becomes a data set private to this browser.

    Each upload is imported once (Streamlit keeps the file across reruns) and its outcome shown on every
    rerun; returns the new data set's name on the rerun that imported it, so the page can select it.
    """
    uploaded = st.file_uploader(label, type=["zip"], key=key)
    if uploaded is None:
        return None
    done = st.session_state.setdefault(f"{key}_imports", {})
    imported = None
    if uploaded.file_id not in done:
        owner = browser_id()
        try:
            name = zipfolder.available_name(zipfolder.dataset_name_for(uploaded.name), owner)
            with st.spinner(f"Checking and unpacking {uploaded.name}…"):
                result = zipfolder.import_zip(uploaded.getvalue(), name, owner=owner)
            done[uploaded.file_id] = ("ok", name, result.summary())
            imported = name
        except CnnError as exc:
            done[uploaded.file_id] = ("error", None, str(exc))
    outcome, name, message = done[uploaded.file_id]
    if outcome == "ok":
        st.success(f"**{uploaded.name}** is now the data set `{name}`: {message}", icon=":material/check_circle:")
    else:
        show_error(f"{uploaded.name} was refused. {message}")
    return imported


def show_error(error: CnnError | str, *, icon: str = ":material/error:") -> None:
    """A `CnnError` (or a message) as a red box: what went wrong and what to do, never a traceback."""
    st.error(str(error), icon=icon)


def guarded(action: Callable[[], object], *, where: st.delta_generator.DeltaGenerator | None = None):
    """Run `action`; a `CnnError` becomes a message in `where` (the page by default) and None is returned."""
    try:
        return action()
    except CnnError as exc:
        (where or st).error(str(exc), icon=":material/error:")
        return None


# ----------------------------------------------------------------------------------- heatmaps
def heatmap_figure(values: np.ndarray, title: str, *, gray: bool = False, robust: bool = True,
                   height: int = 380) -> go.Figure:
    """A feature map as an interactive heatmap: square pixels, row 0 on top, values on hover.

    Signed maps get a red-white-blue scale centred on 0, others a single ramp (`gray` for images);
    `robust` lets large maps saturate at the 99.5th percentile (see `cnn_core.conv.heatmap_data`).
    """
    data = heatmap_data(values, robust=robust)
    if gray:
        colorscale, zmid = "gray", None
    else:
        colorscale, zmid = ("RdBu_r", 0.0) if data.diverging else ("Viridis", None)
    figure = go.Figure(go.Heatmap(z=data.z, zmin=data.zmin, zmax=data.zmax, zmid=zmid, colorscale=colorscale,
                                  hovertemplate="row %{y}, col %{x}<br>value %{z:.3f}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showgrid=False)
    figure.update_xaxes(constrain="domain", showgrid=False)
    if data.clipped:
        title += " <span style='font-size:11px;color:#6b7280'>(colours saturate at the 99.5th percentile)</span>"
    figure.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                         margin=dict(l=10, r=10, t=40, b=10))
    return figure


# ----------------------------------------------------------------------------------- number grids
_GRID_CSS = """
<style>
.cnn-grid-wrap { overflow-x: auto; padding: 2px 0 6px 0; }
.cnn-grid-title { font-size: 0.85rem; color: #4b5563; margin: 0 0 4px 0; }
table.cnn-grid { border-collapse: collapse; font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
                 margin: 0; }
table.cnn-grid td { text-align: center; vertical-align: middle; border: 1px solid #d1d5db; padding: 0;
                    box-sizing: border-box; }
table.cnn-grid th { font-weight: 400; color: #9ca3af; font-size: 0.65rem; padding: 0 3px; }
table.cnn-grid td.pad { background: repeating-linear-gradient(45deg, #f3f4f6, #f3f4f6 4px, #e5e7eb 4px,
                        #e5e7eb 8px) !important; color: #6b7280 !important; font-style: italic;
                        border: 1px dashed #9ca3af; }
table.cnn-grid td.hit { outline: 3px solid #f97316; outline-offset: -3px; font-weight: 700; }
table.cnn-grid td.now { outline: 3px solid #2563eb; outline-offset: -3px; font-weight: 700; }
table.cnn-grid td.win { box-shadow: inset 0 0 0 6px #facc15; }
table.cnn-grid td.dim { opacity: 0.35; }
.cnn-legend { font-size: 0.78rem; color: #4b5563; margin-top: 4px; }
.cnn-legend span.box { display: inline-block; width: 12px; height: 12px; vertical-align: -2px;
                       margin: 0 3px 0 8px; border: 1px solid #9ca3af; }
</style>
"""


def _cell_colours(value: float, vmin: float, vmax: float, diverging: bool) -> tuple[str, str]:
    """Background and text colour for a value: gray ramp for images, blue-white-red for signed numbers."""
    if not np.isfinite(value):
        return "#ffffff", "#111827"
    if diverging:
        bound = max(abs(vmin), abs(vmax)) or 1.0
        t = float(np.clip(value / bound, -1, 1))
        if t >= 0:
            rgb = (255, round(255 - 150 * t), round(255 - 170 * t))
        else:
            rgb = (round(255 + 170 * t), round(255 + 120 * t), 255)
        light = abs(t) < 0.65
    else:
        span = (vmax - vmin) or 1.0
        level = round(255 * float(np.clip((value - vmin) / span, 0, 1)))
        rgb = (level, level, level)
        light = level > 140
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", "#111827" if light else "#f9fafb"


def grid_html(
    values: np.ndarray,
    *,
    title: str = "",
    fmt: Callable[[float], str],
    value_range: tuple[float, float] | None = None,
    diverging: bool = False,
    padding_mask: np.ndarray | None = None,
    hits: Iterable[tuple[int, int]] = (),
    current: tuple[int, int] | None = None,
    winner: tuple[int, int] | None = None,
    dim_outside: Iterable[tuple[int, int]] | None = None,
    show_indices: bool = True,
    test_id: str = "",
) -> str:
    """A small table of numbers coloured by value, for grids up to a few dozen cells a side.

    `padding_mask` cells are hatched; `hits` get an orange outline (the kernel's window), `current` a blue
    one (the output cell), `winner` a yellow ring (max pooling). Cells not in `dim_outside` are faded.
    """
    array = np.asarray(values, dtype=np.float64)
    rows, cols = array.shape
    vmin, vmax = value_range if value_range else (float(np.nanmin(array)), float(np.nanmax(array)))
    hit_set = set(hits)
    keep = set(dim_outside) if dim_outside is not None else None
    side = max(rows, cols)
    font = 0.8 if side <= 8 else 0.7 if side <= 14 else 0.6 if side <= 22 else 0.52
    longest = max((len(fmt(v)) for v in array.ravel()), default=1)
    # wide enough for the longest number at this font size (about 0.62 em per monospace digit)
    cell = max(40 if side <= 8 else 30 if side <= 14 else 24 if side <= 22 else 20,
               round(longest * 0.62 * font * 16) + 6)
    parts = [f'<div class="cnn-grid-wrap" data-testid="{html.escape(test_id)}">']
    if title:
        parts.append(f'<div class="cnn-grid-title">{html.escape(title)}</div>')
    parts.append('<table class="cnn-grid">')
    if show_indices:
        parts.append("<tr><th></th>" + "".join(f"<th>{c}</th>" for c in range(cols)) + "</tr>")
    for r in range(rows):
        parts.append("<tr>")
        if show_indices:
            parts.append(f"<th>{r}</th>")
        for c in range(cols):
            value = array[r, c]
            background, colour = _cell_colours(value, vmin, vmax, diverging)
            classes = []
            if padding_mask is not None and padding_mask[r, c]:
                classes.append("pad")
            if (r, c) in hit_set:
                classes.append("hit")
            if current == (r, c):
                classes.append("now")
            if winner == (r, c):
                classes.append("win")
            if keep is not None and (r, c) not in keep:
                classes.append("dim")
            parts.append(
                f'<td class="{" ".join(classes)}" style="width:{cell}px;height:{cell}px;min-width:{cell}px;'
                f'font-size:{font}rem;background:{background};color:{colour}">{html.escape(fmt(value))}</td>'
            )
        parts.append("</tr>")
    parts.append("</table></div>")
    return "".join(parts)


def legend_html(items: Iterable[tuple[str, str]]) -> str:
    """A one-line legend: (css for the little box, label) pairs."""
    spans = "".join(f'<span class="box" style="{css}"></span>{html.escape(label)}' for css, label in items)
    return f'<div class="cnn-legend">{spans}</div>'


def render_html(*fragments: str) -> None:
    """Show grid HTML (with the shared stylesheet) in the current container."""
    st.html(_GRID_CSS + "".join(fragments))
