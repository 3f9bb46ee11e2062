"""SPEC §1: the primitives, their forward/backward pairs, and the math helpers every family uses.

``refmem.primitives`` is a family package: the functions live in :mod:`refmem.primitives.ops`
and are re-exported here; the catalogue cases of SPEC §1 live in :mod:`refmem.primitives.cases`.

One signature style throughout: ``out, cache = foo_forward(x, ...)`` and
``d_x = foo_backward(d_out, cache)`` (several outputs: upstream gradients in the order of the
outputs, then the cache). Plain value helpers (:func:`sigmoid`, :func:`softmax`, ...) compute a
forward value without a cache, for model code that keeps its own caches.
"""

from .ops import *  # noqa: F401,F403
from .ops import __all__  # noqa: F401
