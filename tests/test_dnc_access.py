"""SPEC §5: the access step (interface, steps 1-10) and its contract with the core."""

from __future__ import annotations

import numpy as np
import pytest

from refmem import catalogue, gradcheck
from refmem import xp as rx
from refmem.catalogue import Case, Forward
from refmem.dnc import access as AC
from refmem.dnc import addressing as A
from refmem.dnc.cases.addressing import SORT_GAP, sort_gap
from refmem.errors import DomainError, DTypeError

NP = rx.backend("numpy")
FIELDS = AC.AccessState._fields


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _draw(cfg, B=2, Hc=4, seed=0):
    """A state and parameters like the catalogue's (host NumPy)."""
    case = catalogue.get_case(f"dnc/access_step/{cfg.convention}")
    a = case.draw(NP, seed, {"B": B, "N": cfg.N, "W": cfg.W, "R": cfg.R, "nw": cfg.nw, "Hc": Hc})
    state = AC.AccessState(*(a[f"state/{k}"] for k in FIELDS))
    return a["inputs/controller_output"], a["params/W_xi"], a["params/b_xi"], state


# ----------------------------------------------------------------------------- configuration


def test_interface_size():
    assert AC.interface_size(AC.AccessConfig(N=5, W=3, R=2, nw=2)) == 44
    for W, R in [(3, 1), (4, 2), (10, 4)]:  # one write head: the paper's (W × R) + 3W + 5R + 3
        cfg = AC.AccessConfig(N=7, W=W, R=R, nw=1)
        assert cfg.interface_size == W * R + 3 * W + 5 * R + 3
    assert AC.AccessConfig(N=4, W=2, R=1, nw=3).read_mode_width == 7


@pytest.mark.parametrize("kw, error, match", [
    ({"N": 0}, DomainError, r"AccessConfig.N: expected an integer >= 1, got 0"),
    ({"nw": 1.5}, DTypeError, r"AccessConfig.nw: expected an integer >= 1, got 1.5"),
    ({"R": True}, DTypeError, r"AccessConfig.R"),
    ({"convention": "graves"}, DomainError, r"convention: expected one of 'deepmind', 'paper', got 'graves'"),
    ({"masked_content": "False"}, DTypeError, r"AccessConfig.masked_content: expected a bool"),
])
def test_config_is_validated(kw, error, match):
    args = {"N": 4, "W": 3, "R": 2, "nw": 1, **kw}
    with pytest.raises(error, match=match):
        AC.AccessConfig(**args)


def test_initial_state_is_zeros_with_the_contract_shapes():
    cfg = AC.AccessConfig(N=5, W=3, R=2, nw=2)
    s = AC.initial_state(NP, 4, cfg)
    shapes = {"memory": (4, 5, 3), "read_weights": (4, 2, 5), "write_weights": (4, 2, 5),
              "link": (4, 2, 5, 5), "precedence": (4, 2, 5), "usage": (4, 5)}
    for name in FIELDS:
        x = getattr(s, name)
        assert x.shape == shapes[name] and x.dtype == np.float64 and not np.any(x)
    assert AC.initial_state(NP, 1, cfg, dtype=NP.float32).memory.dtype == np.float32


def test_interface_slices_in_spec_order_with_their_activations():
    cfg = AC.AccessConfig(N=4, W=3, R=2, nw=2)
    I = cfg.interface_size
    b = np.linspace(-2.0, 2.0, I)
    iface, _ = AC.interface_forward(np.zeros((1, 5)), np.zeros((5, I)), b, cfg=cfg)
    W, R, nw = 3, 2, 2
    o = 0

    def take(n):
        nonlocal o
        out = b[o:o + n]
        o += n
        return out

    np.testing.assert_array_equal(iface.write_vectors[0], take(nw * W).reshape(nw, W))
    np.testing.assert_allclose(iface.erase_vectors[0], _sig(take(nw * W)).reshape(nw, W), rtol=1e-15)
    np.testing.assert_allclose(iface.free_gates[0], _sig(take(R)), rtol=1e-15)
    np.testing.assert_allclose(iface.allocation_gates[0], _sig(take(nw)), rtol=1e-15)
    np.testing.assert_allclose(iface.write_gates[0], _sig(take(nw)), rtol=1e-15)
    modes = take(R * (1 + 2 * nw)).reshape(R, 1 + 2 * nw)
    modes = np.exp(modes) / np.exp(modes).sum(-1, keepdims=True)
    np.testing.assert_allclose(iface.read_modes[0], modes, rtol=1e-14)
    np.testing.assert_array_equal(iface.write_keys[0], take(nw * W).reshape(nw, W))
    np.testing.assert_array_equal(iface.write_strengths[0], take(nw))
    np.testing.assert_array_equal(iface.read_keys[0], take(R * W).reshape(R, W))
    np.testing.assert_array_equal(iface.read_strengths[0], take(R))
    assert o == I


def test_interface_and_state_errors():
    cfg = AC.AccessConfig(N=5, W=3, R=2, nw=2)
    h, W_xi, b_xi, state = _draw(cfg)
    with pytest.raises(rx.ShapeError, match=r"W_xi: expected shape \(Hc, I\) = \(4, 44\), got \(4, 40\) \(I = 44"):
        AC.access_step_forward(h, W_xi[:, :40], b_xi, state, cfg=cfg)
    with pytest.raises(rx.ShapeError, match=r"b_xi: expected shape \(I,\) = \(44,\), got \(43,\)"):
        AC.access_step_forward(h, W_xi, b_xi[:43], state, cfg=cfg)
    with pytest.raises(rx.ShapeError, match=r"state.link: expected shape \(B, nw, N, N\) = \(2, 2, 5, 5\), got \(2, 1, 5, 5\)"):
        AC.access_step_forward(h, W_xi, b_xi, state._replace(link=state.link[:, :1]), cfg=cfg)
    cfg3 = AC.AccessConfig(N=5, W=3, R=3, nw=2)  # inconsistent number of read heads
    with pytest.raises(rx.ShapeError, match=r"W_xi: expected shape \(Hc, I\) = \(4, 54\), got \(4, 44\)"):
        AC.access_step_forward(h, W_xi, b_xi, state, cfg=cfg3)
    with pytest.raises(rx.ShapeError, match=r"state.read_weights: expected shape \(B, R, N\) = \(2, 3, 5\), got \(2, 2, 5\)"):
        AC.access_step_forward(h, np.zeros((4, 54)), np.zeros(54), state, cfg=cfg3)
    with pytest.raises(TypeError, match="cfg: expected an AccessConfig"):
        AC.access_step_forward(h, W_xi, b_xi, state, cfg={"N": 5})
    with pytest.raises(TypeError):  # the config is keyword-only (0.1 took it fifth, positionally)
        AC.access_step_forward(h, W_xi, b_xi, state, cfg)


# ----------------------------------------------------------------------------- the step


@pytest.mark.parametrize("conv", ["deepmind", "paper"])
def test_step_is_the_composition_of_the_addressing_functions(conv):
    cfg = AC.AccessConfig(N=5, W=3, R=2, nw=2, convention=conv)
    h, W_xi, b_xi, s = _draw(cfg)
    (rv, new), _ = AC.access_step_forward(h, W_xi, b_xi, s, cfg=cfg)
    it, _ = AC.interface_forward(h, W_xi, b_xi, cfg=cfg)
    (u, _), _ = A.usage_forward(s.usage, s.write_weights, it.free_gates, s.read_weights, convention=conv)
    (ww,), _ = A.write_weights_forward(s.memory, u, it.write_keys, it.write_strengths, it.allocation_gates,
                                       it.write_gates, convention=conv)
    (M,), _ = A.memory_update_forward(s.memory, ww, it.erase_vectors, it.write_vectors)
    (L, p), _ = A.temporal_linkage_forward(s.link, s.precedence, ww)
    (wr,), _ = A.read_weights_forward(M, it.read_keys, it.read_strengths, L, s.read_weights, it.read_modes,
                                      convention=conv)
    for got, ref in zip(new, (M, wr, ww, L, p, u)):
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_allclose(rv, np.einsum("brn,bnw->brw", wr, M), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("conv", ["deepmind", "paper"])
def test_first_step_from_the_initial_state(conv):
    cfg = AC.AccessConfig(N=6, W=4, R=2, nw=2, convention=conv)
    r = np.random.default_rng(0)
    h, W_xi, b_xi = r.normal(size=(3, 5)), r.normal(size=(5, cfg.interface_size)), r.normal(size=cfg.interface_size)
    (rv, new), cache = AC.access_step_forward(h, W_xi, b_xi, AC.initial_state(NP, 3, cfg), cfg=cfg)
    assert rv.shape == (3, 2, 4)
    for x in (rv, *new):
        assert np.all(np.isfinite(x))
    d = AC.access_step_backward((r.normal(size=rv.shape), AC.AccessState(*(r.normal(size=x.shape) for x in new))),
                                cache)
    for x in (*d[:3], *d[3]):
        assert np.all(np.isfinite(x))


def test_none_gradients_mean_zero():
    cfg = AC.AccessConfig(N=5, W=3, R=2, nw=2, convention="paper")
    h, W_xi, b_xi, s = _draw(cfg)
    (rv, new), cache = AC.access_step_forward(h, W_xi, b_xi, s, cfg=cfg)
    r = np.random.default_rng(1)
    d_rv = r.normal(size=rv.shape)
    d_link = r.normal(size=new.link.shape)
    zeros = AC.AccessState(*(np.zeros(x.shape) for x in new))
    ref = AC.access_step_backward((d_rv, zeros._replace(link=d_link)), cache)
    got = AC.access_step_backward((d_rv, AC.AccessState(None, None, None, d_link, None, None)), cache)
    for x, y in zip((*ref[:3], *ref[3]), (*got[:3], *got[3])):
        np.testing.assert_array_equal(x, y)
    only_rv = AC.access_step_backward((d_rv, None), cache)
    ref = AC.access_step_backward((d_rv, zeros), cache)
    for x, y in zip((*ref[:3], *ref[3]), (*only_rv[:3], *only_rv[3])):
        np.testing.assert_array_equal(x, y)


def test_frozen_write_weights_are_used_only_under_deepmind():
    for conv, changes in (("deepmind", True), ("paper", False)):
        cfg = AC.AccessConfig(N=5, W=3, R=2, nw=2, convention=conv)
        h, W_xi, b_xi, s = _draw(cfg)
        (_, base), _ = AC.access_step_forward(h, W_xi, b_xi, s, cfg=cfg)
        (_, frozen), _ = AC.access_step_forward(h, W_xi, b_xi, s, cfg=cfg, frozen_write_weights=0.5 * s.write_weights)
        assert (not np.array_equal(base.usage, frozen.usage)) == changes


def test_deepmind_stops_every_gradient_to_the_previous_write_weights():
    cfg = AC.AccessConfig(N=5, W=3, R=2, nw=2, convention="deepmind")
    h, W_xi, b_xi, s = _draw(cfg)
    (rv, new), cache = AC.access_step_forward(h, W_xi, b_xi, s, cfg=cfg)
    r = np.random.default_rng(2)
    _, _, _, ds = AC.access_step_backward((r.normal(size=rv.shape), AC.AccessState(*(r.normal(size=x.shape)
                                                                                      for x in new))), cache)
    assert not np.any(ds.write_weights)


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
def test_float32_in_float32_out(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    xp = rx.backend(backend)
    cfg = AC.AccessConfig(N=5, W=3, R=2, nw=2)
    h, W_xi, b_xi, s = _draw(cfg)
    f32 = lambda x: rx.from_numpy(xp, np.asarray(x, dtype=np.float32))  # noqa: E731
    (rv, new), cache = AC.access_step_forward(f32(h), f32(W_xi), f32(b_xi), AC.AccessState(*map(f32, s)), cfg=cfg)
    assert rv.dtype == xp.float32 and all(x.dtype == xp.float32 for x in new)
    d = AC.access_step_backward((f32(np.ones(rv.shape)), None), cache)
    assert all(x.dtype == xp.float32 for x in (*d[:3], *d[3]))
    (ref, _), _ = AC.access_step_forward(h, W_xi, b_xi, s, cfg=cfg)
    np.testing.assert_allclose(rx.to_numpy(rv), ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- two steps (BPTT)


def _two_step_case(conv: str) -> Case:
    """Two chained steps: the state gradient of step 2 feeds step 1's backward (the core's BPTT).

    Under deepmind both stopped tensors are frozen: the initial write weights and the write
    weights step 1 hands to step 2's usage.
    """
    B, N, W, R, nw, Hc = 2, 4, 3, 2, 2, 3
    cfg = AC.AccessConfig(N=N, W=W, R=R, nw=nw, convention=conv)
    stop = conv == "deepmind"

    def run(a, frozen):
        s0 = AC.AccessState(*(a[f"state/{k}"] for k in FIELDS))
        fz0 = frozen["state/write_weights"] if (stop and frozen) else None
        (rv1, s1), c1 = AC.access_step_forward(a["inputs/h1"], a["params/W_xi"], a["params/b_xi"], s0, cfg=cfg,
                                               frozen_write_weights=fz0)
        fz1 = frozen["step1/write_weights"] if (stop and frozen) else None
        (rv2, s2), c2 = AC.access_step_forward(a["inputs/h2"], a["params/W_xi"], a["params/b_xi"], s1, cfg=cfg,
                                               frozen_write_weights=fz1)
        rec = {"state/write_weights": s0.write_weights, "step1/write_weights": s1.write_weights} if stop else {}
        return {"rv1": rv1, "rv2": rv2, **{f"s2_{k}": v for k, v in s2._asdict().items()}}, rec, (c1, c2)

    def sample(xp, seed, sizes):
        for attempt in range(200):
            case = catalogue.get_case(f"dnc/access_step/{conv}")
            a = case.draw(NP, 1000 * seed + attempt, {"B": B, "N": N, "W": W, "R": R, "nw": nw, "Hc": Hc})
            a = {"inputs/h1": a.pop("inputs/controller_output"),
                 "inputs/h2": rx.Sampler(NP, seed + 77).normal((B, Hc)), **a}
            _, _, (c1, c2) = run(a, None)
            if min(sort_gap(c.write.allocation_cache.heads) for c in (c1, c2)) >= SORT_GAP:
                return {k: rx.from_numpy(xp, np.asarray(v)) for k, v in a.items()}
        raise RuntimeError("no separated draw")

    def forward(a, frozen=None):
        out, rec, _ = run(a, frozen)
        return Forward(out, rec)

    def backward(a, cot):
        _, _, (c1, c2) = run(a, None)
        d_s2 = AC.AccessState(*(cot[f"s2_{k}"] for k in FIELDS))
        dh2, dW2, db2, d_s1 = AC.access_step_backward((cot["rv2"], d_s2), c2)
        dh1, dW1, db1, d_s0 = AC.access_step_backward((cot["rv1"], d_s1), c1)
        out = {"inputs/h1": dh1, "inputs/h2": dh2, "params/W_xi": dW1 + dW2, "params/b_xi": db1 + db2}
        out.update({f"state/{k}": v for k, v in d_s0._asdict().items()})
        return out

    return Case(f"dnc/two_steps/{conv}", "SPEC §5", "two access steps", sample, forward, backward,
                complex_step=False)


@pytest.mark.parametrize("conv", ["deepmind", "paper"])
def test_two_chained_steps_pass_the_gradient_check(conv):
    records = gradcheck.check_case(_two_step_case(conv), NP, seed=0, methods=("central", "directional"))
    bad = [r for r in records if not r.passed]
    assert records and not bad, bad
