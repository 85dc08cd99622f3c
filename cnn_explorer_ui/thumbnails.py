"""Rows of small pictures, one row per class, drawn by the browser as one element; each picture can be a button.

Why: the Dataset Gallery showed its 80 samples as 80 `st.image` elements, each in its own column with a
magnifier `st.button` under it. Chromium spent about 3.1 CPU-seconds drawing that page (1.0 for an empty page;
`benchmarks/bench_pages.py`, idle 2-core machine), and in a classroom on one such machine (five browsers, two
training) a reshuffle took 3.9 s at p95. Here the pictures are small data URIs laid out by a few lines of CSS,
and a click on the picture itself (or Enter on it) says which one was picked.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st
import torch
from PIL import Image

from cnn_core import gallery
from cnn_core.errors import DataError

SHARP_UP_TO_PX = 64  # images up to this side are sent as they are (PNG) and enlarged by the browser, pixels visible
SHRUNK_PX = 112  # larger ones are shrunk to this side (Lanczos) and sent as JPEG: a thumbnail, not the data

_JS = """
export default function(component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector('.cnn-thumbs');
  if (!root) {
    root = document.createElement('div');
    root.className = 'cnn-thumbs';
    parentElement.appendChild(root);
  }
  root.setAttribute('data-testid', data.testid);
  root.style.setProperty('--thumb', data.px + 'px');
  root.classList.toggle('pixelated', data.pixelated);
  const rows = data.rows.map((row, r) => {
    const line = document.createElement('div');
    line.className = 'row';
    if (row.title) {
      const title = document.createElement('div');
      title.className = 'title';
      title.textContent = row.title;
      line.appendChild(title);
    }
    if (row.note) {
      const note = document.createElement('div');
      note.className = 'note';
      note.textContent = row.note;
      line.appendChild(note);
    }
    row.images.forEach((src, c) => {
      const figure = document.createElement('figure');
      const img = document.createElement('img');
      img.src = src;
      img.alt = row.alts[c];
      figure.appendChild(img);
      if (row.captions) {
        const caption = document.createElement('figcaption');
        caption.textContent = row.captions[c];
        figure.appendChild(caption);
      }
      if (data.clickable) {
        img.setAttribute('role', 'button');
        img.tabIndex = 0;
        img.title = data.hint;
        // the picture's own id, not its place: a click on a picture the next rerun has replaced still names it
        const pick = () => setTriggerValue('picked', row.ids[c]);
        img.addEventListener('click', pick);
        img.addEventListener('keydown', (event) => {
          if ((event.key === 'Enter' || event.key === ' ') && !event.repeat) { event.preventDefault(); pick(); }
        });
      }
      line.appendChild(figure);
    });
    return line;
  });
  root.replaceChildren(...rows);
}
"""

_CSS = """
.cnn-thumbs { display: flex; flex-direction: column; gap: 0.35rem; }
.cnn-thumbs .row { display: flex; flex-wrap: wrap; align-items: center; gap: 0.35rem; }
.cnn-thumbs .row:has(figcaption) { align-items: flex-start; }
.cnn-thumbs .title { flex: 0 0 11rem; font-weight: 600; font-size: 0.9rem; overflow-wrap: anywhere; }
.cnn-thumbs .note { font-size: 0.85rem; color: #6b7280; }
.cnn-thumbs figure { margin: 0; width: var(--thumb); text-align: center; }
.cnn-thumbs img { width: var(--thumb); height: var(--thumb); object-fit: contain; display: block;
  border-radius: 3px; background: #fff; }
.cnn-thumbs.pixelated img { image-rendering: pixelated; }
.cnn-thumbs img[role="button"] { cursor: zoom-in; }
.cnn-thumbs img[role="button"]:hover, .cnn-thumbs img[role="button"]:focus-visible {
  outline: 3px solid var(--st-primary-color, #3b6ea5); outline-offset: 1px; }
.cnn-thumbs figcaption { font-size: 0.8rem; color: #4b5563; margin-top: 0.15rem; overflow-wrap: anywhere; }
"""

_component = st.components.v2.component("cnn_thumbnail_rows", js=_JS, css=_CSS)


@dataclass(frozen=True)
class ThumbnailRow:
    """One row: a title (or "" for none), its pictures as uint8 [C, H, W] tensors, and what to say about each
    (alt text; `captions` are also shown under the pictures). `ids` name the pictures to the caller when one is
    clicked. `note` stands in for an empty row."""

    title: str
    images: Sequence[torch.Tensor]
    alts: Sequence[str]
    captions: Sequence[str] | None = None
    ids: Sequence[str] | None = None
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("alts", "captions", "ids"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.images):
                raise ValueError(f"{len(self.images)} pictures but {len(values)} {name}.")


def data_uri(image: torch.Tensor) -> str:
    """A uint8 [C, H, W] image (C = 1 or 3) as a `data:` URI: PNG pixel for pixel up to `SHARP_UP_TO_PX` a
    side, else shrunk to `SHRUNK_PX` square (Lanczos) and JPEG-encoded at quality 90. Raises DataError for
    other shapes."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise DataError(f"A thumbnail needs one image shaped [C, H, W] with 1 or 3 channels, got {tuple(image.shape)}.")
    if max(image.shape[-2:]) <= SHARP_UP_TO_PX:
        return "data:image/png;base64," + base64.b64encode(gallery.png_bytes(gallery.to_display(image))).decode("ascii")
    buffer = io.BytesIO()
    Image.fromarray(gallery.square_picture(image, SHRUNK_PX)).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_rows(rows: Sequence[ThumbnailRow], *, key: str, side_px: int, image_size: int,
                   clickable: bool = False, hint: str = "Enlarge") -> str | None:
    """Draw `rows` as one element, every picture `side_px` CSS pixels square; images of `image_size` pixels
    or less keep visible pixels. Returns the id (`ThumbnailRow.ids`) of the picture clicked in this run when
    `clickable`, else None. The element has `data-testid` equal to `key`. Raises DataError for a picture that
    is not a [C, H, W] image with 1 or 3 channels; ValueError for clickable rows without ids."""
    if clickable and any(row.ids is None for row in rows):
        raise ValueError("Clickable thumbnails need an id per picture.")
    payload = {
        "testid": key, "px": side_px, "pixelated": image_size <= SHARP_UP_TO_PX, "clickable": clickable, "hint": hint,
        "rows": [{"title": row.title, "note": row.note, "images": [data_uri(image) for image in row.images],
                  "alts": list(row.alts), "captions": list(row.captions) if row.captions is not None else None,
                  "ids": list(row.ids) if row.ids is not None else None}
                 for row in rows],
    }  # fmt: skip
    result = _component(key=key, data=payload, on_picked_change=lambda: None)
    picked = getattr(result, "picked", None) if clickable else None
    return str(picked) if picked is not None else None
