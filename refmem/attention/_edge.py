"""What the attention family's entry points share beyond the annotations: the 0.1 backward call
forms (deprecated) and the refusal of inputs whose scale overflows the scores.

Private: the public entry points of `refmem.attention.bahdanau`, `refmem.attention.luong` and
`refmem.attention.keras_scores` use it; nothing here computes the model.
"""

import inspect
from typing import Any, Callable


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
