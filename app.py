"""The charrnn playground: `streamlit run app.py`.

The entry point sets the page up, makes sure the session's state exists, draws the shared
sidebar and runs the page chosen in the navigation. The pages live in pages/ and only call
`charrnn`; Streamlit-only helpers they share live in ui/.
"""

import logging

import streamlit as st

st.set_page_config(page_title="charrnn playground", page_icon="🔤", layout="wide")
# the only place logging is configured (a no-op after the first run)
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

from ui import startup  # noqa: E402, F401  (first: a bad CHARRNN_* setting stops here)

# isort: split
from ui import common, nav, state  # noqa: E402

state.configure_torch()
state.ensure_state()

page = st.navigation(nav.pages())
common.sidebar()
page.run()
