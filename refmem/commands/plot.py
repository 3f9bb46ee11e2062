"""``refmem plot <target>``: draw a figure as a PNG (matplotlib): an attention case's weights, a DNC's memory.

Targets live in ``TARGETS``, name -> ``Target``. A target is three things: a
help line, a function that adds its options to its own sub-parser, and a
function ``run(args) -> int``. Adding a target is one function pair here and one
entry in ``TARGETS``; the drawing itself goes in `refmem/plots.py`, which the
model packages do not import.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from typing import Callable, NamedTuple

HELP = ("draw figures as PNG (matplotlib): 'attention', the heat map of an attention case's weights; "
        "'dnc', a DNC's memory usage, write and read weights and link matrix on a copy sequence")


class Target(NamedTuple):
    """One ``refmem plot`` target."""

    help: str
    add_arguments: Callable[[ArgumentParser], None]
    run: Callable[[Namespace], int]


# ----------------------------------------------------------------------------- attention


DEFAULT_ATTENTION_CASE = "attention/bahdanau_decoder/previous"


def _attention_arguments(p: ArgumentParser) -> None:
    from ..cli import int_at_least

    p.add_argument("--case", default=DEFAULT_ATTENTION_CASE, metavar="NAME",
                   help=f"an attention case (default {DEFAULT_ATTENTION_CASE}); "
                        "see `refmem check --module attention`")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the sampled inputs (default 0)")
    p.add_argument("--batch", type=int_at_least(0), default=0, metavar="B", help="which batch row to draw (default 0)")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="PNG to write (default attention_<function>_<variant>_seed<S>.png)")


def _attention_run(args: Namespace) -> int:
    from .. import catalogue
    from .. import xp as rx
    from ..cli import CommandError, Outputs, check_output_path

    plots = _plots()
    name = args.case if args.case.count("/") >= 2 else f"attention/{args.case}"
    known = ", ".join(c.name for c in catalogue.cases(["attention"]))
    if not name.startswith("attention/"):
        raise CommandError(f"argument --case: {args.case!r} is not an attention case; known: {known}")
    try:
        case = catalogue.get_case(name)
    except KeyError:
        raise CommandError(f"argument --case: no attention case named {name!r}; known: {known}") from None
    xp = rx.backend("numpy")
    arrays = case.draw(xp, args.seed)
    outputs = case.forward(arrays).outputs
    key = "alpha" if "alpha" in outputs else "a"
    weights = rx.to_numpy(outputs[key])
    if not 0 <= args.batch < weights.shape[0]:
        raise CommandError(f"argument --batch: expected a batch row 0..{weights.shape[0] - 1} of {case.name}, "
                           f"got {args.batch}")
    w = weights[args.batch]
    if key == "alpha":  # SPEC §2: steps t = 1..T attend to annotations j = 1..T
        rows, cols = list(range(1, w.shape[0] + 1)), list(range(1, w.shape[1] + 1))
        row_label, col_label = "decoder step t", "source position j (annotation h_j)"
    else:  # SPEC §3: 0-based source positions s (p_t = t0 + t for local-m)
        t0 = case.config.get("t0") or 0
        rows, cols = list(range(t0, t0 + w.shape[0])), list(range(w.shape[1]))
        row_label, col_label = "decoder step t", "source position s"
    out = args.out or f"attention_{case.function_name}_{case.variant}_seed{args.seed}.png"
    check_output_path(out, "--out")
    j = "j" if key == "alpha" else "s"
    title = f"{case.name}\nseed {args.seed}, batch row {args.batch}: {key}[t, {j}] = weight of position {j} at step t"
    outputs = Outputs()
    try:
        path = outputs.write(out, "--out", lambda p: plots.attention_heatmap(
            w, p, title=title, row_label=row_label, col_label=col_label, row_ticks=rows, col_ticks=cols),
            suffix=".png")
    except plots.PlotDependencyError as exc:
        raise CommandError(str(exc)) from None
    if path:
        print(f"wrote {path} ({key} of {case.name}, seed {args.seed}, batch row {args.batch}, "
              f"{w.shape[0]} steps x {w.shape[1]} positions)")
    outputs.finish()
    return 0


def _plots():
    from .. import plots

    return plots


# ----------------------------------------------------------------------------- dnc


def _dnc_arguments(p: ArgumentParser) -> None:
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


def _dnc_run(args: Namespace) -> int:
    """``refmem plot dnc``: [`draw_dnc_memory`][refmem.plots.draw_dnc_memory] for trained
    (``--params``) or untrained parameters."""
    import os

    from .. import xp as rx
    from ..cli import CommandError, Outputs, check_output_path
    from ..dnc.params import init_params, load_params
    from ..dnc.train import TrainConfig, dnc_config, make_task

    plots = _plots()
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
        written = outputs.write(out, "--out", lambda path: drawn.append(plots.draw_dnc_memory(
            params, model, args.task, path, args.length, args.repeats, args.seed, source)),
            suffix=os.path.splitext(out)[1] or ".png")
    except plots.PlotDependencyError as exc:
        raise CommandError(str(exc)) from None
    if written and drawn:
        _, steps, errors = drawn[-1]
        print(f"wrote {written} ({source}; {steps} steps, {errors} wrong bits on masked steps)")
    outputs.finish()
    return 0


#: Target name -> [`Target`][refmem.commands.plot.Target].
TARGETS: dict[str, Target] = {
    "attention": Target("heat map of the attention weights of an attention case (SPEC §2, §3)",
                        _attention_arguments, _attention_run),
    "dnc": Target("memory usage, write and read weights over time and the link matrix of a DNC (trained with "
                  "refmem train --save, or untrained) on one copy or repeat-copy sequence",
                  _dnc_arguments, _dnc_run),
}


def add_arguments(p: ArgumentParser) -> None:
    sub = p.add_subparsers(dest="target", metavar="TARGET")
    for name, target in TARGETS.items():
        sp = sub.add_parser(name, help=target.help, description=target.help)
        target.add_arguments(sp)


def run(args: Namespace) -> int:
    from ..cli import CommandError

    target = getattr(args, "target", None)
    if not target:
        raise CommandError(f"name a target: {', '.join(TARGETS)} (refmem plot --help describes them)")
    return int(TARGETS[target].run(args) or 0)
