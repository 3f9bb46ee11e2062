"""The keras-attention ``AttentionDecoder`` (SPEC §2, equations 1-8) rebuilt for Keras 3.

datalogue/keras-attention's layer was written for Keras 2.1 (``Recurrent``,
``K.rnn``, ``time_distributed_dense``) and no longer runs. This is an
independent rewrite from SPEC §2, not a call into refmem: a Keras 3 layer that
uses ``keras.ops`` only, so it runs on every Keras backend (verified on torch,
jax and tensorflow). It keeps the original's arguments (``units``, ``output_dim``,
``return_probabilities``) and adds:

* ``output_state``: which state equation 8 reads, ``"previous"`` (``s_{t-1}``,
  the original repository) or ``"current"`` (``s_t``, the paper);
* masks: a Keras mask (or ``mask=``) over the annotations gives masked
  annotations weight exactly 0 (a row with no attended annotation gets all-zero
  weights, not NaN);
* teacher forcing: ``y_prev=[B, T, K]`` replaces the fed-back ``y_{t-1}``.

Its golden adapter ``run`` differentiates the layer with the backend's own
autodiff (``torch.autograd.grad`` on the torch backend, ``jax.vjp`` on jax,
``tf.GradientTape`` on tensorflow) through ``Layer.stateless_call``::

    KERAS_BACKEND=torch refmem golden verify --adapter examples.keras_attention_decoder:run --dtype float32
    KERAS_BACKEND=jax   refmem golden verify --adapter examples.keras_attention_decoder:run --dtype float64

The backend is fixed when Keras is first imported (``KERAS_BACKEND``); when it is
unset and TensorFlow is not installed, this module picks torch (else jax).
"""

from __future__ import annotations

import importlib.util
import os

if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None:
    os.environ["KERAS_BACKEND"] = "torch" if importlib.util.find_spec("torch") is not None else "jax"
if os.environ.get("KERAS_BACKEND") == "jax":
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 golden cases

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

#: The golden cases this adapter implements (fnmatch patterns).
CASES = ["attention/bahdanau_decoder/*"]

#: Weight names in SPEC §2's order (the golden ``params/`` names).
WEIGHTS = ("V_a", "W_a", "U_a", "b_a",
           "W_r", "U_r", "C_r", "b_r",
           "W_z", "U_z", "C_z", "b_z",
           "W_p", "U_p", "C_p", "b_p",
           "W_o", "U_o", "C_o", "b_o",
           "W_s")


class AttentionDecoder(keras.layers.Layer):
    """Bahdanau's attention decoder over annotations ``h [B, T, D]``; runs exactly ``T`` steps.

    Args:
        units: ``H``, the size of the decoder state ``s``.
        output_dim: ``K``, the number of output classes (``y_t`` is a softmax over them).
        return_probabilities: return the attention weights ``alpha [B, T, T]`` instead of
            ``y [B, T, K]`` (as the original layer's option).
        output_state: ``"previous"`` (eq. 8 reads ``s_{t-1}``) or ``"current"`` (``s_t``).
        kernel_initializer: for ``V_a``, ``W_a``, ``U_a`` (the original's ``glorot_uniform``).
        recurrent_initializer: for the gate, output and ``W_s`` matrices (``orthogonal``).
        bias_initializer: for every bias (``zeros``).

    Call: ``layer(h, mask=None, y_prev=None)``; ``decode`` returns all three of
    ``y``, ``alpha`` and ``s [B, T, H]``.
    """

    def __init__(self, units, output_dim, return_probabilities=False, output_state="previous",
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if output_state not in ("previous", "current"):
            raise ValueError(f"output_state: expected 'previous' or 'current', got {output_state!r}")
        if int(units) < 1 or int(output_dim) < 1:
            raise ValueError(f"units and output_dim: expected positive integers, got {units!r}, {output_dim!r}")
        self.units = int(units)
        self.output_dim = int(output_dim)
        self.return_probabilities = bool(return_probabilities)
        self.output_state = output_state
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"inputs: expected shape (B, T, D) with D known, got {input_shape}")
        D, H, K = int(input_shape[-1]), self.units, self.output_dim
        shapes = {"V_a": (H,), "W_a": (H, H), "U_a": (D, H), "b_a": (H,)}
        for g in "rzp":
            shapes.update({f"W_{g}": (K, H), f"U_{g}": (H, H), f"C_{g}": (D, H), f"b_{g}": (H,)})
        shapes.update({"W_o": (K, K), "U_o": (H, K), "C_o": (D, K), "b_o": (K,), "W_s": (D, H)})
        for name in WEIGHTS:
            if name.startswith("b_"):
                init = self.bias_initializer
            elif name in ("V_a", "W_a", "U_a"):
                init = self.kernel_initializer
            else:
                init = self.recurrent_initializer
            setattr(self, name, self.add_weight(name=name, shape=shapes[name], initializer=init))

    def decode(self, h, mask=None, y_prev=None):
        """``(y [B, T, K], alpha [B, T, T], s [B, T, H])`` for annotations ``h [B, T, D]``."""
        h = ops.convert_to_tensor(h, dtype=self.compute_dtype)
        B, T = ops.shape(h)[0], int(h.shape[1])
        w = {name: ops.convert_to_tensor(getattr(self, name)) for name in WEIGHTS}
        attend = None if mask is None else ops.not_equal(ops.convert_to_tensor(mask), 0)
        s = _tanh(_mm(h[:, 0, :], w["W_s"]))  # s_0
        y = ops.zeros((B, self.output_dim), dtype=h.dtype)  # y_0
        keys = _mm(h, w["U_a"]) + w["b_a"]  # h_j @ U_a + b_a, once per sequence
        ys, alphas, states = [], [], []
        for t in range(T):
            y_in = y if y_prev is None else y_prev[:, t, :]
            e = ops.sum(_tanh(ops.expand_dims(_mm(s, w["W_a"]), 1) + keys) * w["V_a"], axis=-1)  # (1)
            alpha = _softmax(e) if attend is None else _masked_softmax(e, attend)  # (2)
            c = ops.sum(ops.expand_dims(alpha, -1) * h, axis=1)  # (3)
            r = ops.sigmoid(_mm(y_in, w["W_r"]) + _mm(s, w["U_r"]) + _mm(c, w["C_r"]) + w["b_r"])  # (4)
            z = ops.sigmoid(_mm(y_in, w["W_z"]) + _mm(s, w["U_z"]) + _mm(c, w["C_z"]) + w["b_z"])  # (5)
            p = _tanh(_mm(y_in, w["W_p"]) + _mm(r * s, w["U_p"]) + _mm(c, w["C_p"]) + w["b_p"])  # (6)
            s_new = (1 - z) * s + z * p  # (7)
            s_star = s if self.output_state == "previous" else s_new
            y = _softmax(_mm(y_in, w["W_o"]) + _mm(s_star, w["U_o"]) + _mm(c, w["C_o"]) + w["b_o"])  # (8)
            s = s_new
            ys.append(y)
            alphas.append(alpha)
            states.append(s)
        return ops.stack(ys, axis=1), ops.stack(alphas, axis=1), ops.stack(states, axis=1)

    def call(self, inputs, mask=None, y_prev=None):
        y, alpha, _ = self.decode(inputs, mask=mask, y_prev=y_prev)
        return alpha if self.return_probabilities else y

    def compute_output_shape(self, input_shape):
        B, T = input_shape[0], input_shape[1]
        return (B, T, T) if self.return_probabilities else (B, T, self.output_dim)

    def compute_mask(self, inputs, mask=None):
        return None  # the T outputs are decoder steps, not the (masked) annotations

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units, output_dim=self.output_dim, return_probabilities=self.return_probabilities,
            output_state=self.output_state,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


def _mm(a, w):
    """``a @ w`` contracting the last axis of ``a`` with the first of ``w``.

    ``ops.einsum``, not ``ops.matmul``: on the torch backend Keras 3.15's ``matmul``
    computes float64 operands in float32 (``keras/src/backend/torch/numpy.py`` line 141
    takes ``dtypes.result_type``, which maps float64 to float32 on every backend but
    tensorflow, ``keras/src/backend/common/dtypes.py`` ``BIT64_TO_BIT32_DTYPE``).
    """
    return ops.einsum("...i,ij->...j", a, w)


def _tanh(x):
    """``tanh(x) = 2 σ(2x) - 1``, through ``ops.sigmoid``.

    Not ``ops.tanh``: on the jax backend Keras 3.15 computes it in float32 for float64
    input (``keras/src/backend/jax/numpy.py`` line 1410, ``dtypes.result_type(x.dtype,
    float)``, float64 mapped to float32 by ``BIT64_TO_BIT32_DTYPE``); the float64 golden
    cases then fail by 1e-7. ``ops.sigmoid`` keeps the dtype on every backend.
    """
    return 2 * ops.sigmoid(2 * x) - 1


def _softmax(x):
    """Softmax over the last axis, the maximum subtracted first."""
    ex = ops.exp(x - ops.stop_gradient(ops.max(x, axis=-1, keepdims=True)))
    return ex / ops.sum(ex, axis=-1, keepdims=True)


def _masked_softmax(e, attend):
    """Equation 2 with a mask: masked positions get weight exactly 0 and no gradient;
    a row with nothing attended gets all-zero weights."""
    lowest = ops.min(e, axis=-1, keepdims=True)
    shift = ops.stop_gradient(ops.max(ops.where(attend, e, lowest), axis=-1, keepdims=True))
    ex = ops.where(attend, ops.exp(ops.where(attend, e - shift, ops.zeros_like(e))), ops.zeros_like(e))
    total = ops.sum(ex, axis=-1, keepdims=True)
    return ex / ops.where(total == 0, ops.ones_like(total), total)


# ----------------------------------------------------------------------------- the golden adapter


def _build(tensors, dtype, output_state):
    D = tensors["inputs/h"].shape[-1]
    H, K = tensors["params/W_a"].shape[0], tensors["params/W_o"].shape[0]
    layer = AttentionDecoder(H, K, output_state=output_state, dtype=dtype)
    layer.build((None, None, D))
    for name in WEIGHTS:
        getattr(layer, name).assign(np.asarray(tensors[f"params/{name}"], dtype=dtype))
    return layer


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """The adapter: outputs from the layer, grads by the backend's autodiff through ``stateless_call``."""
    config = config or {}
    output_state = config.get("output_state") or ("current" if "/current" in case else "previous")
    layer = _build(tensors, dtype, output_state)
    order = [v.path for v in layer.trainable_variables]
    names = {v.path: v.name for v in layer.trainable_variables}
    mask = tensors.get("inputs/mask")
    teacher = "inputs/y_prev" in tensors
    cot = [np.asarray(tensors[f"cotangents/{k}"], dtype=dtype) for k in ("y", "alpha", "s")]
    inputs = {"h": np.asarray(tensors["inputs/h"], dtype=dtype)}
    if teacher:
        inputs["y_prev"] = np.asarray(tensors["inputs/y_prev"], dtype=dtype)
    params = [np.asarray(tensors[f"params/{names[p]}"], dtype=dtype) for p in order]

    def forward(trainable, x):
        # the layer's own computation, Keras substituting ``trainable`` for its variables
        with keras.StatelessScope(state_mapping=list(zip(layer.trainable_variables, trainable))):
            return layer.decode(x["h"], mask=mask, y_prev=x.get("y_prev"))

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        leaves = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
        wts = [torch.tensor(v, requires_grad=True) for v in params]
        outs = forward(wts, leaves)
        loss = sum((o * torch.tensor(c)).sum() for o, c in zip(outs, cot))
        g = torch.autograd.grad(loss, list(leaves.values()) + wts)
        g_in, g_w = dict(zip(leaves, g[: len(leaves)])), g[len(leaves):]
        outs = [o.detach().numpy() for o in outs]
        to_np = lambda a: a.numpy()  # noqa: E731
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        outs, vjp = jax.vjp(forward, [jnp.asarray(v) for v in params], {k: jnp.asarray(v) for k, v in inputs.items()})
        g_w, g_in = vjp(tuple(jnp.asarray(c) for c in cot))
        to_np = np.asarray
    elif backend == "tensorflow":
        import tensorflow as tf

        leaves = {k: tf.Variable(v) for k, v in inputs.items()}
        wts = [tf.Variable(v) for v in params]
        with tf.GradientTape() as tape:
            outs = forward(wts, leaves)
            loss = tf.add_n([tf.reduce_sum(o * c) for o, c in zip(outs, cot)])
        g = tape.gradient(loss, list(leaves.values()) + wts)
        g_in, g_w = dict(zip(leaves, g[: len(leaves)])), g[len(leaves):]
        to_np = np.asarray
    else:
        raise RuntimeError(f"KERAS_BACKEND: expected torch, jax or tensorflow, got {backend!r}")
    result = {f"outputs/{k}": np.asarray(v) for k, v in zip(("y", "alpha", "s"), outs)}
    result.update({f"grads/inputs/{k}": to_np(v) for k, v in g_in.items()})
    result.update({f"grads/params/{names[p]}": to_np(v) for p, v in zip(order, g_w)})
    return result
