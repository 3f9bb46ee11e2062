"""The DNC's configuration, named parameter container, initialisers and safetensors files.

[`DNCConfig`][refmem.dnc.params.DNCConfig] holds every size and option of SPEC §5's core;
[`DNCParams`][refmem.dnc.params.DNCParams] holds the parameters; [`named`][refmem.dnc.params.named] /
[`from_named`][refmem.dnc.params.from_named] convert them to and from the flat names used by golden
tensors and files:

```text
W_lstm1, b_lstm1, ..., W_lstmL, b_lstmL    controller layers  W [I_l + H, 4H], b [4H]
W_xi, b_xi                                 interface          W [Hc, I],       b [I]
W_y, b_y                                   output             W [Hc + R W, Y], b [Y]
```

Initialisers follow deepmind/dnc, which leaves Sonnet's defaults in place: every weight matrix
is drawn from a normal truncated at two standard deviations (TensorFlow's
`truncated_normal_initializer`: draws outside are re-drawn) with `std = 1 / sqrt(fan_in)`, every
bias is zero. `fan_in` is the number of rows of the matrix (for an LSTM layer, input plus hidden
width, as Sonnet's `LSTM._create_gate_variables`; the interface of deepmind's `MemoryAccess` is
several `snt.Linear` maps of the same input, i.e. one matrix with `fan_in = Hc`). Draws use
NumPy's PCG64 from the seed (through `refmem.sampling.Sampler`, kept in float64), so a
seed gives the same parameters on every backend.

Files are safetensors (never pickle), written from C-contiguous host copies (see
[the golden format](../golden-format.md) on safetensors issue #825); the configuration travels
as JSON in the file's metadata.
"""

import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Literal, NamedTuple

from .. import xp as rx
from ..errors import DTypeError, InputError
from ..sampling import Sampler
from ..validation import Array, Config, NonNegative, Seed, Size, checked
from .access import AccessConfig, interface_size
from .controller import ControllerConfig, LSTMParams, check_layers, gate_width

__all__ = ["DNCConfig", "DNCParams", "init_params", "named", "from_named", "check_params",
           "truncated_normal", "save_params", "load_params", "FORMAT"]

FORMAT = "refmem.dnc.params/1"
"""`metadata["format"]` of a parameter file."""


@dataclass(frozen=True)
class DNCConfig(Config):
    """Every size and option of the DNC core (SPEC §5).

    Validated on construction, strictly by type (`DNCConfig(skip="False")` is a `DTypeError`,
    `DNCConfig(R=0)` a `DomainError`, each naming `DNCConfig.<field>`). An argument annotated
    `DNCConfig` binds the letters of [`sizes`][refmem.dnc.params.DNCConfig.sizes].

    Attributes:
        D: input width.
        Y: output width.
        hidden: LSTM width per layer (`H`).
        layers: controller depth (1: `DNCoreLSTM`, 3: `DNCoreDeepLSTM`).
        skip: DeepRNN skip connections.
        N: memory slots.
        W: word size.
        R: read heads.
        nw: write heads.
        convention: `"deepmind"` or `"paper"`.
        clip_value: a finite number >= 0; 0 disables clipping.
        forget_bias: Sonnet's 1.0.
        masked_content: SPEC §5 option (see [`AccessConfig`][refmem.dnc.access.AccessConfig]).
        deallocation: SPEC §5 option.
        link_sharpness: SPEC §5 option.
    """

    D: Size
    Y: Size
    hidden: Size = 64
    layers: Size = 1
    skip: bool = True
    N: Size = 16
    W: Size = 16
    R: Size = 4
    nw: Size = 1
    convention: Literal["deepmind", "paper"] = "deepmind"
    clip_value: NonNegative = 0.0
    forget_bias: float = 1.0
    masked_content: bool = False
    deallocation: bool = False
    link_sharpness: bool = False

    def sizes(self) -> dict[str, int]:
        """The letters this config fixes: `D`, `Y`, `H` (hidden), `G = 4H`, `N`, `W`, `R`, `nw`,
        `K = 1 + 2nw`, `Hc` (the controller output width), `I` (the interface width) and
        `Hy = Hc + R W` (the rows of `W_y`)."""
        return {"D": self.D, "Y": self.Y, "H": self.hidden, "G": gate_width(self.hidden), "N": self.N,
                "W": self.W, "R": self.R, "nw": self.nw, "K": self.access.read_mode_width, "Hc": self.Hc,
                "I": self.I, "Hy": self.Hc + self.R * self.W}

    @cached_property
    def access(self) -> AccessConfig:
        """The [`AccessConfig`][refmem.dnc.access.AccessConfig] (built once per config: a step reads it often)."""
        return AccessConfig(N=self.N, W=self.W, R=self.R, nw=self.nw, convention=self.convention,
                            masked_content=self.masked_content, deallocation=self.deallocation,
                            link_sharpness=self.link_sharpness)

    @cached_property
    def controller(self) -> ControllerConfig:
        """The [`ControllerConfig`][refmem.dnc.controller.ControllerConfig] (built once per config)."""
        return ControllerConfig(input_size=self.D + self.R * self.W, hidden=self.hidden, layers=self.layers,
                                skip=self.skip, forget_bias=float(self.forget_bias),
                                clip_value=float(self.clip_value))

    @property
    def Hc(self) -> int:
        """Width of the controller output."""
        return self.controller.output_size

    @property
    def I(self) -> int:
        """Width of the interface vector."""
        return interface_size(self.access)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape, in [`named`][refmem.dnc.params.named] order."""
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
        """The fields as a JSON-able dict (the metadata of a parameter file)."""
        return asdict(self)


class DNCParams(NamedTuple):
    """Parameters of the DNC core (SPEC §5); gradients use the same type."""

    lstm: tuple[LSTMParams, ...]
    """One [`LSTMParams`][refmem.dnc.controller.LSTMParams] `(W [I_l + H, 4H], b [4H])` per controller layer."""
    W_xi: Array["Hc I"]
    """The interface map's matrix."""
    b_xi: Array["I"]
    """The interface map's bias."""
    W_y: Array["Hy Y"]
    """The output map's matrix, `[Hc + R W, Y]`."""
    b_y: Array["Y"]
    """The output map's bias."""


def named(params: DNCParams) -> dict[str, Any]:
    """Flat `{name: array}` view (the names of the module docstring)."""
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
    """A parameter dictionary without some of the arrays a [`DNCConfig`][refmem.dnc.params.DNCConfig] needs."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _check_cfg(cfg: Any) -> None:
    if not isinstance(cfg, DNCConfig):
        raise DTypeError(f"cfg: expected a DNCConfig, got {type(cfg).__name__}")


def from_named(arrays: dict[str, Any], cfg: DNCConfig, check: bool = True) -> DNCParams:
    """Inverse of [`named`][refmem.dnc.params.named].

    Args:
        arrays: `{name: array}` with every name of `cfg.shapes()`.
        cfg: the [`DNCConfig`][refmem.dnc.params.DNCConfig].
        check: validate every parameter against `cfg` ([`check_params`][refmem.dnc.params.check_params]).

    Returns:
        params: the [`DNCParams`][refmem.dnc.params.DNCParams].
    """
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


@checked
def check_params(params: DNCParams, cfg: DNCConfig) -> None:
    """Refuse parameters that disagree with `cfg`: every array by its annotation in
    [`DNCParams`][refmem.dnc.params.DNCParams] (shape, dtype, finite values), then the number of
    controller layers and each layer's rows (`I_l + H`).

    Args:
        params: the [`DNCParams`][refmem.dnc.params.DNCParams].
        cfg: the [`DNCConfig`][refmem.dnc.params.DNCConfig].

    Raises:
        refmem.errors.ShapeError: naming the parameter, e.g. `params.W_xi: expected shape (Hc, I) = (4, 44), got (4, 43)`.
    """
    check_layers(params.lstm, cfg.controller, label="params.lstm")


def truncated_normal(rng: Any, shape: tuple[int, ...], std: float) -> Any:
    """Normal draws with standard deviation `std`, re-drawn until inside `±2 std` (TF's truncated normal).

    `rng` is a `refmem.sampling.Sampler` (the result lands in its namespace) or a NumPy
    `Generator` (the result is a NumPy array); the float64 draws are not rounded to float32.
    See `refmem.sampling.Sampler.truncated_normal`.
    """
    s = rng if isinstance(rng, Sampler) else Sampler.from_generator(rx.backend("numpy"), rng)
    return s.truncated_normal(shape, std, bound=2.0, float32=False)


def _is_real_floating(xp: Any, dtype: Any) -> bool:
    try:
        return bool(rx.namespace(xp.zeros(1)).isdtype(dtype, "real floating"))
    except (TypeError, ValueError, AttributeError):
        return False


@checked
def init_params(xp: Any, cfg: DNCConfig, seed: Seed = 0, dtype: Any = None) -> DNCParams:
    """deepmind/dnc's initialisation (module docstring), deterministic in `seed`.

    Weights `W [fan_in, fan_out]` ~ truncated normal, std `1/sqrt(fan_in)`; biases zero.

    Args:
        xp: the namespace to create the arrays in.
        cfg: the [`DNCConfig`][refmem.dnc.params.DNCConfig].
        seed: seed of the draws, an integer >= 0.
        dtype: a real floating dtype of `xp` (default `xp.float64`).

    Returns:
        params: the [`DNCParams`][refmem.dnc.params.DNCParams].
    """
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
    """Write `params` and `cfg` to a safetensors file (C-contiguous host copies, no pickle)."""
    from safetensors.numpy import save_file

    check_params(params, cfg)
    tensors = {k: rx.to_numpy(v, contiguous=True) for k, v in named(params).items()}
    meta = {"format": FORMAT, "config": json.dumps(cfg.to_json(), sort_keys=True)}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    save_file(tensors, str(path), metadata=meta)


def load_params(path: str, xp: Any = None) -> tuple[DNCParams, DNCConfig]:
    """Read a file written by [`save_params`][refmem.dnc.params.save_params]; arrays land in `xp`
    (NumPy by default)."""
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
