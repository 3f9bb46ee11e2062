"""The Csordás & Schmidhuber options (SPEC §5) and the core variants with an active clip.

The gradients are checked by the catalogue cases (``dnc/access_step/<option>_<convention>``,
``dnc/core_unroll/<option>_deepmind``, ``dnc/masked_content_weights/*``, ``dnc/sharpen/*``,
``dnc/core_unroll/clip_active_*``); these tests pin the forward definitions and the wiring.
"""

from __future__ import annotations

import numpy as np
import pytest

from refmem import xp as rx
from refmem.catalogue import get_case
from refmem.dnc import access as AC
from refmem.dnc import addressing as A
from refmem.dnc.cases import core as K
from refmem.dnc.params import DNCConfig

NP = rx.backend("numpy")


def test_interface_grows_by_the_option_slices_in_spec_order():
    base = AC.AccessConfig(N=5, W=3, R=2, nw=2)
    masked = AC.AccessConfig(N=5, W=3, R=2, nw=2, masked_content=True)
    sharp = AC.AccessConfig(N=5, W=3, R=2, nw=2, link_sharpness=True)
    both = AC.AccessConfig(N=5, W=3, R=2, nw=2, masked_content=True, link_sharpness=True, deallocation=True)
    assert masked.interface_size == base.interface_size + 2 * 3 + 2 * 3
    assert sharp.interface_size == base.interface_size + 2 * 2
    assert both.interface_size == base.interface_size + 12 + 4
    names = [n for n, _, _ in AC.interface_layout(both)]
    assert names[-4:] == ["write_masks", "read_masks", "forward_sharpness", "backward_sharpness"]
    assert [a for _, _, a in AC.interface_layout(both)][-4:] == ["sigmoid", "sigmoid", "oneplus", "oneplus"]
    assert DNCConfig(D=2, Y=2, masked_content=True).access.masked_content
    with pytest.raises(TypeError, match="AccessConfig.deallocation"):
        AC.AccessConfig(N=5, W=3, R=2, nw=2, deallocation=1)


def test_the_options_reduce_to_the_plain_equations():
    rng = np.random.default_rng(3)
    B, N, W, H = 2, 5, 3, 2
    M, k, b = rng.normal(size=(B, N, W)), rng.normal(size=(B, H, W)), rng.uniform(0, 2, size=(B, H))
    (plain,), _ = A.content_weights_forward(M, k, b)
    (masked,), _ = A.masked_content_weights_forward(M, k, b, np.ones((B, H, W)))
    np.testing.assert_allclose(masked, plain, rtol=0, atol=1e-15)
    # masking a word position out removes it from both the key and every row
    m = np.ones((B, H, W))
    m[:, :, 0] = 0.0
    (masked,), _ = A.masked_content_weights_forward(M, k, b, m)
    (dropped,), _ = A.content_weights_forward(M[:, :, 1:], k[:, 0:1, 1:], b[:, 0:1])
    np.testing.assert_allclose(masked[:, 0:1], dropped, rtol=0, atol=1e-14)
    # sharpness 1: the weights plus eps, normalised; sharpness 3: cubed and normalised
    d = rng.dirichlet(np.ones(N), size=(B, 2, 2)) * 0.8
    (out,), _ = A.sharpen_forward(d, np.ones((B, 2)))
    np.testing.assert_allclose(out, (d + 1e-6) / (d + 1e-6).sum(-1, keepdims=True), rtol=1e-14)
    (out,), _ = A.sharpen_forward(d, np.full((B, 2), 3.0))
    np.testing.assert_allclose(out, (d + 1e-6) ** 3 / ((d + 1e-6) ** 3).sum(-1, keepdims=True), rtol=1e-13)
    # de-allocation with a retention of 1 is the plain update; with psi it scales the old memory
    ww, e, v = rng.dirichlet(np.ones(N), size=(B, 2)) * 0.9, rng.uniform(0.1, 0.9, (B, 2, W)), rng.normal(size=(B, 2, W))
    (m0,), _ = A.memory_update_forward(M, ww, e, v)
    (m1,), _ = A.memory_update_forward(M, ww, e, v, deallocation=np.ones((B, N)))
    np.testing.assert_array_equal(m0, m1)
    psi = rng.uniform(0.1, 0.9, (B, N))
    (m2,), _ = A.memory_update_forward(M, ww, e, v, deallocation=psi)
    (m3,), _ = A.memory_update_forward(M * psi[:, :, None], ww, e, v)
    np.testing.assert_allclose(m2, m3, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("convention", ["deepmind", "paper"])
def test_access_step_options_off_equal_the_plain_step_and_each_changes_it(convention):
    case = get_case(f"dnc/access_step/all_{convention}")
    a = case.sample(NP, 0, case.sizes)
    f = case.forward(a)
    # sharpened directional weights are distributions over the slots, and what the trace holds
    trace = f.trace()
    np.testing.assert_allclose(np.sum(trace["forward_weights"], axis=-1), 1.0, rtol=1e-13)
    for name in ("write_masks", "read_masks", "forward_sharpness", "backward_sharpness"):
        assert name in trace
    assert np.all(trace["forward_sharpness"] > 1.0)
    assert case.config["masked_content"] and case.config["deallocation"] and case.config["link_sharpness"]
    plain = get_case(f"dnc/access_step/{convention}")
    assert plain.config.get("masked_content", False) is False
    assert [n for n, _ in plain.order] == [n for n, _ in case.order if n.split("/")[-1] not in
                                            ("write_masks", "read_masks", "forward_sharpness", "backward_sharpness")]


def test_the_gradient_through_a_clipped_output_is_zero():
    case = K.VARIANTS["clip_active_deepmind"]
    a = case.sample(NP, 0, case.sizes)
    f = case.forward(a)
    y = f.outputs["y"]
    clipped = np.argwhere(np.abs(y) >= K.CLIP_ACTIVE)
    inside = np.argwhere(np.abs(y) < K.CLIP_ACTIVE)
    assert len(clipped) and len(inside)
    margin, counts = K.clip_stats(_cache(case, a), a["params/b_y"])
    assert margin >= K.CLIP_MARGIN and all(n > 0 for n in counts.values())
    cot = {k: np.zeros_like(v) for k, v in f.outputs.items()}
    cot["y"][tuple(clipped[0])] = 1.0
    grads = case.backward(a, cot)
    for name, g in grads.items():
        assert np.all(g == 0.0), name
    cot["y"][tuple(clipped[0])] = 0.0
    cot["y"][tuple(inside[0])] = 1.0
    assert any(np.any(g != 0.0) for g in case.backward(a, cot).values())


def _cache(case, a):
    from refmem.dnc.core import unroll_forward
    from refmem.dnc.params import from_named

    cfg = K.config_from(a, "deepmind", 1, True, K.CLIP_ACTIVE)
    params = from_named({k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("params/")}, cfg)
    _, cache = unroll_forward(a["inputs/x"], params, K._state_from(a, 1), cfg=cfg)
    return cache
