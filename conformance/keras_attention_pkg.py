"""Golden adapter for the PyPI ``attention`` package (philipperemy/keras-attention), run unpatched.

``attention.Attention(units, score)`` is many-to-one attention: the query is the sequence's last
row ``h_t = h[:, -1]`` (attention.py lines 48, 89), the keys and values the whole sequence, and the
output ``a_t = tanh([c ; h_t] W_c)`` (lines 61, 104-105). Its two scores are SPEC §8's:

* ``attention/many_to_one/luong``: ``score="luong"``, ``e = h_t · (h_s W)`` (``luong_w`` is a Dense on
  the keys, line 36, and ``Dot(axes=[1, 2])``, lines 38, 92);
* ``attention/many_to_one/bahdanau``: ``score="bahdanau"``, ``e = v · tanh(h_t W_1 + h_s W_2)``
  (``bahdanau_w1`` on the query, ``bahdanau_w2`` on the keys, no biases, lines 41-43, 96-101).

The package imports ``tensorflow.keras`` (Keras 3 under TensorFlow 2.21), so the layer runs on
Keras's tensorflow backend: the golden parameters are substituted for the layer's variables
(``keras.StatelessScope``), gradients by ``tf.GradientTape``. The layer returns only ``a_t``; the
case's weights and context are intermediates, which this adapter does not return.

The package creates its sub-layers (``Dense``, ``Dot``, ``Activation``) without a ``dtype``
(attention.py lines 36-58), so they follow Keras's global float type, not the layer's ``dtype``
argument: the adapter sets ``keras.config.set_floatx(dtype)`` and ``keras.config.set_dtype_policy(dtype)``
first, as a float64 user must.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from attention import Attention

#: The golden cases this adapter implements.
CASES = ["attention/many_to_one/*"]

LAYERS = {
    "attention/many_to_one/bahdanau": "attention.Attention(units, score='bahdanau')",
    "attention/many_to_one/luong": "attention.Attention(units, score='luong')",
}

NOT_COVERED = {
    "attention/rnnsearch*, attention/bahdanau_decoder/*": "the layer attends once, from the input's last row to the "
                                                          "input itself: there is no decoder, no recurrence over "
                                                          "target steps, no s_{i-1} query",
}


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """Outputs by the package's layer, grads by ``tf.GradientTape`` through it."""
    score = case.split("/")[2]
    h = np.asarray(tensors["inputs/h"], dtype=dtype)
    p = {k.split("/", 1)[1]: np.asarray(v, dtype=dtype) for k, v in tensors.items() if k.startswith("params/")}
    U = p["W_c"].shape[1]
    # Keras's float type for every layer created from here on: the package builds its sub-layers without a
    # dtype (attention.py lines 36-58), so Attention(dtype="float64") alone would still compute in float32
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    layer = Attention(units=U, score=score, dtype=dtype)
    layer(h)  # builds the sub-layers (their Dense layers are built on first call)
    if score == "luong":
        pairs = [(layer.luong_w.kernel, p["W"])]
    else:
        pairs = [(layer.bahdanau_w1.kernel, p["W_1"]), (layer.bahdanau_w2.kernel, p["W_2"]),
                 (layer.bahdanau_v.kernel, p["v"][:, None])]
    pairs.append((layer.w_c.kernel, p["W_c"]))
    x = tf.Variable(h)
    ws = [tf.Variable(v) for _, v in pairs]
    with tf.GradientTape() as tape:
        with keras.StatelessScope(state_mapping=[(var, w.value()) for (var, _), w in zip(pairs, ws)]):
            out = layer(x.value())
        loss = tf.reduce_sum(out * tf.constant(tensors["cotangents/attention_vector"], dtype=out.dtype))
    g = tape.gradient(loss, [x] + ws)
    names = ["W"] if score == "luong" else ["W_1", "W_2", "v"]
    result = {"outputs/attention_vector": out.numpy(), "grads/inputs/h": g[0].numpy(),
              "grads/params/W_c": g[-1].numpy()}
    for n, gv in zip(names, g[1:-1]):
        result[f"grads/params/{n}"] = np.reshape(gv.numpy(), p[n].shape)
    return result


#: Where score="bahdanau" stands against SPEC §7.
RNNSEARCH = {
    "alignment score": "the form of eq. 1 without biases: `v · tanh(W_1 h_t + W_2 h_s)` (attention.py lines 96-101); "
                       "refmem: attention/many_to_one/bahdanau",
    "what attends": "the input's own last row h_t, once: many-to-one attention over one sequence, not a decoder "
                    "state s_{i-1} attending to annotations at every target step",
    "output": "tanh([c ; h_t] W_c) (Luong's attentional vector, line 105), not RNNsearch's gated unit and deep output",
    "encoder, s_0, decoder, maxout": "not part of the layer",
}
