"""Figures (matplotlib, the ``plot`` extra): attention heat maps, and room for more.

Each figure is a function that takes host (NumPy) arrays and writes a PNG, so
that ``refmem plot <target>`` (``refmem/commands/plot.py``) and the training
demos share them. matplotlib is imported on first use with the ``Agg`` backend;
without it :class:`PlotDependencyError` says how to install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["PlotDependencyError", "pyplot", "attention_heatmap"]


class PlotDependencyError(ImportError):
    """matplotlib is not installed; the message names the extra to install."""


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive ``Agg`` backend."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotDependencyError("matplotlib is not installed (pip install 'refmem[plot]')") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def attention_heatmap(
    weights: Any,
    path: str | Path,
    title: str = "",
    row_label: str = "decoder step t",
    col_label: str = "source position j",
    row_ticks: Sequence[Any] | None = None,
    col_ticks: Sequence[Any] | None = None,
    annotate: bool | None = None,
) -> Path:
    """Write a heat map of attention weights ``[rows, cols]`` (row ``t``: the weights of step ``t``).

    Args:
        weights: ``[T_out, T_in]`` array-like, values in ``[0, 1]``.
        path: the PNG to write (parent folders are created).
        title: the figure title.
        row_label, col_label: axis labels (decoder steps down, source positions across).
        row_ticks, col_ticks: tick labels, one per row / column (default ``1..n``, the
            1-based positions of SPEC §2).
        annotate: write each weight in its cell (default: when the map has at most 12×12 cells).
    Returns:
        The path written.
    """
    a = np.asarray(weights, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"weights: expected a 2-D array [T_out, T_in], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("weights: holds NaN or infinity")
    rows, cols = a.shape
    row_ticks = list(range(1, rows + 1)) if row_ticks is None else list(row_ticks)
    col_ticks = list(range(1, cols + 1)) if col_ticks is None else list(col_ticks)
    if len(row_ticks) != rows or len(col_ticks) != cols:
        raise ValueError(f"ticks: expected {rows} row and {cols} column labels, got {len(row_ticks)} and {len(col_ticks)}")
    if annotate is None:
        annotate = rows <= 12 and cols <= 12
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2.4 + 0.5 * max(cols, 6), 1.6 + 0.45 * max(rows, 4)), dpi=120)
    vmax = max(float(a.max()), 1e-12)
    im = ax.imshow(a, cmap="viridis", vmin=0.0, vmax=vmax, aspect="equal", interpolation="nearest")
    ax.set_xticks(range(cols))
    ax.set_xticklabels([str(t) for t in col_ticks])
    ax.set_yticks(range(rows))
    ax.set_yticklabels([str(t) for t in row_ticks])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    if title:
        ax.set_title(title, fontsize=9, pad=28)
    if annotate:
        for i in range(rows):
            for j in range(cols):
                ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if a[i, j] > 0.6 * vmax else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
