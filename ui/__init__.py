"""Streamlit-only helpers shared by the pages: session state, the process-wide job registry,
the owner token in the URL, model choosers and the page frame. The core (`charrnn`) never
imports this package."""
