"""Training tasks of deepmind/dnc: repeat copy (``repeat_copy.py``) and copy, with their loss.

The data follow deepmind/dnc's ``RepeatCopy`` exactly, but batch-first
(``[B, T, ...]``, the house layout; deepmind's tensors are time-major). For one
sequence with a pattern of ``L`` random bit vectors repeated ``n`` times::

    time  0      1..L        L+1          L+2 ... L+1+nL      L+2+nL   (then zero padding)
    obs   start  pattern     n / norm_max  0                   0
    targ  0      0           0            pattern × n         end marker
    mask  0      0           0            1                   1

* observations ``[B, T, bits + 2]``: the bits, then a start-marker channel (1 at
  ``t = 0``), then the num-repeats channel (``n / norm_max`` at ``t = L + 1``);
* target ``[B, T, bits + 1]``: the repeated pattern, then an end-marker channel
  (1 at the last masked step);
* mask ``[B, T]``: 1 where the prediction is scored;
* ``T = max_b L_b (n_b + 1) + 3``; ``L ~ U{min_length..max_length}``,
  ``n ~ U{min_repeats..max_repeats}`` per batch element, bits ~ U{0, 1}.

The copy task is the repeat-copy task with ``min_repeats = max_repeats = 1``.

Loss (deepmind's ``masked_sigmoid_cross_entropy``): the sigmoid cross-entropy of
the logits against the target, summed over the channels, multiplied by the mask,
summed over time (divided by the sequence's masked length when
``time_average``), summed over the batch and divided by ``B``; in nats (bits
with ``log_prob_in_bits``). deepmind/dnc's ``train.py`` uses the defaults:
no time average, nats.

Data are drawn on the host with NumPy's PCG64 (through :class:`refmem.xp.Sampler`),
built there and moved into the caller's namespace in one copy each; the loss and its
gradient run in the namespace of the logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import DomainError
from ..sampling import Sampler
from ..validation import edge

__all__ = ["RepeatCopy", "copy_task", "Batch", "masked_sigmoid_cross_entropy",
           "masked_sigmoid_cross_entropy_backward", "bit_errors", "readable"]


class Batch(NamedTuple):
    """``observations [B, T, bits + 2]``, ``target [B, T, bits + 1]``, ``mask [B, T]``,
    and the host integers ``lengths [B]`` and ``repeats [B]``."""

    observations: Any
    target: Any
    mask: Any
    lengths: Any
    repeats: Any


@dataclass(frozen=True)
class RepeatCopy:
    """deepmind/dnc's ``RepeatCopy`` generator (defaults of ``train.py``: 4 bits, lengths 1-2, repeats 1-2).

    ``norm_max`` normalises the num-repeats flag (deepmind's default 10);
    ``time_average_cost`` and ``log_prob_in_bits`` configure :meth:`cost`.
    """

    num_bits: int = 4
    batch_size: int = 16
    min_length: int = 1
    max_length: int = 2
    min_repeats: int = 1
    max_repeats: int = 2
    norm_max: float = 10.0
    log_prob_in_bits: bool = False
    time_average_cost: bool = False

    def __post_init__(self) -> None:
        for name in ("num_bits", "batch_size", "min_length", "max_length", "min_repeats", "max_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DomainError(f"RepeatCopy.{name}: expected an integer >= 1, got {v!r}")
        for lo, hi in (("min_length", "max_length"), ("min_repeats", "max_repeats")):
            if getattr(self, lo) > getattr(self, hi):
                raise DomainError(f"RepeatCopy.{lo}: expected <= {hi} ({getattr(self, hi)}), got {getattr(self, lo)}")
        if not (isinstance(self.norm_max, (int, float)) and math.isfinite(self.norm_max) and self.norm_max > 0):
            raise DomainError(f"RepeatCopy.norm_max: expected a finite number > 0, got {self.norm_max!r}")

    @property
    def input_size(self) -> int:
        """Observation width ``bits + 2``."""
        return self.num_bits + 2

    @property
    def target_size(self) -> int:
        """Target width ``bits + 1``."""
        return self.num_bits + 1

    @property
    def max_time(self) -> int:
        """The longest ``T`` a batch can have."""
        return self.max_length * (self.max_repeats + 1) + 3

    def sample(self, rng: Any, xp: Any = None, dtype: Any = None) -> Batch:
        """Draw one batch; arrays in ``xp`` (NumPy by default), float64 unless ``dtype``.

        ``rng`` is a :class:`refmem.xp.Sampler` or a NumPy ``Generator``; either way its
        stream advances by the batch's draws (lengths, repeats, then each pattern).
        """
        hp = rx.backend("numpy")  # the batch is built on the host, then moved in one copy per tensor
        s = rng.with_namespace(hp) if isinstance(rng, Sampler) else Sampler.from_generator(hp, rng)
        B, bits = self.batch_size, self.num_bits
        lengths = s.integers((B,), self.min_length, self.max_length + 1)
        repeats = s.integers((B,), self.min_repeats, self.max_repeats + 1)
        T = max(int(L) * (int(n) + 1) + 3 for L, n in zip(lengths, repeats))
        obs = hp.zeros((B, T, bits + 2), dtype=hp.float64)
        targ = hp.zeros((B, T, bits + 1), dtype=hp.float64)
        mask = hp.zeros((B, T), dtype=hp.float64)
        for b in range(B):
            L, n = int(lengths[b]), int(repeats[b])
            pattern = hp.astype(s.integers((L, bits), 0, 2), hp.float64)
            obs[b, 0, bits] = 1.0  # start marker
            obs[b, 1:L + 1, :bits] = pattern
            obs[b, L + 1, bits + 1] = n / self.norm_max  # num-repeats flag
            start = L + 2
            targ[b, start:start + n * L, :bits] = hp.concat([pattern] * n, axis=0)
            targ[b, start + n * L, bits] = 1.0  # end marker
            mask[b, start:start + n * L + 1] = 1.0
        if xp is None:
            xp = hp
        dtype = xp.float64 if dtype is None else dtype

        def move(a):
            return xp.asarray(rx.from_numpy(xp, a), dtype=dtype)

        return Batch(move(obs), move(targ), move(mask), lengths, repeats)

    def cost(self, logits: Any, target: Any, mask: Any) -> Any:
        """deepmind's ``masked_sigmoid_cross_entropy`` with this task's options."""
        return masked_sigmoid_cross_entropy.unchecked(logits, target, mask, self.time_average_cost, self.log_prob_in_bits)

    def cost_backward(self, logits: Any, target: Any, mask: Any) -> Any:
        """Gradient of :meth:`cost` with respect to ``logits``.

        Args:
            logits: ``[B, T, K]``.
            target: ``[B, T, K]``.
            mask: ``[B, T]``.

        Returns:
            d_logits: ``[B, T, K]``, the gradient of the loss.

        Derivation: [docs/derivations/primitives.md, "7. The masked sigmoid cross-entropy of the DNC tasks"](../derivations/primitives.md#7-the-masked-sigmoid-cross-entropy-of-the-dnc-tasks)
        """
        return masked_sigmoid_cross_entropy_backward.unchecked(logits, target, mask, self.time_average_cost,
                                                     self.log_prob_in_bits)


def copy_task(**kw: Any) -> RepeatCopy:
    """The copy task: :class:`RepeatCopy` with exactly one repeat."""
    kw.setdefault("min_repeats", 1)
    kw.setdefault("max_repeats", 1)
    return RepeatCopy(**kw)


def _weights(mask: Any, time_average: bool, in_bits: bool) -> Any:
    """Per-(b, t) weight of the summed cross-entropy: ``mask / B`` (``/ masked length``, ``/ ln 2``)."""
    xp = rx.namespace(mask)
    B = mask.shape[0]
    w = mask / B
    if time_average:
        count = xp.sum(mask, axis=1, keepdims=True)
        w = w / (count + xp.finfo(mask.dtype).eps)
    if in_bits:
        w = w / math.log(2.0)
    return w


@edge(logits="B T K", target="B T K | unit", mask="B T | mask")
def masked_sigmoid_cross_entropy(logits: Any, target: Any, mask: Any, time_average: bool = False,
                                 log_prob_in_bits: bool = False) -> Any:
    """``Σ_b Σ_t mask w Σ_k [softplus(x) - x z] / B`` for ``logits [B, T, K]``, ``target [B, T, K]``, ``mask [B, T]``.

    ``softplus(x) - x z`` is the sigmoid cross-entropy ``-z log σ(x) - (1 - z) log(1 - σ(x))``
    written without overflow. Returns a 0-d array.
    """
    xp = rx.namespace(logits, target, mask)
    xent = xp.sum(P.softplus(logits) - logits * target, axis=2)
    return xp.sum(xent * _weights(mask, time_average, log_prob_in_bits))


@edge(logits="B T K", target="B T K | unit", mask="B T | mask")
def masked_sigmoid_cross_entropy_backward(logits: Any, target: Any, mask: Any, time_average: bool = False,
                                          log_prob_in_bits: bool = False) -> Any:
    """Gradient of :func:`masked_sigmoid_cross_entropy` w.r.t. ``logits``: ``(σ(x) - z) ∘ w[..., None]``.

    The loss starts backpropagation, so this takes the forward's inputs and no upstream gradient.

    Args:
        logits: ``[B, T, K]``.
        target: ``[B, T, K]``.
        mask: ``[B, T]``, 1 where a step is scored.
        time_average: divide each sequence's loss by its masked length.
        log_prob_in_bits: bits instead of nats.

    Returns:
        d_logits: ``[B, T, K]``, the gradient of the scalar loss.

    Derivation: [docs/derivations/primitives.md, "7. The masked sigmoid cross-entropy of the DNC tasks"](../derivations/primitives.md#7-the-masked-sigmoid-cross-entropy-of-the-dnc-tasks)
    """
    return (P.sigmoid(logits) - target) * _weights(mask, time_average, log_prob_in_bits)[:, :, None]


@edge(logits="B T K", target="B T K | unit", mask="B T | mask")
def bit_errors(logits: Any, target: Any, mask: Any) -> float:
    """Wrong bits per sequence: ``round(σ(x)) ≠ z`` counted over every target channel of every masked step, averaged over the batch."""
    x = rx.to_numpy(logits)
    z = rx.to_numpy(target)
    m = rx.to_numpy(mask)
    hp = rx.namespace(x, z, m)
    wrong = (hp.astype(x > 0, hp.float64) != z) * m[:, :, None]
    return float(hp.sum(wrong) / x.shape[0])


def readable(batch: Batch, logits: Any = None, index: int = 0, norm_max: float = 10.0) -> str:
    """deepmind's ``bitstring_readable`` for one batch element: channels as rows, ``-`` for 0."""
    obs = rx.to_numpy(batch.observations)[index]
    targ = rx.to_numpy(batch.target)[index]
    hp = rx.namespace(obs, targ)
    obs = hp.concat([obs[:, :-1], hp.round(obs[:, -1:] * norm_max)], axis=1)

    def row(v):
        return "+" + " ".join(f"{int(a):d}" if a else "-" for a in v) + "+"

    parts = ["Observations:"] + [row(obs[:, k]) for k in range(obs.shape[1])]
    parts += ["Targets:"] + [row(targ[:, k]) for k in range(targ.shape[1])]
    if logits is not None:
        m = rx.to_numpy(batch.mask)[index][:, None]
        out = hp.round(m * (1.0 / (1.0 + hp.exp(-rx.to_numpy(logits)[index]))))
        parts += ["Model output:"] + [row(out[:, k]) for k in range(out.shape[1])]
    return "\n".join(parts)
