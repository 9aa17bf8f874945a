"""Home: what the playground is, and the three things to do next."""

from ui import startup  # noqa: F401  (first: a bad CHARRNN_* setting stops here)

# isort: split
import streamlit as st

from ui import common

common.header(
    "charrnn playground",
    "A character-level language model reads text one character at a time and learns to guess "
    "the next one. Here you can train one (a plain RNN, a GRU or an LSTM) while its loss curve "
    "moves, make it write with a temperature slider, and look at what every gate of every "
    "layer does on each character.",
)


def body() -> None:
    st.markdown(
        "Everything runs on this machine: on its CPU, or on a GPU when there is one (the "
        "sidebar says which). Nothing here needs the network once tiny Shakespeare is cached."
    )
    steps = [
        (
            "pages/train.py",
            "1. Train",
            ":material/model_training:",
            "Start an LSTM on tiny Shakespeare and watch the loss fall below the unigram line. "
            "Or compare RNN, GRU and LSTM with one click.",
        ),
        (
            "pages/sample.py",
            "2. Sample",
            ":material/edit_note:",
            "Give it a prime, drag the temperature from careful to wild, and see the "
            "next-character distribution change.",
        ),
        (
            "pages/gates.py",
            "3. Look inside",
            ":material/grid_on:",
            "Heatmaps of the input, forget and output gates, the cell state and the hidden "
            "state, character by character; find units that track quotes or line ends.",
        ),
    ]
    for column, (path, label, icon, text) in zip(st.columns(3), steps, strict=True):
        with column.container(border=True):
            st.page_link(path, label=label, icon=icon)
            st.write(text)
    st.markdown(
        "Also: choose or upload the training text on **Data**, and download, upload or delete "
        "checkpoints on **Runs**. Runs keep going when you switch pages or refresh the browser "
        "(the address bar holds your session's token: keep it to find your runs again)."
    )


body()
