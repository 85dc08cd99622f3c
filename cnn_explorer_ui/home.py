"""The home page: what the app teaches, its pages, the data sets found, the device and the checkpoints."""

from __future__ import annotations

import streamlit as st

from cnn_core import data, runs, settings
from cnn_core.errors import CnnError

from .cards import checkpoint_entries, entry_rows
from .data_sets import dataset_statuses
from .navigation import available_pages
from .session import browser_id, new_browser_identity
from .widgets import device_label, show_error, show_server_paths, without_server_paths

#: Session key of the message shown after "Forget this browser" (the page reruns under the new id).
FORGOTTEN_KEY = "home_forgotten"


def show_pages() -> None:
    st.subheader(":material/explore: Pages")
    specs = available_pages()
    for start in range(0, len(specs), 3):  # a row of columns at a time: on a phone they stack in sidebar order
        columns = st.columns(3)
        for column, spec in zip(columns, specs[start : start + 3]):
            _page_card(column, spec)


def _page_card(column, spec) -> None:
    with column.container(border=True):
        st.markdown(f"#### {spec.icon} {spec.title}")
        if spec.summary:
            st.caption(spec.summary)
        st.page_link(spec.page(), label=f"Open {spec.title}", icon=":material/arrow_forward:")


def show_datasets() -> None:
    st.subheader(":material/database: Data sets")
    statuses = list(dataset_statuses(browser_id()).values())
    data_dir = settings.data_dir()
    owner = browser_id()
    found = [{"data set": a.info.title, "key": data.shown_name(a.info.name),
              "where": "your upload" if data.folder_owner(a.info.name) == owner  # not a long cache path
              else _short_path(a.status.location, data_dir)} for a in statuses if a.available]
    missing = [{"data set": a.info.title, "key": a.info.name,
                "how to get it": without_server_paths(a.status.how_to_get if a.status else a.problem)}
               for a in statuses if not a.available]
    st.caption(f"{len(found)} of {len(statuses)} found; the list below says how to get the others.")
    if found:
        st.dataframe(found, hide_index=True, width="stretch", column_config={
            "data set": st.column_config.TextColumn(width="medium"), "key": st.column_config.TextColumn(width="small"),
            "where": st.column_config.TextColumn(width="medium", help="Paths under CNN_DATA_DIR"
                                                 + (f" ({data_dir})" if show_server_paths() else ""))})
    else:
        st.warning("No data set was found. Open the list below to see how to get one.")
    with st.expander(f"{len(missing)} more data sets in the registry, not found here"):
        st.dataframe(missing, hide_index=True, width="stretch",
                     column_config={"how to get it": st.column_config.TextColumn(width="large")})


def show_checkpoints() -> None:
    st.subheader(":material/inventory_2: Trained models")
    rows = entry_rows(checkpoint_entries())
    if not rows:
        st.info("No checkpoints yet: train one in the Training Studio or with `python -m cnn_core train`.")
        return
    st.caption("Shipped with the app in `models/`, and the ones you trained in this browser (nobody else sees them).")
    # The columns a student reads first come first; the rest scroll sideways within the page's width.
    st.dataframe(rows, hide_index=True, width="stretch", column_order=("name", "test accuracy", "data set", "model",
                                                                       "kind", "other test metrics", "file"),
                 column_config={
        "name": st.column_config.TextColumn("name", width="medium", pinned=True),
        "test accuracy": st.column_config.ProgressColumn("test accuracy", format="%.1f %%", min_value=0.0,
                                                         max_value=100.0, width=130),  # the whole header
        "file": st.column_config.TextColumn("file", width="medium"),
    })


def show_forget() -> None:
    """For a shared lab computer, whose cookie the next student would inherit: delete what this browser made
    here (`runs.forget_owner`) and give it a new id."""
    st.subheader(":material/logout: Leaving a shared computer?")
    done = st.session_state.pop(FORGOTTEN_KEY, None)
    if done:
        st.success(done, icon=":material/check_circle:")
    st.caption("Whoever uses this browser next would see your uploads, runs and checkpoints.")
    with st.expander("Forget this browser", icon=":material/delete_forever:"):
        st.markdown("Deletes **your uploaded data sets, your training runs and their checkpoints** on this server, "
                    "and gives this browser a new identity: the next person starts with nothing of yours. The "
                    "shipped models stay. Download a checkpoint first if you want to keep it.")
        sure = st.checkbox("Yes, delete them", key="home_forget_sure")
        if not st.button("Forget this browser now", type="primary", disabled=not sure, key="home_forget"):
            return
        try:
            forgotten = runs.forget_owner(browser_id())
        except CnnError as exc:
            show_error(exc)
            return
    new_browser_identity()
    st.session_state[FORGOTTEN_KEY] = (
        f"Forgotten: {len(forgotten.uploads)} upload(s), {forgotten.runs} run(s) and {forgotten.checkpoints} "
        "checkpoint(s). This browser is new here; its other open tabs follow when they are reloaded.")
    st.rerun()


def _short_path(location, data_dir) -> str:
    """A data set's place, relative to CNN_DATA_DIR when it is inside it (short enough for a phone); a place
    elsewhere on the server only for a browser that may see its paths (`show_server_paths`)."""
    if not location:
        return ""
    try:
        return str(location.relative_to(data_dir))
    except ValueError:
        return str(location) if show_server_paths() else "on the server"


def home() -> None:
    st.title(":material/neurology: CNN Explorer")
    st.markdown(
        "Learn how **convolutional neural networks** classify images, then do it yourself with PyTorch: "
        "slide a kernel over a photo, browse handwritten digits and medical scans, train a network and "
        "watch it learn, look inside it, and ask it what it sees."
    )
    show_pages()
    left, right = st.columns([3, 2], gap="large")
    with left:
        show_datasets()
    with right:
        st.subheader(":material/memory: Device")
        st.markdown(f"Training and prediction run on **{device_label()}**.")
        st.caption("Set `CNN_DEVICE` (cpu, cuda, mps) to choose another one.")
        st.subheader(":material/folder_open: Folders")
        if show_server_paths():
            st.markdown(f"- Data is read from `{settings.data_dir()}` (`CNN_DATA_DIR`)\n"
                        f"- Caches and downloads go to `{settings.cache_dir()}` (`CNN_CACHE_DIR`)\n"
                        f"- Shipped models live in `{settings.models_dir()}`")
        else:
            st.caption("This app runs on a shared server: its folders are not shown here. Your uploads, runs and "
                       "checkpoints are kept for this browser only.")
    show_checkpoints()
    show_forget()
