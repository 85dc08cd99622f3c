"""Pictures of numbers: small HTML grids that print every value (feature maps as pictures: `value_maps`).

View code only: the values and their colour range come from `cnn_core.conv`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable

import numpy as np
import streamlit as st

from .widgets import classroom_scale


_GRID_CSS = """
<style>
.cnn-grid-wrap { overflow-x: auto; padding: 2px 0 6px 0; container-type: inline-size; }
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
    first_index: tuple[int, int] = (0, 0),
    test_id: str = "",
) -> str:
    """A small table of numbers coloured by value, for grids up to a few dozen cells a side.

    `padding_mask` cells are hatched; `hits` get an orange outline (the kernel's window), `current` a blue
    one (the output cell), `winner` a yellow ring (max pooling). Cells not in `dim_outside` are faded.
    Row and column numbers start at `first_index` (a crop of a larger image keeps the image's numbers).
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
    zoom = classroom_scale()  # larger numbers on a projector (still no wider than the column)
    cell, font = round(cell * zoom), round(font * zoom, 2)
    # Cells shrink (font with them) when the column is narrower than the table wants: every column stays in
    # view, on a phone too. 100cqw is the wrapper's width; the row numbers take about 24 px.
    numbers_px = (30 if max(first_index) + max(rows, cols) > 100 else 24) if show_indices else 2
    fitted = f"calc((100cqw - {numbers_px}px) / {cols})"
    size_css = f"min({cell}px, {fitted})"
    font_css = f"min({font}rem, calc({fitted} * {font * 16 / cell:.3f}))"
    parts = [f'<div class="cnn-grid-wrap" data-testid="{html.escape(test_id)}">']
    if title:
        parts.append(f'<div class="cnn-grid-title">{html.escape(title)}</div>')
    parts.append('<table class="cnn-grid">')
    if show_indices:  # column numbers no wider than their cells (a wide "249" made the table overflow)
        head_css = (f"padding:0;width:{size_css};max-width:{size_css};overflow:hidden;"
                    f"font-size:min(0.65rem, calc({fitted} * 0.4))")
        parts.append("<tr><th></th>" + "".join(f'<th style="{head_css}">{first_index[1] + c}</th>'
                                               for c in range(cols)) + "</tr>")
    for r in range(rows):
        parts.append("<tr>")
        if show_indices:
            parts.append(f"<th>{first_index[0] + r}</th>")
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
                f'<td class="{" ".join(classes)}" style="width:{size_css};height:{size_css};min-width:{size_css};'
                f'font-size:{font_css};background:{background};color:{colour}">{html.escape(fmt(value))}</td>'
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
