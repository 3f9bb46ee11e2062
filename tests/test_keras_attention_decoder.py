"""examples/keras_attention_decoder.py: the Keras 3 AttentionDecoder on every Keras backend installed.

Each backend runs in its own process (Keras fixes its backend at import): the golden
verification of every attention/bahdanau_decoder case in float32 and float64, and the
layer's Keras behaviour (a functional model, return_probabilities, a Keras mask, one
training step). Skipped, with the reason, when keras or the backend is missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["torch", "jax", "tensorflow"]
CASES = ["attention/bahdanau_decoder/previous", "attention/bahdanau_decoder/current",
         "attention/bahdanau_decoder/previous_masked", "attention/bahdanau_decoder/current_teacher"]


def _need(backend):
    for mod in ("keras", backend):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed")


def _env(backend):
    env = {**os.environ, "KERAS_BACKEND": backend}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_decoder_passes_every_bahdanau_case(backend, dtype):
    _need(backend)
    proc = subprocess.run(
        [sys.executable, "-m", "refmem", "golden", "verify", "--adapter", "examples.keras_attention_decoder:run",
         "--dtype", dtype],
        cwd=REPO, env=_env(backend), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 cases" in proc.stdout and "0 failed, 0 problems" in proc.stdout
    assert "returned float" not in proc.stdout  # computed in the dtype asked for
    for case in CASES:
        assert case in proc.stdout
    assert "grads/params/W_s" in proc.stdout and "grads/inputs/y_prev" in proc.stdout


BEHAVIOUR = r"""
import numpy as np, keras
from examples.keras_attention_decoder import AttentionDecoder
B, T, D, H, K = 3, 5, 4, 6, 7
x = np.random.default_rng(0).normal(size=(B, T, D)).astype("float32")
inp = keras.Input((T, D))
y = AttentionDecoder(H, K, name="dec")(inp)
model = keras.Model(inp, y)
out = keras.ops.convert_to_numpy(model(x))
assert out.shape == (B, T, K), out.shape
assert np.allclose(out.sum(-1), 1, atol=1e-5)
probs = AttentionDecoder(H, K, return_probabilities=True)
alpha = keras.ops.convert_to_numpy(probs(x))
assert alpha.shape == (B, T, T) and np.allclose(alpha.sum(-1), 1, atol=1e-5)
# a Keras mask from Masking: the masked annotations get weight exactly 0
xm = x.copy(); xm[:, 3:, :] = 0.0
masked = keras.Sequential([keras.Input((T, D)), keras.layers.Masking(0.0), AttentionDecoder(H, K, return_probabilities=True)])
am = keras.ops.convert_to_numpy(masked(xm))
assert np.all(am[:, :, 3:] == 0.0) and np.allclose(am.sum(-1), 1, atol=1e-5), am
# current differs from previous; bad arguments are refused with the argument's name
cur = AttentionDecoder(H, K, output_state="current")
try:
    AttentionDecoder(H, K, output_state="next")
except ValueError as e:
    assert "output_state" in str(e)
else:
    raise AssertionError("no error")
# one training step moves the loss
model.compile(optimizer=keras.optimizers.Adam(0.05), loss="categorical_crossentropy")
target = keras.ops.convert_to_numpy(keras.ops.one_hot(np.arange(B * T).reshape(B, T) % K, K))
l0 = float(model.evaluate(x, target, verbose=0)); model.fit(x, target, epochs=5, verbose=0)
l1 = float(model.evaluate(x, target, verbose=0))
assert l1 < l0, (l0, l1)
cfg = AttentionDecoder(H, K, output_state="current").get_config()
assert cfg["units"] == H and cfg["output_dim"] == K and cfg["output_state"] == "current"
print("ok", l0, l1)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoder_behaves_as_a_keras_layer(backend):
    _need(backend)
    proc = subprocess.run([sys.executable, "-c", BEHAVIOUR], cwd=REPO, env=_env(backend), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")


def test_decoder_is_independent_of_refmem():
    source = (REPO / "examples" / "keras_attention_decoder.py").read_text()
    assert not re.search(r"^\s*(from|import)\s+refmem\b", source, re.M)


def test_reverse_demo_runs_and_writes_its_plot(tmp_path):
    _need("torch")
    out = tmp_path / "alpha.png"
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "keras_reverse_demo.py"), "--steps", "15",
                           "--out", str(out)], cwd=REPO, env=_env("torch"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reversal accuracy" in proc.stdout and out.stat().st_size > 5000
