"""Golden adapter for TensorFlow Addons' ``tfa.seq2seq.BahdanauAttention`` (PyPI ``tensorflow-addons``).

tensorflow-addons 0.23.0, the last release (the project ended in May 2024), installs
(``pip install --no-deps tensorflow-addons==0.23.0``, with ``typeguard``) but does not import beside
TensorFlow 2.21 and Keras 3: ``import tensorflow_addons`` runs ``tensorflow_addons/utils/types.py``,
whose line 29 is ``from keras.src.engine import keras_tensor``, a module of Keras 2 that Keras 3 does
not have (``ModuleNotFoundError: No module named 'keras.src.engine'``). TFA 0.23 supports TensorFlow
2.13-2.15. ``tools/conformance.py`` records the import error (``unavailable`` in its table) and fails
the day the package imports, so that this adapter is then written.

What it would be compared with: ``BahdanauAttention(units, memory, memory_sequence_length,
normalize=False)`` scores ``v · tanh(W_q q + W_k k_j)`` (no bias), SPEC §8's additive score
(``attention/additive/*``); ``normalize=True`` is the weight-normalised form of Salimans & Kingma.
"""

from __future__ import annotations

import tensorflow_addons  # noqa: F401  (raises ModuleNotFoundError under Keras 3)

CASES: list[str] = []


def run(case, tensors, dtype, config=None):  # pragma: no cover - unreachable while the import fails
    raise NotImplementedError("tensorflow-addons imports: write this adapter (attention/additive/*)")
