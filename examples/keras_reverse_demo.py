"""Train the Keras 3 ``AttentionDecoder`` to reverse sequences and plot where it attends.

The task of ``refmem.attention.train`` (independent of refmem here): a sequence of ``T``
symbols from an alphabet of ``V`` is to be emitted in reverse. There is no learned
encoder: the annotations are ``h_j = [one_hot(x_j) ; one_hot(j)]``, so the decoder can
find a position only by attending to it. The decoder runs free (its own softmax is fed
back), the loss is the cross-entropy against the reversed sequence, trained with Keras'
``fit`` (Adam, gradient clipping). After training, step ``t`` attends to source
position ``T + 1 - t``: the attention map shows the anti-diagonal::

    KERAS_BACKEND=torch python examples/keras_reverse_demo.py --out docs/img/keras_reverse_attention.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.keras_attention_decoder import AttentionDecoder  # noqa: E402  (sets KERAS_BACKEND if unset)

import keras  # noqa: E402
import numpy as np  # noqa: E402


def make_batch(rng: np.random.Generator, B: int, T: int, V: int):
    """Source symbols ``[B, T]``, annotations ``[B, T, V + T]`` and reversed one-hot targets ``[B, T, V]``."""
    tokens = rng.integers(0, V, size=(B, T))
    eye_v, eye_t = np.eye(V, dtype="float32"), np.eye(T, dtype="float32")
    h = np.concatenate([eye_v[tokens], np.broadcast_to(eye_t, (B, T, T))], axis=-1)
    return tokens, h, eye_v[tokens[:, ::-1]]


def train(steps: int = 400, B: int = 32, T: int = 6, V: int = 5, H: int = 24, lr: float = 0.02, seed: int = 0,
          output_state: str = "current"):
    """Train; return ``(model, decoder layer, losses, accuracy, tokens, alpha)`` of a fresh evaluation batch."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed + 1)
    decoder = AttentionDecoder(H, V, output_state=output_state, name="decoder")
    inp = keras.Input((T, V + T))
    model = keras.Model(inp, decoder(inp))
    model.compile(optimizer=keras.optimizers.Adam(lr, global_clipnorm=5.0), loss="categorical_crossentropy")
    _, h, target = make_batch(rng, steps * B, T, V)
    hist = model.fit(h, target, batch_size=B, epochs=1, shuffle=False, verbose=0,
                     callbacks=[_Losses()])
    tokens, h, target = make_batch(np.random.default_rng(seed + 10_000), 256, T, V)
    y, alpha, _ = decoder.decode(h)
    pred = np.argmax(keras.ops.convert_to_numpy(y), axis=-1)
    accuracy = float(np.mean(pred == tokens[:, ::-1]))
    return model, decoder, hist.model._refmem_losses, accuracy, tokens, keras.ops.convert_to_numpy(alpha)


class _Losses(keras.callbacks.Callback):
    """Record the loss of every batch."""

    def on_train_begin(self, logs=None):
        self.model._refmem_losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.model._refmem_losses.append(float(logs["loss"]))


def save_plot(alpha: np.ndarray, tokens: np.ndarray, path: str, title: str) -> str:
    """Heat map of one evaluation sequence's attention (the one with the most distinct symbols)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = max(range(len(tokens)), key=lambda i: (len(set(tokens[i].tolist())), -i))
    a, toks = alpha[b], tokens[b].tolist()
    T = a.shape[0]
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=100)
    im = ax.imshow(a, cmap="viridis", vmin=0.0, vmax=1.0)
    for t in range(T):
        for j in range(T):
            ax.text(j, t, f"{a[t, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if a[t, j] > 0.5 else "white")
    ax.set_xticks(range(T), [f"{j + 1}:{toks[j]}" for j in range(T)])
    ax.set_yticks(range(T), [f"{t + 1}:{toks[T - 1 - t]}" for t in range(T)])
    ax.set_xlabel("source position j : symbol")
    ax.set_ylabel("decoder step t : target symbol")
    ax.set_title(title, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="keras_reverse_attention.png", metavar="PNG")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    _, _, losses, accuracy, tokens, alpha = train(steps=args.steps, seed=args.seed)
    seconds = time.perf_counter() - t0
    print(f"backend {keras.backend.backend()}: {args.steps} steps in {seconds:.1f} s; loss {losses[0]:.3f} -> "
          f"{np.mean(losses[-20:]):.4f}; reversal accuracy {accuracy:.3f} on 256 fresh sequences")
    title = (f"Keras 3 AttentionDecoder ({keras.backend.backend()} backend) trained to reverse\n"
             f"seed {args.seed}, {args.steps} steps, accuracy {accuracy:.3f}")
    print(f"wrote {save_plot(alpha, tokens, args.out, title)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
