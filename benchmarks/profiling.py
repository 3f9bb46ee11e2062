"""cProfile of one refmem forward+backward: where the time of a benchmark goes."""

from __future__ import annotations

import cProfile
import io
import pstats

from . import impl_refmem
from .configs import Bench


def profile(bench: Bench, dtype: str = "float64", top: int = 25, sort: str = "tottime") -> str:
    """The ``top`` functions of one forward+backward (after one warm-up call), as text."""
    step = impl_refmem.build(bench, dtype)
    step()
    prof = cProfile.Profile()
    prof.enable()
    step()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort).print_stats(top)
    return buf.getvalue()
