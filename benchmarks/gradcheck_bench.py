"""A full element-wise gradient check per module, beside ``torch.autograd.gradcheck`` of the same function.

For each model module the record gives:

* ``refmem check (module)``: every catalogue case of the module, every element,
  central differences and complex step, as ``refmem check --module <m>`` runs it
  (batched finite differences), in one process; with ``batched=False`` (the plain
  loop); and batched with the param loops shared by 2 worker processes;
* ``refmem check (case)``: the module's model case alone (``MODEL_CASES``);
* ``torch.autograd.gradcheck``: the torch implementation of the same model at the
  same sizes (its input ``x`` and every parameter), full Jacobian
  (``fast_mode=False``) and ``fast_mode=True``.
"""

from __future__ import annotations

import time
from typing import Any

from refmem import catalogue, gradcheck
from refmem import xp as rx

from .common import Skip
from .configs import Bench
from .problems import make

#: The case of each module that checks the whole model.
MODEL_CASES = {
    "memory_lstm": "memory_lstm/unroll/default",
    "attention": "attention/bahdanau_decoder/previous",
    "dnc": "dnc/core_unroll/deepmind",
}


def _elements(case, xp) -> int:
    arrays = case.draw(xp, 0)
    return sum(int(rx.to_numpy(arrays[k]).size) for k in case.differentiable(arrays))


def _check(cases, xp, batched: bool, jobs: int) -> tuple[float, bool]:
    t0 = time.perf_counter()
    ok = True
    for case in cases:
        records = gradcheck.check_case(case, xp, methods=("central", "complex"), batched=batched, jobs=jobs)
        ok &= all(r.passed for r in records)
    return time.perf_counter() - t0, ok


def _torch_gradcheck(model: str, sizes: dict, fast: bool) -> tuple[float, bool, int]:
    try:
        import torch
    except ImportError as exc:
        raise Skip("torch is not installed") from exc
    from . import impl_torch

    prob = make(model, sizes)
    names = list(prob["params"])
    inputs = [torch.tensor(prob["x"], requires_grad=True)]
    inputs += [torch.tensor(prob["params"][k], requires_grad=True) for k in names]

    def fn(x, *ps):
        return impl_torch.forward(model, x, dict(zip(names, ps)), sizes)

    fn(*inputs)  # Skip early when an example is missing
    t0 = time.perf_counter()
    ok = torch.autograd.gradcheck(fn, tuple(inputs), fast_mode=fast, raise_exception=False)
    return time.perf_counter() - t0, bool(ok), sum(int(t.numel()) for t in inputs)


def run(modules: list[str] | None = None, loop: bool = True, torch_check: bool = True,
        log=print) -> list[dict[str, Any]]:
    """Time the checks; returns records ``{module, impl, what, seconds, cases, elements, passed}``."""
    xp = rx.backend("numpy")
    records: list[dict[str, Any]] = []
    for module in modules or list(MODEL_CASES):
        try:
            cases = catalogue.cases([module])
        except catalogue.UnknownModuleError as exc:
            log(f"  gradcheck {module}: skipped ({exc})")
            continue
        by_name = {c.name: c for c in cases}
        n_all = sum(_elements(c, xp) for c in cases)
        variants = [("batched", True, 1)] + ([("loop", False, 1), ("batched, 2 workers", True, 2)] if loop else [])
        for label, batched, jobs in variants:
            sec, ok = _check(cases, xp, batched, jobs)
            records.append({"module": module, "impl": "refmem", "what": f"check module ({label})", "seconds": sec,
                            "cases": len(cases), "elements": n_all, "passed": ok})
        case = by_name.get(MODEL_CASES[module])
        if case is None:
            log(f"  gradcheck {module}: model case {MODEL_CASES[module]} not in the catalogue yet")
            continue
        n_case = _elements(case, xp)
        for label, batched, jobs in variants:
            sec, ok = _check([case], xp, batched, jobs)
            records.append({"module": module, "impl": "refmem", "what": f"check {case.name} ({label})",
                            "seconds": sec, "cases": 1, "elements": n_case, "passed": ok})
        if not torch_check:
            continue
        sizes = dict(case.sizes)
        for fast in (False, True):
            what = f"torch.autograd.gradcheck{' fast_mode' if fast else ''} at {case.name} sizes"
            try:
                sec, ok, n = _torch_gradcheck(module, sizes, fast)
            except Skip as exc:
                log(f"  {what}: skipped ({exc})")
                break
            records.append({"module": module, "impl": "torch", "what": what, "seconds": sec, "cases": 1,
                            "elements": n, "passed": ok})
    return records
