"""The validation mechanism of refmem.validation (D2): each annotation, each error, on planted functions.

The families' entry points are exercised by tests/test_bad_input.py; here every feature of the
mechanism is tested on small functions written for the test, so a regression in the mechanism
is reported on the feature it broke.
"""


import dataclasses
import warnings
from typing import Literal, NamedTuple

import numpy as np
import pytest

from refmem import xp as rx
from refmem.errors import DomainError, DTypeError, NamespaceError, ShapeError
from refmem.validation import (Array, Axis, Config, Index, Mask, NonNegative, Positive, Seed, Size, Unit, checked,
                               is_checked, probing, warn_old_call)

B, N, W, H = 2, 5, 3, 4


class Outputs(NamedTuple):
    weights: Unit["B H N"]


class Cache(NamedTuple):
    weights: Unit["B H N"]
    memory: Array["B N W"]


class Grads(NamedTuple):
    memory: Array["B N W"]
    keys: Array["B H W"]


@checked
def lookup_forward(memory: Array["B N W"], keys: Array["B H W"], strengths: Array["B H"] | None = None, *,
                   convention: Literal["deepmind", "paper"] = "deepmind", eps: Positive = 1e-6,
                   clip: NonNegative = 0.0, flag: bool = False) -> tuple[Outputs, Cache]:
    return "called"


@checked
def lookup_backward(d_out: Outputs, cache: Cache) -> Grads:
    return "called"


def arrays(dtype=np.float64):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(B, N, W)).astype(dtype), rng.normal(size=(B, H, W)).astype(dtype),
            rng.normal(size=(B, H)).astype(dtype))


def cache():
    m, _, _ = arrays()
    return Cache(np.full((B, H, N), 0.2), m)


def test_a_valid_call_reaches_the_function_and_keeps_its_signature():
    assert lookup_forward(*arrays()) == "called"
    assert lookup_forward(*arrays()[:2]) == "called"  # optional array left out
    assert lookup_forward.__name__ == "lookup_forward" and "memory" in lookup_forward.__annotations__
    assert is_checked(lookup_forward) and not is_checked(lambda: None)


def test_letters_bind_across_the_call_and_the_message_shows_what_was_bound():
    m, k, s = arrays()
    with pytest.raises(ShapeError) as info:
        lookup_forward(m, np.zeros((B, 4, 5)), s)
    assert str(info.value) == ("keys: expected shape (B, H, W) = (2, ?, 3), got (2, 4, 5) "
                               "(W = 3 from the other arguments)")
    with pytest.raises(ShapeError, match=r"^strengths: expected shape \(B, H\) = \(2, 4\), got \(4,\)$"):
        lookup_forward(m, k, s[0])


def test_empty_axes_are_refused():
    m, k, s = arrays()
    with pytest.raises(ShapeError, match="size B = 0, expected at least 1"):
        lookup_forward(m[:0], k[:0], s[:0])
    with pytest.raises(ShapeError, match="size N = 0, expected at least 1"):
        lookup_forward(m[:, :0], k, s)


@pytest.mark.parametrize("bad,error,needle", [
    ([[1.0]], DTypeError, "keys: expected an array, got list"),
    (np.float64(1.0), DTypeError, "keys: expected an array, got float64"),
    (np.zeros((B, H, W), dtype=np.int64), DTypeError, "keys: expected a floating dtype, got int64"),
    (np.zeros((B, H, W), dtype=np.float32), DTypeError, "keys: expected the precision of memory (float64), got float32"),
    (np.ma.masked_array(np.zeros((B, H, W))), DTypeError, "keys: expected a plain array, got a NumPy masked array"),
])
def test_what_is_not_an_array_of_the_call_is_refused(bad, error, needle):
    m, _, s = arrays()
    with pytest.raises(error) as info:
        lookup_forward(m, bad, s)
    assert needle in str(info.value)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_np_matrix_is_refused():
    m, k, s = arrays()
    with pytest.raises(DTypeError, match="strengths: expected a plain array, got np.matrix"):
        lookup_forward(m, k, np.matrix(s))


def test_real_and_complex_of_one_precision_mix():
    m, k, s = arrays()
    assert lookup_forward(m, k.astype(np.complex128), s) == "called"
    with pytest.raises(DTypeError, match="expected the precision of memory"):
        lookup_forward(m, k.astype(np.complex64), s)


def test_two_libraries_are_a_namespace_error():
    torch = pytest.importorskip("torch")
    m, k, s = arrays()
    with pytest.raises(NamespaceError, match=r"keys: expected an array of the same library as memory "
                                             r"\(numpy.ndarray\), got torch.Tensor"):
        lookup_forward(m, torch.from_numpy(k), s)


def test_rx_namespace_of_mixed_inputs_is_a_namespace_error():
    torch = pytest.importorskip("torch")
    with pytest.raises(NamespaceError, match="numpy.ndarray, torch.Tensor"):
        rx.namespace(np.zeros(2), torch.zeros(2))
    with pytest.raises(DTypeError, match="expected an array"):
        rx.namespace(np.zeros(2), object())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_with_index_and_value(bad):
    m, k, s = arrays()
    s[1, 2] = bad
    with pytest.raises(DomainError, match=rf"^strengths: expected finite values, got {bad!r} at \[1, 2\]$"):
        lookup_forward(m, k, s)


def test_array_api_strict_arrays_get_the_same_checks():
    xs = pytest.importorskip("array_api_strict")
    m, k, s = (xs.asarray(a) for a in arrays())
    assert lookup_forward(m, k, s) == "called"
    with pytest.raises(DomainError, match="strengths: expected finite values, got inf"):
        lookup_forward(m, k, xs.asarray(np.full((B, H), np.inf)))
    with pytest.raises(DTypeError, match="keys: expected the precision of memory"):
        lookup_forward(m, xs.astype(k, xs.float32), s)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"convention": "graves"}, DomainError, "convention: expected one of 'deepmind', 'paper', got 'graves'"),
    ({"eps": -1.0}, DomainError, "eps: expected a finite number > 0, got -1.0"),
    ({"eps": float("nan")}, DomainError, "eps: expected a finite number > 0, got nan"),
    ({"eps": True}, DTypeError, "eps: expected a finite number > 0, got True"),
    ({"clip": -0.5}, DomainError, "clip: expected a finite number >= 0, got -0.5"),
    ({"flag": "False"}, DTypeError, "flag: expected a bool (True or False), got 'False'"),
    ({"flag": 0}, DTypeError, "flag: expected a bool (True or False), got 0"),
])
def test_scalar_annotations(kwargs, error, message):
    with pytest.raises(error) as info:
        lookup_forward(*arrays(), **kwargs)
    assert str(info.value) == message


def test_axis_annotation():
    @checked
    def f(x: Array["..."], *, axis: Axis["x"] = -1):
        return "called"

    assert f(np.zeros((2, 3)), axis=1) == "called"
    with pytest.raises(DomainError, match=r"axis: expected an axis in \[-2, 1\] for x of shape \(2, 3\), got 2"):
        f(np.zeros((2, 3)), axis=2)
    with pytest.raises(DTypeError, match="axis: expected an integer axis of x"):
        f(np.zeros((2, 3)), axis=1.0)
    with pytest.raises(ShapeError, match="empty arrays are refused"):
        f(np.zeros((0, 3)))


def test_leading_axes_are_the_same_in_every_argument():
    @checked
    def f(x: Array["... I"], W: Array["I O"], y: Array["... O"]):
        return "called"

    assert f(np.zeros((2, 5, 3)), np.zeros((3, 4)), np.zeros((2, 5, 4))) == "called"
    with pytest.raises(ShapeError, match=r"^y: expected shape \(\.\.\., O\) with \.\.\. = \(2, 5\)"):
        f(np.zeros((2, 5, 3)), np.zeros((3, 4)), np.zeros((5, 4)))


def test_unit_and_probing():
    @checked
    def f(p: Unit["B N"]):
        return "called"

    assert f(np.array([[0.0, 1.0 + 5e-7]])) == "called"  # the slack
    with pytest.raises(DomainError, match=r"^p: expected values in \[0, 1\], got 1.5 at \[0, 1\]$"):
        f(np.array([[0.5, 1.5]]))
    with probing():
        assert f(np.array([[0.5, 1.5]])) == "called"
        with pytest.raises(DomainError, match="expected finite values"):
            f(np.array([[0.5, np.nan]]))


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, np.nan])
def test_masks_are_boolean_or_exactly_zero_one(bad):
    @checked
    def f(e: Array["B T"], mask: Mask["B T"] | None = None):
        return "called"

    e = np.zeros((2, 3))
    assert f(e, np.ones((2, 3), dtype=bool)) == "called"
    assert f(e, np.ones((2, 3), dtype=np.float32)) == "called"  # a mask is outside the one-precision rule
    assert f(e, np.ones((2, 3), dtype=np.int64)) == "called"
    m = np.ones((2, 3))
    m[0, 1] = bad
    with pytest.raises(DomainError, match=r"mask: expected a mask of exactly 0 or 1 \(or booleans\), got .* at \[0, 1\]"):
        f(e, m)



@checked
def embed(E: Array["K m"], *, tokens: Index["B T", "K"]):
    return "called"


def test_indices_are_integers_in_range_of_the_letter_another_argument_binds():
    E = np.zeros((7, 3))
    assert embed(E, tokens=np.array([[0, 6, 3], [1, 2, 5]])) == "called"
    assert embed(E, tokens=np.array([[0, 6, 3]], dtype=np.uint8)) == "called"
    assert embed(E.astype(np.float32), tokens=np.array([[0, 6]])) == "called"  # outside the one-precision rule
    with pytest.raises(DomainError, match=r"^tokens: expected indices in \[0, K\) = \[0, 7\), got 7 at \[1, 0\]$"):
        embed(E, tokens=np.array([[0, 6, 3], [7, 2, 5]]))
    with pytest.raises(DomainError, match=r"^tokens: expected indices in \[0, K\) = \[0, 7\), got -1 at \[0, 2\]$"):
        embed(E, tokens=np.array([[0, 6, -1]]))
    for bad in (np.array([[0.0, 1.0]]), np.array([[True, False]])):
        with pytest.raises(DTypeError, match=r"^tokens: expected an integer array of indices in \[0, K\), got dtype"):
            embed(E, tokens=bad)
    with pytest.raises(ShapeError, match=r"^tokens: expected shape \(B, T\)"):
        embed(E, tokens=np.array([0, 1]))
    with pytest.raises(ShapeError, match="empty"):
        embed(E, tokens=np.zeros((2, 0), dtype=np.int64))
    with pytest.raises(DTypeError, match="tokens: expected an array"):
        embed(E, tokens=[[0, 1]])


def test_index_bound_after_the_indices_and_in_other_libraries():
    @checked
    def f(tokens: Index["B T", "K"], E: Array["K m"]):  # K fixed by an argument that comes later
        return "called"

    assert f(np.array([[4]]), np.zeros((5, 2))) == "called"
    with pytest.raises(DomainError, match=r"^tokens: expected indices in \[0, K\) = \[0, 4\), got 4 at \[0, 0\]$"):
        f(np.array([[4]]), np.zeros((4, 2)))
    xs = pytest.importorskip("array_api_strict")
    assert embed(xs.asarray(np.zeros((7, 3))), tokens=xs.asarray([[0, 6]])) == "called"
    with pytest.raises(DomainError, match=r"tokens: expected indices in \[0, K\) = \[0, 7\), got 9 at \[0, 1\]"):
        embed(xs.asarray(np.zeros((7, 3))), tokens=xs.asarray([[0, 9]]))
    with pytest.raises(DTypeError, match="tokens: expected an integer array"):
        embed(xs.asarray(np.zeros((7, 3))), tokens=xs.asarray([[0.0, 1.0]]))
    with pytest.raises(NamespaceError, match="tokens: expected an array of the same library as E"):
        embed(xs.asarray(np.zeros((7, 3))), tokens=np.array([[0, 1]]))


def test_an_index_declaration_needs_its_bound():
    with pytest.raises(TypeError, match=r"Index\[\.\.\.\] takes the axes and the letter of the bound"):
        Index["B T"]

    @checked
    def f(tokens: Index["B T", "K"]):
        return "called"

    with pytest.raises(TypeError, match="needs another argument of the call to fix K"):
        f(np.array([[0]]))


# ----------------------------------------------------------------------------- structures


class Params(NamedTuple):
    W_in: Array["D H"]
    b: Array["H"]


class Layer(NamedTuple):
    W: Array["I H"]


class State(NamedTuple):
    h: Array["B H"]
    memory: Unit["B M H"] | None = None


@checked
def step_forward(x: Array["B D"], state: State, params: Params, layers: tuple[Layer, ...] = ()):
    return "called"


def step_args():
    return (np.zeros((2, 3)), State(np.zeros((2, 4)), np.zeros((2, 5, 4))),
            Params(np.zeros((3, 4)), np.zeros(4)), (Layer(np.zeros((7, 4))), Layer(np.zeros((4, 4)))))


def test_structures_are_checked_through_their_field_annotations():
    x, state, params, layers = step_args()
    assert step_forward(x, state, params, layers) == "called"
    assert step_forward(x, state._replace(memory=None), params) == "called"  # an optional field
    with pytest.raises(ShapeError, match=r"^params\.b: expected shape \(H,\) = \(4,\), got \(5,\)"):
        step_forward(x, state, params._replace(b=np.zeros(5)))
    with pytest.raises(DomainError, match=r"^state\.memory: expected values in \[0, 1\]"):
        step_forward(x, state._replace(memory=np.full((2, 5, 4), 2.0)), params)
    with pytest.raises(DTypeError, match=r"^params: expected a Params, got tuple$"):
        step_forward(x, state, tuple(params))
    with pytest.raises(DTypeError, match=r"^state\.h: expected an array, got None$"):
        step_forward(x, state._replace(h=None), params)


def test_structures_bind_before_arrays_so_a_wrong_input_is_named():
    x, state, params, _ = step_args()
    with pytest.raises(ShapeError, match=r"^x: expected shape \(B, D\) = \(2, 3\), got \(2, 5\)"):
        step_forward(np.zeros((2, 5)), state, params)


def test_elements_of_a_tuple_of_structures_have_their_own_letters():
    x, state, params, layers = step_args()  # layer widths 7 and 4: I differs, H is shared
    with pytest.raises(ShapeError, match=r"^layers\[1\]\.W: expected shape \(I, H\) = \(\?, 4\), got \(4, 5\)"):
        step_forward(x, state, params, (layers[0], Layer(np.zeros((4, 5)))))
    with pytest.raises(DTypeError, match=r"^layers: expected a tuple of Layer, got Layer"):
        step_forward(x, state, params, layers[0])


def test_a_backward_binds_from_the_cache_and_checks_the_cotangents():
    c = cache()
    assert lookup_backward((np.ones((B, H, N)),), c) == "called"
    assert lookup_backward(Outputs(None), c) == "called"  # None: zero
    assert lookup_backward((np.full((B, H, N), 5.0),), c) == "called"  # a gradient is not a probability
    with pytest.raises(ShapeError, match=r"^d_out\.weights: expected shape \(B, H, N\) = \(2, 4, 5\), got \(4, 5\)"):
        lookup_backward((np.ones((H, N)),), c)
    with pytest.raises(DTypeError, match=r"^d_out\.weights: expected the precision of cache\.weights \(float64\)"):
        lookup_backward((np.ones((B, H, N), np.float32),), c)
    with pytest.raises(DomainError, match=r"^d_out\.weights: expected finite values"):
        lookup_backward((np.full((B, H, N), np.nan),), c)
    with pytest.raises(DTypeError, match=r"^d_out: expected an Outputs \(or a tuple of its 1 field: weights; "
                                         r"None for zero\), got tuple of length 2$"):
        lookup_backward((1, 2), c)
    with pytest.raises(DTypeError, match=r"^cache: expected the Cache of the forward, got tuple$"):
        lookup_backward((None,), tuple(c))


def test_the_cache_is_not_validated_again():
    c = cache()._replace(weights=np.full((B, H, N), 7.0))  # out of [0, 1]: not re-checked
    assert lookup_backward((None,), c) == "called"


# ----------------------------------------------------------------------------- derived sizes, configs


def read_mode_width(nw):
    return 1 + 2 * nw


@checked(derive={"K": read_mode_width})
def modes_forward(link: Unit["B nw N N"], modes: Unit["B R K"]):
    return "called"


def test_a_derived_size_is_a_python_function_of_letters():
    link = np.zeros((B, 1, N, N))
    assert modes_forward(link, np.full((B, 2, 3), 0.3)) == "called"
    with pytest.raises(ShapeError) as info:
        modes_forward(link, np.full((B, 2, 4), 0.3))
    assert str(info.value) == ("modes: expected shape (B, R, K) = (2, ?, 3), got (2, 2, 4) "
                               "(K = read_mode_width(nw=1) = 3)")


def test_a_derived_size_bound_after_its_user_is_still_checked():
    @checked(derive={"K": read_mode_width})
    def f(modes: Array["B R K"], link: Array["B nw N N"]):
        return "called"

    assert f(np.zeros((B, 2, 5)), np.zeros((B, 2, N, N))) == "called"
    with pytest.raises(ShapeError, match=r"^modes: expected shape \(B, R, K\) = \(\?, \?, 5\), got \(2, 2, 4\)"):
        f(np.zeros((B, 2, 4)), np.zeros((B, 2, N, N)))


def test_a_derived_size_bound_wrong_is_named_where_it_was_bound_even_when_a_later_argument_disagrees():
    """`K` first bound by `modes` to 4 (not read_mode_width(nw=1) = 3), then `other` of K = 3 disagrees with
    `modes`: the error names `modes`, the argument that breaks the rule, and states the rule truly."""
    @checked(derive={"K": read_mode_width})
    def f(link: Array["B nw N N"], modes: Array["B R K"], other: Array["B K"]):
        return "called"

    link = np.zeros((B, 1, N, N))
    assert f(link, np.zeros((B, 2, 3)), np.zeros((B, 3))) == "called"
    with pytest.raises(ShapeError) as info:
        f(link, np.zeros((B, 2, 4)), np.zeros((B, 3)))
    assert str(info.value) == ("modes: expected shape (B, R, K) = (2, ?, 3), got (2, 2, 4) "
                               "(K = read_mode_width(nw=1) = 3)")
    with pytest.raises(ShapeError) as info:  # both wrong alike: the rule is not claimed to give 4
        f(link, np.zeros((B, 2, 4)), np.zeros((B, 5)))
    assert "read_mode_width(nw=1) = 4" not in str(info.value)


@dataclasses.dataclass(frozen=True)
class MemoryConfig(Config):
    N: Size
    W: Size
    seed: Seed = 0
    skip: bool = True
    convention: Literal["deepmind", "paper"] = "deepmind"

    def sizes(self) -> dict[str, int]:
        return {**super().sizes(), "I": 3 * self.W}


@pytest.mark.parametrize("kwargs,error,message", [
    ({"N": 0}, DomainError, "MemoryConfig.N: expected an integer >= 1, got 0"),
    ({"N": 2.0}, DTypeError, "MemoryConfig.N: expected an integer >= 1, got 2.0"),
    ({"N": True}, DTypeError, "MemoryConfig.N: expected an integer >= 1, got True"),
    ({"seed": -1}, DomainError, "MemoryConfig.seed: expected an integer >= 0, got -1"),
    ({"skip": "False"}, DTypeError, "MemoryConfig.skip: expected a bool (True or False), got 'False'"),
    ({"convention": "graves"}, DomainError, "MemoryConfig.convention: expected one of 'deepmind', 'paper', got 'graves'"),
])
def test_a_config_validates_its_own_fields_strictly(kwargs, error, message):
    with pytest.raises(error) as info:
        MemoryConfig(**{"N": 5, "W": 3, **kwargs})
    assert str(info.value) == message


def test_a_config_binds_its_sizes_and_derived_sizes():
    cfg = MemoryConfig(N=5, W=3)
    assert cfg.sizes() == {"N": 5, "W": 3, "I": 9}

    @checked
    def f(x: Array["B I"], memory: Array["B N W"], cfg: MemoryConfig):
        return "called"

    assert f(np.zeros((2, 9)), np.zeros((2, 5, 3)), cfg) == "called"
    with pytest.raises(ShapeError, match=r"^x: expected shape \(B, I\) = \(\?, 9\), got \(2, 8\)"):
        f(np.zeros((2, 8)), np.zeros((2, 5, 3)), cfg)
    with pytest.raises(DTypeError, match=r"^cfg: expected a MemoryConfig, got dict$"):
        f(np.zeros((2, 9)), np.zeros((2, 5, 3)), {"N": 5})


# ----------------------------------------------------------------------------- declaration errors, legacy


def test_the_01_mechanism_is_gone():
    import refmem.validation as V
    from refmem import xp as rx

    for name in ("edge", "checked_by", "check_arrays", "check_array", "check_size", "spec_from_symbols", "fields"):
        assert not hasattr(V, name), name
    with pytest.raises(AttributeError):
        rx.check_array  # noqa: B018 (the 0.1 re-export went with it)


def test_bad_declarations_fail_at_decoration():
    with pytest.raises(TypeError, match="neither a letter, an integer nor a leading"):
        Array["B (1+2*nw)"]
    with pytest.raises(TypeError, match="is the string"):
        @checked
        def f(x: "Array['B']"):
            pass
    with pytest.raises(TypeError, match="names no argument"):
        @checked
        def g(x: Array["B"], axis: Axis["y"] = 0):
            pass


def test_legacy_call_forms_reach_the_shim_and_new_ones_do_not():
    seen = []

    def old(*args, **kwargs):
        warn_old_call("f(d_weights, cache)", "f((d_weights,), cache)")
        seen.append("old")
        return lookup_backward_new((args[0],), args[1])

    lookup_backward_new = checked(lookup_backward.__wrapped__, legacy=old)
    c = cache()
    assert lookup_backward_new((np.ones((B, H, N)),), c) == "called" and seen == []
    with pytest.warns(DeprecationWarning, match="refmem 0.1 call form"):
        assert lookup_backward_new(np.ones((B, H, N)), c) == "called"
    assert seen == ["old"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lookup_backward_new((None,), c)


def test_a_parameter_that_disagrees_with_the_inputs_is_the_one_named():
    @checked
    def f(h: Array["B H"], params: Params):
        return "called"

    good = Params(np.zeros((3, 4)), np.zeros(4))
    assert f(np.zeros((2, 4)), good) == "called"
    with pytest.raises(ShapeError, match=r"^params\.W_in: expected shape \(D, H\) = \(\?, 4\), got \(3, 5\)"):
        f(np.zeros((2, 4)), good._replace(W_in=np.zeros((3, 5))))


def test_trusted_skips_the_argument_checks_only_inside_its_context():
    """`validation.trusted` is refmem's own derivative loops' way past the checks of arguments that one
    checked call already passed; outside it (and after it) every call is checked again."""
    from refmem.dnc.addressing import allocation_forward
    from refmem.errors import DomainError
    from refmem.validation import trusted

    bad = np.array([[0.2, np.nan, 0.5]])
    with pytest.raises(DomainError, match="usage"):
        allocation_forward(bad)
    with trusted():
        out, _ = allocation_forward(bad)  # not checked: the NaN goes through to the result
    assert np.isnan(out.allocation).any()
    with pytest.raises(DomainError, match="usage"):
        allocation_forward(bad)


def test_a_derivative_loop_still_starts_from_a_checked_call():
    """gradcheck's first (unperturbed) forward is checked: a case drawn with a NaN is refused there, before
    any trusted call."""
    from refmem import catalogue, gradcheck
    from refmem.errors import DomainError

    case = catalogue.get_case("dnc/access_step/deepmind")
    xp = rx.backend("numpy")
    arrays = {k: np.asarray(v) for k, v in case.draw(xp, 0).items()}
    key = next(k for k in arrays if k.startswith("inputs/"))
    arrays[key] = np.full_like(arrays[key], np.nan)
    with pytest.raises(DomainError):
        gradcheck.Evaluation(case, xp, arrays, 0)
