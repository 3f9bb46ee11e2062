"""``refmem train copy|repeat-copy``: train the DNC on deepmind/dnc's copy tasks, in refmem alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import ArgumentParser, Namespace

HELP = ("train the DNC on the copy or repeat-copy task (deepmind/dnc's train.py), or the Bahdanau "
        "decoder on sequence reversal, in refmem alone (no framework)")

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_CHILD = "REFMEM_TRAIN_CHILD"


def add_arguments(p: ArgumentParser) -> None:
    p.add_argument("task", choices=["copy", "repeat-copy", "reverse"],
                   help="copy, repeat-copy (the DNC; repeat-copy: 1-2 repeats, copy: 1) or reverse "
                        "(the attention decoder of SPEC §2 learns to reverse symbol sequences)")
    p.add_argument("--steps", type=int, help="training steps (default 1000; 400 for reverse)")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameters and the batches (default 0)")
    p.add_argument("--json", metavar="PATH", help='write {"step": [...], "loss": [...], "bit_errors": [...]} to PATH')
    p.add_argument("--save", metavar="PATH", help="write the trained parameters as safetensors to PATH")
    p.add_argument("--hidden", type=int, help="LSTM width (default 64)")
    p.add_argument("--layers", type=int, help="controller layers (default 1; 3 is seed 003's deep controller)")
    p.add_argument("--memory-size", dest="N", type=int, help="memory slots N (default 16)")
    p.add_argument("--word-size", dest="W", type=int, help="word size W (default 16)")
    p.add_argument("--read-heads", dest="R", type=int, help="read heads R (default 4)")
    p.add_argument("--write-heads", dest="nw", type=int, help="write heads nw (default 1)")
    p.add_argument("--convention", choices=["deepmind", "paper"], help="DNC convention (default deepmind)")
    p.add_argument("--clip-value", type=float, help="clip of controller state and outputs (default 20; 0 off)")
    p.add_argument("--batch-size", type=int, help="batch size (default 16)")
    p.add_argument("--num-bits", type=int, help="bits per pattern vector (default 4)")
    p.add_argument("--max-length", type=int, help="longest pattern (default 2)")
    p.add_argument("--max-repeats", type=int, help="most repeats of repeat-copy (default 2)")
    p.add_argument("--optimizer", choices=["rmsprop", "adam"], help="optimiser (default rmsprop, TF1 form)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-4)")
    p.add_argument("--max-grad-norm", type=float, help="global-norm gradient clip (default 50; 0 off)")
    p.add_argument("--backend", help="array backend (default numpy)")
    p.add_argument("--report-every", type=int, default=100, metavar="N",
                   help="print the mean loss and bit errors every N steps (default 100; 0 never)")
    p.add_argument("--plot", metavar="PNG", help="reverse: write the heat map of the trained alpha to PNG")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="BLAS threads (default 1: the small matrices of this model run fastest on one; "
                        "0 leaves the library default)")


def _rerun_with_threads(threads: int) -> int | None:
    """Run this command again in a child whose BLAS uses ``threads`` threads (set before NumPy loads)."""
    if not threads or os.environ.get(_CHILD) == "1":
        return None
    if all(os.environ.get(v) == str(threads) for v in _THREAD_VARS):
        return None
    env = dict(os.environ)
    for var in _THREAD_VARS:
        env[var] = str(threads)
    env[_CHILD] = "1"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    args = [sys.executable, "-m", "refmem"] + sys.argv[1:]
    if sys.argv and os.path.basename(sys.argv[0]) not in ("refmem", "__main__.py"):
        return None  # called in-process (e.g. cli.main([...]) from Python): keep the caller's process
    return subprocess.call(args, env=env)


def run(args: Namespace) -> int:
    from ..cli import CommandError, Progress
    from ..dnc.params import save_params
    from ..dnc.train import TrainConfig, train

    rc = _rerun_with_threads(args.threads)
    if rc is not None:
        return rc
    if args.task == "reverse":
        return _run_reverse(args)
    if args.steps is None:
        args.steps = 1000
    overrides = {k: getattr(args, k) for k in ("hidden", "layers", "N", "W", "R", "nw", "convention", "clip_value",
                                               "batch_size", "num_bits", "max_length", "max_repeats", "optimizer",
                                               "lr", "max_grad_norm", "backend")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        cfg = TrainConfig(task=args.task, steps=args.steps, seed=args.seed, **overrides)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    bar = Progress(cfg.steps, label=f"train {cfg.task}")
    window: list[float] = []

    def on_step(step: int, loss: float, errors: float) -> None:
        window.append(loss)
        del window[:-50]
        bar.update(1, f"loss {loss:.3f} (mean of 50: {sum(window) / len(window):.3f}) bit errors {errors:.2f}")

    print(f"refmem train {cfg.task}: hidden {cfg.hidden} x{cfg.layers}, memory {cfg.N}x{cfg.W}, R {cfg.R}, "
          f"nw {cfg.nw}, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:g}, clip {cfg.max_grad_norm:g}, "
          f"seed {cfg.seed}", file=sys.stderr)
    result = train(cfg, callback=on_step)
    bar.close()
    h = result.history
    n = len(h["loss"])
    if args.report_every and n:
        k = args.report_every
        print(f"{'steps':>13}  {'mean loss':>9}  {'bit errors':>10}")
        for start in range(0, n, k):
            ls = h["loss"][start:start + k]
            es = h["bit_errors"][start:start + k]
            print(f"{start + 1:>6}-{start + len(ls):<6}  {sum(ls) / len(ls):9.4f}  {sum(es) / len(es):10.3f}")
    print(f"{n} steps in {result.seconds:.1f} s ({1e3 * result.seconds / max(n, 1):.0f} ms/step)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"step": h["step"], "loss": h["loss"], "bit_errors": h["bit_errors"],
                       "config": {**cfg.__dict__}, "seconds": result.seconds}, fh)
    if args.save:
        save_params(args.save, result.params, result.model, metadata={"task": cfg.task, "steps": str(n)})
    return 0


def _run_reverse(args: Namespace) -> int:
    """``refmem train reverse``: :mod:`refmem.attention.train` with a progress bar and ``--json``."""
    from ..attention import train as reverse
    from ..cli import CommandError, Progress

    ignored = [k for k in ("hidden", "layers", "N", "W", "R", "nw", "convention", "clip_value", "num_bits",
                           "max_length", "max_repeats", "optimizer", "max_grad_norm", "save")
               if getattr(args, k) is not None]
    if ignored:
        raise CommandError(f"option(s) {', '.join(ignored)} apply to the DNC tasks, not to reverse")
    steps = 400 if args.steps is None else args.steps
    if steps < 1:
        raise CommandError(f"--steps must be at least 1, got {steps}")
    kw = {"steps": steps, "seed": args.seed, "backend": args.backend or "numpy"}
    if args.lr is not None:
        kw["lr"] = args.lr
    if args.batch_size is not None:
        kw["B"] = args.batch_size
    bar = Progress(steps, label="train reverse")
    result = reverse.train(**kw, callback=lambda step, loss: bar.update(1, f"loss {loss:.4f}"))
    bar.close()
    losses = result.losses
    k = args.report_every or 0
    if k:
        print(f"{'steps':>13}  {'mean loss':>9}")
        for start in range(0, len(losses), k):
            ls = losses[start:start + k]
            print(f"{start + 1:>6}-{start + len(ls):<6}  {sum(ls) / len(ls):9.4f}")
    print(f"{len(losses)} steps in {result.seconds:.1f} s; reversal accuracy {result.accuracy:.3f} "
          f"on 256 fresh sequences")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"step": list(range(1, len(losses) + 1)), "loss": losses, "accuracy": result.accuracy,
                       "seconds": result.seconds}, fh)
    if args.plot:
        print(f"wrote {reverse.save_heatmap(result, args.plot, seed=args.seed)}")
    return 0
