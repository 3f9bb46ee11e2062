"""Seeded inputs, parameters and cotangents shared by every implementation.

Every implementation differentiates ``L = Σ out ∘ cot`` for the same input
``x``, parameters and cotangent, drawn here with NumPy (float64, rounded to
float32-representable values) and cast by each implementation to its dtype.
Parameter names and shapes are SPEC's (§2, §4, §5); weights are scaled by
``1/sqrt(fan_in)``, biases small.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def _draw(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(np.float64)


def param_shapes(model: str, s: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape for ``model`` at sizes ``s`` (SPEC §2, §4, §5)."""
    if model == "memory_lstm":
        D, H, M = s["D"], s["H"], s["M"]
        out: dict[str, tuple[int, ...]] = {}
        for g in ("i", "f", "o", "c"):
            out.update({f"W_{g}": (D, H), f"U_{g}": (H, H), f"b_{g}": (H,)})
        out.update({"W_e": (D, M), "U_e": (H, M), "b_e": (M,), "W_m": (D, H)})
        return out
    if model == "attention":
        D, H, K = s["D"], s["H"], s["K"]
        out = {"V_a": (H,), "W_a": (H, H), "U_a": (D, H), "b_a": (H,)}
        for g in ("r", "z", "p"):
            out.update({f"W_{g}": (K, H), f"U_{g}": (H, H), f"C_{g}": (D, H), f"b_{g}": (H,)})
        out.update({"W_o": (K, K), "U_o": (H, K), "C_o": (D, K), "b_o": (K,), "W_s": (D, H)})
        return out
    if model == "dnc":
        D, Y, H, W, R, nw = s["D"], s["Y"], s["H"], s["W"], s["R"], s["nw"]
        interface = 3 * nw * W + nw + 2 * nw + R * (1 + 2 * nw) + R * W + 2 * R
        return {"W_lstm1": (D + R * W + H, 4 * H), "b_lstm1": (4 * H,), "W_xi": (H, interface),
                "b_xi": (interface,), "W_y": (H + R * W, Y), "b_y": (Y,)}
    raise KeyError(f"unknown model {model!r}")


def output_shape(model: str, s: Mapping[str, int]) -> tuple[int, ...]:
    """Shape of the output the loss reads: ``h``, ``y`` or the DNC's ``y``."""
    B, T = s["B"], s["T"]
    return {"memory_lstm": (B, T, s.get("H", 0)), "attention": (B, T, s.get("K", 0)),
            "dnc": (B, T, s.get("Y", 0))}[model]


def make(model: str, sizes: Mapping[str, int], seed: int = 0) -> dict:
    """``{"x": [B, T, D], "params": {name: array}, "cot": output-shaped}`` (NumPy float64)."""
    rng = np.random.default_rng(seed)
    B, T, D = sizes["B"], sizes["T"], sizes["D"]
    params = {}
    for name, shape in param_shapes(model, sizes).items():
        scale = 0.1 if len(shape) == 1 else 1.0 / np.sqrt(shape[0])
        params[name] = _draw(rng, shape, scale)
    x = _draw(rng, (B, T, D), 1.0)
    cot = _draw(rng, output_shape(model, sizes), 1.0)
    return {"x": x, "params": params, "cot": cot}
