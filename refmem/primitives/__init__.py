"""SPEC §1: the primitives, their forward/backward pairs, and the maths helpers every family uses.

`refmem.primitives` is a family package: the functions live in `refmem/primitives/ops.py` and
are re-exported here; the catalogue cases of SPEC §1 live in `refmem/primitives/cases.py`.

Every pair follows [the backward rule](../conventions.md): `outputs, cache = f_forward(x, ...)`
returns an `FOutputs` NamedTuple and an `FCache`, and `grads = f_backward(d_out, cache)` takes
an `FOutputs` (or a tuple) of upstream gradients, `None` meaning zero, and returns an `FGrads`
named after the forward's arguments. The maths helpers ([`sigmoid`][refmem.primitives.sigmoid],
[`softmax`][refmem.primitives.softmax], [`softmax_vjp`][refmem.primitives.softmax_vjp],
[`linear`][refmem.primitives.linear], ...) take and return plain arrays, without checks, for
model code that keeps its own caches.
"""

from .ops import *  # noqa: F401,F403
from .ops import __all__  # noqa: F401
