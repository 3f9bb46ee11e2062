"""``refmem plot dnc``: what the DNC does with its memory on one input sequence.

One PNG with, for one batch element of a repeat-copy (or copy) sequence:

* the input sequence (observation channels over time) and the target;
* the model's output probabilities ``σ(y_t)`` (masked steps);
* the memory usage ``u_t`` over time (slots × steps);
* the write weights ``ww_t`` over time (each write head);
* the read weights ``wr_t`` over time (each read head);
* the temporal link matrix ``L_T`` of write head 1 after the last step.

Parameters come from a file written by ``refmem train --save`` (a trained DNC shows
its copying: writes to successive free slots, reads following the link forward),
or are drawn with deepmind/dnc's initialiser (an untrained DNC).
"""

from __future__ import annotations

import os
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # NumPy is imported where it is used, so that ``refmem --help`` does not load it
    import numpy as np

__all__ = ["HELP", "add_arguments", "run", "draw", "memory_figure", "trace"]

HELP = ("memory usage, write and read weights over time and the link matrix of a DNC (trained with "
        "refmem train --save, or untrained) on one copy or repeat-copy sequence")


def add_arguments(p: ArgumentParser) -> None:
    from ..cli import int_at_least

    p.add_argument("--params", metavar="PATH", help="trained parameters (refmem train --save PATH); "
                                                    "default: an untrained DNC drawn at --seed")
    p.add_argument("--task", choices=["copy", "repeat-copy"], default="repeat-copy",
                   help="the sequence to run (default repeat-copy)")
    p.add_argument("--length", type=int_at_least(1), default=2,
                   help="pattern length L (default 2, the longest deepmind trains on)")
    p.add_argument("--repeats", type=int_at_least(1), default=2, help="repeats n of repeat-copy (default 2)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the sequence (and of untrained params)")
    p.add_argument("--out", default=None, metavar="PATH", help="PNG to write (default dnc_memory_seed<S>.png)")


def trace(params: Any, model: Any, observations: Any) -> dict[str, np.ndarray]:
    """Run the DNC on ``observations [1, T, D]`` and return host arrays for the figure.

    ``y [T, Y]``, ``usage [T, N]``, ``write_weights [T, nw, N]``, ``read_weights [T, R, N]``,
    ``link [nw, N, N]`` (after the last step).
    """
    import numpy as np

    from .. import xp as rx
    from .core import unroll_forward

    out, final, cache = unroll_forward(observations, params, model)
    states = cache.states
    h = rx.to_numpy
    return {
        "y": h(out.y)[0],
        "usage": np.stack([h(s.access.usage)[0] for s in states]),
        "write_weights": np.stack([h(s.access.write_weights)[0] for s in states]),
        "read_weights": np.stack([h(s.access.read_weights)[0] for s in states]),
        "link": h(final.access.link)[0],
    }


def memory_figure(tr: dict[str, np.ndarray], observations: np.ndarray, target: np.ndarray, mask: np.ndarray,
                  path: str | Path, title: str = "") -> Path:
    """Write the figure described in the module docstring; arrays are host arrays of one batch element."""
    import numpy as np

    from ..plots import pyplot

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


def draw(params: Any, model: Any, task_name: str, path: str | Path, length: int = 2, repeats: int = 2,
         seed: int = 0, source: str = "") -> tuple[Path, int, int]:
    """Run ``params`` on one ``task_name`` sequence (pattern ``length``, ``repeats``; drawn at ``seed``)
    and write the figure to ``path``; returns ``(path, steps, wrong bits on the masked steps)``."""
    import numpy as np

    from .. import xp as rx
    from .params import named
    from .tasks import RepeatCopy

    xp = rx.namespace(*named(params).values())  # the sequence lives where the parameters do
    n = 1 if task_name == "copy" else repeats
    task = RepeatCopy(num_bits=model.D - 2, batch_size=1, min_length=length, max_length=length,
                      min_repeats=n, max_repeats=n)
    batch = task.sample(np.random.default_rng(seed), xp)
    tr = trace(params, model, batch.observations)
    title = (f"DNC on {task_name} (L = {length}, n = {n}){'; ' + source if source else ''}\n"
             f"N {model.N}, W {model.W}, R {model.R}, nw {model.nw}, {model.convention} convention")
    target, mask = rx.to_numpy(batch.target)[0], rx.to_numpy(batch.mask)[0]
    written = memory_figure(tr, rx.to_numpy(batch.observations)[0], target, mask, path, title)
    errors = int(np.sum(((tr["y"] > 0) != (target > 0.5)) * mask[:, None]))
    return written, int(batch.observations.shape[1]), errors


def run(args: Namespace) -> int:
    from .. import xp as rx
    from ..cli import CommandError, Outputs, check_output_path
    from ..plots import PlotDependencyError
    from .params import init_params, load_params
    from .train import TrainConfig, dnc_config, make_task

    xp = rx.backend("numpy")
    out = args.out or f"dnc_memory_seed{args.seed}.png"
    check_output_path(out, "--out")
    if args.params:
        if not os.path.isfile(args.params):
            raise CommandError(f"argument --params: no file {args.params}")
        try:
            params, model = load_params(args.params, xp)
        except Exception as exc:  # safetensors, JSON and config errors: the file is not what was promised
            raise CommandError(f"argument --params: {args.params}: {' '.join(str(exc).split())}") from None
        source = f"trained parameters {args.params}"
    else:
        base = make_task(TrainConfig(task=args.task))
        model = dnc_config(TrainConfig(task=args.task), base)
        params = init_params(xp, model, seed=args.seed)
        source = f"untrained DNC (deepmind init, seed {args.seed})"
    outputs, drawn = Outputs(), []
    try:
        written = outputs.write(out, "--out", lambda path: drawn.append(
            draw(params, model, args.task, path, args.length, args.repeats, args.seed, source)),
            suffix=os.path.splitext(out)[1] or ".png")
    except PlotDependencyError as exc:
        raise CommandError(str(exc)) from None
    if written and drawn:
        _, steps, errors = drawn[-1]
        print(f"wrote {written} ({source}; {steps} steps, {errors} wrong bits on masked steps)")
    outputs.finish()
    return 0
