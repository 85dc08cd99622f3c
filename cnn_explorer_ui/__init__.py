"""View code the app's pages share (Streamlit and plotly); every number shown comes from `cnn_core`.

Lives beside app.py, not in pages/, so it is never mistaken for a page. `frame.py` is the script Streamlit
runs (navigation and sidebar); the modules hold what several pages use:

| module | what |
|---|---|
| `navigation` | the page list (`PageSpec`, `available_pages`) |
| `home` | the home page |
| `session` | `browser_id()`: the cookie that owns a browser's runs and uploads |
| `data_sets` | the one cached look at which data sets are here (`dataset_statuses`, `present_datasets`), test splits |
| `cards` | checkpoints: the list, picker labels, the home table, what a model takes |
| `widgets` | error boxes, the zip uploader, the device label, the classroom-display setting |
| `pickers` | data-set, model (and model-argument) and checkpoint pickers |
| `grids` | HTML number grids |
| `value_maps`, `thumbnails`, `live` | elements the browser draws (inline-JS components): readable feature maps, rows of clickable thumbnails, a run's live progress |
| `conv_views`, `gallery_views`, `graph_views`, `predict_views` | the larger parts of one page each |
| `studio_setup`, `studio_views`, `studio_charts` | the Training Studio's set-up, run panel and figures |
"""

from .cards import checkpoint_entries, entry_label
from .data_sets import browser_datasets, dataset_statuses, is_present, present_datasets, test_split
from .grids import grid_html, legend_html, render_html
from .navigation import PLANNED_PAGES, PageSpec, available_pages
from .session import browser_id, remember_browser
from .widgets import classroom_scale, classroom_toggle, device_label, import_zip_upload, scaled, show_error

__all__ = [
    "PLANNED_PAGES", "PageSpec", "available_pages", "browser_datasets", "browser_id", "classroom_scale",
    "classroom_toggle", "entry_label", "scaled",
    "checkpoint_entries", "dataset_statuses", "device_label", "grid_html", "import_zip_upload",
    "is_present", "legend_html", "present_datasets", "remember_browser", "render_html", "show_error", "test_split",
]
