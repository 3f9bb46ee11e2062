"""examples/keras_attention_decoder.py: the Keras 3 AttentionDecoder on every Keras backend installed.

Each backend runs in its own process (Keras fixes its backend at import): the golden
verification of every attention/bahdanau_decoder case in float32 and float64, and the
layer's Keras behaviour (a functional model, return_probabilities, a Keras mask, one
training step). Skipped, with the reason, when keras or the backend is missing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from conftest import child_env, run

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["torch", "jax", "tensorflow"]
CASES = ["attention/bahdanau_decoder/previous", "attention/bahdanau_decoder/current",
         "attention/bahdanau_decoder/previous_masked", "attention/bahdanau_decoder/current_teacher"]


def _need(*modules):
    for mod in modules:
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed")


def _env(backend):
    return child_env(KERAS_BACKEND=backend)


#: One child per backend (Keras fixes its backend at import, and importing Keras with a backend is
#: the dear part): `refmem golden verify` of the decoder in float64 and float32, then BEHAVIOUR. The
#: adapter runs in this child (``--in-process``: the child is the isolation), so Keras is imported once.
DRIVER = r"""
import contextlib, io, json, sys, traceback
from refmem.cli import main
verify = {}
for dtype in ("float64", "float32"):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["golden", "verify", "--adapter", "examples.keras_attention_decoder:run", "--dtype", dtype,
                     "--in-process"])
    verify[dtype] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
try:
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(sys.argv[1], "BEHAVIOUR", "exec"), {})
    behaviour = "ok"
except Exception:
    behaviour = traceback.format_exc()
print(json.dumps({"verify": verify, "behaviour": behaviour}))
"""


@pytest.fixture(scope="module", params=[pytest.param(b, marks=pytest.mark.xdist_group(f"keras-{b}")) for b in BACKENDS])
def keras_run(request):
    """(backend, what the backend's child reported)."""
    backend = request.param
    _need("keras", backend)
    proc = run([sys.executable, "-c", DRIVER, BEHAVIOUR], cwd=REPO, env=_env(backend))
    return backend, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_decoder_passes_every_bahdanau_case(keras_run, dtype):
    backend, report = keras_run
    code, out, err = (report["verify"][dtype][k] for k in ("code", "stdout", "stderr"))
    assert code == 0, out[-3000:] + err[-3000:]
    assert "4 cases" in out and "0 failed, 0 problems" in out
    assert "returned float" not in out  # computed in the dtype asked for
    for case in CASES:
        assert case in out
    assert "grads/params/W_s" in out and "grads/inputs/y_prev" in out


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


def test_decoder_behaves_as_a_keras_layer(keras_run):
    backend, report = keras_run
    assert report["behaviour"] == "ok", report["behaviour"]


def test_decoder_is_independent_of_refmem():
    source = (REPO / "examples" / "keras_attention_decoder.py").read_text()
    assert not re.search(r"^\s*(from|import)\s+refmem\b", source, re.M)


def test_reverse_demo_runs_and_writes_its_plot(tmp_path):
    _need("keras", "torch", "matplotlib")
    out = tmp_path / "alpha.png"
    proc = run([sys.executable, REPO / "examples" / "keras_reverse_demo.py", "--steps", "15", "--out", out],
               cwd=REPO, env=_env("torch"))
    assert "reversal accuracy" in proc.stdout and out.stat().st_size > 5000
