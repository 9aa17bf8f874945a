"""The frame every page shares: title and intro, the "Show code" expander, the sidebar's
device line, and small formatting helpers."""

import inspect
import math
import os
import re

import streamlit as st
import torch

from charrnn import devices
from ui import state

# every ASCII punctuation character Markdown (or Streamlit's :colour[...] and $math$) may read
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:^&=\"'/])")


def plain(text) -> str:
    """Text shown literally by elements that render Markdown (st.error, st.caption...): a user's
    file name or unknown character never turns into formatting, a link or a colour."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def header(title: str, intro: str) -> None:
    """The top of every page. Also makes sure the page runs inside app.py (see below)."""
    _require_entry()
    if title != "Runs":  # a pending "Confirm delete" does not wait for the user's return
        st.session_state.pop("runs_confirm", None)
    st.title(title)
    st.markdown(intro)


def _require_entry() -> None:
    # NOTE: Streamlit keeps its legacy pages/ mode until some session calls st.navigation, so
    # when the first request after a start is a deep link (/train?owner=...), it runs
    # pages/train.py alone, without app.py's navigation, sidebar and session set-up, and
    # stays in that mode. Calling st.navigation here switches the process over for good; the
    # rerun then goes through app.py to the same page.
    if not st.session_state.get("entered_via_app"):
        from ui import nav

        st.navigation(nav.pages(), position="hidden")
        st.rerun()


def show_code(*objects, label: str = "Show code") -> None:
    """An expander with the source of the charrnn functions that did the work on this page."""
    with st.expander(label):
        for obj in objects:
            st.caption(f"`{obj.__module__}.{obj.__qualname__}`")
            st.code(inspect.getsource(obj), language="python")


def sidebar() -> None:
    """The device in use and how many of this session's runs are training."""
    device = devices.pick_device("auto")
    if device.type == "cpu":
        name = f"CPU ({os.cpu_count()} cores, no GPU found)"
    else:
        name = devices.describe(device)
    st.sidebar.markdown(f"**Device:** {name}")
    active = [j for j in state.registry().owned(state.owner()) if j.status in ("running", "queued")]
    if active:
        st.sidebar.caption(f"{len(active)} of your runs training or queued: see Train or Runs.")
    st.sidebar.caption(f"torch {torch.__version__.split('+')[0]}")


def loss_unit_picker(key: str) -> str:
    """Bits or nats per char for the loss charts; kept for the session."""
    return st.segmented_control(
        "Loss in",
        ["bpc", "nats"],
        default="bpc",
        format_func={"bpc": "bits per char", "nats": "nats per char"}.get,
        key=key,
        required=True,
        persist_state="session",
    )


def duration(seconds: float | None) -> str:
    """'1:05' for 65 seconds, '1:02:03' past an hour, '-' for unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
