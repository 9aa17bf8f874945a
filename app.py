"""The charrnn playground: `streamlit run app.py`.

The entry point sets the page up, makes sure the session's state exists, draws the shared
sidebar and runs the page chosen in the navigation. The pages live in pages/ and only call
`charrnn`; Streamlit-only helpers they share live in ui/.
"""

import logging

import streamlit as st

from ui import common, state

st.set_page_config(page_title="charrnn playground", page_icon="🔤", layout="wide")
if not logging.getLogger("charrnn").handlers:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
state.configure_torch()
state.ensure_state()

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/description:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/table_chart:"),
    st.Page("pages/sample.py", title="Sample", icon=":material/edit_note:"),
    st.Page("pages/gates.py", title="Gates", icon=":material/grid_on:"),
]
page = st.navigation(pages)
common.sidebar()
page.run()
