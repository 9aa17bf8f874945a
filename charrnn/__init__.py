"""charrnn: a character-level RNN / GRU / LSTM playground core, UI-free.

Layout convention for the whole package: batch-first, (B, T) ids and (B, T, ·) activations.
"""

__version__ = "0.1.0"
