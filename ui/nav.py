"""The app's pages, in menu order: app.py's navigation (and the entry guard in ui.common)."""

import streamlit as st


def pages() -> list:
    return [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/description:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/table_chart:"),
        st.Page("pages/sample.py", title="Sample", icon=":material/edit_note:"),
        st.Page("pages/gates.py", title="Gates", icon=":material/grid_on:"),
    ]
