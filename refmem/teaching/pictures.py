"""Figures of the documentation: the DNC's memory at work on the copy task, frame by frame, and the
attention of the Bahdanau decoder trained to reverse sequences.

``python -m refmem.teaching.pictures --out docs/img`` writes

* ``dnc_copy_frames.png``: a DNC trained on deepmind's copy task (``refmem train copy``'s demo
  preset with patterns of 1 to 4, 2000 steps: about two minutes on one core), one column per
  time step of one sequence of 4 patterns: the memory contents
  ``M_t``, the usage ``u_t``, the write weights ``w^w_t``, the read weights ``w^r_t`` and the link
  matrix ``L_t`` (SPEC §5 steps 1-10);
* ``reverse_attention.png``: the attention weights ``α_tj`` of the decoder of SPEC §2 trained on
  the reversal task (``refmem train reverse``), the anti-diagonal.

Both are drawn in the documentation beside the equations they show (``docs/derivations/dnc.md``,
``docs/derivations/attention.md``). [`inline_png`][refmem.teaching.pictures.inline_png] is what
the tutorials use to show a matplotlib figure in the page.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from pathlib import Path
from typing import Any

__all__ = ["inline_png", "strip", "copy_frames", "reverse_attention", "main"]


def inline_png(fig: Any, dpi: int = 80, alt: str = "figure") -> str:
    """``<img>`` with the figure as an inline PNG (for a tutorial block with ``html="1"``); closes it."""
    from ..plots import pyplot

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{alt}" src="data:image/png;base64,{data}" />'


def strip(rows: list[tuple[str, list[Any]]], titles: list[str], vmax: list[float | None] | None = None,
          cmap: str = "magma", size: float = 1.15, suptitle: str = "") -> Any:
    """A grid of heat maps: one row per quantity (its label and one 2-D array per column), one column
    per frame (its title). ``vmax``: per row, ``None`` for the row's maximum. Returns the figure."""
    import numpy as np

    from ..plots import pyplot

    plt = pyplot()
    n_rows, n_cols = len(rows), len(titles)
    ratios = [min(1.0, max(0.2, np.atleast_2d(frames[0]).shape[0] / np.atleast_2d(frames[0]).shape[1]))
              for _, frames in rows]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(0.25 + size * n_cols, 0.3 + size * sum(ratios)),
                             squeeze=False, gridspec_kw={"height_ratios": ratios})
    for i, (label, frames) in enumerate(rows):
        top = (vmax[i] if vmax and vmax[i] is not None else max(float(np.max(f)) for f in frames)) or 1.0
        low = min(0.0, min(float(np.min(f)) for f in frames))
        for j, frame in enumerate(frames):
            ax = axes[i, j]
            ax.imshow(np.atleast_2d(frame), cmap=cmap if low >= 0 else "RdBu_r", vmin=low if low >= 0 else -top,
                      vmax=top, interpolation="nearest", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle, fontsize=8)
    fig.tight_layout(pad=0.3, w_pad=0.15, h_pad=0.2)
    return fig


def copy_frames(path: str | Path, steps: int = 2000, seed: int = 0) -> Path:
    """Train a small DNC on the copy task and draw one sequence's memory, frame by frame, to ``path``."""
    import numpy as np

    from .. import xp as rx
    from ..dnc import train as T
    from ..dnc.core import unroll_forward
    from ..dnc.tasks import RepeatCopy

    xp = rx.backend("numpy")
    cfg = T.preset("demo", task="copy", steps=steps, seed=seed, min_length=1, max_length=4)
    result = T.train(cfg)
    params, model = result.params, result.model
    task = RepeatCopy(num_bits=cfg.num_bits, batch_size=1, min_length=4, max_length=4, min_repeats=1, max_repeats=1)
    batch = task.sample(np.random.default_rng(seed + 1), xp)
    out, cache = unroll_forward(batch.observations, params, cfg=model)
    states = cache.states
    h = rx.to_numpy
    T_ = len(states)
    rows = [
        ("input x_t", [h(batch.observations)[0, t][:, None] for t in range(T_)]),
        ("memory M_t", [h(s.access.memory)[0] for s in states]),
        ("usage u_t", [h(s.access.usage)[0][:, None] for s in states]),
        ("write w^w_t", [h(s.access.write_weights)[0].T for s in states]),
        ("read w^r_t", [h(s.access.read_weights)[0].T for s in states]),
        ("link L_t", [h(s.access.link)[0, 0] for s in states]),
    ]
    fig = strip(rows, [f"t={t + 1}" for t in range(T_)], vmax=[1.0, None, 1.0, 1.0, 1.0, 1.0], size=0.8,
                suptitle=f"a DNC trained on copy ({steps} steps, final loss {result.history['loss'][-1]:.2f}): "
                         "one sequence of 4 patterns, then their recall")
    return _save(fig, path)


def reverse_attention(path: str | Path, steps: int = 400, seed: int = 0) -> Path:
    """Train the Bahdanau decoder to reverse sequences and draw its attention to ``path``."""
    from ..attention import train as AT

    result = AT.train(steps=steps, seed=seed)
    return Path(AT.save_heatmap(result, str(path), seed=seed))


def _save(fig: Any, path: str | Path) -> Path:
    from ..plots import pyplot

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=72)
    pyplot().close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m refmem.teaching.pictures", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/img", help="the folder to write the PNGs in (default docs/img)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for fn, name in ((copy_frames, "dnc_copy_frames.png"), (reverse_attention, "reverse_attention.png")):
        path = fn(Path(args.out) / name, seed=args.seed)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
