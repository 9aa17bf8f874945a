"""charrnn: a character-level RNN / GRU / LSTM playground core, UI-free.

Layout convention for the whole package: batch-first, (B, T) ids and (B, T, ·) activations.
"""

import os

# OpenMP threads that finish early wait for the others, by default spinning for about 3 ms
# (GNU libgomp, the runtime of torch's Linux wheels). On a 2-core machine where something else
# holds a core, a 2-thread 2x256 LSTM step then ran 15x slower than on one thread; not spinning
# at all (OMP_WAIT_POLICY=PASSIVE) cost up to half the speed on an idle machine instead. A
# short spin of about 0.1 ms keeps the idle speed and cuts that loss to 3x, and the trainer's
# ThreadTuner (threads.py) then drops to one thread, which never waits. This must be set
# before torch loads its OpenMP runtime, hence here; an explicit setting in the environment
# wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

__version__ = "0.1.0"
