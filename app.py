"""CNN Explorer's entry point: `streamlit run app.py`.

This file is the frame around every page (page config, sidebar, navigation) and holds the home page.
"""

from __future__ import annotations

import streamlit as st

from cnn_core import settings
from cnn_core.device import describe_device
from cnn_core.errors import CnnError
from cnn_explorer_ui import PageSpec, available_pages, browser_id, remember_browser

st.set_page_config(page_title="CNN Explorer", page_icon=":material/neurology:", layout="wide",
                   menu_items={"About": "CNN Explorer: learn and do image classification with CNNs in PyTorch."})


@st.cache_data(ttl=60, show_spinner=False)
def _device_label() -> str:
    try:
        return describe_device()
    except CnnError as exc:  # e.g. CNN_DEVICE names a GPU that is not there
        return f"unavailable: {exc}"


@st.cache_data(ttl=30, show_spinner="Looking for data sets…")
def _dataset_rows(owner: str) -> list[dict[str, object]] | str:
    """One row per registry data set (the shared ones and `owner`'s uploads): found or not, where, and how
    to get it; a message when unavailable."""
    from cnn_core import data

    rows = []
    for info in data.list_datasets(owner=owner):
        try:
            status = data.dataset_status(info.name)
        except CnnError as exc:
            rows.append({"data set": info.title, "key": info.name, "found": False, "where": "",
                         "how to get it": str(exc)})
            continue
        rows.append({"data set": info.title, "key": info.name, "found": bool(status.available),
                     "where": str(status.location or ""), "how to get it": str(status.how_to_get or "")})
    return rows


@st.cache_data(ttl=30, show_spinner=False)
def _checkpoint_rows() -> list[dict[str, str]] | str:
    """One row per shipped or trained checkpoint card; a message when the module is not there."""
    from cnn_core import checkpoints

    rows = []
    for card in checkpoints.list_checkpoints():
        test = _test_metrics(card.get("metrics"))
        accuracy = test.pop("accuracy", None)
        rows.append({"name": str(card.get("name", "?")), "model": str(card.get("model", "?")),
                     "data set": str(card.get("dataset", "?")),
                     "test accuracy": accuracy,
                     "other test metrics": ", ".join(f"{name} {value:.3f}" for name, value in test.items()) or "—",
                     "kind": "shipped" if card.get("shipped") else "trained here",
                     "file": str(card.get("path", ""))})
    return rows


_SHOWN_METRICS = ("accuracy", "auroc", "kappa", "f1", "sensitivity", "specificity")


def _test_metrics(metrics: object) -> dict[str, float]:
    """The headline test metrics of a card ({"test": {...}} or flat), in a fixed order."""
    if not isinstance(metrics, dict):
        return {}
    test = metrics.get("test", metrics)
    if not isinstance(test, dict):
        return {}
    return {name: float(test[name]) for name in _SHOWN_METRICS
            if isinstance(test.get(name), (int, float)) and not isinstance(test.get(name), bool)}


def home() -> None:
    st.title(":material/neurology: CNN Explorer")
    st.markdown(
        "Learn how **convolutional neural networks** classify images, then do it yourself with PyTorch: "
        "slide a kernel over a photo, browse handwritten digits and medical scans, train a network and "
        "watch it learn, look inside it, and ask it what it sees."
    )
    st.subheader(":material/explore: Pages")
    specs = [spec for spec in available_pages() if spec.url_path in PAGES]
    columns = st.columns(3)
    for index, spec in enumerate(specs):
        with columns[index % 3].container(border=True):
            st.markdown(f"#### {spec.icon} {spec.title}")
            if spec.summary:
                st.caption(spec.summary)
            st.page_link(PAGES[spec.url_path], label=f"Open {spec.title}", icon=":material/arrow_forward:")

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader(":material/database: Data sets")
        rows = _dataset_rows(browser_id())
        if isinstance(rows, str):
            st.info(rows)
        else:
            found = [row for row in rows if row["found"]]
            missing = [row for row in rows if not row["found"]]
            st.caption(f"{len(found)} of {len(rows)} found; the list below says how to get the others.")
            if found:
                st.dataframe([{k: row[k] for k in ("data set", "key", "where")} for row in found],
                             hide_index=True, width="stretch")
            else:
                st.warning("No data set was found. Open the list below to see how to get one.")
            with st.expander(f"{len(missing)} more data sets in the registry, not found here"):
                st.dataframe([{k: row[k] for k in ("data set", "key", "how to get it")} for row in missing],
                             hide_index=True, width="stretch",
                             column_config={"how to get it": st.column_config.TextColumn(width="large")})
    with right:
        st.subheader(":material/memory: Device")
        st.markdown(f"Training and prediction run on **{_device_label()}**.")
        st.caption("Set `CNN_DEVICE` (cpu, cuda, mps) to choose another one.")
        st.subheader(":material/folder_open: Folders")
        st.markdown(f"- Data is read from `{settings.data_dir()}` (`CNN_DATA_DIR`)\n"
                    f"- Caches and downloads go to `{settings.cache_dir()}` (`CNN_CACHE_DIR`)\n"
                    f"- Shipped models live in `{settings.models_dir()}`")
    st.subheader(":material/inventory_2: Trained models")
    checkpoint_rows = _checkpoint_rows()
    if isinstance(checkpoint_rows, str):
        st.info(checkpoint_rows)
    elif not checkpoint_rows:
        st.info("No checkpoints yet: train one in the Training Studio or with `python -m cnn_core train`.")
    else:
        st.caption("Shipped with the app in `models/`, or trained here (kept in the runs folder).")
        st.dataframe(checkpoint_rows, hide_index=True, width="stretch", column_config={
            "test accuracy": st.column_config.ProgressColumn("test accuracy", format="%.3f", min_value=0.0,
                                                             max_value=1.0),
            "file": st.column_config.TextColumn("file", width="medium"),
        })


def _page(spec: PageSpec) -> st.Page:
    return st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path)


PAGES: dict[str, st.Page] = {spec.url_path: _page(spec) for spec in available_pages()}
HOME = st.Page(home, title="Home", icon=":material/home:", default=True)

current = st.navigation([HOME, *PAGES.values()])
with st.sidebar:
    st.caption(f"Device: **{_device_label()}**")
    remember_browser()  # on every page, so this browser's runs and uploads follow it into new tabs
current.run()
