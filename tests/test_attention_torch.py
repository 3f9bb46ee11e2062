"""An independent implementation: SPEC §2 and §3 written with torch autograd, float64.

The torch code below is written from the equations of docs/spec.md, not from refmem's
model code; it must match refmem's forward outputs and hand-derived gradients
to 1e-10 (and JAX, when installed, must agree with torch for the decoder).
"""

from __future__ import annotations

import numpy as np
import pytest

from refmem import catalogue, gradcheck
from refmem import xp as rx

torch = pytest.importorskip("torch")

NP = rx.backend("numpy")
TOL = 1e-10


def _t(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=True)


def torch_decoder(h, P, output_state, mask=None, y_prev=None):
    """SPEC §2 equations 1-8 in torch; ``P`` maps SPEC names to tensors."""
    B, T, D = h.shape
    K = P["W_o"].shape[0]
    s = torch.tanh(h[:, 0] @ P["W_s"])
    y = torch.zeros(B, K, dtype=h.dtype)
    uh = h @ P["U_a"] + P["b_a"]
    ys, alphas, ss = [], [], []
    for t in range(T):
        y_in = y if y_prev is None else y_prev[:, t]
        e = torch.tanh((s @ P["W_a"]).unsqueeze(1) + uh) @ P["V_a"]  # (1) [B, T]
        if mask is not None:
            e = e.masked_fill(mask == 0, float("-inf"))
        alpha = torch.softmax(e, dim=1)  # (2)
        c = torch.einsum("bj,bjd->bd", alpha, h)  # (3)
        r = torch.sigmoid(y_in @ P["W_r"] + s @ P["U_r"] + c @ P["C_r"] + P["b_r"])  # (4)
        z = torch.sigmoid(y_in @ P["W_z"] + s @ P["U_z"] + c @ P["C_z"] + P["b_z"])  # (5)
        p = torch.tanh(y_in @ P["W_p"] + (r * s) @ P["U_p"] + c @ P["C_p"] + P["b_p"])  # (6)
        s_new = (1 - z) * s + z * p  # (7)
        s_star = s if output_state == "previous" else s_new
        y = torch.softmax(y_in @ P["W_o"] + s_star @ P["U_o"] + c @ P["C_o"] + P["b_o"], dim=1)  # (8)
        s = s_new
        ys.append(y)
        alphas.append(alpha)
        ss.append(s)
    return {"y": torch.stack(ys, 1), "alpha": torch.stack(alphas, 1), "s": torch.stack(ss, 1)}


def torch_luong(h, hs, P, score, alignment, window, t0):
    """SPEC §3 in torch for queries ``h [B, T, H]`` over ``hs [B, S, Hs]``."""
    B, T, H = h.shape
    S = hs.shape[1]
    if score == "dot":
        sc = h @ hs.transpose(1, 2)
    elif score == "general":
        sc = (h @ P["W_a"]) @ hs.transpose(1, 2)
    elif score == "concat":
        cat = torch.cat([h.unsqueeze(2).expand(B, T, S, H), hs.unsqueeze(1).expand(B, T, S, hs.shape[2])], dim=-1)
        sc = torch.tanh(cat @ P["W_a"]) @ P["v_a"]
    else:
        sc = h @ P["W_a"]
    out = {}
    if alignment == "global":
        a = torch.softmax(sc, dim=-1)
    else:
        if alignment == "local_m":
            p = (t0 + torch.arange(T, dtype=h.dtype)).expand(B, T)
        else:
            p = S * torch.sigmoid(torch.tanh(h @ P["W_p"]) @ P["v_p"])
            out["p"] = p
        pos = torch.arange(S, dtype=h.dtype)
        dist = pos.view(1, 1, S) - p.unsqueeze(-1)
        inside = dist.detach().abs() <= window
        soft = torch.softmax(sc.masked_fill(~inside, float("-inf")), dim=-1)
        sigma = window / 2
        a = soft * torch.exp(-dist**2 / (2 * sigma**2))
    c = a @ hs
    out.update(a=a, c=c, h_tilde=torch.tanh(torch.cat([c, h], dim=-1) @ P["W_c"]))
    return out


def _compare(case, seed, run_torch):
    arrays = case.draw(NP, seed)
    ref = {k: rx.to_numpy(v) for k, v in case.forward(arrays).outputs.items()}
    cot = gradcheck.cotangents_for(ref, seed)
    grads = case.backward(arrays, {k: NP.asarray(v) for k, v in cot.items()})
    leaves = {k: _t(v) for k, v in arrays.items()}
    out = run_torch(leaves)
    assert set(out) == set(ref)
    for k in ref:
        np.testing.assert_allclose(out[k].detach().numpy(), ref[k], rtol=0, atol=TOL, err_msg=k)
    loss = sum((out[k] * torch.tensor(cot[k])).sum() for k in out)
    keys = case.differentiable(arrays)
    tg = torch.autograd.grad(loss, [leaves[k] for k in keys], allow_unused=True)
    for k, g in zip(keys, tg):
        g = np.zeros(arrays[k].shape) if g is None else g.numpy()
        np.testing.assert_allclose(rx.to_numpy(grads[k]), g, rtol=0, atol=TOL, err_msg=k)


BAHDANAU = [c for c in catalogue.cases(["attention"]) if c.function_name == "bahdanau_decoder"]


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("case", BAHDANAU, ids=[c.variant for c in BAHDANAU])
def test_decoder_matches_torch_autograd(case, seed):
    cfg = case.config

    def run(L):
        P = {k.split("/", 1)[1]: v for k, v in L.items() if k.startswith("params/")}
        return torch_decoder(L["inputs/h"], P, cfg["output_state"],
                             mask=L.get("inputs/mask"), y_prev=L.get("inputs/y_prev"))

    _compare(case, seed, run)


LUONG = [c for c in catalogue.cases(["attention"]) if c.function_name.startswith("luong_")]


@pytest.mark.parametrize("case", LUONG, ids=[c.name.split("/", 1)[1] for c in LUONG])
def test_luong_matches_torch_autograd(case):
    cfg = case.config

    def run(L):
        P = {k.split("/", 1)[1]: v for k, v in L.items() if k.startswith("params/")}
        return torch_luong(L["inputs/h"], L["inputs/hs"], P, cfg["score"], cfg["alignment"],
                           cfg["window"], cfg["t0"] or 0)

    _compare(case, 0, run)


def test_decoder_jax_agrees_with_torch():
    """JAX (optional) computes the same decoder gradient of W_a and h as torch."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    case = catalogue.get_case("attention/bahdanau_decoder/current")
    arrays = {k: rx.to_numpy(v) for k, v in case.draw(NP, 0).items()}

    def jax_loss(h, P):
        B, T, D = h.shape
        s = jnp.tanh(h[:, 0] @ P["W_s"])
        y = jnp.zeros((B, P["W_o"].shape[0]))
        uh = h @ P["U_a"] + P["b_a"]
        total = 0.0
        for t in range(T):
            e = jnp.tanh((s @ P["W_a"])[:, None, :] + uh) @ P["V_a"]
            alpha = jax.nn.softmax(e, axis=1)
            c = jnp.einsum("bj,bjd->bd", alpha, h)
            r = jax.nn.sigmoid(y @ P["W_r"] + s @ P["U_r"] + c @ P["C_r"] + P["b_r"])
            z = jax.nn.sigmoid(y @ P["W_z"] + s @ P["U_z"] + c @ P["C_z"] + P["b_z"])
            p = jnp.tanh(y @ P["W_p"] + (r * s) @ P["U_p"] + c @ P["C_p"] + P["b_p"])
            s = (1 - z) * s + z * p
            y = jax.nn.softmax(y @ P["W_o"] + s @ P["U_o"] + c @ P["C_o"] + P["b_o"], axis=1)
            total = total + jnp.sum(y * jnp.arange(1, y.shape[1] + 1)) + jnp.sum(alpha**2)
        return total

    P = {k.split("/", 1)[1]: jnp.asarray(v) for k, v in arrays.items() if k.startswith("params/")}
    gh, gP = jax.grad(jax_loss, argnums=(0, 1))(jnp.asarray(arrays["inputs/h"]), P)

    L = {k: _t(v) for k, v in arrays.items()}
    Pt = {k.split("/", 1)[1]: v for k, v in L.items() if k.startswith("params/")}
    out = torch_decoder(L["inputs/h"], Pt, "current")
    weights = torch.arange(1, out["y"].shape[2] + 1, dtype=torch.float64)
    loss = (out["y"] * weights).sum() + (out["alpha"] ** 2).sum()
    th, tW = torch.autograd.grad(loss, [L["inputs/h"], Pt["W_a"]])
    np.testing.assert_allclose(np.asarray(gh), th.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(np.asarray(gP["W_a"]), tW.numpy(), rtol=0, atol=TOL)
