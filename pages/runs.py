"""Runs: this session's training runs side by side; download, upload and delete checkpoints."""

from ui import startup  # noqa: F401  (first: a bad CHARRNN_* setting stops here)

# isort: split
import math

import streamlit as st

from charrnn import checkpoint
from charrnn.checkpoint import CheckpointError
from charrnn.figures import LN2, loss_figure
from charrnn.jobs import ACTIVE, JobSnapshot
from charrnn.limits import LIMITS
from ui import common, state

common.header(
    "Runs",
    "Every run this session started, with its final validation score. Bits per character "
    "compare across corpora of any alphabet; perplexity is the number of characters the model "
    "is, on average, as unsure between as a fair die. Download a checkpoint to keep it, or "
    "upload one to sample from it here.",
)


def row(s: JobSnapshot, label: str) -> dict:
    m = s.model_config
    val = s.val_loss
    return {
        "run": label,
        "cell": m.cell.upper() + (" (scratch)" if m.backend == "scratch" else ""),
        "layers": m.num_layers,
        "hidden": m.hidden_size,
        "parameters": s.num_params,
        "steps": f"{s.step:,}/{s.total_steps:,}",
        "val bits/char": round(val / LN2, 3) if val is not None else None,
        "perplexity": round(math.exp(min(val, 50)), 2) if val is not None else None,
        "chars/s": round(s.chars_per_s),
        "time": common.duration(s.elapsed_s),
        "status": s.status,
        "corpus": s.corpus_name,
    }


def table_and_curves(snaps: list[JobSnapshot], labels: dict[str, str]) -> None:
    st.dataframe([row(s, labels[s.id]) for s in snaps], hide_index=True, key="runs_table")
    unit = st.session_state.get("runs_unit") or "bpc"
    runs = [{"name": labels[s.id], "history": s.history} for s in snaps]
    st.plotly_chart(
        loss_figure(runs, unit=unit, uirevision="runs"),
        key="runs_chart",
        width="stretch",
        height=380,
    )


def manage(jobs: dict, labels: dict[str, str]) -> None:
    """Download or delete one run (deleting asks for a confirmation first)."""
    owner = state.owner()
    chosen = st.selectbox(
        "Run",
        list(jobs),
        format_func=lambda k: labels.get(k, k),
        key="runs_pick",
    )
    if chosen is None:
        return
    a, b = st.columns(2)
    data = state.registry().checkpoint_bytes(chosen, owner)
    if data is not None:
        a.download_button(
            "Download checkpoint (.safetensors)",
            data=data,
            file_name=jobs[chosen].download_name(),
            mime="application/octet-stream",
            key="runs_download",
            on_click="ignore",
        )
    else:
        a.caption("No checkpoint yet: one is written when the run ends or is stopped.")
    if b.button("Delete this run", key="runs_delete", help="Stops it if needed, removes its file"):
        st.session_state["runs_confirm"] = chosen
    if st.session_state.get("runs_confirm") != chosen:
        return
    label = labels[chosen]
    active = jobs[chosen].status in ACTIVE
    st.warning(
        f"Delete **{common.plain(label)}**?"
        + (" It is still training and will be stopped." if active else "")
        + " Its checkpoint file is removed; download it first to keep it. This cannot be undone."
    )
    buttons = st.container(horizontal=True)
    confirm = buttons.button("Confirm delete", type="primary", key="runs_delete_confirm")
    cancel = buttons.button("Cancel", key="runs_delete_cancel")
    if confirm or cancel:
        st.session_state.pop("runs_confirm", None)
    if confirm:
        with st.spinner("Stopping and deleting..."):
            deleted = state.registry().delete(chosen, owner)
        st.session_state["runs_deleted"] = (
            f"Deleted {label}." if deleted else f"{label} was already gone."
        )
    if confirm or cancel:
        st.rerun()


def upload() -> None:
    """Accept a .safetensors checkpoint into this session (kept in memory, never on disk)."""
    owner = state.owner()
    file = st.file_uploader(
        f"Upload a checkpoint (.safetensors, up to {LIMITS.max_upload_mb} MB)",
        type=["safetensors"],
        key="runs_upload",
        max_upload_size=LIMITS.max_upload_mb,
    )
    results = st.session_state["runs_upload_results"]  # file id -> (ok, message)
    if file is not None and file.file_id not in results:
        try:
            if file.size > LIMITS.max_upload_mb * 2**20:  # the browser's check can be bypassed
                raise CheckpointError(f"{file.name} is over {LIMITS.max_upload_mb} MB")
            ckpt = checkpoint.from_bytes(file.getvalue(), file.name)
        except CheckpointError as e:
            results[file.file_id] = (False, f"Refused: {e}")
        else:
            state.uploads().add(owner, file.name, ckpt)
            results[file.file_id] = (True, f"{file.name} loaded: pick it on Sample or Gates.")
    if file is not None:
        ok, message = results[file.file_id]
        (st.success if ok else st.error)(common.plain(message))
    items = state.uploads().list(owner)
    for key, name, ckpt in items:
        c = ckpt.model_config
        val = ckpt.final_val_loss()
        score = f", validation {val / LN2:.3f} bits/char" if val is not None else ""
        left, right = st.columns([4, 1])
        left.markdown(
            f"**{common.plain(name)}**: {c.cell.upper()} {c.num_layers}×{c.hidden_size}, "
            f"{ckpt.model.num_params():,} parameters{score}"
        )
        if right.button("Remove", key=f"runs_remove_{key}"):
            state.uploads().remove(owner, key)
            st.rerun()


def body() -> None:
    owner = state.owner()
    jobs = {j.id: j for j in sorted(state.registry().owned(owner), key=lambda j: j.created)}
    labels = state.run_labels(jobs.values())
    deleted = st.session_state.pop("runs_deleted", None)
    if deleted:
        st.success(common.plain(deleted))
    if not jobs:
        st.info("No runs yet in this session: start one on the Train page.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    else:
        common.loss_unit_picker("runs_unit")
        running = any(j.status in ACTIVE for j in jobs.values())

        # NOTE: polls once a second only while one of the runs is active (see Train)
        @st.fragment(run_every=1.0 if running else None)
        def live() -> None:
            snaps = [j.snapshot() for j in jobs.values()]
            table_and_curves(snaps, labels)
            if running and not any(s.active for s in snaps):
                st.rerun()

        live()
        st.subheader("Keep or remove a run")
        manage(jobs, labels)
    st.subheader("Uploaded checkpoints")
    upload()
    common.show_code(checkpoint.from_bytes)


body()
