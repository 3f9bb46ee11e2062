"""What the attention family's entry points share beyond the annotations: the 0.1 backward call
forms (deprecated) and the refusal of inputs whose scale overflows the scores.

Private: the public entry points of `refmem.attention.bahdanau`, `refmem.attention.luong` and
`refmem.attention.keras_scores` use it; nothing here computes the model.
"""

import inspect
from typing import Any, Callable

import numpy as np

from .. import xp as rx
from ..errors import DomainError
from ..validation import warn_old_call

_NEW = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("d_out", "cache")])


def old_backward(new: Callable[[], Callable[..., Any]], old: str, new_call: str, params: tuple[str, ...],
                 optional: tuple[str, ...], convert: Callable[[dict], tuple[tuple, Any]],
                 result: Callable[[Any], Any] = lambda grads: grads) -> Callable[..., Any]:
    """The `legacy=` function of a backward whose 0.1 form was `f(*params, *optional)`.

    Args:
        new: returns the checked backward (looked up at call time).
        old: the 0.1 call, as shown in the warning (`"window_backward(d_gauss, cache)"`).
        new_call: the 0.2 call, as shown in the warning.
        params: the 0.1 positional parameters, in order.
        optional: the 0.1 parameters with the default `None`, after `params`.
        convert: the 0.1 arguments by name -> `(d_out, cache)` of the 0.2 form.
        result: the 0.2 gradients -> what 0.1 returned.

    Returns:
        A function that calls the 0.2 form: directly when given `(d_out, cache)` by keyword, else
        (the 0.1 form) with a `DeprecationWarning`.
    """
    P = inspect.Parameter
    signature = inspect.Signature([P(n, P.POSITIONAL_OR_KEYWORD) for n in params]
                                  + [P(n, P.POSITIONAL_OR_KEYWORD, default=None) for n in optional])

    def legacy(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = _NEW.bind(*args, **kwargs).arguments
        except TypeError:
            bound = None
        if bound is not None and isinstance(bound["d_out"], tuple):
            return new()(bound["d_out"], bound["cache"])
        try:
            given = signature.bind(*args, **kwargs)
        except TypeError:
            raise TypeError(f"{new_call.split('(')[0]}() takes (d_out, cache): d_out a tuple of upstream "
                            f"gradients in the order of the forward's outputs (None for zero), as in "
                            f"{new_call}") from None
        given.apply_defaults()
        warn_old_call(old, new_call)
        d_out, cache = convert(dict(given.arguments))
        return result(new()(d_out, cache))

    return legacy


def quiet_overflow() -> Any:
    """A context in which NumPy does not warn of an overflow or an invalid value: the entry points
    that use it check their results with `refuse_overflow`
    afterwards, so the overflow is reported once, as a `DomainError`, not as a warning before it."""
    return np.errstate(over="ignore", invalid="ignore")


def refuse_overflow(values: Any, label: str, what: str, shown: str = "") -> None:
    """Raise a `DomainError` naming `label` when `values` (computed from finite inputs) is not finite.

    A score or a logit beyond the largest number of the dtype becomes `inf` (and a softmax of it
    NaN): no answer is right then, so the input is refused, naming the limit.

    Args:
        values: the computed array (scores, weights, outputs).
        label: the arguments to name (`"h, hs"`).
        what: what overflowed (`"dot scores h·hs"`).
        shown: the name of `values` in the message when it is not the overflowing quantity itself
            (`"alpha"` for energies seen through their softmax); empty when it is.
    """
    xp = rx.namespace(values)
    if bool(xp.all(xp.isfinite(values))):
        return
    h = rx.to_numpy(values)
    at = tuple(int(i) for i in np.argwhere(~np.isfinite(h))[0])
    limit = float(np.finfo(h.dtype).max)
    dtype = np.finfo(h.dtype).dtype.name
    where = f"{shown} is {h[at].item()!r} at {list(at)}" if shown else f"{h[at].item()!r} at {list(at)}"
    raise DomainError(f"{label}: expected {what} within the range of {dtype} (magnitude <= {limit:.4g}), "
                      f"got an overflow ({where}); the inputs are finite but too large for {dtype}: "
                      f"scale them down")
