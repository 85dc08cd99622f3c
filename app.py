"""CNN Explorer's entry point: `streamlit run app.py`.

The app itself is `cnn_explorer_ui/frame.py` (page config, navigation, sidebar; the home page is
`cnn_explorer_ui/home.py`), with one script per page in `pages/`. Streamlit serves it as an `st.App` whose main
script does not sit beside `pages/`: that keeps Streamlit's legacy `pages/` folder discovery out of the way,
so a page's address (/dataset-gallery) opens that page even as the first visit to a freshly started server.
"""

import streamlit as st

app = st.App("cnn_explorer_ui/frame.py")
