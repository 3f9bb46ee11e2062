"""One test per kind of bad input (issue 12 item 6), parametrised over the entry points.

Each asserts the exception type (refmem.errors) and that the message names the argument
(and, where it applies, the expected and the given). The policy is in docs/validation.md;
tests/test_bad_input_probes.py tries the rest of the public functions one at a time.
"""

from __future__ import annotations

import numpy as np
import pytest

import refmem.attention.bahdanau as BA
import refmem.attention.luong as LU
import refmem.dnc.access as AC
import refmem.dnc.addressing as AD
import refmem.dnc.controller as CT
import refmem.dnc.core as DC
import refmem.memory_lstm as ML
import refmem.primitives as P
from refmem.dnc.params import DNCConfig, init_params
from refmem.dnc.tasks import RepeatCopy, masked_sigmoid_cross_entropy
from refmem.dnc.train import TrainConfig
from refmem.errors import DomainError, DTypeError, NamespaceError, RefmemError, ShapeError
from refmem.optim import SGD, Adam, RMSProp

B, N, W, H, R, NW = 2, 5, 3, 2, 2, 1


def rng(seed=0):
    return np.random.default_rng(seed)


def normal(*shape, seed=0):
    return rng(seed).standard_normal(shape)


def unit(*shape, seed=0):
    return rng(seed).uniform(0.05, 0.95, shape)


def rows(*shape):
    x = unit(*shape)
    return 0.9 * x / x.sum(-1, keepdims=True)


# Valid calls: name -> (function, {argument: value}); each bad-input test replaces one argument.
def content():
    return AD.content_weights_forward, dict(memory=normal(B, N, W), keys=normal(B, H, W), strengths=1 + unit(B, H))


def usage():
    return AD.usage_forward, dict(prev_usage=unit(B, N), prev_write_weights=rows(B, NW, N), free_gates=unit(B, R),
                                  prev_read_weights=rows(B, R, N))


def allocation():
    return AD.allocation_forward, dict(usage=unit(B, N))


def memory_update():
    return AD.memory_update_forward, dict(memory=normal(B, N, W), write_weights=rows(B, NW, N),
                                          erase_vectors=unit(B, NW, W), write_vectors=normal(B, NW, W))


def linkage():
    return AD.temporal_linkage_forward, dict(prev_link=0.1 * unit(B, NW, N, N) * (1 - np.eye(N)),
                                             prev_precedence=rows(B, NW, N), write_weights=rows(B, NW, N))


def read_weights():
    modes = unit(B, R, 1 + 2 * NW)
    return AD.read_weights_forward, dict(memory=normal(B, N, W), read_keys=normal(B, R, W), read_strengths=1 + unit(B, R),
                                         link=np.zeros((B, NW, N, N)), prev_read_weights=rows(B, R, N),
                                         read_modes=modes / modes.sum(-1, keepdims=True))


def linear():
    return P.linear_forward, dict(x=normal(B, 3), W=normal(3, 4), b=normal(4))


def decoder():
    return BA.decoder_forward, dict(h=normal(B, 3, 2), params=BA.init_params(np, 2, 3, 4))


def luong():
    return LU.attention_forward, dict(h=normal(B, 3, 3), hs=normal(B, 4, 3), params=LU.init_params(np, "general", "global", 3, 3))


def mlstm():
    return ML.unroll_forward, dict(x=normal(B, 3, 2), params=ML.init_params(np, 2, 3, 4))


def _access():
    cfg = AC.AccessConfig(N=N, W=W, R=R, nw=NW)
    S = AC.interface_size(cfg)
    return dict(controller_output=normal(B, 4), W_xi=0.3 * normal(4, S), b_xi=np.zeros(S),
                state=AC.initial_state(np, B, cfg), cfg=cfg)


def access():
    return AC.access_step_forward, _access()


def core():
    cfg = DNCConfig(D=3, Y=2, hidden=4, N=N, W=W, R=R)
    return DC.unroll_forward, dict(x=normal(B, 3, 3), params=init_params(np, cfg), cfg=cfg)


def sharpen():
    return AD.sharpen_forward, dict(weights=rows(B, R, NW, N), sharpness=1 + unit(B, R))


def call(entry, **replace):
    fn, kwargs = entry()
    kwargs.update(replace)
    return fn(**kwargs)


def check(exc, names, message):
    assert isinstance(exc, RefmemError), type(exc)
    for n in names:
        assert n in message, (n, message)


# ----------------------------------------------------------------------------- shapes

SHAPE_CASES = [
    (content, "keys", normal(B, H, W + 1)),
    (content, "strengths", unit(H)),  # no batch axis
    (usage, "prev_write_weights", rows(B, NW, N + 1)),
    (allocation, "usage", unit(N)),
    (memory_update, "write_vectors", normal(B, NW, W + 1)),
    (linkage, "prev_precedence", rows(B, N)),
    (read_weights, "read_modes", rows(B, R, 2)),
    (linear, "b", normal(5)),
    (decoder, "h", normal(B, 3)),
    (luong, "h", normal(B, 3, 4)),
    (mlstm, "x", normal(B, 3, 5)),
    (access, "controller_output", normal(B + 1, 4)),
    (access, "W_xi", normal(5, AC.interface_size(AC.AccessConfig(N=N, W=W, R=R, nw=NW)))),
    (core, "x", normal(B, 3, 4)),
]


@pytest.mark.parametrize("entry,arg,value", SHAPE_CASES, ids=[f"{e.__name__}-{a}" for e, a, _ in SHAPE_CASES])
def test_wrong_shape_is_a_shape_error_naming_the_argument(entry, arg, value):
    with pytest.raises(ShapeError) as info:
        call(entry, **{arg: value})
    msg = str(info.value)
    assert msg.startswith(arg + ":"), msg
    assert "expected" in msg and str(tuple(value.shape)) in msg  # the expected and the given


# ----------------------------------------------------------------------------- cotangents


def _fwd_bwd():
    x = normal(B, 3)
    w, c_content = AD.content_weights_forward(*content()[1].values())
    a, c_alloc = AD.allocation_forward(unit(B, N))
    m, c_mem = AD.memory_update_forward(*memory_update()[1].values())
    y, c_lin = P.linear_forward(x, normal(3, 4))
    out, c_dec = BA.decoder_forward(**decoder()[1])
    outl, c_lu = LU.attention_forward(**luong()[1])
    outm, c_ml = ML.unroll_forward(**mlstm()[1])
    r, c_acc = AC.access_step_forward(**_access())
    outc, c_core = DC.unroll_forward(**core()[1])
    return [
        ("content_weights_backward", lambda d: AD.content_weights_backward((d,), c_content), "d_out.weights", (H, N)),
        ("allocation_backward", lambda d: AD.allocation_backward((d,), c_alloc), "d_out.allocation", (N,)),
        ("memory_update_backward", lambda d: AD.memory_update_backward((d,), c_mem), "d_out.memory", (N, W)),
        ("linear_backward", lambda d: P.linear_backward((d,), c_lin), "d_out.out", (4,)),
        ("decoder_backward", lambda d: BA.decoder_backward((d, None, None), c_dec), "d_out.y", (3, 4)),
        ("luong attention_backward", lambda d: LU.attention_backward((d, None, None, None), c_lu), "d_out.a", (3, 4)),
        ("memory_lstm unroll_backward", lambda d: ML.unroll_backward((d, None, None), c_ml), "d_out.h", (3, 3)),
        ("access_step_backward", lambda d: AC.access_step_backward((d, None), c_acc), "d_out.read_vectors", (R, W)),
        ("core unroll_backward", lambda d: DC.unroll_backward(DC.UnrollOutputs(d, None), c_core), "d_out.y", (3, 2)),
    ]


@pytest.mark.parametrize("index", range(9))
def test_cotangent_without_the_batch_axis_is_refused_not_broadcast(index):
    name, backward, arg, shape = _fwd_bwd()[index]
    with pytest.raises(ShapeError) as info:
        backward(normal(*shape))
    check(info.value, [arg, str(shape)], str(info.value))


@pytest.mark.parametrize("index", [0, 1, 3, 7])
def test_cotangent_of_another_precision_names_both_dtypes(index):
    name, backward, arg, shape = _fwd_bwd()[index]
    with pytest.raises(DTypeError) as info:
        backward(normal(B, *shape).astype(np.float32))
    check(info.value, [arg, "float32", "float64"], str(info.value))


# ----------------------------------------------------------------------------- dtypes, lists, namespaces

ENTRIES = [(content, "memory"), (usage, "free_gates"), (allocation, "usage"), (linear, "W"), (decoder, "h"),
           (luong, "hs"), (mlstm, "x"), (access, "controller_output"), (core, "x")]
IDS = [f"{e.__name__}-{a}" for e, a in ENTRIES]


def _value(entry, arg):
    return entry()[1][arg]


@pytest.mark.parametrize("entry,arg", ENTRIES, ids=IDS)
def test_integer_array_is_a_dtype_error(entry, arg):
    v = _value(entry, arg)
    with pytest.raises(DTypeError) as info:
        call(entry, **{arg: np.zeros(v.shape, dtype=np.int64)})
    check(info.value, [arg, "int64"], str(info.value))


@pytest.mark.parametrize("entry,arg", ENTRIES, ids=IDS)
def test_python_list_is_refused(entry, arg):
    with pytest.raises(DTypeError) as info:
        call(entry, **{arg: _value(entry, arg).tolist()})
    check(info.value, [arg, "list"], str(info.value))


MULTI = [(e, a) for e, a in ENTRIES if e is not allocation]  # calls of more than one array


@pytest.mark.parametrize("entry,arg", MULTI, ids=[f"{e.__name__}-{a}" for e, a in MULTI])
def test_float32_among_float64_names_both(entry, arg):
    with pytest.raises(DTypeError) as info:
        call(entry, **{arg: _value(entry, arg).astype(np.float32)})
    check(info.value, ["float32", "float64"], str(info.value))


@pytest.mark.parametrize("entry,arg", MULTI, ids=[f"{e.__name__}-{a}" for e, a in MULTI])
def test_torch_among_numpy_is_a_namespace_error(entry, arg):
    torch = pytest.importorskip("torch")
    with pytest.raises(NamespaceError) as info:
        call(entry, **{arg: torch.from_numpy(_value(entry, arg))})
    check(info.value, ["torch", "numpy"], str(info.value))


# ----------------------------------------------------------------------------- domains


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("entry,arg", ENTRIES, ids=IDS)
def test_non_finite_value_is_a_domain_error(entry, arg, bad):
    v = _value(entry, arg).copy()
    v.flat[-1] = bad
    with pytest.raises(DomainError) as info:
        call(entry, **{arg: v})
    check(info.value, [arg, "finite", repr(float(bad))], str(info.value))


UNIT = [(usage, "prev_usage"), (usage, "free_gates"), (usage, "prev_read_weights"), (allocation, "usage"),
        (memory_update, "erase_vectors"), (memory_update, "write_weights"), (linkage, "prev_link"),
        (read_weights, "read_modes"), (sharpen, "weights")]


@pytest.mark.parametrize("bad", [2.0, -0.9, 1.5])
@pytest.mark.parametrize("entry,arg", UNIT, ids=[f"{e.__name__}-{a}" for e, a in UNIT])
def test_probability_outside_unit_interval_is_a_domain_error(entry, arg, bad):
    v = _value(entry, arg).copy()
    v.flat[0] = bad
    with pytest.raises(DomainError) as info:
        call(entry, **{arg: v})
    check(info.value, [arg, "[0, 1]", repr(bad)], str(info.value))


@pytest.mark.parametrize("field", ["usage", "read_weights", "link"])
def test_state_outside_unit_interval_is_a_domain_error(field):
    state = _access()["state"]
    bad = np.full(getattr(state, field).shape, 1.5)
    with pytest.raises(DomainError) as info:
        call(access, state=state._replace(**{field: bad}))
    check(info.value, ["state." + field, "1.5"], str(info.value))


@pytest.mark.parametrize("bad", [np.nan, 2.0, -1.0, 0.5])
@pytest.mark.parametrize("where", ["attention_weights", "decoder_forward", "cross_entropy"])
def test_mask_not_boolean_or_zero_one_is_a_domain_error(where, bad):
    mask = np.ones((B, 3))
    mask[0, 1] = bad
    with pytest.raises(DomainError) as info:
        if where == "attention_weights":
            BA.attention_weights_forward(normal(B, 3), mask=mask)
        elif where == "decoder_forward":
            call(decoder, mask=mask)
        else:
            masked_sigmoid_cross_entropy(normal(B, 3, 4), unit(B, 3, 4).round(), mask)
    check(info.value, ["mask", "0 or 1"], str(info.value))


def test_boolean_and_zero_one_float_masks_are_the_same():
    e = normal(B, 3)
    m = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(BA.attention_weights_forward(e, mask=m)[0].alpha,
                                  BA.attention_weights_forward(e, mask=m.astype(bool))[0].alpha)


# ----------------------------------------------------------------------------- empty batches and sizes

EMPTY = [
    ("content B=0", lambda: AD.content_weights_forward(np.zeros((0, N, W)), np.zeros((0, H, W)), np.zeros((0, H))), "B"),
    ("content N=0", lambda: call(content, memory=np.zeros((B, 0, W))), "N"),
    ("allocation B=0", lambda: AD.allocation_forward(np.zeros((0, N))), "B"),
    ("softmax empty", lambda: P.softmax_forward(np.zeros((0, 3))), "x"),
    ("decoder T=0", lambda: call(decoder, h=np.zeros((B, 0, 2))), "T"),
    ("decoder B=0", lambda: call(decoder, h=np.zeros((0, 3, 2))), "B"),
    ("luong S=0", lambda: call(luong, hs=np.zeros((B, 0, 3))), "S"),
    ("memory_lstm T=0", lambda: call(mlstm, x=np.zeros((B, 0, 2))), "T"),
    ("memory_lstm B=0", lambda: call(mlstm, x=np.zeros((0, 3, 2))), "B"),
    ("core T=0", lambda: call(core, x=np.zeros((B, 0, 3))), "T"),
    ("core B=0", lambda: call(core, x=np.zeros((0, 3, 3))), "B"),
]


@pytest.mark.parametrize("label,thunk,letter", EMPTY, ids=[e[0] for e in EMPTY])
def test_empty_axes_are_refused_forward_so_no_backward_is_half_done(label, thunk, letter):
    with pytest.raises(ShapeError) as info:
        thunk()
    msg = str(info.value)
    assert "at least 1" in msg and (f"{letter} = 0" in msg or "empty" in msg), msg


SIZES = [
    (lambda: AC.initial_state(np, 0, AC.AccessConfig(N=N, W=W, R=R, nw=NW)), "B"),
    (lambda: DC.initial_state(np, -1, DNCConfig(D=2, Y=2)), "B"),
    (lambda: CT.controller_initial_state(np, 0, CT.ControllerConfig(input_size=3, hidden=4)), "B"),
    (lambda: AC.AccessConfig(N=0, W=W, R=R, nw=NW), "N"),
    (lambda: DNCConfig(D=2, Y=2, R=0), "R"),
    (lambda: DNCConfig(D=2, Y=2, hidden=0), "hidden"),
    (lambda: ML.init_params(np, 2, 0, 3), "H"),
    (lambda: BA.init_params(np, 0, 3, 4), "D"),
    (lambda: LU.init_params(np, "concat", "global", 3, 3, A=0), "A"),
    (lambda: RepeatCopy(num_bits=0), "num_bits"),
    (lambda: TrainConfig(steps=0), "steps"),
]


@pytest.mark.parametrize("thunk,arg", SIZES, ids=[a + str(i) for i, (_, a) in enumerate(SIZES)])
def test_size_below_its_minimum_is_a_domain_error(thunk, arg):
    with pytest.raises(DomainError) as info:
        thunk()
    check(info.value, [arg, ">= 1"], str(info.value))


SEEDS = [lambda: ML.init_params(np, 2, 3, 4, seed=-1), lambda: BA.init_params(np, 2, 3, 4, seed=-1),
         lambda: LU.init_params(np, "general", "global", 3, 3, seed=-1), lambda: init_params(np, DNCConfig(D=2, Y=2), seed=-1),
         lambda: TrainConfig(seed=-1)]


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_negative_seed_is_a_domain_error(index):
    with pytest.raises(DomainError) as info:
        SEEDS[index]()
    check(info.value, ["seed", "-1"], str(info.value))


# ----------------------------------------------------------------------------- options and scalars

OPTIONS = [
    (lambda: call(content, convention="graves"), "convention", "graves"),
    (lambda: call(sharpen, eps=0.0), "eps", "0.0"),
    (lambda: call(sharpen, eps=-1e-6), "eps", "-1e-06"),
    (lambda: call(allocation, eps=1.5), "eps", "1.5"),
    (lambda: AC.AccessConfig(N=N, W=W, R=R, nw=NW, convention="graves"), "convention", "graves"),
    (lambda: call(decoder, output_state="bogus"), "output_state", "bogus"),
    (lambda: call(luong, alignment="bogus"), "alignment", "bogus"),
    (lambda: LU.init_params(np, "bogus", "global", 3, 3), "score", "bogus"),
    (lambda: P.softmax_forward(normal(2, 3), axis=2), "axis", "2"),
    (lambda: P.exclusive_cumprod_forward(normal(2, 3), axis=-3), "axis", "-3"),
    (lambda: call(allocation, eps=float("nan")), "eps", "nan"),
    (lambda: P.cosine_forward(normal(B, H, W), normal(B, N, W), eps=-1.0), "eps", "-1.0"),
    (lambda: CT.clip_forward(normal(2, 3), clip_value=float("nan")), "clip_value", "nan"),
    (lambda: DNCConfig(D=2, Y=2, clip_value=float("inf")), "clip_value", "inf"),
    (lambda: RMSProp(lr=float("nan")), "lr", "nan"),
    (lambda: Adam(lr=-1.0), "lr", "-1.0"),
    (lambda: SGD(lr=0.0), "lr", "0.0"),
    (lambda: TrainConfig(lr=float("nan")), "lr", "nan"),
]


@pytest.mark.parametrize("thunk,arg,given", OPTIONS, ids=[f"{a}{i}" for i, (_, a, _) in enumerate(OPTIONS)])
def test_unknown_option_or_bad_scalar_is_a_domain_error(thunk, arg, given):
    with pytest.raises(DomainError) as info:
        thunk()
    check(info.value, [arg, "expected", given], str(info.value))


# ----------------------------------------------------------------------------- structures

STRUCTURES = [
    (lambda: call(decoder, params=tuple(BA.init_params(np, 2, 3, 4))), "params"),
    (lambda: call(luong, params=BA.init_params(np, 2, 3, 4)), "params"),
    (lambda: call(access, state=tuple(_access()["state"])), "state"),
    (lambda: call(access, cfg=DNCConfig(D=2, Y=2, N=N, W=W, R=R)), "cfg"),
    (lambda: call(core, params=tuple(core()[1]["params"])), "params"),
    (lambda: call(mlstm, params=tuple(ML.init_params(np, 2, 3, 4))), "params"),
    (lambda: AC.initial_state(np, 2, dict(N=N, W=W, R=R, nw=NW)), "cfg"),
    (lambda: init_params(np, AC.AccessConfig(N=N, W=W, R=R, nw=NW)), "cfg"),
]


@pytest.mark.parametrize("index", range(len(STRUCTURES)))
def test_wrong_structure_type_is_a_type_error_naming_the_argument(index):
    thunk, arg = STRUCTURES[index]
    with pytest.raises(TypeError) as info:
        thunk()
    assert str(info.value).startswith(arg + ":"), str(info.value)
    assert "expected" in str(info.value) and "got" in str(info.value)


def test_backward_state_gradient_of_the_wrong_type_or_shape():
    out, cache = DC.unroll_forward(**core()[1])
    final = out.state
    with pytest.raises(TypeError, match="^d_out.state: expected a DNCState"):
        DC.unroll_backward(DC.UnrollOutputs(np.ones(out.y.shape), None, tuple(final)), cache)
    bad = final._replace(access=final.access._replace(memory=np.ones((B, N + 1, W))))
    with pytest.raises(ShapeError, match=r"^d_out\.state\.access\.memory: expected shape"):
        DC.unroll_backward(DC.UnrollOutputs(np.ones(out.y.shape), None, bad), cache)


# ----------------------------------------------------------------------------- array subclasses (issue 19)


@pytest.mark.parametrize("entry,arg", ENTRIES, ids=IDS)
def test_masked_array_is_refused_not_read_through_its_mask(entry, arg):
    v = _value(entry, arg)
    bad = np.ma.masked_array(v, mask=np.zeros(v.shape, dtype=bool))
    bad.mask.flat[0] = True
    with pytest.raises(DTypeError) as info:
        call(entry, **{arg: bad})
    check(info.value, [arg, "masked array"], str(info.value))


MATRIX = [(e, a) for e, a in ENTRIES if _value(e, a).ndim == 2]


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("entry,arg", MATRIX, ids=[f"{e.__name__}-{a}" for e, a in MATRIX])
def test_np_matrix_is_refused(entry, arg):
    with pytest.raises(DTypeError) as info:
        call(entry, **{arg: np.matrix(_value(entry, arg))})
    check(info.value, [arg, "np.matrix"], str(info.value))
