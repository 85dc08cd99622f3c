"""Who is asking: one id per browser (a cookie shared by its tabs), owner of its training runs and uploads."""

from __future__ import annotations

import logging
import re
import sqlite3
import uuid

import streamlit as st

from cnn_core import runs
from cnn_core.errors import CnnError

log = logging.getLogger(__name__)

BROWSER_COOKIE = "cnn_explorer_browser"


def browser_id() -> str:
    """This browser's id: a cookie shared by its tabs (set on the first visit), else a new one.

    It owns the browser's training runs and uploaded data sets, so on a shared classroom server a student
    sees their own uploads and runs, and nobody else's.
    """
    owner = st.session_state.get("browser_id")
    if owner is None:
        cookie = st.context.cookies.get(BROWSER_COOKIE)
        usable = isinstance(cookie, str) and re.fullmatch(r"[0-9a-f]{32}", cookie) and not _forgotten(cookie)
        owner = cookie if usable else uuid.uuid4().hex  # a forgotten id's cookie (its new one never arrived): new id
        st.session_state["browser_id"] = owner
    return owner


@st.cache_resource(show_spinner=False)
def _run_store(path: str) -> runs.RunStore:
    """One run store per server (per database file): the check runs on every page's rerun, and opening a store
    makes its folder and connects anew."""
    return runs.RunStore(path)


def _forgotten(owner: str) -> bool:
    """`runs.was_forgotten`, False when the run database cannot be read (a locked or read-only file): the page
    that needs the database says so; this check must not take every page down with it."""
    try:
        return runs.was_forgotten(owner, _run_store(str(runs.default_db_path())))
    except (CnnError, OSError, sqlite3.Error) as exc:
        log.warning("could not check whether this browser was forgotten: %s", exc)
        return False


def stop_if_forgotten() -> None:
    """In a tab left open while another tab forgot this browser (Home, "Forget this browser"): say so and draw
    nothing else, so nothing new is made under the forgotten id. A reload reads the browser's new cookie."""
    owner = st.session_state.get("browser_id")
    if owner is not None and _forgotten(owner):
        st.warning("This browser's uploads, runs and checkpoints were deleted from another tab (Home, \"Forget "
                   "this browser\"). Reload this page to go on as the browser's new identity.",
                   icon=":material/refresh:")
        st.stop()


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


def new_browser_identity() -> None:
    """Give this browser a new id (and, on this run, a new cookie): what it made before belongs to nobody here.
    Its other open tabs keep the old id until they are reloaded."""
    st.session_state["browser_id"] = uuid.uuid4().hex
    st.session_state["browser_cookie_sent"] = False
