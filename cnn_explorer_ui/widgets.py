"""Small widgets every page uses: error boxes, the zip uploader, the device label."""

from __future__ import annotations

import os
import re
from pathlib import Path

import streamlit as st

import cnn_core
from cnn_core import runs, settings
from cnn_core import data
from cnn_core.data import FOLDER_SPLIT_SEED, uploads, zipfolder
from cnn_core.device import describe_device
from cnn_core.errors import CnnError

from .data_sets import forget_dataset_statuses
from .session import browser_id


APP_FOLDER = Path(cnn_core.__file__).resolve().parent.parent  # the checkout: its models/ and code
CLASSROOM_KEY = "classroom_display"
CLASSROOM_SCALE = 1.7  # canvas, pictures and figures grow by this on a projector
CLASSROOM_PARAM = "classroom"  # ?classroom=on in the address


def classroom_toggle() -> None:
    """The sidebar's "Classroom display" switch: larger canvas, pictures and figures for a projector, so a
    room can read them. Kept in `st.session_state` (every page of this tab sees it) and in the address as
    `?classroom=on`, so a reload, which starts a new session, keeps it, and a link can open a page with it."""
    if CLASSROOM_KEY not in st.session_state and st.query_params.get(CLASSROOM_PARAM) == "on":
        st.session_state[CLASSROOM_KEY] = True
    on = st.toggle(":material/co_present: Classroom display", key=CLASSROOM_KEY,
                   help="For a projector: a larger drawing canvas, larger Grad-CAM and feature-map pictures and "
                        "taller charts with bigger text. Switch off on a laptop or phone.")
    if on and st.query_params.get(CLASSROOM_PARAM) != "on":
        st.query_params[CLASSROOM_PARAM] = "on"
    elif not on and CLASSROOM_PARAM in st.query_params:
        del st.query_params[CLASSROOM_PARAM]


def classroom_scale() -> float:
    """How much larger pictures and figures are drawn: CLASSROOM_SCALE with the classroom display on, else 1."""
    return CLASSROOM_SCALE if st.session_state.get(CLASSROOM_KEY) else 1.0


def scaled(pixels: int) -> int:
    """A size in pixels for the current display (see `classroom_scale`)."""
    return round(pixels * classroom_scale())


def show_server_paths() -> bool:
    """Whether this browser may see the server's folders (data, cache, runs): only a browser on the server's own
    machine (Streamlit gives no address for localhost), so students of a shared server see none of its paths.
    `CNN_HIDE_SERVER_PATHS=1` hides them from every browser, e.g. behind a reverse proxy on the same machine."""
    if os.environ.get("CNN_HIDE_SERVER_PATHS", "0") not in ("", "0"):
        return False
    return st.context.ip_address is None


_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark
_AUTOLINK_START = re.compile(r"(?i)\b(www|https?|ftp|mailto)(?=\\[.:])")


def literal(text: object) -> str:
    """`text` shown as written inside Streamlit Markdown (captions, boxes, labels, metrics, st.table): for names
    people choose (class folders, file names, a shared link's data set, a checkpoint's card). Every ASCII
    punctuation mark is backslash-escaped (CommonMark), so no emphasis, link, heading, `$` maths, `:red[...]` or
    HTML; line breaks become spaces; a zero-width space after `www`, `http` and before `@` keeps GitHub's
    autolinks, which ignore escapes, from turning a name into a link."""
    escaped = _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))
    return _AUTOLINK_START.sub("\\1\u200b", escaped).replace("\\@", "\u200b\\@")


def without_server_paths(text: str) -> str:
    """`text` for this browser: the server's folders named by their settings ($CNN_DATA_DIR, $CNN_CACHE_DIR, the
    app's folder) where the browser may not see them (`show_server_paths`). The engine's messages name paths for
    the CLI, where they are the user's own."""
    if show_server_paths():
        return text
    folders = {settings.data_dir(): "$CNN_DATA_DIR", settings.cache_dir(): "$CNN_CACHE_DIR",
               APP_FOLDER: "the app's folder"}
    spellings = [(str(spelling), name) for folder, name in folders.items()
                 for spelling in {folder, folder.resolve()}]
    for spelling, name in sorted(spellings, key=lambda pair: -len(pair[0])):  # a folder inside another first
        text = text.replace(spelling, name)
    return text


def show_error(error: CnnError | str, *, icon: str = ":material/error:") -> None:
    """A `CnnError` (or a message) as a red box: what went wrong and what to do, never a traceback (nor the
    server's folders, for a student's browser: `without_server_paths`)."""
    st.error(without_server_paths(str(error)), icon=icon)


@st.cache_data(ttl=60, show_spinner=False)
def device_label() -> str:
    """The device training and prediction run on, for people ("CPU (2 threads)")."""
    try:
        return describe_device()
    except CnnError as exc:  # e.g. CNN_DEVICE names a GPU that is not there
        return f"unavailable: {exc}"


def import_zip_upload(key: str, label: str) -> str | None:
    """A file uploader whose zip of class folders becomes a data set private to this browser.

    Each upload is imported once (Streamlit keeps the file across reruns) and its outcome shown on every
    rerun; returns the new data set's name on the rerun that imported it, so the page can select it.
    """
    uploaded = st.file_uploader(label, type=["zip"], key=key, help=upload_limits_help())
    if uploaded is None:
        return None
    done = st.session_state.setdefault(f"{key}_imports", {})
    imported = None
    if uploaded.file_id not in done:
        imported = _import_upload(uploaded, done)
        if imported:
            st.session_state[LAST_UPLOAD_KEY] = imported  # the other pages start at it
    outcome, name, message, encoding = done[uploaded.file_id]
    if outcome == "ok" and data.folder_owner(name) is None:  # removed since (`own_upload_controls`)
        st.caption(f"{literal(uploaded.name)} was the data set `{data.shown_name(name)}`, which you removed. Remove the file here "
                   "(×) and choose it again to upload it again.")
    elif outcome == "ok":
        st.success(f"**{literal(uploaded.name)}** is now the data set `{data.shown_name(name)}`: {message}", icon=":material/check_circle:")
        failed = st.session_state.setdefault(f"{key}_encoding_failed", {})  # file id -> (code page, why)
        chosen = _name_encoding_picker(key, uploaded.file_id, encoding) if encoding else None
        refused_code_page = failed.get(uploaded.file_id, (None, None))[0]
        if chosen and chosen not in (encoding, refused_code_page):
            earlier = done[uploaded.file_id]
            imported = _import_upload(uploaded, done, chosen)
            if done[uploaded.file_id][0] == "error":  # the earlier reading stays the data set
                failed[uploaded.file_id], done[uploaded.file_id] = (chosen, done[uploaded.file_id][2]), earlier
            st.rerun()
        if chosen and chosen == refused_code_page:
            show_error(f"Read as {zipfolder.CODE_PAGE_LANGUAGES[chosen]}, the zip was refused: "
                       f"{literal(without_server_paths(failed[uploaded.file_id][1]))} The data set keeps the names "
                       f"read as {zipfolder.CODE_PAGE_LANGUAGES[encoding]}.")
    else:
        show_error(f"{literal(uploaded.name)} was refused. {literal(without_server_paths(message))}")
    return imported


def _import_upload(uploaded, done: dict, name_encoding: str | None = None) -> str | None:
    """Import one uploaded zip for this browser (again, with `name_encoding`: the same zip replaces its upload)
    and keep the outcome in `done`: ("ok", name, summary, code page the names were read in) or ("error", None,
    message, None). Returns the data set's name when it was imported."""
    owner = browser_id()
    try:
        digest = uploads.zip_digest(uploaded.getvalue())  # once: a 512 MB zip takes about a second
        name = uploads.available_name(zipfolder.dataset_name_for(uploaded.name), owner, digest)
        with st.spinner(f"Checking and unpacking {uploaded.name}…"):
            result = zipfolder.import_zip(uploaded.getvalue(), name, owner=owner, digest=digest,
                                          name_encoding=name_encoding)
        runs.record_upload(owner, result.info, FOLDER_SPLIT_SEED)  # offered again after a server restart
        done[uploaded.file_id] = ("ok", name, result.summary(), result.name_encoding)
        forget_dataset_statuses()
        return name
    except CnnError as exc:
        done[uploaded.file_id] = ("error", None, str(exc), None)
        return None


def _name_encoding_picker(key: str, file_id: str, encoding: str) -> str:
    """For a zip whose names were not UTF-8: the code page they were read in, to choose another when the
    class names came out garbled (a few short names can read as words in two code pages)."""
    languages = list(zipfolder.CODE_PAGE_LANGUAGES)
    return st.selectbox("File names read as", languages, index=languages.index(encoding),
                        format_func=zipfolder.CODE_PAGE_LANGUAGES.get, key=f"{key}_encoding_{file_id}",
                        help="The zip was made on a computer that wrote its file names in a language's code page, "
                             "not UTF-8, and did not say which; it was guessed from the names. If the class names "
                             "above look garbled, choose the language the zip was made in: it is read again.")


def upload_limits_help() -> str:
    """The two limits an upload meets, in words: the server's per-file limit (Streamlit's `server.maxUploadSize`,
    checked in the browser) and what each person's uploads may take in all (`CNN_UPLOAD_QUOTA_MB`)."""
    per_file = f"Each zip may be up to {st.get_option('server.maxUploadSize'):,} MB (this server's limit per file)"
    try:
        quota = uploads.ZipLimits().owner_quota_bytes
    except CnnError:  # a bad CNN_UPLOAD_QUOTA_MB: the sidebar names it
        return per_file + "."
    return f"{per_file}; together, your unpacked uploads may use up to {quota / 2**20:,.0f} MB on this server."


@st.cache_data(ttl=30, show_spinner=False)
def _upload_bytes(owner: str, _shown: str) -> int:
    """Cached: summing a large upload's file sizes takes a moment, and the Gallery reruns on every click."""
    return uploads.owner_upload_bytes(owner)


LAST_UPLOAD_KEY = "last_upload"  # the data set this browser tab uploaded last: where the Training Studio starts
REMOVED_KEY = "upload_removed"  # the name of the upload just removed, for the page's next run to say so


def own_upload_controls(name: str) -> None:
    """For this browser's own upload `name`: how much of the upload allowance this browser's uploads take, and
    a button (confirmed in a popover) that deletes the upload from the server."""
    owner = browser_id()
    if data.folder_owner(name) != owner:
        return
    try:
        used, quota = _upload_bytes(owner, name), uploads.ZipLimits().owner_quota_bytes
    except CnnError as exc:  # a bad CNN_UPLOAD_QUOTA_MB: the server's administrator reads it here
        show_error(exc)
        return
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.caption(f":material/folder_shared: Your upload, seen only in this browser. Your uploads take "
                 f"{used / 2**20:,.0f} MB of the {quota / 2**20:,.0f} MB each person may use on this server.")
    with right.popover("Remove this upload", icon=":material/delete:", width="stretch"):
        st.markdown(f"Delete **{literal(data.shown_name(name))}**'s images from the server? Checkpoints trained on it stay.")
        if st.button("Remove", type="primary", key=f"remove_upload_{name}", icon=":material/delete:"):
            try:
                uploads.remove_upload(name, owner)
            except CnnError as exc:
                show_error(exc)
                return
            forget_dataset_statuses()
            _upload_bytes.clear()
            st.session_state[REMOVED_KEY] = name
            st.rerun()


@st.cache_data(ttl=60, show_spinner=False)
def _data_notes(name: str) -> list[str]:
    """Cached: each call lists the folder again, and the studio and gallery rerun on every widget change."""
    try:
        return data.data_notes(name)
    except CnnError as exc:
        return [str(exc)]


def show_folder_notes(info: data.DatasetInfo) -> None:
    """An image folder's layout, and what its files will cost the run (unreadable files, too-small classes)."""
    st.caption(f":material/folder_open: Layout: {info.layout}.")
    with st.spinner(f"Checking which images of {info.title} can be read…"):
        notes = _data_notes(info.name)
    for note in notes:
        st.warning(note[0].upper() + note[1:] + ".", icon=":material/warning:")


KEPT_PREFIX = "kept_"  # session-state copies of widget values (`kept`, `keep`): not widgets, so never dropped


_NO_DEFAULT = object()


def kept(key: str, default: object = _NO_DEFAULT) -> str:
    """`key`, for a widget whose setting outlives a visit to another page: Streamlit deletes a widget's state in
    a run that does not draw it, so its value is seeded from the copy `keep` made (else `default`). Give the
    widget no default of its own (a default beside a seeded value makes Streamlit warn), and call `keep` after.
    Without `default`, nothing is seeded until a value was kept."""
    st.session_state.setdefault(KEPT_PREFIX, set()).add(key)
    if key not in st.session_state:
        if KEPT_PREFIX + key in st.session_state:
            st.session_state[key] = st.session_state[KEPT_PREFIX + key]
        elif default is not _NO_DEFAULT:
            st.session_state[key] = default
    return key


def keep() -> None:
    """Copy the values of the widgets `kept` named where it finds them after a visit to another page."""
    for key in st.session_state.get(KEPT_PREFIX, ()):
        if key in st.session_state:
            st.session_state[KEPT_PREFIX + key] = st.session_state[key]
