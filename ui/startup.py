"""The first import of app.py and of every page: a bad CHARRNN_* environment variable becomes
one clear message on whatever page was asked for, instead of a traceback.

charrnn.limits reads the variables once, when it is first imported, and raises ValueError
(naming the variable) for a bad one. Importing this module runs that import; on failure it
shows the message and stops the script run, so this module's import fails too and is tried
again, and fails the same way, on every run of every session until the server restarts with
fixed settings. Once the import has worked, importing this module costs nothing.
"""

import re

import streamlit as st

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:^&=\"'/])")  # as ui.common.plain


def stop_with(error: ValueError) -> None:
    """Show the settings error and stop this script run."""
    from ui import nav  # needs no charrnn module that reads the limits

    # route every later request (deep links too) through app.py, which stops the same way
    st.navigation(nav.pages(), position="hidden")
    problem = _MARKDOWN.sub(r"\\\1", str(error))
    st.error(
        "**The app cannot start: a setting in its environment is wrong.** "
        f"{problem}.\n\n"
        "Fix that CHARRNN\\_\\* environment variable (a whole number, 0 or more) or unset it "
        "to use the default, then restart the server. The README lists every setting."
    )
    st.stop()


try:
    from ui import state  # imports charrnn.limits, which reads the CHARRNN_* variables

    state.app_threads()  # CHARRNN_APP_THREADS, read by the app itself
except ValueError as e:
    stop_with(e)
