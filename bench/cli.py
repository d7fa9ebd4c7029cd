"""`aspp-bench` command line: argument parsing and dispatch only; each command lives in
bench.commands, imported when it runs (so `--help` stays quick)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import __version__
from bench.errors import UserError, clip
from bench.files import space_report
from bench.precision import PRECISIONS

__all__ = ["main"]


def _lazy(module: str, name: str):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(f"bench.commands.{module}"), name)(args))

    return run


def _number(lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False, what: str = ""):  # type: ignore[no-untyped-def]
    """An argparse type: a finite number in [lo, hi] (or the open interval's side); anything else
    (text, nan, inf, out of range) is a usage error, exit 2, naming the range."""
    import math

    left, right = "(" if open_lo else "[", ")" if open_hi else "]"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        ok = math.isfinite(v) and (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"{text!r}: give a finite number in {left}{lo:g}, {hi:g}{right}{what}")
        return v

    return parse


def _count(lo: int, hi: int):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = lo - 1
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from {lo} to {hi}")
        return v

    return parse


def _add_set(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The one --set option: repeatable, and each takes one or more KEY=VALUE."""
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=help_text)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aspp-bench")
    except PackageNotFoundError:  # run from a checkout without installing
        return __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aspp-bench", description="Benchmark and ablate atrous-convolution / ASPP segmentation models."
    )
    p.add_argument("--version", action="version", version=f"aspp-bench {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    cf = sub.add_parser(
        "config", help="print the fully resolved run config as YAML (what run_id hashes); --fields lists every key"
    )
    cf.add_argument("config", nargs="?", help="YAML file with the differences from the defaults")
    _add_set(cf, "config overrides (YAML values), e.g. --set model.arch=aspp_unet 'model.rates=[6,12,18]'")
    cf.add_argument("--fields", action="store_true", help="every key with its type, default and allowed values")
    cf.add_argument("--json", action="store_true")
    cf.set_defaults(func=_lazy("inspect", "cmd_config"))

    m = sub.add_parser(
        "models", help="every registered backbone, context, architecture, dataset, loss, optimiser and schedule"
    )
    m.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'deeplab*' or '*aspp*'")
    m.add_argument("--json", action="store_true", help="machine-readable listing with knobs and defaults")
    m.set_defaults(func=_lazy("inspect", "cmd_models"))

    pr = sub.add_parser("profile", help="params, FLOPs (three counters), latency/FPS and memory of an architecture")
    pr.add_argument("arch", help="architecture name (see 'aspp-bench models')")
    _add_set(
        pr, "config overrides, values parsed as YAML (e.g. --set model.backbone=resnet101 'model.rates=[6,12,18]')"
    )
    pr.add_argument("--input", required=True, help="input shape CxHxW, e.g. 3x520x520")
    pr.add_argument(
        "--batch", type=_count(1, 4096), default=1, help="batch for the throughput figure (latency is at batch 1)"
    )
    pr.add_argument("--device", default="cpu", help="cpu or cuda")
    pr.add_argument("--threads", type=_count(1, 1024), default=None, help="CPU threads (default: torch's)")
    pr.add_argument("--dtype", default="fp32", help=f"{', '.join(PRECISIONS)} (as train.amp spells them)")
    pr.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    pr.add_argument("--compile", action="store_true", help="torch.compile the model first")
    pr.add_argument("--metrics", default="params,flops,latency", help="comma-separated subset of params,flops,latency")
    pr.add_argument(
        "--min-run-time",
        type=_number(0, 600, open_lo=True, what=" seconds"),
        default=1.0,
        help="seconds of timed runs (default 1.0)",
    )
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=_lazy("inspect", "cmd_profile"))

    rf = sub.add_parser(
        "receptive", help="theoretical receptive field, coverage/gridding and effective receptive field of a network"
    )
    rf.add_argument("arch", nargs="?", help="architecture name (see 'aspp-bench models'; with --checkpoint, the run's)")
    _add_set(rf, "config overrides, e.g. 'model.rates=[6,12,18]'; with --checkpoint only data.* keys")
    rf.add_argument("--input", help="input shape CxHxW for the theoretical field, e.g. 3x90x120")
    rf.add_argument(
        "--sweep",
        help="a sweep file: the theoretical field of each of its configurations at its profile size, "
        "without training (with --out: a table and a figure there)",
    )
    rf.add_argument("--out", help="with --sweep: the folder for README.md, receptive_fields.csv and the figure")
    rf.add_argument("--checkpoint", help="a run folder's checkpoint.pt: the effective field of the trained network")
    rf.add_argument(
        "--images",
        type=_count(0, 100000),
        default=None,
        help="images of the validation split for the effective field (default 32 with --checkpoint, else 0)",
    )
    rf.add_argument("--figure", help="write the effective field's heat map here (.png, with a .pdf beside it)")
    rf.add_argument("--json", action="store_true")
    rf.set_defaults(func=_lazy("receptive", "cmd_receptive"))

    tr = sub.add_parser("train", help="train and evaluate one configuration into a run folder (resumes)")
    tr.add_argument("config", nargs="?", help="YAML file with the differences from the defaults")
    _add_set(tr, "config overrides (YAML values), e.g. --set train.amp=bf16 train.channels_last=true")
    tr.add_argument("--out", required=True, help="run folder: config.yaml, checkpoint.pt, train.log, result.json")
    tr.set_defaults(func=_lazy("runs", "cmd_train"))

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on any split of its dataset kind")
    ev.add_argument("checkpoint", help="a run folder's checkpoint.pt (its config.yaml is read beside it)")
    _add_set(ev, "override data keys, e.g. data.root=... data.split=test (default split: the one the run validated on)")
    ev.add_argument(
        "--resolution",
        choices=["data", "label"],
        default="data",
        help="score at data.size (as the run validated; default) or at each annotation's own size (as papers do)",
    )
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_lazy("runs", "cmd_evaluate"))

    sw = sub.add_parser("sweep", help="validate a sweep, then submit its missing cells (returns at once)")
    sw.add_argument("sweep", help="ablations/X.yaml")
    sw.add_argument("--executor", choices=["inline", "local", "slurm"], help="overrides launch.executor")
    sw.add_argument("--dry-run", action="store_true", help="print the cells and what would be submitted; write nothing")
    sw.add_argument("--retry-failed", action="store_true", help="also resubmit failed and diverged cells")
    sw.add_argument("--wait", action="store_true", help="follow progress until every cell has finished")
    sw.add_argument(
        "--until-decided", action="store_true",
        help="the sweep's seeds as a first wave, then more seeds in waves, only where a comparison of its "
        "'decide:' section is still open (waits; resumable)",
    )  # fmt: skip
    sw.add_argument("--results", help="results folder (default results/<sweep name>)")
    _add_set(sw, "overrides of the sweep's base, values parsed as YAML (e.g. --set train.epochs=2); give `status` "
                 "the same, since they change the cells' configs and so their run ids")  # fmt: skip
    sw.set_defaults(func=_lazy("sweeps", "cmd_sweep"))

    st = sub.add_parser("status", help="state of every cell of a sweep (done, running, queued, failed, ...)")
    st.add_argument("sweep", help="ablations/X.yaml")
    st.add_argument("--results", help="results folder (default results/<sweep name>)")
    st.add_argument("--json", action="store_true")
    _add_set(st, "the overrides of the sweep's base its `sweep` was given")
    st.set_defaults(func=_lazy("sweeps", "cmd_status"))

    co = sub.add_parser("collect", help="one row per finished run -> parquet and csv")
    co.add_argument("results", help="a results folder (results/<sweep>)")
    co.add_argument("--out", help="table file (.parquet or .csv; default RESULTS/table.parquet)")
    co.set_defaults(func=_lazy("results", "cmd_collect"))

    rp = sub.add_parser("report", help="Markdown / LaTeX tables and figures from a results folder")
    rp.add_argument("results", help="a results folder, or a table collected from one (.parquet/.csv)")
    rp.add_argument("--out", required=True, help="report folder, e.g. reports/X")
    rp.add_argument(
        "--format",
        help="comma-separated subset of md,tex,png,pdf (default: all four, pdf only where pdflatex is installed)",
    )
    rp.add_argument("--baseline", help="the row deltas refer to, e.g. 'arch=unet' (default: the first row)")
    rp.add_argument("--notes", help="a Markdown file placed under the report's title (what the ablation shows)")
    rp.add_argument("--sweep", help="the sweep file the results came from (name, axes, order, paper tables)")
    rp.set_defaults(func=_lazy("results", "cmd_report"))

    rg = sub.add_parser("regress", help="accuracy/speed regression check; exit 1 on any regression")
    rg.add_argument("baseline", help="results folder or collected table (.parquet/.csv)")
    rg.add_argument("current", help="results folder or collected table (.parquet/.csv)")
    rg.add_argument(
        "--miou-tol",
        type=_number(0, 100, what=" points"),
        default=1.0,
        help="mIoU drop in points that counts (default 1.0)",
    )
    rg.add_argument(
        "--speed-tol",
        type=_number(0, 100, what=" (a fraction)"),
        default=0.2,
        help="allowed latency increase as a fraction (0.2)",
    )
    rg.add_argument(
        "--alpha",
        type=_number(0, 1, open_lo=True, open_hi=True),
        default=0.05,
        help="significance level after Holm's correction (0.05)",
    )
    rg.add_argument(
        "--speed-normalised",
        action="store_true",
        help="compare the fraction of its machine's compute limit (the best of measured kernels, "
        "docs/measurement.md) each run reached (a speed gate across machines of one kind)",
    )
    rg.add_argument("--json", action="store_true", help="machine-readable verdicts (for CI)")
    rg.add_argument(
        "--require-all",
        action="store_true",
        help="a configuration on one side only fails the gate (default: it is a MISSING row, exit 0)",
    )
    rg.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="config key left out when matching configurations (e.g. train.epochs to gate a shorter schedule)",
    )
    rg.add_argument(
        "--noise-model",
        default="auto",
        metavar="NAME",
        help="how far a result moves between environments, for one-seed comparisons between two environments: "
        "auto (the model of the results' dataset, if one was measured), none (plain threshold), or a model's name "
        "(bench/verdicts/environment_noise.csv)",
    )
    rg.set_defaults(func=_lazy("results", "cmd_regress"))
    sp = sub.add_parser(
        "speed",
        help="decide which of two configurations or code versions is faster: interleaved (ABBA) rounds in their "
        "own processes, stopped when decided",
    )
    sp.add_argument("a", metavar="A", help="side A (the baseline): an architecture name, a config YAML or a run folder")
    sp.add_argument("b", metavar="B", help="side B (the candidate): as A; the same as A for two code versions")
    _add_set(sp, "config overrides for both sides, values parsed as YAML")
    for side in ("a", "b"):
        sp.add_argument(f"--set-{side}", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help=f"overrides for side {side.upper()} only")  # fmt: skip
    sp.add_argument("--rev", nargs=2, metavar=("REV_A", "REV_B"),
                    help="run each side with the code of a git revision of the repository here ('worktree': the code "
                         "this command runs, uncommitted changes included)")  # fmt: skip
    sp.add_argument("--python", nargs=2, metavar=("PYTHON_A", "PYTHON_B"),
                    help="run each side with another Python environment's interpreter (and the code it imports)")
    sp.add_argument("--input", required=True, help="input shape CxHxW, e.g. 3x360x480")
    sp.add_argument("--measure", choices=("latency", "train"), default="latency",
                    help="latency: a batch-1 forward by the profile protocol (default); train: one SGD step on a "
                         "random batch of --batch")  # fmt: skip
    sp.add_argument("--batch", type=_count(1, 4096), default=2, help="batch of a training step (--measure train)")
    sp.add_argument("--threads", type=_count(1, 1024), default=1,
                    help="CPU threads of each side (1: then a forward's CPU time is the work it does, whatever else "
                         "runs on the machine)")  # fmt: skip
    sp.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="what decides: cpu, the process's CPU time per forward (default; a busy machine does not "
                         "move it), or wall, the latency (trustworthy on an idle machine only); both are recorded")
    sp.add_argument("--dtype", default="fp32", help=f"{', '.join(PRECISIONS)} (latency only)")
    sp.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    sp.add_argument("--tolerance", type=_number(0, 1, open_lo=True, open_hi=True, what=" (a fraction)"), default=0.05,
                    help="equivalent means B/A within 1/(1+tol) .. 1+tol; slower beyond it fails (0.05)")
    sp.add_argument("--alpha", type=_number(0, 0.5, open_lo=True, open_hi=True), default=0.05,
                    help="false-decision rate over all looks, per decision (0.05)")  # fmt: skip
    sp.add_argument("--max-rounds", type=_count(3, 400), default=40, help="rounds at most (40)")
    sp.add_argument("--first-look", type=_count(3, 400), default=6, help="rounds before the first look (6)")
    sp.add_argument("--look-every", type=_count(1, 400), default=2, help="rounds between looks (2)")
    sp.add_argument("--slice", type=_number(0.01, 60, what=" seconds"), default=1.0,
                    help="seconds of each of a side's two timings in a round (1.0: about as long as the next round's "
                         "processes take to start, which happens meanwhile)")  # fmt: skip
    sp.add_argument("--max-time", type=_number(1, 86400, what=" seconds"), default=600,
                    help="stop undecided after this many seconds of rounds (600)")  # fmt: skip
    sp.add_argument("--out", help="also write the whole record (every round) to this JSON file")
    sp.add_argument("--json", action="store_true", help="print the whole record as JSON (for CI)")
    sp.set_defaults(func=_lazy("speed", "cmd_speed"))

    pl = sub.add_parser("plan", help="how many seeds each comparison needs, from measured results")
    pl.add_argument("results", help="results folder or collected table (.parquet/.csv)")
    pl.add_argument("--delta", "--difference", dest="difference", type=_number(0.01, 100, what=" points"), default=1.0,
                    help="mIoU difference worth detecting, points (1.0)")  # fmt: skip
    pl.add_argument(
        "--alpha", type=_number(0, 1, open_lo=True, open_hi=True), default=0.05, help="significance level (0.05)"
    )
    pl.add_argument(
        "--power", type=_number(0, 1, open_lo=True, open_hi=True), default=0.8, help="probability of detecting it (0.8)"
    )
    pl.add_argument("--baseline", help="the configuration the others are compared with, e.g. 'arch=unet'")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=_lazy("results", "cmd_plan"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"aspp-bench: error: {clip(e, 20_000)}", file=sys.stderr)  # bounded, whatever it echoes
        return e.exit_code
    except BrokenPipeError:  # the reader went away (`aspp-bench config --fields | head`): nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the environment (a full disk, a read-only or missing path), not a bug
        import errno

        where = f"{e.filename}: " if e.filename else ""
        space = ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT) and e.filename and "free of" not in str(e.strerror):
            space = f"; {space_report(Path(str(e.filename)).parent)}"
        print(
            f"aspp-bench: error: {where}{e.strerror or e}{space} (the file system refused; nothing half-written "
            "was left)",
            file=sys.stderr,
        )
        return 2


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
