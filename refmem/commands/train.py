"""``refmem train copy|repeat-copy|reverse``: the training demos, in refmem alone (no framework).

``copy`` and ``repeat-copy`` train the DNC on deepmind/dnc's copy tasks
([`refmem.dnc.train`][refmem.dnc.train]); ``reverse`` trains the Bahdanau decoder of SPEC §2 to
reverse symbol sequences ([`refmem.attention.train`][refmem.attention.train]).
"""

from __future__ import annotations

import json
import os
import sys
from argparse import ArgumentParser, Namespace

HELP = ("train the DNC on the copy or repeat-copy task (deepmind/dnc's train.py), or the Bahdanau "
        "decoder on sequence reversal, in refmem alone (no framework)")

#: ``refmem.dnc.train.PRESETS`` names, written here so that ``--help`` need not import NumPy
#: (tests/test_cli_errors.py checks that the two agree).
PRESET_NAMES = ("demo", "deepmind")

EPILOG = """\
presets (copy, repeat-copy; an option on the command line overrides its preset):
  demo      the default: deepmind/dnc's model, task and optimiser (RMSProp,
            epsilon 1e-10, global-norm clip 50) with the learning rate raised
            from 1e-4 to 1e-2 and 1000 steps in place of 100000, so that the
            loss falls visibly in about 15 s (copy: mean loss 8.2 over the
            first 50 steps, under 0.01 over the last 50)
  deepmind  deepmind/dnc train.py's flags exactly: hidden 64, memory 16 x 16,
            4 read heads, 1 write head, clip value 20, batch 16, 4 bits,
            lengths 1-2, repeats 1-2, RMSProp lr 1e-4 epsilon 1e-10,
            global-norm clip 50, 100000 steps (about 20 minutes here)

examples:
  refmem train copy                  # the demo: the loss falls in seconds
  refmem train repeat-copy --preset deepmind --steps 2000
  refmem train copy --save dnc.safetensors --plot memory.png
  refmem train copy --masked-content --deallocation --link-sharpness
  refmem train reverse --plot alpha.png   # the decoder's anti-diagonal
"""

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_CHILD = "REFMEM_TRAIN_CHILD"
_DNC_ONLY = ("hidden", "layers", "N", "W", "R", "nw", "convention", "clip_value", "num_bits", "max_length",
             "max_repeats", "optimizer", "max_grad_norm", "save", "masked_content", "deallocation",
             "link_sharpness")


def add_arguments(p: ArgumentParser) -> None:
    from ..cli import int_at_least, nonnegative_float, positive_float

    pos = int_at_least(1)
    p.add_argument("task", choices=["copy", "repeat-copy", "reverse"],
                   help="copy, repeat-copy (the DNC; repeat-copy: 1-2 repeats, copy: 1) or reverse "
                        "(the attention decoder of SPEC §2 learns to reverse symbol sequences)")
    p.add_argument("--preset", choices=PRESET_NAMES, default="demo",
                   help="copy, repeat-copy: the defaults to start from (default demo; deepmind: deepmind/dnc's "
                        "train.py exactly, lr 1e-4; see below)")
    p.add_argument("--steps", type=pos, help="training steps (default 1000; 400 for reverse; 100000 with "
                                             "--preset deepmind)")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="seed of the parameters and the batches (default 0)")
    p.add_argument("--json", metavar="PATH", help='write {"step": [...], "loss": [...], "bit_errors": [...], '
                                                  '"config": {...}, "seconds": S} to PATH (reverse: "accuracy" '
                                                  'in place of "bit_errors" and "config")')
    p.add_argument("--save", metavar="PATH", help="write the trained DNC's parameters as safetensors to PATH "
                                                  "(for refmem plot dnc --params PATH)")
    p.add_argument("--plot", metavar="PNG",
                   help="write a figure of the trained model to PNG: the DNC's memory use on one sequence "
                        "(as refmem plot dnc), or reverse's attention heat map")
    p.add_argument("--hidden", type=pos, help="LSTM width (default 64)")
    p.add_argument("--layers", type=pos, help="controller layers (default 1; 3 is seed 003's deep controller)")
    p.add_argument("--memory-size", dest="N", type=pos, help="memory slots N (default 16)")
    p.add_argument("--word-size", dest="W", type=pos, help="word size W (default 16)")
    p.add_argument("--read-heads", dest="R", type=pos, help="read heads R (default 4)")
    p.add_argument("--write-heads", dest="nw", type=pos, help="write heads nw (default 1)")
    p.add_argument("--convention", choices=["deepmind", "paper"], help="DNC convention (default deepmind)")
    p.add_argument("--clip-value", type=nonnegative_float,
                   help="clip of controller state and outputs (default 20; 0 off)")
    p.add_argument("--masked-content", action="store_true", default=None,
                   help="SPEC §5 option (Csordás & Schmidhuber 2019): write and read masks on the content "
                        "lookups (default off)")
    p.add_argument("--deallocation", action="store_true", default=None,
                   help="SPEC §5 option: the usage's retention also scales the memory, so freed slots are "
                        "wiped (default off)")
    p.add_argument("--link-sharpness", action="store_true", default=None,
                   help="SPEC §5 option: forward and backward weights sharpened per read head (default off)")
    p.add_argument("--batch-size", type=pos, help="batch size (default 16; 32 for reverse)")
    p.add_argument("--num-bits", type=pos, help="bits per pattern vector (default 4)")
    p.add_argument("--max-length", type=pos, help="longest pattern (default 2)")
    p.add_argument("--max-repeats", type=pos, help="most repeats of repeat-copy (default 2)")
    p.add_argument("--optimizer", choices=["rmsprop", "adam"], help="optimiser (default rmsprop, TF1 form)")
    p.add_argument("--lr", type=positive_float,
                   help="learning rate (default 1e-2; 1e-4 with --preset deepmind; 0.02 for reverse)")
    p.add_argument("--max-grad-norm", type=nonnegative_float, help="global-norm gradient clip (default 50; 0 off)")
    p.add_argument("--backend", help="array backend: numpy | array_api_strict | torch | cupy (default numpy)")
    p.add_argument("--report-every", type=int_at_least(0), default=100, metavar="N",
                   help="print the mean loss and bit errors every N steps (default 100; 0 never)")
    p.add_argument("--threads", type=int_at_least(0), default=1, metavar="N",
                   help="BLAS threads (default 1: the small matrices of this model run fastest on one; "
                        "0 leaves the library default)")


def _rerun_with_threads(threads: int) -> int | None:
    """Run this command again in a child whose BLAS uses ``threads`` threads (set before NumPy loads).

    The child cannot outlive this process (`refmem.cli.run_child`): Ctrl-C ends both with
    one line and exit status 130, and a parent killed outright takes the child with it."""
    if not threads or os.environ.get(_CHILD) == "1":
        return None
    if all(os.environ.get(v) == str(threads) for v in _THREAD_VARS):
        return None
    if sys.argv and os.path.basename(sys.argv[0]) not in ("refmem", "__main__.py"):
        return None  # called in-process (e.g. cli.main([...]) from Python): keep the caller's process
    env = dict(os.environ)
    for var in _THREAD_VARS:
        env[var] = str(threads)
    env[_CHILD] = "1"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    from ..cli import run_child

    return run_child("refmem", sys.argv[1:], env=env)


def _backend(args: Namespace):
    from .. import xp as rx
    from ..cli import CommandError

    name = args.backend or "numpy"
    try:
        rx.backend(name)
    except rx.BackendError as exc:
        raise CommandError(f"argument --backend: {exc}") from None
    return name


def run(args: Namespace) -> int:
    from ..cli import CommandError

    if args.task == "reverse":
        ignored = [k for k in _DNC_ONLY if getattr(args, k) is not None]
        if args.preset != "demo":
            ignored.append("preset")
        if ignored:
            names = {"N": "memory-size", "W": "word-size", "R": "read-heads", "nw": "write-heads"}
            flags = ", ".join("--" + names.get(k, k).replace("_", "-") for k in ignored)
            raise CommandError(f"argument {flags}: apply to the DNC tasks copy and repeat-copy, not to reverse")
    _backend(args)
    rc = _rerun_with_threads(args.threads)
    if rc is not None:
        return rc
    if args.task == "reverse":
        return _run_reverse(args)
    return _run_dnc(args)


def _run_dnc(args: Namespace) -> int:
    from ..cli import CommandError, Outputs, Progress, print_table
    from ..dnc.train import TrainConfig, preset, train

    overrides = {k: getattr(args, k) for k in ("steps", "hidden", "layers", "N", "W", "R", "nw", "convention",
                                               "clip_value", "batch_size", "num_bits", "max_length",
                                               "max_repeats", "optimizer", "lr", "max_grad_norm", "backend",
                                               "masked_content", "deallocation", "link_sharpness")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        cfg: TrainConfig = preset(args.preset, task=args.task, seed=args.seed, **overrides)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print(f"refmem train {cfg.task} (preset {args.preset}): hidden {cfg.hidden} x{cfg.layers}, memory "
          f"{cfg.N}x{cfg.W}, R {cfg.R}, nw {cfg.nw}, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:g}, "
          f"clip {cfg.max_grad_norm:g}, {cfg.steps} steps, seed {cfg.seed}", file=sys.stderr)
    bar = Progress(cfg.steps, label=f"train {cfg.task}")
    window: list[float] = []

    def on_step(step: int, loss: float, errors: float) -> None:
        window.append(loss)
        del window[:-50]
        bar.update(1, f"loss {loss:.3f} (mean of 50: {sum(window) / len(window):.3f}) bit errors {errors:.2f}")

    try:
        result = train(cfg, callback=on_step)
    except FloatingPointError as exc:
        raise CommandError(f"argument --lr: {exc} at --lr {cfg.lr:g}; try a smaller --lr") from None
    finally:
        bar.close()
    h = result.history
    n = len(h["loss"])
    if args.report_every and n:
        k = args.report_every
        rows = []
        for start in range(0, n, k):
            ls = h["loss"][start:start + k]
            es = h["bit_errors"][start:start + k]
            rows.append([f"{start + 1}-{start + len(ls)}", f"{sum(ls) / len(ls):.4f}", f"{sum(es) / len(es):.3f}"])
        print_table(["steps", "mean loss", "bit errors"], rows, right=("mean loss", "bit errors"))
    first, last = h["loss"][:50], h["loss"][-50:]
    print(f"{n} steps in {result.seconds:.1f} s ({1e3 * result.seconds / max(n, 1):.0f} ms/step); mean loss "
          f"of the first {len(first)} steps {sum(first) / len(first):.4f}, of the last {len(last)} "
          f"{sum(last) / len(last):.4f}")
    outputs = Outputs()
    if args.json:
        def write_json(path: str) -> None:
            with open(path, "w") as fh:
                json.dump({"step": h["step"], "loss": h["loss"], "bit_errors": h["bit_errors"],
                           "config": {**cfg.__dict__}, "seconds": result.seconds}, fh)

        outputs.write(args.json, "--json", write_json)
    if args.save:
        from ..dnc.params import save_params

        def write_params(path: str) -> None:
            try:
                save_params(path, result.params, result.model, metadata={"task": cfg.task, "steps": str(n)})
            except OSError:
                raise
            except Exception as exc:  # safetensors reports I/O errors as its own type
                raise OSError(str(exc)) from exc

        written = outputs.write(args.save, "--save", write_params)
        if written:
            print(f"wrote {written} (refmem plot dnc --params {written})")
    if args.plot:
        from ..plots import PlotDependencyError, draw_dnc_memory

        try:
            written = outputs.write(args.plot, "--plot", lambda path: draw_dnc_memory(
                result.params, result.model, cfg.task, path, length=cfg.max_length, repeats=cfg.max_repeats,
                seed=cfg.seed, source=f"trained {n} steps"), suffix=os.path.splitext(args.plot)[1] or ".png")
        except PlotDependencyError as exc:
            raise CommandError(f"argument --plot: {exc}") from None
        if written:
            print(f"wrote {written}")
    outputs.finish()
    return 0


def _run_reverse(args: Namespace) -> int:
    """``refmem train reverse``: [`refmem.attention.train`][refmem.attention.train] with a progress bar
    and ``--json``."""
    from ..attention import train as reverse
    from ..cli import CommandError, Outputs, Progress, print_table
    from ..plots import PlotDependencyError, reversal_heatmap

    steps = 400 if args.steps is None else args.steps
    kw = {"steps": steps, "seed": args.seed, "backend": args.backend or "numpy"}
    if args.lr is not None:
        kw["lr"] = args.lr
    if args.batch_size is not None:
        kw["B"] = args.batch_size
    bar = Progress(steps, label="train reverse")
    try:
        result = reverse.train(**kw, callback=lambda step, loss: bar.update(1, f"loss {loss:.4f}"))
    finally:
        bar.close()
    losses = result.losses
    if not all(loss == loss and abs(loss) != float("inf") for loss in losses):
        raise CommandError(f"argument --lr: training diverged (loss {losses[-1]}) at --lr {kw.get('lr', 0.02):g}; "
                           "try a smaller --lr")
    k = args.report_every or 0
    if k:
        rows = []
        for start in range(0, len(losses), k):
            ls = losses[start:start + k]
            rows.append([f"{start + 1}-{start + len(ls)}", f"{sum(ls) / len(ls):.4f}"])
        print_table(["steps", "mean loss"], rows, right=("mean loss",))
    print(f"{len(losses)} steps in {result.seconds:.1f} s; reversal accuracy {result.accuracy:.3f} "
          f"on 256 fresh sequences")
    outputs = Outputs()
    if args.json:
        def write_json(path: str) -> None:
            with open(path, "w") as fh:
                json.dump({"step": list(range(1, len(losses) + 1)), "loss": losses, "accuracy": result.accuracy,
                           "seconds": result.seconds}, fh)

        outputs.write(args.json, "--json", write_json)
    if args.plot:
        try:
            written = outputs.write(args.plot, "--plot", lambda path: reversal_heatmap(result, path, seed=args.seed),
                                    suffix=".png")
        except PlotDependencyError as exc:
            raise CommandError(f"argument --plot: {exc}") from None
        if written:
            print(f"wrote {written}")
    outputs.finish()
    return 0
