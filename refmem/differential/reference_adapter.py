"""refmem itself under the adapter protocol (for refmem's own property tests, and as a template)."""

from __future__ import annotations

import numpy as np

from .. import catalogue
from .. import xp as rx
from ..golden.adapters import Adapter
from ..golden.storage import role_of

__all__ = ["refmem_adapter"]

def _refmem_run(case: str, tensors: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """refmem itself under the adapter protocol (NumPy, in ``dtype``): for the property tests of
    refmem (batch invariance) and as a template."""
    c = catalogue.get_case(case)
    xp = rx.backend("numpy")
    arrays = {k: rx.from_numpy(xp, v) for k, v in tensors.items() if role_of(k) in catalogue.ROLES}
    fwd = c.forward(arrays)
    cot = {k[len("cotangents/"):]: rx.from_numpy(xp, v) for k, v in tensors.items() if k.startswith("cotangents/")}
    grads = c.backward(arrays, cot)
    out = {f"outputs/{k}": np.asarray(rx.to_numpy(v)) for k, v in fwd.outputs.items()}
    out.update({f"intermediates/{k}": np.asarray(rx.to_numpy(v)) for k, v in fwd.intermediates.items()})
    out.update({f"grads/{k}": np.asarray(rx.to_numpy(v)) for k, v in grads.items()})
    return out


#: [`_refmem_run`][refmem.differential._refmem_run] as an [`Adapter`][refmem.golden.Adapter] of every case.
refmem_adapter = Adapter("refmem.differential:refmem_adapter", _refmem_run, ("*",))
