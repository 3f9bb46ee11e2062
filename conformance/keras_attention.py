"""Golden adapter for Keras 3's built-in attention layers, run unpatched on the current Keras backend.

Each case is computed by Keras layers only, composed as a Keras user would write the
equation; the golden parameters are assigned to the layers' weights and the gradients
come from the backend's autodiff (``torch.autograd.grad`` or ``jax.vjp``) through the
layers, Keras substituting the golden values for its variables (``keras.StatelessScope``):

* ``attention/luong_dot/global``: ``Attention(score_mode="dot")([h, hs])`` gives ``c`` and ``a``
  (``return_attention_scores=True``); ``h~ = Dense(H, use_bias=False, activation="tanh")``
  on ``Concatenate()([c, h])`` with kernel ``W_c``;
* ``attention/luong_general/global``: the query ``Dense(Hs, use_bias=False)(h)`` with kernel
  ``W_a``, then as ``dot``;
* ``attention/luong_concat/global``: ``AdditiveAttention(use_scale=True)`` with its ``scale = v_a``
  on the query ``Dense(A)(h)`` (kernel ``W_a[:H]``) and key ``Dense(A)(hs)`` (kernel ``W_a[H:]``),
  value ``hs``; then ``h~`` as above;
* ``attention/keras_scores/dot_scaled``: ``Attention(score_mode="dot", use_scale=True)([q, v, k])``;
* ``attention/keras_scores/concat_scaled``: ``Attention(score_mode="concat", use_scale=True)``
  (``scale`` and ``concat_score_weight``);
* ``attention/keras_scores/additive``: ``AdditiveAttention(use_scale=True)``.

Not covered: Luong's ``location`` score and the local alignments (no Keras layer), and
``MultiHeadAttention`` (its fixed ``1/sqrt(key_dim)`` factor and biased projections match
no refmem equation).

The backend is fixed when Keras is imported: ``KERAS_BACKEND=torch``, ``jax`` (with jax,
this module switches on ``jax_enable_x64`` so that float64 arrays exist at all) or
``tensorflow`` (``tf.GradientTape``).
"""

from __future__ import annotations

import os

if os.environ.get("KERAS_BACKEND") == "jax":
    import jax

    jax.config.update("jax_enable_x64", True)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

#: The golden cases this adapter implements (fnmatch patterns).
CASES = [
    "attention/luong_dot/global",
    "attention/luong_general/global",
    "attention/luong_concat/global",
    "attention/keras_scores/*",
]

#: The Keras layers that compute each case (for the conformance report).
LAYERS = {
    "attention/luong_dot/global": "Attention(score_mode='dot') + Concatenate + Dense(tanh, no bias)",
    "attention/luong_general/global": "Dense(no bias) query + Attention(score_mode='dot') + Concatenate + Dense(tanh)",
    "attention/luong_concat/global": "Dense query, Dense key + AdditiveAttention(use_scale=True) + Concatenate + Dense(tanh)",
    "attention/keras_scores/dot_scaled": "Attention(score_mode='dot', use_scale=True)",
    "attention/keras_scores/concat_scaled": "Attention(score_mode='concat', use_scale=True)",
    "attention/keras_scores/additive": "AdditiveAttention(use_scale=True)",
}

NOT_COVERED = {
    "attention/luong_location/*": "no Keras layer computes softmax(h_t @ W_a) over source positions",
    "attention/luong_*/local_*": "no Keras layer has local (windowed, Gaussian-weighted) alignment",
    "attention/bahdanau_decoder/*": "no built-in Keras layer (see examples/keras_attention_decoder.py)",
    "keras.layers.MultiHeadAttention": "its fixed 1/sqrt(key_dim) factor and biased projections match no refmem equation",
}


def _dense(units, kernel, dtype, activation=None):
    layer = layers.Dense(units, use_bias=False, activation=activation, dtype=dtype)
    layer.build((None, None, kernel.shape[0]))
    return layer, [(layer.kernel, kernel)]


def _pipeline(case, t, dtype):
    """``(forward(x) -> outputs, [(variable, golden value)], input names)`` for ``case``."""
    p = {k.split("/", 1)[1]: np.asarray(v, dtype=dtype) for k, v in t.items() if k.startswith("params/")}
    fn = case.split("/")[1]
    if fn.startswith("luong_"):
        H = t["inputs/h"].shape[-1]
        out_layer, assign = _dense(H, p["W_c"], dtype, activation="tanh")
        concat = layers.Concatenate(axis=-1, dtype=dtype)
        if fn == "luong_concat":
            A = p["W_a"].shape[1]
            q_layer, a1 = _dense(A, p["W_a"][:H], dtype)
            k_layer, a2 = _dense(A, p["W_a"][H:], dtype)
            att = layers.AdditiveAttention(use_scale=True, dtype=dtype)
            att.build([(None, None, A), (None, None, t["inputs/hs"].shape[-1]), (None, None, A)])
            assign += a1 + a2 + [(att.scale, p["v_a"])]

            def forward(x):
                c, a = att([q_layer(x["h"]), x["hs"], k_layer(x["hs"])], return_attention_scores=True)
                return {"a": a, "c": c, "h_tilde": out_layer(concat([c, x["h"]]))}
        else:
            att = layers.Attention(score_mode="dot", dtype=dtype)
            q_layer = None
            if fn == "luong_general":
                q_layer, a1 = _dense(p["W_a"].shape[1], p["W_a"], dtype)
                assign += a1

            def forward(x):
                q = x["h"] if q_layer is None else q_layer(x["h"])
                c, a = att([q, x["hs"]], return_attention_scores=True)
                return {"a": a, "c": c, "h_tilde": out_layer(concat([c, x["h"]]))}
        return forward, assign, ("h", "hs")
    score = case.split("/")[2]
    d = t["inputs/q"].shape[-1]
    if score == "additive":
        att = layers.AdditiveAttention(use_scale=True, dtype=dtype)
        att.build([(None, None, d), (None, None, t["inputs/v"].shape[-1]), (None, None, d)])
        assign = [(att.scale, p["scale"])]
    else:
        att = layers.Attention(score_mode="dot" if score == "dot_scaled" else "concat", use_scale=True, dtype=dtype)
        att.build([(None, None, d), (None, None, t["inputs/v"].shape[-1]), (None, None, d)])
        assign = [(att.scale, p["scale"].reshape(()))]  # Keras holds the scalars 0-d, refmem as [1]
        if score == "concat_scaled":
            assign.append((att.concat_score_weight, p["weight"].reshape(())))

    def forward(x):
        out, w = att([x["q"], x["v"], x["k"]], return_attention_scores=True)
        return {"weights": w, "output": out}

    return forward, assign, ("q", "k", "v")


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """Outputs by the Keras layers, grads by the backend's autodiff through them."""
    forward, assign, names = _pipeline(case, tensors, dtype)
    variables = [v for v, _ in assign]
    values = [np.array(a, dtype=dtype) for _, a in assign]  # (np.ascontiguousarray would make a 0-d scale 1-d)
    inputs = {n: np.asarray(tensors[f"inputs/{n}"], dtype=dtype) for n in names}

    def f(ws, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, ws))):
            return forward(x)

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        xs = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
        ws = [torch.tensor(v, requires_grad=True) for v in values]
        outs = f(ws, xs)
        loss = sum((v * torch.tensor(tensors[f"cotangents/{k}"], dtype=v.dtype)).sum() for k, v in outs.items())
        g = torch.autograd.grad(loss, list(xs.values()) + ws)
        g_x = {k: v.numpy() for k, v in zip(xs, g[: len(xs)])}
        g_w = [v.numpy() for v in g[len(xs):]]
        outs = {k: v.detach().numpy() for k, v in outs.items()}
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        outs, vjp = jax.vjp(f, [jnp.asarray(v) for v in values], {k: jnp.asarray(v) for k, v in inputs.items()})
        # the cotangent in the dtype Keras returned (float32 where it downcast a float64 computation)
        cot = {k: jnp.asarray(tensors[f"cotangents/{k}"], dtype=v.dtype) for k, v in outs.items()}
        g_w, g_x = vjp(cot)
        g_x = {k: np.asarray(v) for k, v in g_x.items()}
        g_w = [np.asarray(v) for v in g_w]
        outs = {k: np.asarray(v) for k, v in outs.items()}
    elif backend == "tensorflow":
        import tensorflow as tf

        xs = {k: tf.Variable(v) for k, v in inputs.items()}
        ws = [tf.Variable(v) for v in values]
        with tf.GradientTape() as tape:
            outs = f([w.value() for w in ws], {k: v.value() for k, v in xs.items()})
            loss = tf.add_n([tf.reduce_sum(v * tf.constant(tensors[f"cotangents/{k}"], dtype=v.dtype))
                             for k, v in outs.items()])
        g = tape.gradient(loss, list(xs.values()) + ws)
        g_x = {k: v.numpy() for k, v in zip(xs, g[: len(xs)])}
        g_w = [v.numpy() for v in g[len(xs):]]
        outs = {k: v.numpy() for k, v in outs.items()}
    else:
        raise RuntimeError(f"KERAS_BACKEND: this adapter runs on torch, jax or tensorflow, got {backend!r}")
    result = {f"outputs/{k}": v for k, v in outs.items()}
    result.update({f"grads/inputs/{k}": v for k, v in g_x.items()})
    result.update(_param_grads(case, tensors, g_w))
    return result


def _param_grads(case, tensors, g_w):
    """Map the variables' gradients back onto the golden ``params/`` names and shapes."""
    fn = case.split("/")[1]
    if fn == "luong_dot":
        return {"grads/params/W_c": g_w[0]}
    if fn == "luong_general":
        return {"grads/params/W_c": g_w[0], "grads/params/W_a": g_w[1]}
    if fn == "luong_concat":
        return {"grads/params/W_c": g_w[0], "grads/params/W_a": np.concatenate([g_w[1], g_w[2]], axis=0),
                "grads/params/v_a": g_w[3]}
    out = {"grads/params/scale": np.reshape(g_w[0], tensors["params/scale"].shape)}
    if case.endswith("concat_scaled"):
        out["grads/params/weight"] = np.reshape(g_w[1], tensors["params/weight"].shape)
    return out
