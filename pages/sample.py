"""Sample: make a model write, and see what temperature does to its choices."""

from ui import startup  # noqa: F401  (first: a bad CHARRNN_* setting stops here)

# isort: split
import time

import streamlit as st

from charrnn import sampling
from charrnn.corpus import CorpusError
from charrnn.figures import next_char_figure
from charrnn.limits import LIMITS
from ui import common, models

COMPARE_TEMPERATURES = (0.3, 0.8, 1.5)
COMPARE_LENGTH = 200  # characters per column of the side-by-side comparison
MAX_SEED = 2**31 - 1
# NOTE: Streamlit keeps a typed number outside a number_input's range in the browser (a small
# red mark) and never sends it, so the page cannot react to it: the ranges are in the labels
OUT_OF_RANGE = "A number outside the range is not applied: the last valid one stays in use."

common.header(
    "Sample",
    "The model reads the prime, then repeatedly turns its scores for the next character into "
    "probabilities and draws one. Temperature divides the scores first: below 1 the likely "
    "characters win more often (safe, repetitive), above 1 the odds flatten (inventive, then "
    "garbled). Greedy always takes the single most likely character.",
)


def controls(vocab_size: int) -> dict:
    with st.sidebar:
        st.markdown("**Sampling**")
        temperature = st.slider(
            "Temperature",
            0.1,
            2.0,
            0.8,
            0.05,
            key="sample_temperature",
            persist_state="session",
        )
        greedy = st.toggle("Greedy (temperature 0)", key="sample_greedy", persist_state="session")
        top_k = st.number_input(
            f"Top-k (0 = all, max {vocab_size})",
            0,
            vocab_size,
            0,
            key="sample_top_k",
            help="keep only the k most likely characters before drawing; this model knows "
            f"{vocab_size} characters. {OUT_OF_RANGE}",
        )
        fixed = st.toggle("Fixed seed", True, key="sample_fixed", persist_state="session")
        seed = st.number_input(
            f"Seed (0 to {MAX_SEED:,})",
            0,
            MAX_SEED,
            42,
            key="sample_seed",
            disabled=not fixed,
            help=f"the same seed, prime and settings write the same text. {OUT_OF_RANGE}",
            persist_state="session",
        )
    prime = st.text_area(
        "Prime text",
        "ROMEO:\n",
        height=80,
        # NOTE: no max_chars: the browser would drop a longer paste without a word, and the
        # page would then ask for a prime; check() shows the core's message with the limit
        key="sample_prime",
        help=f"what the model reads before it starts writing (up to {LIMITS.max_prime:,} "
        "characters)",
        persist_state="session",
    )
    length = st.number_input(
        f"Characters to generate (1 to {LIMITS.max_generate:,})",
        1,
        LIMITS.max_generate,
        400,
        50,
        key="sample_length",
        help=OUT_OF_RANGE,
        persist_state="session",
    )
    return dict(
        prime=prime,
        length=int(length),
        temperature=0.0 if greedy else float(temperature),
        top_k=int(top_k) or None,
        seed=int(seed) if fixed else None,
    )


def check(loaded, args: dict) -> bool:
    """Show what is wrong with the prime or the settings; True when sampling can go ahead."""
    if not args["prime"]:
        st.info("Type a prime: at least one character for the model to start from.")
        return False
    try:
        sampling.check_sampling_args(
            loaded.vocab, args["prime"], args["length"], args["temperature"], args["top_k"]
        )
    except (CorpusError, ValueError) as e:
        st.error(common.plain(f"Cannot sample: {e}"))
        return False
    return True


def write(loaded, args: dict) -> str:
    """Stream the sample into the page as it is generated; return the whole text."""
    box = st.empty()
    text, shown = args["prime"], time.monotonic()
    for ch in sampling.stream(loaded.model, loaded.vocab, **args):
        text += ch
        if time.monotonic() - shown > 0.05:
            box.code(text, language=None, wrap_lines=True)
            shown = time.monotonic()
    box.code(text, language=None, wrap_lines=True)
    return text


def compare(loaded, args: dict) -> list[tuple[float, str]]:
    """The same prime and seed at three temperatures."""
    seed = args["seed"] if args["seed"] is not None else 0
    length = min(args["length"], COMPARE_LENGTH)
    return [
        (
            t,
            sampling.generate(
                loaded.model, loaded.vocab, args["prime"], length, t, args["top_k"], seed
            ),
        )
        for t in COMPARE_TEMPERATURES
    ]


@st.cache_data(max_entries=32, show_spinner=False)
def shared_sample(model_id: str, settings: tuple, _loaded) -> tuple[str, list]:
    """A seeded sample of a bundled model is the same text for every visitor: a class opening
    Sample together computes it once, not thirty times. `model_id` names the file and its
    modification time, so a replaced file is never served from the cache."""
    args = dict(settings)
    text = sampling.generate(_loaded.model, _loaded.vocab, **args)
    return text, compare(_loaded, args)


def bundled_id(choice: str | None) -> str | None:
    """The cache identity of a bundled checkpoint choice, None for runs and uploads."""
    if not choice or not choice.startswith("bundled:"):
        return None
    path = models.bundled_dir() / choice.removeprefix("bundled:")
    return f"{path}:{path.stat().st_mtime_ns}" if path.is_file() else None


def body() -> None:
    loaded = models.choose("sample")
    if loaded is None:
        return
    args = controls(len(loaded.vocab))
    if not check(loaded, args):
        return
    key = (st.session_state.get("sample_model"), args["prime"])
    go = st.button("Generate", type="primary", key="sample_go")
    # a first visit writes at once with the defaults: the page shows what sampling is before
    # anyone has to find the button (a bundled model makes that work with no training)
    go = go or st.session_state.get("sample_result") is None
    result = st.session_state.get("sample_result")
    if go and st.session_state.get("sample_model_gone"):
        go = False  # the click was meant for the model that is gone (see the warning above)
        st.info("Nothing generated: check the model now selected, then press Generate again.")
    if go:
        model_id = bundled_id(st.session_state.get("sample_model"))
        if model_id and args["seed"] is not None:  # reproducible, so shared between sessions
            text, compared = shared_sample(model_id, tuple(sorted(args.items())), loaded)
            st.code(text, language=None, wrap_lines=True)
        else:
            text = write(loaded, args)
            compared = compare(loaded, args)
        st.session_state["sample_result"] = result = {
            "key": key,
            "text": text,
            "compare": compared,
            "temperature": args["temperature"],
        }
    elif result and result["key"] == key:
        st.code(result["text"], language=None, wrap_lines=True)
    else:
        result = None
        st.caption("Press Generate to write; the chart below follows the slider as you drag.")

    label = "greedy" if args["temperature"] == 0 else f"temperature {args['temperature']:.2f}"
    dist = sampling.next_char_distribution(
        loaded.model, loaded.vocab, args["prime"], args["temperature"], args["top_k"]
    )
    st.plotly_chart(
        next_char_figure(dist, title=f"What comes after the prime? ({label})"),
        key="sample_next_chart",
        width="stretch",
        height=380,
    )
    if result:
        st.markdown(f"**The same prime and seed at {len(COMPARE_TEMPERATURES)} temperatures**")
        for column, (t, text) in zip(
            st.columns(len(result["compare"])), result["compare"], strict=True
        ):
            column.caption(f"temperature {t}")
            column.code(text, language=None, wrap_lines=True)
    common.show_code(sampling.probabilities, sampling.stream)


body()
