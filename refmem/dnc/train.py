"""Training the DNC on deepmind/dnc's copy tasks, in refmem alone (no framework).

The loop is deepmind/dnc's ``train.py``: draw a batch of the task, unroll the DNC
([`refmem.dnc.core.unroll_forward`][refmem.dnc.core.unroll_forward]), score it with the masked sigmoid
cross-entropy ([`refmem.dnc.tasks`][refmem.dnc.tasks]), backpropagate through time by hand
([`refmem.dnc.core.unroll_backward`][refmem.dnc.core.unroll_backward]), clip the gradients by their global norm
and take an RMSProp step (TF1 form, [`refmem.optim.RMSProp`][refmem.optim.RMSProp]).

Defaults (the ``demo`` preset) are deepmind/dnc's ``train.py`` flags, hidden 64,
memory 16 × 16, 4 read heads, 1 write head, clip value 20, batch 16, 4 bits,
lengths 1-2, repeats 1-2, RMSProp with epsilon 1e-10, global-norm clip 50, with
two changes so that a run with no options shows learning within seconds: the
learning rate is 1e-2 (deepmind: 1e-4, with which 1000 steps barely move the loss)
and 1000 steps (deepmind: 100,000). [`PRESETS`][refmem.dnc.train.PRESETS] ``"deepmind"`` (``refmem train
--preset deepmind``, [`preset`][refmem.dnc.train.preset]) holds deepmind's values exactly.
"""

import math
import numbers
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from .. import optim
from .. import xp as rx
from ..errors import DomainError, DTypeError
from ..sampling import Sampler
from .core import UnrollOutputs, unroll_backward, unroll_forward
from .params import DNCConfig, DNCParams, init_params
from .tasks import RepeatCopy, bit_errors

__all__ = ["TrainConfig", "TrainResult", "PRESETS", "preset", "make_task", "dnc_config", "train", "train_step"]

TASKS = ("copy", "repeat-copy")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run (defaults: the ``demo`` preset, see the module docstring).

    Every size must be at least 1, ``lr`` finite and positive, ``clip_value``,
    ``max_grad_norm`` and ``epsilon`` finite and non-negative (0 switches a clip off),
    ``seed`` a non-negative integer, ``steps`` at least 1; otherwise [`DomainError`][refmem.errors.DomainError] names the field.
    """

    task: str = "repeat-copy"
    steps: int = 1000
    seed: int = 0
    # model
    hidden: int = 64
    layers: int = 1
    N: int = 16
    W: int = 16
    R: int = 4
    nw: int = 1
    convention: str = "deepmind"
    clip_value: float = 20.0
    masked_content: bool = False
    deallocation: bool = False
    link_sharpness: bool = False
    # task
    batch_size: int = 16
    num_bits: int = 4
    min_length: int = 1
    max_length: int = 2
    min_repeats: int = 1
    max_repeats: int = 2
    # optimiser
    optimizer: str = "rmsprop"
    lr: float = 1e-2
    epsilon: float = 1e-10
    max_grad_norm: float = 50.0
    backend: str = "numpy"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DomainError(f"task: expected one of {', '.join(TASKS)}, got {self.task!r}")
        if self.optimizer not in ("rmsprop", "adam"):
            raise DomainError(f"optimizer: expected 'rmsprop' or 'adam', got {self.optimizer!r}")
        if self.convention not in ("deepmind", "paper"):
            raise DomainError(f"convention: expected 'deepmind' or 'paper', got {self.convention!r}")
        for name in ("masked_content", "deallocation", "link_sharpness"):
            if not isinstance(getattr(self, name), bool):
                raise DTypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        for name in ("steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < (name == "steps"):
                raise DomainError(f"{name}: expected an integer >= {int(name == 'steps')}, got {value!r}")
        for name in ("hidden", "layers", "N", "W", "R", "nw", "batch_size", "num_bits", "min_length",
                     "max_length", "min_repeats", "max_repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise DomainError(f"{name}: expected an integer >= 1, got {value!r}")
        if self.min_length > self.max_length:
            raise DomainError(f"min_length: expected <= max_length ({self.max_length}), got {self.min_length}")
        if self.min_repeats > self.max_repeats:
            raise DomainError(f"min_repeats: expected <= max_repeats ({self.max_repeats}), got {self.min_repeats}")
        if not (isinstance(self.lr, numbers.Real) and math.isfinite(self.lr) and self.lr > 0):
            raise DomainError(f"lr: expected a finite number > 0, got {self.lr!r}")
        for name in ("clip_value", "max_grad_norm", "epsilon"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise DomainError(f"{name}: expected a finite number >= 0, got {value!r}")


#: Named starting points: ``demo`` is [`TrainConfig`][refmem.dnc.train.TrainConfig]'s defaults; ``deepmind`` is
#: deepmind/dnc ``train.py``'s flags exactly (``learning_rate`` 1e-4,
#: ``num_training_iterations`` 100000; every other flag equals the default already).
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {},
    "deepmind": {"hidden": 64, "N": 16, "W": 16, "R": 4, "nw": 1, "clip_value": 20.0, "batch_size": 16,
                 "num_bits": 4, "min_length": 1, "max_length": 2, "min_repeats": 1, "max_repeats": 2,
                 "optimizer": "rmsprop", "lr": 1e-4, "epsilon": 1e-10, "max_grad_norm": 50.0, "steps": 100_000},
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The [`TrainConfig`][refmem.dnc.train.TrainConfig] of preset ``name`` ([`PRESETS`][refmem.dnc.train.PRESETS]) with ``overrides`` on top."""
    if name not in PRESETS:
        raise DomainError(f"preset: expected one of {', '.join(PRESETS)}, got {name!r}")
    return TrainConfig(**{**PRESETS[name], **overrides})


@dataclass
class TrainResult:
    """``params`` and ``model`` (the trained DNC), ``history`` (``step``, ``loss``,
    ``bit_errors``, one entry per step), ``seconds`` (wall time of the loop)."""

    params: DNCParams
    model: DNCConfig
    history: dict[str, list] = field(default_factory=dict)
    seconds: float = 0.0


def make_task(cfg: TrainConfig) -> RepeatCopy:
    """The [`RepeatCopy`][refmem.dnc.tasks.RepeatCopy] of ``cfg`` (copy: exactly one repeat)."""
    reps = (1, 1) if cfg.task == "copy" else (cfg.min_repeats, cfg.max_repeats)
    return RepeatCopy(num_bits=cfg.num_bits, batch_size=cfg.batch_size, min_length=cfg.min_length,
                      max_length=cfg.max_length, min_repeats=reps[0], max_repeats=reps[1])


def dnc_config(cfg: TrainConfig, task: RepeatCopy) -> DNCConfig:
    """The [`DNCConfig`][refmem.dnc.params.DNCConfig] sized for ``task``."""
    return DNCConfig(D=task.input_size, Y=task.target_size, hidden=cfg.hidden, layers=cfg.layers, N=cfg.N,
                     W=cfg.W, R=cfg.R, nw=cfg.nw, convention=cfg.convention, clip_value=cfg.clip_value,
                     masked_content=cfg.masked_content, deallocation=cfg.deallocation,
                     link_sharpness=cfg.link_sharpness)


def train_step(params: DNCParams, model: DNCConfig, task: RepeatCopy, batch, opt, opt_state,
               max_grad_norm: float) -> tuple[DNCParams, Any, float, float, Any]:
    """One update; returns ``(params, opt_state, loss, bit_errors, logits)``."""
    out, cache = unroll_forward(batch.observations, params, cfg=model)
    y = out.y
    loss, loss_cache = task.cost_forward(y, batch.target, mask=batch.mask)
    d_y = task.cost_backward((rx.namespace(y).ones((), dtype=y.dtype),), loss_cache).logits
    grads = unroll_backward(UnrollOutputs(d_y, None), cache).params
    if max_grad_norm > 0:
        grads, _ = optim.clip_by_global_norm(grads, max_grad_norm)
    params, opt_state = opt.update(params, grads, opt_state)
    return params, opt_state, float(rx.to_numpy(loss.loss)), bit_errors(y, batch.target, batch.mask), y


def train(cfg: TrainConfig, callback: Callable[[int, float, float], None] | None = None,
          params: DNCParams | None = None) -> TrainResult:
    """Train a DNC on ``cfg.task`` for ``cfg.steps`` steps from ``cfg.seed``.

    The parameters are drawn with [`init_params`][refmem.dnc.params.init_params] at ``seed``
    (unless given); batches with NumPy's PCG64 seeded ``[seed, 1]`` (``Sampler(xp, (seed, 1))``). ``callback(step,
    loss, bit_errors)`` runs after every step (the command's progress bar).
    """
    xp = rx.backend(cfg.backend)
    task = make_task(cfg)
    model = dnc_config(cfg, task)
    if params is None:
        params = init_params(xp, model, seed=cfg.seed)
    if cfg.optimizer == "rmsprop":
        opt = optim.RMSProp(lr=cfg.lr, epsilon=cfg.epsilon)
    else:
        opt = optim.Adam(lr=cfg.lr)
    opt_state = opt.init(params)
    rng = Sampler(xp, (int(cfg.seed), 1))
    history: dict[str, list] = {"step": [], "loss": [], "bit_errors": []}
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        batch = task.sample(rng, xp)
        params, opt_state, loss, errors, _ = train_step(params, model, task, batch, opt, opt_state,
                                                        cfg.max_grad_norm)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged at step {step}: loss {loss}")
        history["step"].append(step)
        history["loss"].append(loss)
        history["bit_errors"].append(errors)
        if callback is not None:
            callback(step, loss, errors)
    return TrainResult(params, model, history, time.perf_counter() - t0)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as a JSON-able dict."""
    return asdict(cfg)


def with_overrides(cfg: TrainConfig, **kw: Any) -> TrainConfig:
    """``cfg`` with the non-``None`` entries of ``kw`` replaced."""
    return replace(cfg, **{k: v for k, v in kw.items() if v is not None})
