"""refmem's models, forward and hand-derived backward, on the NumPy (or any) namespace."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from refmem import xp as rx

from .common import Skip
from .configs import Bench
from .problems import make


def _model(path: str):
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as exc:
        if exc.name and path.startswith(exc.name):
            raise Skip(f"{path} is not in this build") from exc
        raise


def build(bench: Bench, dtype: str, backend: str = "numpy", checkpoint_every: int | None = None) -> Callable[[], Any]:
    """A function running one forward and one backward of ``bench`` in ``dtype``.

    ``checkpoint_every``: checkpointed BPTT for the DNC core and the attention decoder
    (see ``refmem.dnc.core.unroll_forward``); ``None`` keeps every step's cache.
    """
    xp = rx.backend(backend)
    dt = getattr(xp, dtype)
    prob = make(bench.model, bench.sizes)

    def arr(a):
        return xp.astype(rx.from_numpy(xp, a), dt)

    x, cot = arr(prob["x"]), arr(prob["cot"])
    p = {k: arr(v) for k, v in prob["params"].items()}
    if checkpoint_every is not None:
        return _BUILDERS[bench.model](bench, x, p, cot, checkpoint_every=checkpoint_every)
    return _BUILDERS[bench.model](bench, x, p, cot)


def _memory_lstm(bench: Bench, x, p, cot):
    ML = _model("refmem.memory_lstm")
    params = ML.Params(**p)

    def step():
        out, cache = ML.unroll_forward(x, params)
        return ML.unroll_backward(ML.UnrollOutputs(h=cot, memory=None, c=None), cache)

    return step


def _attention(bench: Bench, x, p, cot, checkpoint_every=None):
    BA = _model("refmem.attention.bahdanau")
    params = BA.DecoderParams(**p)

    def step():
        out, cache = BA.decoder_forward(x, params, output_state="previous", checkpoint_every=checkpoint_every)
        return BA.decoder_backward(BA.DecoderOutputs(cot, None, None), cache)

    return step


def dnc_config(sizes) -> Any:
    """The ``refmem.dnc.params.DNCConfig`` of a benchmark (one LSTM layer, no clip, ``deepmind``)."""
    P = _model("refmem.dnc.params")
    s = sizes
    return P.DNCConfig(D=s["D"], Y=s["Y"], hidden=s["H"], layers=1, N=s["N"], W=s["W"], R=s["R"], nw=s["nw"])


def _dnc(bench: Bench, x, p, cot, checkpoint_every=None):
    core = _model("refmem.dnc.core")
    P = _model("refmem.dnc.params")
    cfg = dnc_config(bench.sizes)
    params = P.from_named(p, cfg)

    def step():
        out, cache = core.unroll_forward(x, params, cfg=cfg, checkpoint_every=checkpoint_every)
        return core.unroll_backward(core.UnrollOutputs(cot, None), cache)

    return step


_BUILDERS = {"memory_lstm": _memory_lstm, "attention": _attention, "dnc": _dnc}
