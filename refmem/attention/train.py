"""A small training demo of the Bahdanau decoder (SPEC §2) in refmem alone: reversing sequences.

Task: a sequence of ``T`` symbols drawn from ``V`` is to be emitted in reverse.
There is no learned encoder; the annotations are fixed features of the source,
``h_j = [one_hot(x_j) ; one_hot(j)]`` (``D = V + T``), so that the decoder can find
a position only by attending to it. The decoder runs free (``y_{t-1}`` is its own
previous softmax, no teacher forcing), the loss is the mean cross-entropy of
``y_t`` against ``x_{T+1-t}``, gradients come from
[`decoder_backward`][refmem.attention.bahdanau.decoder_backward], and the optimiser
is Adam with global-norm clipping from [`refmem.optim`][refmem.optim].

After training, step ``t`` attends to source position ``T+1-t``: the heat map
of ``alpha`` shows the anti-diagonal. This module is the training code only; the
command line runs it and draws the heat map
([`reversal_heatmap`][refmem.plots.reversal_heatmap]):

    refmem train reverse --plot reverse_alpha.png
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

from .. import xp as rx
from ..optim import Adam, clip_by_global_norm
from ..sampling import Sampler
from .bahdanau import DecoderOutputs, DecoderParams, decoder_backward, decoder_forward, init_params

__all__ = ["TrainResult", "make_batch", "loss_and_grads", "train"]


class TrainResult(NamedTuple):
    """``params``: the trained :class:`DecoderParams`; ``losses``: mean cross-entropy per step
    (python floats); ``accuracy``: symbol accuracy of the final evaluation batch; ``alpha``:
    its attention ``[B, T, T]``; ``tokens``: its source symbols ``[B, T]``; ``seconds``."""

    params: DecoderParams
    losses: list
    accuracy: float
    alpha: Any
    tokens: Any
    seconds: float


def _one_hot(xp: Any, idx: Any, n: int) -> Any:
    return xp.astype(xp.arange(n)[None, None, :] == idx[..., None], xp.float64)


def make_batch(xp: Any, sampler: Sampler, B: int, T: int, V: int) -> tuple[Any, Any, Any]:
    """Source symbols ``[B, T]`` (int), annotations ``h [B, T, V + T]`` and reversed one-hot targets ``[B, T, V]``."""
    tokens = sampler.integers((B, T), 0, V)
    positions = xp.broadcast_to(xp.arange(T)[None, :], (B, T))
    h = xp.concat([_one_hot(xp, tokens, V), _one_hot(xp, positions, T)], axis=-1)
    target = _one_hot(xp, xp.flip(tokens, axis=1), V)
    return tokens, h, target


def loss_and_grads(params: DecoderParams, h: Any, target: Any, output_state: str = "current"):
    """Mean cross-entropy ``-Σ target ∘ log y / (B T)``, its gradients, and the forward output."""
    xp = rx.namespace(h)
    out, cache = decoder_forward(h, params, output_state=output_state)
    B, T = int(h.shape[0]), int(h.shape[1])
    tiny = 1e-300  # y > 0 always (a softmax); only guards log(0) in a pathological underflow
    loss = -xp.sum(target * xp.log(out.y + tiny)) / (B * T)
    d_y = -target / (out.y + tiny) / (B * T)
    grads = decoder_backward(DecoderOutputs(d_y, None, None), cache)
    return loss, grads.params, out


def train(
    steps: int = 400,
    B: int = 32,
    T: int = 6,
    V: int = 5,
    H: int = 24,
    lr: float = 0.02,
    clip: float = 5.0,
    seed: int = 0,
    output_state: str = "current",
    backend: str = "numpy",
    log_every: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train the decoder to reverse sequences; see the module docstring.

    ``callback(step, loss)``, if given, is called after every step.
    """
    xp = rx.backend(backend)
    sampler = Sampler(xp, seed + 1)
    params = init_params(xp, V + T, H, V, seed=seed)
    opt = Adam(lr=lr)
    state = opt.init(params)
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(steps):
        _, h, target = make_batch(xp, sampler, B, T, V)
        loss, grads, _ = loss_and_grads(params, h, target, output_state)
        grads, _ = clip_by_global_norm(grads, clip)
        params, state = opt.update(params, grads, state)
        losses.append(float(loss))
        if callback is not None:
            callback(step, losses[-1])
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  loss {losses[-1]:.4f}")
    seconds = time.perf_counter() - t0
    tokens, h, target = make_batch(xp, Sampler(xp, seed + 10_000), 256, T, V)
    _, _, out = loss_and_grads(params, h, target, output_state)
    pred = xp.argmax(out.y, axis=-1)
    accuracy = float(xp.mean(xp.astype(pred == xp.flip(tokens, axis=1), xp.float64)))
    return TrainResult(params, losses, accuracy, out.alpha, tokens, seconds)
