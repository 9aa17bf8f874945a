"""Streamlit-only helpers shared by the pages: session state, the process-wide job registry,
the owner token in the URL, model choosers and the page frame. The core (`charrnn`) never
imports this package."""

# charrnn first: it sets how OpenMP threads wait before any module here loads torch.
import charrnn  # noqa: E402, F401
