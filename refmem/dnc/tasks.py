"""Training tasks of deepmind/dnc: repeat copy (`repeat_copy.py`) and copy, with their loss.

The data follow deepmind/dnc's `RepeatCopy` exactly, but batch-first (`[B, T, ...]`, the house
layout; deepmind's tensors are time-major). For one sequence with a pattern of `L` random bit
vectors repeated `n` times:

```text
time  0      1..L        L+1          L+2 ... L+1+nL      L+2+nL   (then zero padding)
obs   start  pattern     n / norm_max  0                   0
targ  0      0           0            pattern × n         end marker
mask  0      0           0            1                   1
```

* observations `[B, T, bits + 2]`: the bits, then a start-marker channel (1 at `t = 0`), then
  the num-repeats channel (`n / norm_max` at `t = L + 1`);
* target `[B, T, bits + 1]`: the repeated pattern, then an end-marker channel (1 at the last
  masked step);
* mask `[B, T]`: 1 where the prediction is scored;
* `T = max_b L_b (n_b + 1) + 3`; `L ~ U{min_length..max_length}`, `n ~ U{min_repeats..max_repeats}`
  per batch element, bits ~ U{0, 1}.

The copy task is the repeat-copy task with `min_repeats = max_repeats = 1`.

Loss (deepmind's `masked_sigmoid_cross_entropy`): the sigmoid cross-entropy of the logits against
the target, summed over the channels, multiplied by the mask, summed over time (divided by the
sequence's masked length when `time_average`), summed over the batch and divided by `B`; in nats
(bits with `log_prob_in_bits`). deepmind/dnc's `train.py` uses the defaults: no time average,
nats. It is a forward/backward pair following [the backward rule](../conventions.md):
[`masked_sigmoid_cross_entropy_forward`][refmem.dnc.tasks.masked_sigmoid_cross_entropy_forward] /
[`masked_sigmoid_cross_entropy_backward`][refmem.dnc.tasks.masked_sigmoid_cross_entropy_backward]
(and [`RepeatCopy.cost_forward`][refmem.dnc.tasks.RepeatCopy.cost_forward] /
[`RepeatCopy.cost_backward`][refmem.dnc.tasks.RepeatCopy.cost_backward] with a task's options).

Data are drawn on the host with NumPy's PCG64 (through `refmem.sampling.Sampler`), built there and
moved into the caller's namespace in one copy each; the loss and its gradient run in the namespace
of the logits.
"""

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import DomainError
from ..sampling import Sampler
from ..validation import Array, Config, Mask, Positive, Size, Unit, checked, warn_old_call

__all__ = ["RepeatCopy", "copy_task", "Batch",
           "MaskedSigmoidCrossEntropyOutputs", "MaskedSigmoidCrossEntropyCache", "MaskedSigmoidCrossEntropyGrads",
           "masked_sigmoid_cross_entropy", "masked_sigmoid_cross_entropy_vjp",
           "masked_sigmoid_cross_entropy_forward", "masked_sigmoid_cross_entropy_backward",
           "CostOutputs", "CostCache", "CostGrads", "bit_errors", "readable"]


class Batch(NamedTuple):
    """One batch of a copy task."""

    observations: Any
    """`[B, T, bits + 2]`."""
    target: Any
    """`[B, T, bits + 1]`."""
    mask: Any
    """`[B, T]`, 1 where a step is scored."""
    lengths: Any
    """Host integers `[B]`, the pattern lengths."""
    repeats: Any
    """Host integers `[B]`, the repeats."""


# ============================================================================= the loss


class MaskedSigmoidCrossEntropyOutputs(NamedTuple):
    """The output of [`masked_sigmoid_cross_entropy_forward`][refmem.dnc.tasks.masked_sigmoid_cross_entropy_forward]."""

    loss: Array[""]
    """The loss, a 0-d array."""


class MaskedSigmoidCrossEntropyCache(NamedTuple):
    """What [`masked_sigmoid_cross_entropy_backward`][refmem.dnc.tasks.masked_sigmoid_cross_entropy_backward] needs."""

    logits: Array["B T K"]
    """The logits `x`."""
    target: Array["B T K"]
    """The target `z`."""
    weights: Array["B T"]
    """`w`, the weight of each (b, t): `mask / B` (`/ masked length`, `/ ln 2`)."""


class MaskedSigmoidCrossEntropyGrads(NamedTuple):
    """The gradients of [`masked_sigmoid_cross_entropy_forward`][refmem.dnc.tasks.masked_sigmoid_cross_entropy_forward]'s arguments."""

    logits: Array["B T K"]
    """`d_loss (σ(x) - z) ∘ w`."""
    target: Array["B T K"]
    """`-d_loss x ∘ w`."""


def _weights(mask: Any, time_average: bool, in_bits: bool) -> Any:
    """Per-(b, t) weight of the summed cross-entropy: `mask / B` (`/ masked length`, `/ ln 2`)."""
    xp = rx.namespace(mask)
    B = mask.shape[0]
    w = mask / B
    if time_average:
        count = xp.sum(mask, axis=1, keepdims=True)
        w = w / (count + xp.finfo(mask.dtype).eps)
    if in_bits:
        w = w / math.log(2.0)
    return w


def _as_weights_dtype(mask: Any, like: Any) -> Any:
    """The mask as a floating array of `like`'s dtype (a boolean or integer mask is allowed)."""
    xp = rx.namespace(like)
    return mask if mask.dtype == like.dtype else xp.astype(mask, like.dtype)


def _loss(logits: Any, target: Any, mask: Any, time_average: bool,
          log_prob_in_bits: bool) -> tuple[Any, MaskedSigmoidCrossEntropyCache]:
    """The loss and its cache, unchecked."""
    xp = rx.namespace(logits, target)
    w = _weights(_as_weights_dtype(mask, logits), time_average, log_prob_in_bits)
    xent = xp.sum(P.softplus(logits) - logits * target, axis=2)
    return xp.sum(xent * w), MaskedSigmoidCrossEntropyCache(logits, target, w)


def masked_sigmoid_cross_entropy_vjp(d_loss: Any, cache: MaskedSigmoidCrossEntropyCache) -> tuple[Any, Any]:
    """The gradients `(d_logits, d_target)` of the loss, unchecked: `d_loss (σ(x) - z) ∘ w[..., None]` and
    `-d_loss x ∘ w[..., None]`."""
    w = cache.weights[:, :, None] * d_loss
    return (P.sigmoid(cache.logits) - cache.target) * w, -cache.logits * w


@checked
def masked_sigmoid_cross_entropy(logits: Array["B T K"], target: Unit["B T K"], mask: Mask["B T"],
                                 time_average: bool = False, log_prob_in_bits: bool = False) -> Any:
    """deepmind's `masked_sigmoid_cross_entropy`, the value only (the pair is
    [`masked_sigmoid_cross_entropy_forward`][refmem.dnc.tasks.masked_sigmoid_cross_entropy_forward]).

    Args:
        logits: `[B, T, K]`.
        target: `[B, T, K]`, in [0, 1].
        mask: `[B, T]`, 1 where a step is scored.
        time_average: divide each sequence's loss by its masked length.
        log_prob_in_bits: bits instead of nats.

    Returns:
        loss: a 0-d array.
    """
    return _loss(logits, target, mask, time_average, log_prob_in_bits)[0]


@checked
def masked_sigmoid_cross_entropy_forward(logits: Array["B T K"], target: Unit["B T K"], *, mask: Mask["B T"],
                                         time_average: bool = False, log_prob_in_bits: bool = False
                                         ) -> tuple[MaskedSigmoidCrossEntropyOutputs, MaskedSigmoidCrossEntropyCache]:
    """deepmind's `masked_sigmoid_cross_entropy`: `Σ_b Σ_t mask w Σ_k [softplus(x) - x z] / B` (the DNC
    tasks' loss; SPEC §5 trains on it).

    `softplus(x) - x z` is the sigmoid cross-entropy `-z log σ(x) - (1 - z) log(1 - σ(x))` written
    without overflow.

    Args:
        logits: `[B, T, K]`.
        target: `[B, T, K]`, in [0, 1].
        mask: `[B, T]`, 1 where a step is scored (keyword-only).
        time_average: divide each sequence's loss by its masked length (keyword-only).
        log_prob_in_bits: bits instead of nats (keyword-only).

    Returns:
        outputs: a [`MaskedSigmoidCrossEntropyOutputs`][refmem.dnc.tasks.MaskedSigmoidCrossEntropyOutputs]
            `(loss [])`, a 0-d array.
        cache: a [`MaskedSigmoidCrossEntropyCache`][refmem.dnc.tasks.MaskedSigmoidCrossEntropyCache].
    """
    loss, cache = _loss(logits, target, mask, time_average, log_prob_in_bits)
    return MaskedSigmoidCrossEntropyOutputs(loss), cache


def _old_loss_backward(*args: Any, **kwargs: Any) -> Any:
    """The 0.1 form `masked_sigmoid_cross_entropy_backward(logits, target, mask, time_average=False,
    log_prob_in_bits=False)`, deprecated: it returns the array `d_logits` of the loss itself."""
    if len(args) <= 2 and set(kwargs) <= {"d_out", "cache"}:
        given = dict(zip(("d_out", "cache"), args), **kwargs)
        if set(given) == {"d_out", "cache"} and isinstance(given["d_out"], tuple):
            return masked_sigmoid_cross_entropy_backward(given["d_out"], given["cache"])
        raise TypeError("masked_sigmoid_cross_entropy_backward() takes (d_out, cache): d_out a "
                        "MaskedSigmoidCrossEntropyOutputs of the loss's gradient (a 0-d array)")
    warn_old_call("masked_sigmoid_cross_entropy_backward(logits, target, mask, ...)",
                  "masked_sigmoid_cross_entropy_backward((d_loss,), cache).logits with the cache of "
                  "masked_sigmoid_cross_entropy_forward(logits, target, mask=mask, ...)")
    names = ("logits", "target", "mask", "time_average", "log_prob_in_bits")
    given = dict(zip(names, args), **kwargs)
    out, cache = masked_sigmoid_cross_entropy_forward(
        given["logits"], given["target"], mask=given["mask"], time_average=given.get("time_average", False),
        log_prob_in_bits=given.get("log_prob_in_bits", False))
    xp = rx.namespace(out.loss)
    return masked_sigmoid_cross_entropy_backward((xp.ones((), dtype=out.loss.dtype),), cache).logits


@checked(legacy=_old_loss_backward)
def masked_sigmoid_cross_entropy_backward(d_out: MaskedSigmoidCrossEntropyOutputs,
                                          cache: MaskedSigmoidCrossEntropyCache) -> MaskedSigmoidCrossEntropyGrads:
    """VJP of [`masked_sigmoid_cross_entropy_forward`][refmem.dnc.tasks.masked_sigmoid_cross_entropy_forward]:
    `d_logits = d_loss (σ(x) - z) ∘ w[..., None]`, `d_target = -d_loss x ∘ w[..., None]`.

    Args:
        d_out: a [`MaskedSigmoidCrossEntropyOutputs`][refmem.dnc.tasks.MaskedSigmoidCrossEntropyOutputs]
            (or a 1-tuple): the gradient of `loss []`, a 0-d array (1 to start backpropagation at the
            loss; `None`: zero).
        cache: the [`MaskedSigmoidCrossEntropyCache`][refmem.dnc.tasks.MaskedSigmoidCrossEntropyCache] of the forward.

    Returns:
        grads: a [`MaskedSigmoidCrossEntropyGrads`][refmem.dnc.tasks.MaskedSigmoidCrossEntropyGrads]
            `(logits [B, T, K], target [B, T, K])`.

    Derivation: [docs/derivations/primitives.md, "7. The masked sigmoid cross-entropy of the DNC tasks"](../derivations/primitives.md#7-the-masked-sigmoid-cross-entropy-of-the-dnc-tasks)
    """
    (d,) = d_out
    if d is None:
        zeros = rx.namespace(cache.logits).zeros_like(cache.logits)
        return MaskedSigmoidCrossEntropyGrads(zeros, zeros)
    return MaskedSigmoidCrossEntropyGrads(*masked_sigmoid_cross_entropy_vjp(d, cache))


class CostOutputs(NamedTuple):
    """The output of [`RepeatCopy.cost_forward`][refmem.dnc.tasks.RepeatCopy.cost_forward]."""

    loss: Array[""]
    """The loss, a 0-d array."""


class CostCache(NamedTuple):
    """What [`RepeatCopy.cost_backward`][refmem.dnc.tasks.RepeatCopy.cost_backward] needs."""

    logits: Array["B T K"]
    """The logits."""
    target: Array["B T K"]
    """The target."""
    weights: Array["B T"]
    """The weight of each (b, t)."""


class CostGrads(NamedTuple):
    """The gradients of [`RepeatCopy.cost_forward`][refmem.dnc.tasks.RepeatCopy.cost_forward]'s arguments."""

    logits: Array["B T K"]
    """The gradient of `logits`."""
    target: Array["B T K"]
    """The gradient of `target`."""


# ============================================================================= the task


@dataclass(frozen=True)
class RepeatCopy(Config):
    """deepmind/dnc's `RepeatCopy` generator (defaults of `train.py`: 4 bits, lengths 1-2, repeats 1-2).

    Validated on construction, strictly by type (`RepeatCopy(num_bits=0)` is a `DomainError`,
    `RepeatCopy(time_average_cost="no")` a `DTypeError`).

    Attributes:
        num_bits: bits per pattern vector.
        batch_size: sequences per batch.
        min_length: shortest pattern.
        max_length: longest pattern.
        min_repeats: fewest repeats.
        max_repeats: most repeats.
        norm_max: normalises the num-repeats flag (deepmind's default 10), a finite number > 0.
        log_prob_in_bits: the loss in bits instead of nats.
        time_average_cost: divide each sequence's loss by its masked length.
    """

    num_bits: Size = 4
    batch_size: Size = 16
    min_length: Size = 1
    max_length: Size = 2
    min_repeats: Size = 1
    max_repeats: Size = 2
    norm_max: Positive = 10.0
    log_prob_in_bits: bool = False
    time_average_cost: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for lo, hi in (("min_length", "max_length"), ("min_repeats", "max_repeats")):
            if getattr(self, lo) > getattr(self, hi):
                raise DomainError(f"RepeatCopy.{lo}: expected <= {hi} ({getattr(self, hi)}), got {getattr(self, lo)}")

    @property
    def input_size(self) -> int:
        """Observation width `bits + 2`."""
        return self.num_bits + 2

    @property
    def target_size(self) -> int:
        """Target width `bits + 1`."""
        return self.num_bits + 1

    @property
    def max_time(self) -> int:
        """The longest `T` a batch can have."""
        return self.max_length * (self.max_repeats + 1) + 3

    def sample(self, rng: Any, xp: Any = None, dtype: Any = None) -> Batch:
        """Draw one batch; arrays in `xp` (NumPy by default), float64 unless `dtype`.

        `rng` is a `refmem.sampling.Sampler` or a NumPy `Generator`; either way its
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
        """deepmind's `masked_sigmoid_cross_entropy` with this task's options: the loss, a 0-d array
        ([`masked_sigmoid_cross_entropy`][refmem.dnc.tasks.masked_sigmoid_cross_entropy])."""
        return masked_sigmoid_cross_entropy(logits, target, mask, self.time_average_cost, self.log_prob_in_bits)

    @checked
    def cost_forward(self, logits: Array["B T K"], target: Unit["B T K"], *,
                     mask: Mask["B T"]) -> tuple[CostOutputs, CostCache]:
        """The task's loss as a pair: [`masked_sigmoid_cross_entropy_forward`][refmem.dnc.tasks.masked_sigmoid_cross_entropy_forward]
        with this task's options (SPEC §5 trains on it).

        Args:
            logits: `[B, T, K]`.
            target: `[B, T, K]`.
            mask: `[B, T]`, 1 where a step is scored (keyword-only).

        Returns:
            outputs: a [`CostOutputs`][refmem.dnc.tasks.CostOutputs] `(loss [])`.
            cache: a [`CostCache`][refmem.dnc.tasks.CostCache].
        """
        loss, cache = _loss(logits, target, mask, self.time_average_cost, self.log_prob_in_bits)
        return CostOutputs(loss), CostCache(*cache)

    @checked
    def cost_backward(self, d_out: CostOutputs, cache: CostCache) -> CostGrads:
        """VJP of [`cost_forward`][refmem.dnc.tasks.RepeatCopy.cost_forward].

        Args:
            d_out: a [`CostOutputs`][refmem.dnc.tasks.CostOutputs] (or a 1-tuple): the gradient of
                `loss []`, a 0-d array (1 to start backpropagation; `None`: zero).
            cache: the [`CostCache`][refmem.dnc.tasks.CostCache] of the forward.

        Returns:
            grads: a [`CostGrads`][refmem.dnc.tasks.CostGrads] `(logits [B, T, K], target [B, T, K])`.

        Derivation: [docs/derivations/primitives.md, "7. The masked sigmoid cross-entropy of the DNC tasks"](../derivations/primitives.md#7-the-masked-sigmoid-cross-entropy-of-the-dnc-tasks)
        """
        (d,) = d_out
        if d is None:
            zeros = rx.namespace(cache.logits).zeros_like(cache.logits)
            return CostGrads(zeros, zeros)
        return CostGrads(*masked_sigmoid_cross_entropy_vjp(d, MaskedSigmoidCrossEntropyCache(*cache)))


def copy_task(**kw: Any) -> RepeatCopy:
    """The copy task: a [`RepeatCopy`][refmem.dnc.tasks.RepeatCopy] with exactly one repeat.

    Args:
        **kw: the other fields of [`RepeatCopy`][refmem.dnc.tasks.RepeatCopy].

    Returns:
        task: the task.
    """
    kw.setdefault("min_repeats", 1)
    kw.setdefault("max_repeats", 1)
    return RepeatCopy(**kw)


@checked
def bit_errors(logits: Array["B T K"], target: Unit["B T K"], mask: Mask["B T"]) -> float:
    """Wrong bits per sequence: `round(σ(x)) ≠ z` counted over every target channel of every masked step,
    averaged over the batch."""
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
