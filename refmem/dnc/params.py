"""The DNC's configuration, named parameter container, initialisers and safetensors files.

:class:`DNCConfig` holds every size and option of SPEC §5's core; :class:`DNCParams`
holds the parameters; :func:`named` / :func:`from_named` convert them to and from
the flat names used by golden tensors and files::

    W_lstm1, b_lstm1, ..., W_lstmL, b_lstmL    controller layers  W [I_l + H, 4H], b [4H]
    W_xi, b_xi                                   interface          W [Hc, I],       b [I]
    W_y, b_y                                     output             W [Hc + R W, Y], b [Y]

Initialisers follow deepmind/dnc, which leaves Sonnet's defaults in place: every
weight matrix is drawn from a normal truncated at two standard deviations
(TensorFlow's ``truncated_normal_initializer``: draws outside are re-drawn) with
``std = 1 / sqrt(fan_in)``, every bias is zero. ``fan_in`` is the number of rows
of the matrix (for an LSTM layer, input plus hidden width, as Sonnet's
``LSTM._create_gate_variables``; the interface of deepmind's ``MemoryAccess`` is
several ``snt.Linear`` maps of the same input, i.e. one matrix with ``fan_in = Hc``).
Draws use NumPy's PCG64 from the seed (through :class:`refmem.xp.Sampler`, kept in
float64), so a seed gives the same parameters on every backend.

Files are safetensors (never pickle), written from C-contiguous host copies (see
GOLDEN.md on safetensors issue #825); the configuration travels as JSON in the
file's metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, NamedTuple

from .. import xp as rx
from ..errors import DomainError, DTypeError, InputError, ShapeError
from ..sampling import Sampler
from ..validation import check_array
from .access import AccessConfig, interface_size
from .controller import ControllerConfig, LSTMParams

__all__ = ["DNCConfig", "DNCParams", "init_params", "named", "from_named", "check_params",
           "truncated_normal", "save_params", "load_params", "FORMAT"]

#: ``metadata["format"]`` of a parameter file.
FORMAT = "refmem.dnc.params/1"


@dataclass(frozen=True)
class DNCConfig:
    """Every size and option of the DNC core (SPEC §5).

    ``D`` input width, ``Y`` output width, ``hidden`` LSTM width per layer,
    ``layers`` controller depth (1: ``DNCoreLSTM``, 3: ``DNCoreDeepLSTM``), ``skip``
    DeepRNN skip connections, ``N, W, R, nw`` memory sizes, ``convention``
    (``"deepmind"``/``"paper"``), ``clip_value`` (0 disables clipping),
    ``forget_bias`` (Sonnet's 1.0), and the access options ``masked_content``,
    ``deallocation``, ``link_sharpness`` (SPEC §5, off by default; see
    :class:`~refmem.dnc.access.AccessConfig`).
    """

    D: int
    Y: int
    hidden: int = 64
    layers: int = 1
    skip: bool = True
    N: int = 16
    W: int = 16
    R: int = 4
    nw: int = 1
    convention: str = "deepmind"
    clip_value: float = 0.0
    forget_bias: float = 1.0
    masked_content: bool = False
    deallocation: bool = False
    link_sharpness: bool = False

    def __post_init__(self) -> None:
        for name in ("D", "Y"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DomainError(f"DNCConfig.{name}: expected an int >= 1, got {v!r}")
        self.access  # validates N, W, R, nw, convention
        self.controller  # validates hidden, layers, clip_value

    @cached_property
    def access(self) -> AccessConfig:
        """The :class:`~refmem.dnc.access.AccessConfig` (built once per config: a step reads it often)."""
        return AccessConfig(N=self.N, W=self.W, R=self.R, nw=self.nw, convention=self.convention,
                            masked_content=self.masked_content, deallocation=self.deallocation,
                            link_sharpness=self.link_sharpness)

    @cached_property
    def controller(self) -> ControllerConfig:
        """The :class:`~refmem.dnc.controller.ControllerConfig` (built once per config)."""
        return ControllerConfig(input_size=self.D + self.R * self.W, hidden=self.hidden, layers=self.layers,
                                skip=self.skip, forget_bias=self.forget_bias, clip_value=float(self.clip_value))

    @property
    def Hc(self) -> int:
        """Width of the controller output."""
        return self.controller.output_size

    @property
    def I(self) -> int:
        """Width of the interface vector."""
        return interface_size(self.access)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape, in :func:`named` order."""
        ctrl = self.controller
        out: dict[str, tuple[int, ...]] = {}
        for layer in range(self.layers):
            out[f"W_lstm{layer + 1}"] = (ctrl.layer_input_size(layer) + self.hidden, 4 * self.hidden)
            out[f"b_lstm{layer + 1}"] = (4 * self.hidden,)
        out["W_xi"] = (self.Hc, self.I)
        out["b_xi"] = (self.I,)
        out["W_y"] = (self.Hc + self.R * self.W, self.Y)
        out["b_y"] = (self.Y,)
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class DNCParams(NamedTuple):
    """Parameters of the DNC core (SPEC §5).

    ``lstm``: tuple of ``LSTMParams(W [I_l + H, 4H], b [4H])``, one per controller layer;
    ``W_xi [Hc, I]``, ``b_xi [I]``: the interface map; ``W_y [Hc + R W, Y]``, ``b_y [Y]``:
    the output map.
    """

    lstm: tuple
    W_xi: Any
    b_xi: Any
    W_y: Any
    b_y: Any


def named(params: DNCParams) -> dict[str, Any]:
    """Flat ``{name: array}`` view (names in the module docstring)."""
    out: dict[str, Any] = {}
    for layer, p in enumerate(params.lstm):
        out[f"W_lstm{layer + 1}"] = p.W
        out[f"b_lstm{layer + 1}"] = p.b
    out["W_xi"] = params.W_xi
    out["b_xi"] = params.b_xi
    out["W_y"] = params.W_y
    out["b_y"] = params.b_y
    return out


class MissingParameterError(InputError, KeyError):
    """A parameter dictionary without some of the arrays a :class:`DNCConfig` needs."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _check_cfg(cfg: Any) -> None:
    if not isinstance(cfg, DNCConfig):
        raise TypeError(f"cfg: expected a DNCConfig, got {type(cfg).__name__}")


def from_named(arrays: dict[str, Any], cfg: DNCConfig, check: bool = True) -> DNCParams:
    """Inverse of :func:`named`; with ``check`` every shape is validated against ``cfg``."""
    _check_cfg(cfg)
    missing = [k for k in cfg.shapes() if k not in arrays]
    if missing:
        raise MissingParameterError(f"arrays: missing DNC parameters {missing} (expected {sorted(cfg.shapes())})")
    params = DNCParams(
        lstm=tuple(LSTMParams(arrays[f"W_lstm{l + 1}"], arrays[f"b_lstm{l + 1}"]) for l in range(cfg.layers)),
        W_xi=arrays["W_xi"], b_xi=arrays["b_xi"], W_y=arrays["W_y"], b_y=arrays["b_y"],
    )
    if check:
        check_params(params, cfg)
    return params


def check_params(params: DNCParams, cfg: DNCConfig) -> None:
    """Raise :class:`refmem.xp.ShapeError` for the first parameter whose shape disagrees with ``cfg``."""
    _check_cfg(cfg)
    if not isinstance(params, DNCParams):
        raise TypeError(f"params: expected DNCParams, got {type(params).__name__}")
    if len(params.lstm) != cfg.layers:
        raise ShapeError(f"lstm: expected {cfg.layers} controller layers, got {len(params.lstm)}")
    symbols = {"W_xi": "(Hc, I)", "b_xi": "(I,)", "W_y": "(Hc + R W, Y)", "b_y": "(Y,)"}
    arrays = named(params)
    for name, shape in cfg.shapes().items():
        sym = symbols.get(name, "(I_l + H, 4H)" if name.startswith("W") else "(4H,)")
        check_array(name, arrays[name], shape, sym)


def truncated_normal(rng: Any, shape: tuple[int, ...], std: float) -> Any:
    """Normal draws with standard deviation ``std``, re-drawn until inside ``±2 std`` (TF's truncated normal).

    ``rng`` is a :class:`refmem.xp.Sampler` (the result lands in its namespace) or a NumPy
    ``Generator`` (the result is a NumPy array); the float64 draws are not rounded to float32.
    See :meth:`refmem.xp.Sampler.truncated_normal`.
    """
    s = rng if isinstance(rng, Sampler) else Sampler.from_generator(rx.backend("numpy"), rng)
    return s.truncated_normal(shape, std, bound=2.0, float32=False)


def _is_real_floating(xp: Any, dtype: Any) -> bool:
    try:
        return bool(rx.namespace(xp.zeros(1)).isdtype(dtype, "real floating"))
    except (TypeError, ValueError, AttributeError):
        return False


def init_params(xp: Any, cfg: DNCConfig, seed: int = 0, dtype: Any = None) -> DNCParams:
    """deepmind/dnc's initialisation (module docstring), deterministic in ``seed``.

    Weights ``W [fan_in, fan_out]`` ~ truncated normal, std ``1/sqrt(fan_in)``; biases zero.
    ``dtype`` defaults to ``xp.float64``.
    """
    _check_cfg(cfg)
    dtype = xp.float64 if dtype is None else dtype
    if not _is_real_floating(xp, dtype):
        raise DTypeError(f"dtype: expected a real floating dtype of {getattr(xp, '__name__', xp)}, got {dtype!r}")
    s = Sampler(xp, seed)
    arrays = {}
    for name, shape in cfg.shapes().items():
        if name.startswith("W"):
            arrays[name] = xp.asarray(truncated_normal(s, shape, 1.0 / math.sqrt(shape[0])), dtype=dtype)
        else:
            arrays[name] = xp.zeros(shape, dtype=dtype)
    return from_named(arrays, cfg)


def save_params(path: str, params: DNCParams, cfg: DNCConfig, metadata: dict[str, str] | None = None) -> None:
    """Write ``params`` and ``cfg`` to a safetensors file (C-contiguous host copies, no pickle)."""
    from safetensors.numpy import save_file

    check_params(params, cfg)
    tensors = {k: rx.to_numpy(v, contiguous=True) for k, v in named(params).items()}
    meta = {"format": FORMAT, "config": json.dumps(cfg.to_json(), sort_keys=True)}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    save_file(tensors, str(path), metadata=meta)


def load_params(path: str, xp: Any = None) -> tuple[DNCParams, DNCConfig]:
    """Read a file written by :func:`save_params`; arrays land in ``xp`` (NumPy by default)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a refmem DNC parameter file (format {meta.get('format')!r}, "
                         f"expected {FORMAT!r})")
    cfg = DNCConfig(**json.loads(meta["config"]))
    host = load_file(str(path))
    xp = rx.backend("numpy") if xp is None else xp
    arrays = {k: rx.from_numpy(xp, v) for k, v in host.items()}
    return from_named(arrays, cfg), cfg
