"""The frame around every page: page config, navigation, sidebar. The Streamlit script `app.py` serves.

It lives here, not beside `pages/`: Streamlit reads a `pages/` folder next to its main script in the legacy
multipage mode until some session has called `st.navigation`, so on a freshly started server the first visit
to a page's address (/dataset-gallery) would say "Page not found". With this script as the main one there is
no such folder beside it, and `st.navigation` alone decides what every address shows.
"""

import gc

import streamlit as st

from cnn_core import runs
from cnn_explorer_ui.home import home
from cnn_explorer_ui.navigation import available_pages
from cnn_explorer_ui.session import remember_browser, stop_if_forgotten
from cnn_explorer_ui.warmup import start_warm_imports
from cnn_explorer_ui.widgets import classroom_toggle, device_label


@st.cache_resource(show_spinner=False)
def restore_uploads() -> list[str]:
    """Once per server: every student's recorded uploads are theirs again, names reserved."""
    return runs.restore_uploads(None)


@st.cache_resource(show_spinner=False)
def setting_problems() -> list[str]:
    """Once per server: its environment settings that are wrong (a bad CNN_UPLOADS_TOTAL_MB said on every page,
    not to the first student who uploads)."""
    return runs.server_setting_problems()


@st.cache_resource(show_spinner=False)
def freeze_imported_objects() -> bool:
    """Once per server, after the first script run imported PyTorch and friends: move those half a million
    objects out of the garbage collector's reach (`gc.freeze`), so its full collections stay milliseconds
    instead of 0.3-0.7 s of CPU (with the interpreter lock held) each. `.streamlit/config.toml` also turns off
    Streamlit's forced collection after every script run."""
    gc.collect()
    gc.freeze()
    return True


st.set_page_config(page_title="CNN Explorer", page_icon=":material/neurology:", layout="wide",
                   menu_items={"About": "CNN Explorer: learn and do image classification with CNNs in PyTorch."})

restore_uploads()
current = st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True),
                         *(spec.page() for spec in available_pages())])
with st.sidebar:
    classroom_toggle()
    st.caption(f"Device: **{device_label()}**")
    for problem in setting_problems():
        st.error(f"This server's settings: {problem}", icon=":material/error:")
    remember_browser()  # on every page, so this browser's runs and uploads follow it into new tabs
stop_if_forgotten()
current.run()
freeze_imported_objects()  # after the first page run: its modules are imported by now
start_warm_imports()  # when app.py's lifespan did not already (e.g. another server)
