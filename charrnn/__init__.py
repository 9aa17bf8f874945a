"""charrnn: a character-level RNN / GRU / LSTM playground core, UI-free.

Layout convention for the whole package: batch-first, (B, T) ids and (B, T, ·) activations.
"""

import os

# OpenMP threads that wait for each other spin by default. On a CPU shared with other work (the
# Streamlit server, a second job, another process) a spinning thread steals the core its peer
# needs, and a 2-thread training step was measured 10-16x slower than a 1-thread one. Passive
# waiting removes that cliff. It must be set before torch loads its OpenMP runtime, hence here;
# a value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
