"""What a table's caption says: the marks (tests, correction, bold) and the protocol, i.e. every
setting that is the same for all rows (dataset, split, size, schedule, seeds, device, counters).
"""

from __future__ import annotations

from typing import Any

from bench.configure.naming import value_text
from bench.data import eval_split


def protocol_note(t: Any) -> str:
    """What the table's marks mean, for its caption."""
    tests = sorted({x for x in t.get("test_vs_baseline", []) if x})
    kind = " and ".join({"welch": "Welch's t-test", "paired": "paired t-test (same seeds)"}[x] for x in tests)
    n = int(t["p_vs_baseline"].notna().sum()) if "p_vs_baseline" in t else 0
    return (
        "Mean ± sample sd over the seeds (n in the seeds column; no ± with one seed; Params and GMACs are "
        "the same for every seed). Δ mIoU against the row marked base"
        + (f" of the same budget ({', '.join(t.attrs['groups'])}: rows are compared, and bolded, only within a "
           "budget)" if t.attrs.get("groups") else "")  # fmt: skip
        + "; * p < 0.05, ** p < 0.01, two-sided "
        + (f"{kind}, Holm-corrected over {n} comparisons" if n else "tests need >= 2 seeds per row: none made")
        + ". P(>base): the probability that a run of the row beats a run of the base row in mIoU (pairs of "
        "seeds, ties half), with its 95% stratified bootstrap interval where both rows have >= 2 seeds "
        "(stratified as rliable's: each row's seeds resampled within the row, and where both rows ran the same "
        "seeds the seed pairs resampled together, so the interval keeps the pairing). Both are fixed-n statistics over "
        "the seeds each row has: where seeds were added until a comparison was decided (sweep --until-decided) "
        "they take no account of the repeated looks, and the Decisions table holds the verdicts. "
        "Bold: the best value of a column, only where it is significantly better than the runner-up "
        "(one-sided test, p < 0.05; for Params and GMACs, strictly smaller)."
        + _curve_note(t)
        + (" FPS marked † were measured while the machine was busier than its cores: shown, never bolded, not "
           "a speed result." if "busy_runs" in t and t["busy_runs"].fillna(0).astype(int).sum() else "")
    )


def _curve_note(t: Any) -> str:
    """What the curve column says, where the table has one."""
    if "curve_status" not in t or not t["curve_status"].notna().any():
        return ""
    rising = [str(r) for r, s in zip(t["row"], t["curve_status"], strict=True) if s != "plateau"]
    what = (
        f" Rows {', '.join(rising)} had not flattened: their mIoU and every difference involving them hold at this "
        "budget only."
        if rising
        else " Every row's curves had flattened."
    )
    return (
        " Curve: whether the seeds' validation curves had flattened at this budget (plateau rule, docs/budgets.md: "
        "under 0.5 points gained over the last quarter of training and a fitted saturating curve within 1 point "
        "of the final mIoU); 'rising k/n': the mean curve still rose, k of n runs on their own." + what
    )


PROTOCOL_KEYS = {  # constant settings worth a reader's attention, in caption order
    "data.name": "dataset {}",
    "data.size": "{} px",
    "data.batch_size": "batch {}",
    "train.epochs": "{} epochs",
    "train.iters": "{} iterations",
    "optim.name": "{}",
    "optim.lr": "lr {}",
    "optim.schedule": "{} schedule",
    "model.width": "width {}",
    "model.output_stride": "output stride {}",
    "loss.name": "loss {}",
    "model.arch": "arch {}",
    "model.backbone": "backbone {}",
    "model.context": "context {}",
    "model.rates": "rates {}",
    "model.skip": "skip {}",
    "train.amp": "training in {}",
}


def protocol_caption(df: Any, axes: list[str]) -> str:
    """The constant factors and the protocol, in words, for a caption (plain text, Unicode)."""
    done = df[df["status"] == "done"]

    def const(col: str) -> str | None:
        if col not in done.columns or col in axes:
            return None
        vals = {value_text(v) for v in done[col]}
        return vals.pop() if len(vals) == 1 else None

    parts = []
    for col, fmt in PROTOCOL_KEYS.items():
        v = const(col)
        if v is None or v == "-" or (col == "train.amp" and v in ("no", "fp32", "none")):
            continue
        parts.append(fmt.format(v.replace(",", "x") if col == "data.size" else v))
    split = const("data.split")
    if split:
        parts.insert(1, f"trained on {split}, evaluated on {eval_split(split)}")
    seeds = sorted({int(s) for s in done["train.seed"]}) if "train.seed" in done else []
    if seeds:
        parts.append("seeds " + ",".join(str(s) for s in seeds))
    dev = const("env.device_name")
    dtype = const("env.dtype")
    threads = const("env.threads")
    where = f"latency on {dev or 'several devices'}" + (f", {threads} thread(s)" if threads else "")
    where += f", {dtype}" if dtype else ""
    text = (
        "; ".join(parts)
        + f". GMACs: torch.utils.flop_counter / 2 at the training size; FPS: batch 1, 1000 / median {where}."
    )
    if "busy" in done.columns:
        busy = int(done["busy"].fillna(False).astype(bool).sum())
        if busy:
            text += (
                f" {busy} of {len(done)} latencies were measured while the machine was busier than its cores "
                "(load average above the core count): compare speeds only from a quiet machine."
            )
    return text
