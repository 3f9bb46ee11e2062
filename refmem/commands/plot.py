"""``refmem plot <target>``: draw a figure of a catalogue case as a PNG (matplotlib).

Targets live in :data:`TARGETS`, name -> :class:`Target`. A target is three
things: a help line, a function that adds its options to its own sub-parser,
and a function ``run(args) -> int``. Adding a target (e.g. ``dnc``) is one
function pair and one entry in :data:`TARGETS`; nothing else changes.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from typing import Callable, NamedTuple

HELP = "draw figures as PNG (matplotlib): refmem plot attention [--case NAME] [--seed S] [--out PATH]"


class Target(NamedTuple):
    """One ``refmem plot`` target."""

    help: str
    add_arguments: Callable[[ArgumentParser], None]
    run: Callable[[Namespace], int]


# ----------------------------------------------------------------------------- attention


DEFAULT_ATTENTION_CASE = "attention/bahdanau_decoder/previous"


def _attention_arguments(p: ArgumentParser) -> None:
    p.add_argument("--case", default=DEFAULT_ATTENTION_CASE, metavar="NAME",
                   help=f"an attention case (default {DEFAULT_ATTENTION_CASE}); "
                        "see `refmem check --module attention`")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled inputs (default 0)")
    p.add_argument("--batch", type=int, default=0, metavar="B", help="which batch row to draw (default 0)")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="PNG to write (default attention_<function>_<variant>_seed<S>.png)")


def _attention_run(args: Namespace) -> int:
    from .. import catalogue
    from .. import xp as rx
    from ..cli import CommandError

    plots = _plots()
    name = args.case if args.case.count("/") >= 2 else f"attention/{args.case}"
    if not name.startswith("attention/"):
        raise CommandError(f"--case {args.case}: not an attention case")
    try:
        case = catalogue.get_case(name)
    except KeyError:
        known = ", ".join(c.name for c in catalogue.cases(["attention"]))
        raise CommandError(f"no attention case named {name!r}; known: {known}") from None
    xp = rx.backend("numpy")
    arrays = case.draw(xp, args.seed)
    outputs = case.forward(arrays).outputs
    key = "alpha" if "alpha" in outputs else "a"
    weights = rx.to_numpy(outputs[key])
    if not 0 <= args.batch < weights.shape[0]:
        raise CommandError(f"--batch {args.batch}: the case has batch rows 0..{weights.shape[0] - 1}")
    w = weights[args.batch]
    if key == "alpha":  # SPEC §2: steps t = 1..T attend to annotations j = 1..T
        rows, cols = list(range(1, w.shape[0] + 1)), list(range(1, w.shape[1] + 1))
        row_label, col_label = "decoder step t", "source position j (annotation h_j)"
    else:  # SPEC §3: 0-based source positions s (p_t = t0 + t for local-m)
        t0 = case.config.get("t0") or 0
        rows, cols = list(range(t0, t0 + w.shape[0])), list(range(w.shape[1]))
        row_label, col_label = "decoder step t", "source position s"
    out = args.out or f"attention_{case.function_name}_{case.variant}_seed{args.seed}.png"
    j = "j" if key == "alpha" else "s"
    title = f"{case.name}\nseed {args.seed}, batch row {args.batch}: {key}[t, {j}] = weight of position {j} at step t"
    try:
        path = plots.attention_heatmap(w, out, title=title, row_label=row_label, col_label=col_label,
                                       row_ticks=rows, col_ticks=cols)
    except plots.PlotDependencyError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {path} ({key} of {case.name}, seed {args.seed}, batch row {args.batch}, "
          f"{w.shape[0]} steps x {w.shape[1]} positions)")
    return 0


def _plots():
    from .. import plots

    return plots


#: Target name -> :class:`Target`. Add ``"dnc": Target(...)`` here for ``refmem plot dnc``.
TARGETS: dict[str, Target] = {
    "attention": Target("heat map of the attention weights of an attention case (SPEC §2, §3)",
                        _attention_arguments, _attention_run),
}

from ..dnc import plots as _dnc_plots  # noqa: E402  (refmem plot dnc: drawing code beside the DNC)

TARGETS["dnc"] = Target(_dnc_plots.HELP, _dnc_plots.add_arguments, _dnc_plots.run)


def add_arguments(p: ArgumentParser) -> None:
    sub = p.add_subparsers(dest="target", metavar="TARGET")
    for name, target in TARGETS.items():
        sp = sub.add_parser(name, help=target.help, description=target.help)
        target.add_arguments(sp)


def run(args: Namespace) -> int:
    from ..cli import CommandError

    target = getattr(args, "target", None)
    if not target:
        raise CommandError(f"plot: name a target: {', '.join(TARGETS)}")
    return int(TARGETS[target].run(args) or 0)
