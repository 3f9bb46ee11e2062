"""SPEC §4: the LSTM memory cell of seed 000 (family ``memory_lstm``).

The model (step and unroll with BPTT) lives in `refmem/memory_lstm/model.py` and is
re-exported here; its catalogue cases live in `refmem/memory_lstm/cases.py`.
"""

from .model import *  # noqa: F401,F403
from .model import __all__  # noqa: F401
