"""A feature map as a picture you can read: colours made here, the value under the pointer shown by the browser.

Why not a plotly heatmap: the Convolution Lab's 512×512 sample photo made two heatmaps of 262,144 cells each,
and Chromium spent about 1 CPU-second more per visit drawing them than drawing the same maps as pictures
(2.4 against 1.4 CPU-s for the page, 1.0 for an empty one: `benchmarks/bench_pages.py`, idle 2-core machine).
On a machine that also runs a class's browsers that is the difference between a page that settles and one that
waits. Here the map is one PNG (a colour per value from plotly's own colour scales) and its values travel as
float32 beside it, so hovering or tapping still reads any value, row and column.
"""

from __future__ import annotations

import base64
import functools
import io

import numpy as np
import plotly.colors
import streamlit as st
from PIL import Image

from cnn_core.conv import format_number, heatmap_data

from .widgets import classroom_scale

_JS = """
export default function(component) {
  const { data, parentElement } = component;
  let root = parentElement.querySelector('.cnn-value-map');
  if (!root) {
    root = document.createElement('div');
    root.className = 'cnn-value-map';
    root.setAttribute('data-testid', 'valueMap');
    root.innerHTML = '<div class="title"></div><div class="frame"><img><div class="cell"></div></div>' +
      '<div class="readout"></div><div class="bar"></div><div class="ticks"></div>';
    parentElement.appendChild(root);
  }
  const img = root.querySelector('img'), cell = root.querySelector('.cell'), readout = root.querySelector('.readout');
  root.querySelector('.title').textContent = data.title;
  root.style.setProperty('--max-h', data.max_height + 'px');
  root.style.setProperty('--aspect', String(data.width / data.height));
  // crisp cells where the map is enlarged, smooth where it is shrunk
  const rendering = () => { img.style.imageRendering = img.getBoundingClientRect().width >= data.width ? 'pixelated' : 'auto'; };
  img.onload = rendering;
  img.src = data.png;
  img.alt = data.title;
  root.querySelector('.bar').style.background = data.gradient;
  const ticks = root.querySelector('.ticks');
  ticks.replaceChildren(...data.ticks.map((text) => { const s = document.createElement('span'); s.textContent = text; return s; }));
  const raw = atob(data.values), bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  const values = new Float32Array(bytes.buffer);
  // as cnn_core.conv.format_number: '3', '-0.25', '0.111', 'nan', 'inf'
  const format = (v) => {
    if (Number.isNaN(v)) return 'nan';
    if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
    if (Math.abs(v - Math.round(v)) < 1e-6) return String(Math.round(v) || 0);
    const text = v.toFixed(3).replace(/0+$/, '').replace(/[.]$/, '');
    return text === '-0' || text === '' ? '0' : text;
  };
  const idle = () => { readout.textContent = data.hint; cell.style.display = 'none'; };
  const show = (event) => {
    const box = img.getBoundingClientRect();
    const col = Math.floor((event.clientX - box.left) / box.width * data.width);
    const row = Math.floor((event.clientY - box.top) / box.height * data.height);
    if (row < 0 || col < 0 || row >= data.height || col >= data.width) return idle();
    readout.textContent = 'row ' + row + ', col ' + col + ': value ' + format(values[row * data.width + col]);
    Object.assign(cell.style, { display: 'block', left: (100 * col / data.width) + '%', top: (100 * row / data.height) + '%',
      width: (100 / data.width) + '%', height: (100 / data.height) + '%' });
  };
  img.onpointermove = show;
  img.onpointerdown = show;
  img.onpointerleave = (event) => { if (event.pointerType === 'mouse') idle(); };  // a tapped value stays
  idle();
}
"""

_CSS = """
.cnn-value-map .title { font-size: 0.9rem; font-weight: 600; margin-bottom: 0.3rem; }
.cnn-value-map .frame { position: relative; width: min(100%, max(2rem, calc(var(--max-h) * var(--aspect)))); }
.cnn-value-map img { display: block; width: 100%; height: auto; min-height: 2rem; max-height: var(--max-h);
  object-fit: fill; cursor: crosshair;
  outline: 1px solid #d1d5db; }  /* an outline: a border would shift the pointer maths; a tap reads a value */
.cnn-value-map .cell { position: absolute; display: none; pointer-events: none; box-sizing: border-box;
  outline: 2px solid #f97316; min-width: 3px; min-height: 3px; }
.cnn-value-map .readout { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem;
  color: #374151; margin: 0.3rem 0; min-height: 1.3em; }
.cnn-value-map .bar { height: 0.6rem; width: min(100%, 20rem); border: 1px solid #d1d5db; border-radius: 2px; }
.cnn-value-map .ticks { display: flex; justify-content: space-between; width: min(100%, 20rem); font-size: 0.75rem;
  color: #4b5563; }
"""

_component = st.components.v2.component("cnn_value_map", js=_JS, css=_CSS)

HINT = "Hover or tap the map to read a value."
LEVELS = 255  # colours per scale; palette index 255 is `NOT_FINITE_RGB`, for NaN and infinite values
NOT_FINITE_RGB = (255, 0, 255)  # magenta: in none of the three scales


@functools.cache
def colour_table(scale: str) -> np.ndarray:
    """Plotly's named colour scale `scale` sampled at `LEVELS` evenly spaced points: uint8 [LEVELS, 3] RGB."""
    samples = plotly.colors.sample_colorscale(plotly.colors.get_colorscale(scale), list(np.linspace(0, 1, LEVELS)))
    return np.array([plotly.colors.unlabel_rgb(colour) for colour in samples], dtype=np.float64).round().astype(np.uint8)


def value_map_payload(values: np.ndarray, title: str, *, gray: bool = False, robust: bool = True,
                      max_height: int = 380) -> dict:
    """What the browser draws for a 2-D map `values` [H, W] (any real dtype): a PNG data URI (one pixel per
    value), the values as base64 little-endian float32, a CSS gradient and tick labels for the colour bar.

    Colours as in `cnn_core.conv.heatmap_data`: signed maps red-white-blue around 0 (RdBu_r), others Viridis,
    `gray` for images; `robust` saturates large maps at the 99.5th percentile. Non-finite values are drawn in
    `NOT_FINITE_RGB`.
    Raises ValueError for a map that is not 2-D or is empty.
    """
    array = np.asarray(values)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"A value map needs a non-empty 2-D array, got shape {array.shape}.")
    data = heatmap_data(array, robust=robust)
    scale = "gray" if gray else ("RdBu_r" if data.diverging else "Viridis")
    table = colour_table(scale)
    z = data.z.astype(np.float64)
    finite = np.isfinite(z)
    position = np.clip((np.where(finite, z, data.zmin) - data.zmin) / (data.zmax - data.zmin), 0.0, 1.0)
    index = np.rint(position * (LEVELS - 1)).astype(np.uint8)
    index[~finite] = LEVELS
    picture = Image.fromarray(index, mode="P")  # a palette PNG: 1 byte a value, ~10x faster to encode than RGB
    picture.putpalette(np.concatenate([table, np.array([NOT_FINITE_RGB], np.uint8)]).tobytes())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    stops = ", ".join(f"rgb({r}, {g}, {b})" for r, g, b in table[np.linspace(0, LEVELS - 1, 11).astype(int)])
    ticks = [format_number(data.zmin)] + (["0"] if data.diverging else []) + [format_number(data.zmax)]
    if data.clipped:
        title += " (colours saturate at the 99.5th percentile)"
    return {
        "title": title, "width": int(array.shape[1]), "height": int(array.shape[0]), "max_height": max_height,
        "png": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
        "values": base64.b64encode(data.z.astype("<f4").tobytes()).decode("ascii"),
        "gradient": f"linear-gradient(to right, {stops})", "ticks": ticks, "hint": HINT,
    }  # fmt: skip


def value_map(values: np.ndarray, title: str, *, key: str, gray: bool = False, robust: bool = True,
              height: int = 380) -> None:
    """Draw `values` [H, W] as a readable map at most `height` CSS pixels tall (taller on a projector, see
    `classroom_scale`). Raises ValueError as `value_map_payload`."""
    payload = value_map_payload(values, title, gray=gray, robust=robust, max_height=round(height * classroom_scale()))
    _component(key=key, data=payload)
