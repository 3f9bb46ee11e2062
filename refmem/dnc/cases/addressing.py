"""Catalogue cases of SPEC §5 (module `dnc`): every function of the DNC table of
[the golden format](../golden-format.md) but `core_unroll`.

A function that depends on a convention (its forward takes `convention=`, or a config that holds
one) has one case per convention, `dnc/<function>/deepmind` and `dnc/<function>/paper`, with
`config["convention"]`. A function without a convention (allocation, the sequential allocation,
the memory update, the temporal linkage, the directional weights, the sharpening) has one case,
`dnc/<function>/any_convention` ([`ANY_CONVENTION`][refmem.dnc.cases.addressing.ANY_CONVENTION]),
whose config names no convention: its tensors are those of either convention.

Samplers draw on the host (`refmem.sampling.Sampler` into the NumPy namespace,
``rx.backend("numpy")``), take their rejection decisions there, and move the
accepted arrays into the requested namespace, so a seed gives the same numbers
(and the same accepted draw) on every backend.
They stay away from the only kink of the access step, the allocation sort:
usages are well separated, and where the sorted values are not drawn directly
(after a simulated write of an earlier head, or after the usage update of the
access step) the draw is repeated until every head's sorted free-ness values
are at least [`SORT_GAP`][refmem.dnc.cases.addressing.SORT_GAP] apart (far more than the finite-difference step
``2**-20`` can move them). Gates, erase vectors and weights lie strictly inside
``(0, 1)``, so no factor of a product is exactly 0 or 1.
"""

import math
from typing import Any, Callable

from ... import primitives as P
from ... import xp as rx
from ...catalogue import Case, Forward
from ...sampling import Sampler
from .. import access as AC
from .. import addressing as A

__all__ = ["CASES", "SORT_GAP", "CONVENTION_NAMES", "ANY_CONVENTION", "ACCESS_ORDER", "access_intermediates",
           "access_order", "OPTION_VARIANTS"]

#: Smallest gap between neighbouring sorted free-ness values a sampler accepts.
SORT_GAP = 1e-4
CONVENTION_NAMES = ("deepmind", "paper")
#: The variant name of the one case of a function that depends on no convention.
ANY_CONVENTION = "any_convention"

#: Content addressing needs words of 2 or more: with ``W = 1`` the cosine is ``sign(k m)``
#: smoothed over ``sqrt(eps) = 1e-3``, a step whose slope is ``O(eps)`` away from 0 (finite
#: differences then lose all relative accuracy) and ``O(1/sqrt(eps))`` near it.
_MIN_W = {"W": 2}
_COSINE_KINKS = "cosine with W = 1 is a smoothed sign: words of W >= 2 only (min_sizes)"

_SORT_KINKS = ("the allocation sort: usages drawn well separated, and draws redrawn until every write "
               f"head's sorted free-ness values are at least {SORT_GAP} apart")


def _host(seed: int) -> Sampler:
    """A sampler into the host (NumPy) namespace: draws and rejection tests happen there."""
    return Sampler(rx.backend("numpy"), seed)


def _to(xp: Any, arrays: dict[str, Any]) -> dict[str, Any]:
    return {k: rx.from_numpy(xp, rx.to_numpy(v)) for k, v in arrays.items()}


def _named(grads: Any) -> dict[str, Any]:
    """`{inputs/<field>: gradient}` of a Grads NamedTuple, without the option fields that are `None`."""
    return {f"inputs/{k}": v for k, v in grads._asdict().items() if v is not None}


def _link(s: Sampler, B: int, nw: int, N: int) -> Any:
    """Link-like values: in ``(0, 1/N)`` off the diagonal, 0 on it (rows and columns sum below 1)."""
    xp = s.xp
    L = s.uniform((B, nw, N, N), 0.02 / N, 1.0 / N)
    return L * (1.0 - xp.eye(N, dtype=L.dtype))


def _usage(s: Sampler, B: int, N: int) -> Any:
    low, high = 0.02, 0.98
    return s.separated((B, N), low, high, gap=0.2 * (high - low) / N)


def _strengths(s: Sampler, shape: tuple) -> Any:
    """Raw strengths in ``[0, 2.5)``: a lookup sharp enough that its gradients are not tiny.

    With a very negative raw strength the softmax is flat and the gradients w.r.t. the
    memory and the keys shrink with ``act(β)`` while the outputs (and the rounding of
    their finite differences) do not; the norm-wise error of SPEC §6 then measures
    rounding noise (seen at ``2e-3`` gradient norms, with the complex step exact).
    """
    return s.uniform(shape, 0.0, 2.5)


def sort_gap(heads: tuple) -> float:
    """Smallest gap between neighbouring sorted free-ness values of any head (``inf`` when none)."""
    gap = math.inf
    for cache in heads:
        sn = P.real_part(cache.sorted_nonusage)
        if sn.shape[-1] > 1:
            xp = rx.namespace(sn)
            gap = min(gap, float(xp.min(xp.abs(sn[..., 1:] - sn[..., :-1]))))
    return gap


def _rejection(draw: Callable[[Sampler], dict], heads_of: Callable[[dict], tuple], seed: int) -> dict:
    """Draw until the allocation's sorted values are separated by [`SORT_GAP`][refmem.dnc.cases.addressing.SORT_GAP]."""
    s = _host(seed)
    for _ in range(500):
        arrays = draw(s)
        if sort_gap(heads_of(arrays)) >= SORT_GAP:
            return arrays
    raise RuntimeError(f"no draw with sorted usages {SORT_GAP} apart in 500 tries (seed {seed})")


def _case(function: str, conv: str | None, spec: str, sizes: dict, sample: Callable, run: Callable, grads: Callable,
          complex_step: bool = True, stopped: str = "", kinks: str = "", min_sizes: dict | None = None,
          trace: Callable | None = None, order: tuple = (), variant: str | None = None,
          config: dict | None = None) -> Case:
    """A case from `run(arrays, conv, frozen) -> (outputs, frozen, cache)` and `grads(cot, cache, conv)`;
    `trace(cache) -> {name: intermediate}` and `order` for a composite case (golden format 2). `conv`
    `None`: the function depends on no convention (one case, `dnc/<function>/any_convention`, whose
    config names none)."""

    def forward(arrays, frozen=None):
        outputs, recorded, cache = run(arrays, conv, frozen)
        return Forward(outputs, recorded, None if trace is None else (lambda: trace(cache)))

    def backward(arrays, cot, frozen=None):
        _, _, cache = run(arrays, conv, frozen)
        return grads(cot, cache, conv)

    return Case(
        name=f"dnc/{function}/{variant or conv or ANY_CONVENTION}",
        spec=spec,
        function=f"refmem.dnc.{'access' if function == 'access_step' else 'addressing'}.{function}_forward",
        sample=lambda xp, seed, sz: _to(xp, sample(seed, sz)),
        forward=forward,
        backward=backward,
        sizes=dict(sizes),
        min_sizes=dict(min_sizes or {}),
        config={**({"convention": conv} if conv else {}), **(config or {})},
        complex_step=complex_step,
        stopped=stopped,
        kinks=kinks,
        order=tuple(order),
    )


# ----------------------------------------------------------------------------- content_weights


def _content(conv: str) -> Case:
    def sample(seed, z):
        s = _host(seed)
        B, H, N, W = z["B"], z["H"], z["N"], z["W"]
        return {"inputs/memory": s.normal((B, N, W)), "inputs/keys": s.normal((B, H, W)),
                "inputs/strengths": _strengths(s, (B, H))}

    def run(a, conv, frozen):
        out, cache = A.content_weights_forward(a["inputs/memory"], a["inputs/keys"], a["inputs/strengths"],
                                               convention=conv)
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        g = A.content_weights_backward((cot["weights"],), cache)
        return {"inputs/memory": g.memory, "inputs/keys": g.keys, "inputs/strengths": g.strengths}

    return _case("content_weights", conv, "SPEC §5 steps 2 and 8; §1 cosine", {"B": 2, "H": 2, "N": 5, "W": 3},
                 sample, run, grads, min_sizes=_MIN_W, kinks=_COSINE_KINKS)


# ----------------------------------------------------------------------------- usage


def _usage_case(conv: str) -> Case:
    def sample(seed, z):
        s = _host(seed)
        B, N, nw, R = z["B"], z["N"], z["nw"], z["R"]
        return {"inputs/prev_usage": s.uniform((B, N), 0.05, 0.95),
                "inputs/prev_write_weights": s.simplex((B, nw, N), total=0.8),
                "inputs/free_gates": s.uniform((B, R), 0.05, 0.95),
                "inputs/prev_read_weights": s.simplex((B, R, N), total=0.9)}

    def run(a, conv, frozen):
        ww = a["inputs/prev_write_weights"]
        stop = A.C.get(conv).stop_usage_gradient
        fz = frozen["inputs/prev_write_weights"] if (stop and frozen) else None
        out, cache = A.usage_forward(a["inputs/prev_usage"], ww, a["inputs/free_gates"],
                                     a["inputs/prev_read_weights"], convention=conv, frozen_write_weights=fz)
        return {"usage": out.usage}, ({"inputs/prev_write_weights": ww} if stop else {}), cache

    def grads(cot, cache, conv):
        g = A.usage_backward((cot["usage"], None), cache)
        return {"inputs/prev_usage": g.prev_usage, "inputs/prev_write_weights": g.prev_write_weights,
                "inputs/free_gates": g.free_gates, "inputs/prev_read_weights": g.prev_read_weights}

    stopped = ("usage w.r.t. prev_write_weights (deepmind's tf.stop_gradient), checked with "
               "prev_write_weights frozen at its recorded value") if conv == "deepmind" else ""
    return _case("usage", conv, "SPEC §5 step 1", {"B": 2, "N": 5, "nw": 2, "R": 2}, sample, run, grads,
                 stopped=stopped)


# ----------------------------------------------------------------------------- allocation


def _allocation(conv: str) -> Case:
    def sample(seed, z):
        return {"inputs/usage": _usage(_host(seed), z["B"], z["N"])}

    def run(a, conv, frozen):
        out, cache = A.allocation_forward(a["inputs/usage"])
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        return {"inputs/usage": A.allocation_backward((cot["allocation"],), cache).usage}

    return _case("allocation", conv, "SPEC §5 step 3", {"B": 2, "N": 6}, sample, run, grads,
                 complex_step=False, kinks="the sort: usages drawn well separated (Sampler.separated)")


def _write_allocation(conv: str) -> Case:
    def sample(seed, z):
        B, N, nw = z["B"], z["N"], z["nw"]

        def draw(s):
            return {"inputs/usage": _usage(s, B, N),
                    "inputs/write_gates": s.uniform((B, nw), 0.05, 0.95)}

        return _rejection(draw, lambda a: A.write_allocation_weights(
            a["inputs/usage"], a["inputs/write_gates"])[1].heads, seed)

    def run(a, conv, frozen):
        out, cache = A.write_allocation_weights_forward(a["inputs/usage"], a["inputs/write_gates"])
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        g = A.write_allocation_weights_backward((cot["allocation"],), cache)
        return {"inputs/usage": g.usage, "inputs/write_gates": g.write_gates}

    return _case("write_allocation_weights", conv, "SPEC §5 step 3", {"B": 2, "N": 5, "nw": 2}, sample, run, grads,
                 complex_step=False, kinks=_SORT_KINKS)


# ----------------------------------------------------------------------------- write weights


def _write_weights(conv: str) -> Case:
    def sample(seed, z):
        B, N, W, nw = z["B"], z["N"], z["W"], z["nw"]

        def draw(s):
            return {"inputs/memory": s.normal((B, N, W)),
                    "inputs/usage": _usage(s, B, N),
                    "inputs/write_keys": s.normal((B, nw, W)),
                    "inputs/write_strengths": _strengths(s, (B, nw)),
                    "inputs/allocation_gates": s.uniform((B, nw), 0.2, 0.8),
                    "inputs/write_gates": s.uniform((B, nw), 0.2, 0.8)}

        return _rejection(draw, lambda a: A.write_allocation_weights(
            a["inputs/usage"], a["inputs/allocation_gates"] * a["inputs/write_gates"])[1].heads, seed)

    def run(a, conv, frozen):
        out, cache = A.write_weights_forward(a["inputs/memory"], a["inputs/usage"], a["inputs/write_keys"],
                                             a["inputs/write_strengths"], a["inputs/allocation_gates"],
                                             a["inputs/write_gates"], convention=conv)
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        g = A.write_weights_backward((cot["write_weights"],), cache)
        return _named(g)

    return _case("write_weights", conv, "SPEC §5 steps 2-4", {"B": 2, "N": 5, "W": 3, "nw": 2}, sample, run, grads,
                 complex_step=False, kinks=_SORT_KINKS + "; " + _COSINE_KINKS, min_sizes=_MIN_W)


# ----------------------------------------------------------------------------- memory update


def _memory_update(conv: str) -> Case:
    def sample(seed, z):
        s = _host(seed)
        B, N, W, nw = z["B"], z["N"], z["W"], z["nw"]
        return {"inputs/memory": s.normal((B, N, W)), "inputs/write_weights": s.simplex((B, nw, N), total=0.9),
                "inputs/erase_vectors": s.uniform((B, nw, W), 0.05, 0.95),
                "inputs/write_vectors": s.normal((B, nw, W))}

    def run(a, conv, frozen):
        out, cache = A.memory_update_forward(a["inputs/memory"], a["inputs/write_weights"],
                                             a["inputs/erase_vectors"], a["inputs/write_vectors"])
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        return _named(A.memory_update_backward((cot["memory"],), cache))

    return _case("memory_update", conv, "SPEC §5 step 5", {"B": 2, "N": 5, "W": 3, "nw": 2}, sample, run, grads)


# ----------------------------------------------------------------------------- temporal linkage


def _linkage(conv: str) -> Case:
    def sample(seed, z):
        s = _host(seed)
        B, N, nw = z["B"], z["N"], z["nw"]
        return {"inputs/prev_link": _link(s, B, nw, N), "inputs/prev_precedence": s.simplex((B, nw, N), total=0.7),
                "inputs/write_weights": s.simplex((B, nw, N), total=0.9)}

    def run(a, conv, frozen):
        out, cache = A.temporal_linkage_forward(a["inputs/prev_link"], a["inputs/prev_precedence"],
                                                a["inputs/write_weights"])
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        return _named(A.temporal_linkage_backward((cot["link"], cot["precedence"]), cache))

    return _case("temporal_linkage", conv, "SPEC §5 step 6", {"B": 2, "N": 5, "nw": 2}, sample, run, grads)


# ----------------------------------------------------------------------------- directional weights


def _directional(conv: str) -> Case:
    def sample(seed, z):
        s = _host(seed)
        B, N, nw, R = z["B"], z["N"], z["nw"], z["R"]
        return {"inputs/link": _link(s, B, nw, N), "inputs/prev_read_weights": s.simplex((B, R, N), total=0.9)}

    def run(a, conv, frozen):
        out, cache = A.directional_weights_forward(a["inputs/link"], a["inputs/prev_read_weights"])
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        g = A.directional_weights_backward((cot["forward"], cot["backward"]), cache)
        return {"inputs/link": g.link, "inputs/prev_read_weights": g.prev_read_weights}

    return _case("directional_weights", conv, "SPEC §5 step 7", {"B": 2, "N": 5, "nw": 2, "R": 2}, sample, run, grads)


# ----------------------------------------------------------------------------- read weights


def _read_weights(conv: str) -> Case:
    def sample(seed, z):
        s = _host(seed)
        B, N, W, R, nw = z["B"], z["N"], z["W"], z["R"], z["nw"]
        return {"inputs/memory": s.normal((B, N, W)), "inputs/read_keys": s.normal((B, R, W)),
                "inputs/read_strengths": _strengths(s, (B, R)), "inputs/link": _link(s, B, nw, N),
                "inputs/prev_read_weights": s.simplex((B, R, N), total=0.9),
                "inputs/read_modes": s.simplex((B, R, 1 + 2 * nw))}

    def run(a, conv, frozen):
        out, cache = A.read_weights_forward(a["inputs/memory"], a["inputs/read_keys"], a["inputs/read_strengths"],
                                            a["inputs/link"], a["inputs/prev_read_weights"], a["inputs/read_modes"],
                                            convention=conv)
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        return _named(A.read_weights_backward((cot["read_weights"],), cache))

    return _case("read_weights", conv, "SPEC §5 steps 7-9", {"B": 2, "N": 5, "W": 3, "R": 2, "nw": 2},
                 sample, run, grads, min_sizes=_MIN_W, kinks=_COSINE_KINKS)


# ----------------------------------------------------------------------------- options: masked content, sharpening


def _masked_content(conv: str) -> Case:
    def sample(seed, z):
        s = _host(seed)
        B, H, N, W = z["B"], z["H"], z["N"], z["W"]
        return {"inputs/memory": s.normal((B, N, W)), "inputs/keys": s.normal((B, H, W)),
                "inputs/strengths": _strengths(s, (B, H)), "inputs/masks": s.uniform((B, H, W), 0.05, 0.95)}

    def run(a, conv, frozen):
        out, cache = A.masked_content_weights_forward(a["inputs/memory"], a["inputs/keys"], a["inputs/strengths"],
                                                      a["inputs/masks"], convention=conv)
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        return _named(A.masked_content_weights_backward((cot["weights"],), cache))

    return _case("masked_content_weights", conv, "SPEC §5 option masked_content; §1 cosine",
                 {"B": 2, "H": 2, "N": 5, "W": 3}, sample, run, grads, min_sizes=_MIN_W, kinks=_COSINE_KINKS,
                 config={"masked_content": True})


def _sharpen(conv: str) -> Case:
    def sample(seed, z):
        s = _host(seed)
        B, R, nw, N = z["B"], z["R"], z["nw"], z["N"]
        return {"inputs/weights": s.simplex((B, R, nw, N), total=0.9),
                "inputs/sharpness": s.uniform((B, R), 1.0, 3.0)}

    def run(a, conv, frozen):
        out, cache = A.sharpen_forward(a["inputs/weights"], a["inputs/sharpness"])
        return out._asdict(), {}, cache

    def grads(cot, cache, conv):
        g = A.sharpen_backward((cot["sharpened"],), cache)
        return {"inputs/weights": g.weights, "inputs/sharpness": g.sharpness}

    return _case("sharpen", conv, "SPEC §5 option link_sharpness", {"B": 2, "R": 2, "nw": 2, "N": 5},
                 sample, run, grads, config={"link_sharpness": True})


# ----------------------------------------------------------------------------- access step

_STATE = ("memory", "read_weights", "write_weights", "link", "precedence", "usage")

#: The golden format's fixed order of ``dnc/access_step``: (name, SPEC reference), outputs included.
ACCESS_ORDER: tuple[tuple[str, str], ...] = (
    ("intermediates/write_vectors", "SPEC §5 interface"),
    ("intermediates/erase_vectors", "SPEC §5 interface"),
    ("intermediates/free_gates", "SPEC §5 interface"),
    ("intermediates/allocation_gates", "SPEC §5 interface"),
    ("intermediates/write_gates", "SPEC §5 interface"),
    ("intermediates/read_modes", "SPEC §5 interface"),
    ("outputs/usage", "SPEC §5 step 1"),
    ("intermediates/write_content_weights", "SPEC §5 step 2"),
    ("intermediates/allocation", "SPEC §5 step 3"),
    ("outputs/write_weights", "SPEC §5 step 4"),
    ("outputs/memory", "SPEC §5 step 5"),
    ("outputs/link", "SPEC §5 step 6"),
    ("outputs/precedence", "SPEC §5 step 6"),
    ("intermediates/forward_weights", "SPEC §5 step 7"),
    ("intermediates/backward_weights", "SPEC §5 step 7"),
    ("intermediates/read_content_weights", "SPEC §5 step 8"),
    ("outputs/read_weights", "SPEC §5 step 9"),
    ("outputs/read_vectors", "SPEC §5 step 10"),
)


#: The interface slices of the options, as intermediates (placed after the read modes).
_OPTION_SLICES = {"masked_content": ("write_masks", "read_masks"),
                  "link_sharpness": ("forward_sharpness", "backward_sharpness")}


def access_order(options: tuple = ()) -> tuple[tuple[str, str], ...]:
    """[`ACCESS_ORDER`][refmem.dnc.cases.addressing.ACCESS_ORDER] with the interface slices of the enabled ``options`` after the read modes."""
    extra = tuple((f"intermediates/{n}", "SPEC §5 options (interface)")
                  for opt in AC.OPTIONS if opt in options for n in _OPTION_SLICES.get(opt, ()))
    at = [n for n, _ in ACCESS_ORDER].index("intermediates/read_modes") + 1
    return ACCESS_ORDER[:at] + extra + ACCESS_ORDER[at:]


def access_intermediates(cache: AC.AccessStepCache) -> dict[str, Any]:
    """The intermediates of one access step (bare names of [`ACCESS_ORDER`][refmem.dnc.cases.addressing.ACCESS_ORDER]), read from its cache:
    the activated interface, ``write_content_weights [B, nw, N]``, ``allocation [B, nw, N]`` (the
    per-head ``a_k`` before the gates), ``forward_weights`` / ``backward_weights [B, R, nw, N]`` and
    ``read_content_weights [B, R, N]``."""
    iface = cache.interface.interface
    out = {name: getattr(iface, name) for name in
           ("write_vectors", "erase_vectors", "free_gates", "allocation_gates", "write_gates", "read_modes")}
    for names in _OPTION_SLICES.values():  # the options' slices, where enabled
        out.update({n: getattr(iface, n) for n in names if getattr(iface, n) is not None})
    out["write_content_weights"] = cache.write.content
    out["allocation"] = cache.write.allocation
    out["forward_weights"] = cache.read.forward
    out["backward_weights"] = cache.read.backward
    out["read_content_weights"] = cache.read.content
    return out


def _access_cfg(a: dict, conv: str, options: tuple = ()) -> AC.AccessConfig:
    B, N, W = (int(s) for s in a["state/memory"].shape)
    R = int(a["state/read_weights"].shape[1])
    nw = int(a["state/write_weights"].shape[1])
    return AC.AccessConfig(N=N, W=W, R=R, nw=nw, convention=conv, **{o: True for o in options})


def _access(conv: str, options: tuple = (), variant: str | None = None) -> Case:
    def sample(seed, z):
        B, N, W, R, nw, Hc = z["B"], z["N"], z["W"], z["R"], z["nw"], z["Hc"]
        I = AC.interface_size(AC.AccessConfig(N, W, R, nw, conv, **{o: True for o in options}))

        def draw(s):
            return {"inputs/controller_output": s.normal((B, Hc)),
                    "params/W_xi": s.normal((Hc, I), scale=0.7),
                    "params/b_xi": s.normal((I,), scale=0.5),
                    "state/memory": s.normal((B, N, W)),
                    "state/read_weights": s.simplex((B, R, N), total=0.9),
                    "state/write_weights": s.simplex((B, nw, N), total=0.8),
                    "state/link": _link(s, B, nw, N),
                    "state/precedence": s.simplex((B, nw, N), total=0.7),
                    "state/usage": _usage(s, B, N)}

        return _rejection(draw, lambda a: run(a, conv, None)[2].write.allocation_cache.heads, seed)

    def run(a, conv, frozen):
        cfg = _access_cfg(a, conv, options)
        state = AC.AccessState(*(a[f"state/{k}"] for k in _STATE))
        stop = A.C.get(conv).stop_usage_gradient
        fz = frozen["state/write_weights"] if (stop and frozen) else None
        out, cache = AC.access_step_forward(a["inputs/controller_output"], a["params/W_xi"], a["params/b_xi"],
                                            state, cfg=cfg, frozen_write_weights=fz)
        outputs = {"read_vectors": out.read_vectors, **out.state._asdict()}
        return outputs, ({"state/write_weights": a["state/write_weights"]} if stop else {}), cache

    def grads(cot, cache, conv):
        d_new = AC.AccessState(*(cot[k] for k in _STATE))
        dh, dW, db, ds = AC.access_step_backward((cot["read_vectors"], d_new), cache)
        out = {"inputs/controller_output": dh, "params/W_xi": dW, "params/b_xi": db}
        out.update({f"state/{k}": v for k, v in ds._asdict().items()})
        return out

    stopped = ("usage w.r.t. state/write_weights (deepmind's tf.stop_gradient), checked with "
               "state/write_weights frozen at its recorded value") if conv == "deepmind" else ""
    return _case("access_step", conv, "SPEC §5 interface and steps 1-10",
                 {"B": 2, "N": 5, "W": 3, "R": 2, "nw": 2, "Hc": 4}, sample, run, grads,
                 complex_step=False, stopped=stopped, kinks=_SORT_KINKS + "; " + _COSINE_KINKS, min_sizes=_MIN_W,
                 trace=access_intermediates, order=access_order(options), variant=variant,
                 config={o: (o in options) for o in AC.OPTIONS} if options else None)


#: (builder, whether the function depends on a convention), in the catalogue's order.
_BUILDERS = ((_content, True), (_usage_case, True), (_allocation, False), (_write_allocation, False),
             (_write_weights, True), (_memory_update, False), (_linkage, False), (_directional, False),
             (_read_weights, True), (_access, True), (_masked_content, True), (_sharpen, False))

#: The option variants of the access step and the core: (name prefix, enabled options).
OPTION_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = tuple((o, (o,)) for o in AC.OPTIONS) + (("all", AC.OPTIONS),)

CASES: list[Case] = [build(conv) for build, depends in _BUILDERS for conv in (CONVENTION_NAMES if depends else (None,))] + [
    _access(conv, opts, f"{prefix}_{conv}") for prefix, opts in OPTION_VARIANTS for conv in CONVENTION_NAMES]
