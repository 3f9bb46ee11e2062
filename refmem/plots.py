"""Figures (matplotlib, the ``plot`` extra): attention heat maps and the DNC's memory over time.

Each figure is a function that writes a PNG, so that ``refmem plot <target>``
(`refmem/commands/plot.py`) and ``refmem train --plot`` share them; the figures of
a model run it first and draw host (NumPy) copies of what it computed. Figures are
presentation, not model code: the model packages import nothing from here, and
this module reaches a model only through its public functions. matplotlib is
imported on first use with the ``Agg`` backend; without it
[`PlotDependencyError`][refmem.plots.PlotDependencyError] says how to install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["PlotDependencyError", "pyplot", "attention_heatmap", "reversal_heatmap", "dnc_memory_trace",
           "dnc_memory_figure", "draw_dnc_memory"]


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
        row_label: the label of the vertical axis (decoder steps, downwards).
        col_label: the label of the horizontal axis (source positions, across).
        row_ticks: tick labels, one per row (default ``1..n``, the 1-based positions of SPEC §2).
        col_ticks: tick labels, one per column (default ``1..n``).
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


def reversal_heatmap(result: Any, path: str | Path, seed: int = 0) -> Path:
    """Write the heat map of the trained ``alpha`` of ``refmem train reverse`` for one evaluation sequence.

    The sequence shown is the one with the most distinct symbols; after training, step
    ``t`` attends to source position ``T + 1 - t`` (the anti-diagonal).

    Args:
        result: the ``TrainResult`` of ``refmem.attention.train.train``.
        path: the PNG to write.
        seed: the training seed, for the title.

    Returns:
        The path written.
    """
    from . import xp as rx

    rows = rx.to_numpy(result.tokens).tolist()
    b = max(range(len(rows)), key=lambda i: (len(set(rows[i])), -i))
    a = rx.to_numpy(result.alpha)[b]
    toks = rows[b]
    T = a.shape[0]
    return attention_heatmap(
        a, path,
        title=f"Bahdanau decoder trained to reverse (seed {seed}, {len(result.losses)} steps)\n"
              f"source {' '.join(str(int(v)) for v in toks)} -> target {' '.join(str(int(v)) for v in toks[::-1])}",
        row_label="decoder step t : target symbol",
        col_label="source position j : symbol",
        row_ticks=[f"{t + 1}:{int(toks[T - 1 - t])}" for t in range(T)],
        col_ticks=[f"{j + 1}:{int(toks[j])}" for j in range(T)],
    )


# ----------------------------------------------------------------------------- the DNC's memory over time


def dnc_memory_trace(params: Any, model: Any, observations: Any) -> dict[str, np.ndarray]:
    """Run the DNC on one sequence and return host copies of what the memory figure shows.

    Args:
        params: the DNC's [`DNCParams`][refmem.dnc.params.DNCParams].
        model: its [`DNCConfig`][refmem.dnc.params.DNCConfig].
        observations: ``[1, T, D]``, one sequence.

    Returns:
        ``y [T, Y]``, ``usage [T, N]``, ``write_weights [T, nw, N]``, ``read_weights [T, R, N]``
        and ``link [nw, N, N]`` (after the last step), by name, as NumPy arrays.
    """
    from . import xp as rx
    from .dnc.core import unroll_forward

    out, cache = unroll_forward(observations, params, cfg=model)
    final, states = out.state, cache.states
    h = rx.to_numpy
    return {
        "y": h(out.y)[0],
        "usage": np.stack([h(s.access.usage)[0] for s in states]),
        "write_weights": np.stack([h(s.access.write_weights)[0] for s in states]),
        "read_weights": np.stack([h(s.access.read_weights)[0] for s in states]),
        "link": h(final.access.link)[0],
    }


def dnc_memory_figure(tr: dict[str, np.ndarray], observations: np.ndarray, target: np.ndarray, mask: np.ndarray,
                      path: str | Path, title: str = "") -> Path:
    """Write what a DNC does with its memory on one sequence, as one PNG.

    Panels, over the time steps: the input sequence (observation channels) and the
    target; the output probabilities ``σ(y_t)`` on the masked steps; the memory usage
    ``u_t`` (slots × steps); the write weights ``ww_t`` of each write head; the read
    weights ``wr_t`` of each read head; and the temporal link matrix ``L_T`` of write
    head 1 after the last step.

    Args:
        tr: what [`dnc_memory_trace`][refmem.plots.dnc_memory_trace] returns.
        observations: ``[T, D]``, the input of the batch element shown.
        target: ``[T, Y]``, its target.
        mask: ``[T]``, its loss mask.
        path: the PNG to write (parent folders are created).
        title: the figure title.

    Returns:
        The path written.
    """
    plt = pyplot()
    T = observations.shape[0]
    nw = tr["write_weights"].shape[1]
    R = tr["read_weights"].shape[1]
    N = tr["usage"].shape[1]
    prob = 1.0 / (1.0 + np.exp(-tr["y"])) * mask[:, None]
    panels = [("input x_t (channels: bits, start, repeats)", observations.T, "Greys", (0, 1)),
              ("target", target.T, "Greys", (0, 1)),
              ("output σ(y_t) on masked steps", prob.T, "Greys", (0, 1)),
              ("usage u_t", tr["usage"].T, "viridis", (0, 1))]
    panels += [(f"write weights ww_t, head {k + 1}", tr["write_weights"][:, k].T, "magma", (0, None))
               for k in range(nw)]
    panels += [(f"read weights wr_t, head {r + 1}", tr["read_weights"][:, r].T, "magma", (0, None))
               for r in range(R)]
    ncols = 2
    nrows = (len(panels) + 1 + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(11, 2.3 * nrows), squeeze=False)
    flat = axes.ravel()
    for ax, (label, img, cmap, (lo, hi)) in zip(flat, panels):
        vmax = hi if hi is not None else max(float(img.max()), 1e-12)
        im = ax.imshow(img, aspect="auto", cmap=cmap, vmin=lo, vmax=vmax, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step t", fontsize=8)
        ax.set_ylabel("slot" if img.shape[0] == N and "put" not in label and label != "target" else "channel",
                      fontsize=8)
        ax.set_xticks(range(T))
        ax.set_xticklabels([str(t + 1) for t in range(T)], fontsize=6)
        ax.tick_params(axis="y", labelsize=6)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    ax = flat[len(panels)]
    im = ax.imshow(tr["link"][0], cmap="magma", vmin=0, interpolation="nearest")
    ax.set_title("link L_T[i, j], write head 1\n(slot i written after slot j)", fontsize=9)
    ax.set_xlabel("slot j", fontsize=8)
    ax.set_ylabel("slot i", fontsize=8)
    ax.tick_params(labelsize=6)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    for extra in flat[len(panels) + 1:]:
        extra.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_dnc_memory(params: Any, model: Any, task_name: str, path: str | Path, length: int = 2, repeats: int = 2,
                    seed: int = 0, source: str = "") -> tuple[Path, int, int]:
    """Run a DNC on one copy or repeat-copy sequence and write its memory figure.

    Args:
        params: the DNC's [`DNCParams`][refmem.dnc.params.DNCParams] (the sequence is made in
            their array namespace).
        model: its [`DNCConfig`][refmem.dnc.params.DNCConfig].
        task_name: ``"copy"`` or ``"repeat-copy"``.
        path: the PNG to write.
        length: the pattern length ``L``.
        repeats: the repeats ``n`` of repeat-copy (copy: 1).
        seed: the seed of the sequence.
        source: where the parameters come from, for the title.

    Returns:
        ``(path, steps, wrong bits on the masked steps)``.
    """
    from . import xp as rx
    from .dnc.params import named
    from .dnc.tasks import RepeatCopy

    xp = rx.namespace(*named(params).values())  # the sequence lives where the parameters do
    n = 1 if task_name == "copy" else repeats
    task = RepeatCopy(num_bits=model.D - 2, batch_size=1, min_length=length, max_length=length,
                      min_repeats=n, max_repeats=n)
    batch = task.sample(np.random.default_rng(seed), xp)
    tr = dnc_memory_trace(params, model, batch.observations)
    title = (f"DNC on {task_name} (L = {length}, n = {n}){'; ' + source if source else ''}\n"
             f"N {model.N}, W {model.W}, R {model.R}, nw {model.nw}, {model.convention} convention")
    target, mask = rx.to_numpy(batch.target)[0], rx.to_numpy(batch.mask)[0]
    written = dnc_memory_figure(tr, rx.to_numpy(batch.observations)[0], target, mask, path, title)
    errors = int(np.sum(((tr["y"] > 0) != (target > 0.5)) * mask[:, None]))
    return written, int(batch.observations.shape[1]), errors
