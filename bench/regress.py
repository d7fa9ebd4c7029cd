"""Accuracy and speed regression gate of CURRENT against a committed BASELINE, by configuration
and over seeds, with verdicts that hold on another machine (see `regress`).

Rows are grouped by configuration: the identity of the resolved config each row records, computed
afresh from its config columns (so tables collected under an earlier identity scheme, the
committed baselines among them, match by what they ran, not by folder names), without the seed.
Speed is compared only where the environment fingerprints are equal, or, with
`speed_normalised`, as fractions of each machine's measured matmul peak; never silently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import stats
from bench.config import RunConfig as _RC
from bench.config import config_keys, flatten, is_config_key, is_experiment_key
from bench.errors import UserError, did_you_mean
from bench.identity import NOT_IDENTITY, config_from_row, config_id, identity_of_dict
from bench.labels import row_label
from bench.results import collect

__all__ = ["load_table", "regress", "seed_miou"]


def load_table(path: str | Path) -> Any:
    """A results folder (collected on the fly) or a collected table (.parquet / .csv), with each
    row's identity (`_identity`, `_config`) computed from its config columns."""
    import pandas as pd

    p = Path(path)
    try:
        if p.is_dir():
            df, _ = collect(p)
        elif p.suffix == ".parquet" and p.is_file():
            df = pd.read_parquet(p)
        elif p.suffix == ".csv" and p.is_file():
            df = pd.read_csv(p)
        else:
            raise UserError(
                f"{p}: not a results folder or a collected table (.parquet or .csv)"
                + ("" if p.exists() else "; no such file or folder")
            )
    except UserError:
        raise
    except (ValueError, OSError, ImportError) as e:  # pandas / pyarrow parse errors are ValueError subclasses
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"{p}: cannot be read as a {p.suffix.lstrip('.')} table ({first}); give a table written by "
                        "'aspp-bench collect'") from None  # fmt: skip
    if df.empty or "miou" not in df.columns:
        raise UserError(f"{p}: no finished runs with a miou column; give a table written by 'aspp-bench collect'")
    if "status" in df.columns:
        df = df[df["status"] == "done"]
    return _identify(_checked_numbers(df.reset_index(drop=True), p), p)


# Measured columns a table is read for, and the range a real value lies in.
_RANGES = {"miou": (0.0, 1.0), "latency_ms_p50": (0.0, None), "latency_ms_p90": (0.0, None)}


def _checked_numbers(df: Any, source: Path) -> Any:
    """The table with its measured columns as numbers; a value that is text, NaN, infinite or out
    of range (an mIoU of -5, or in points where a fraction is kept) is a UserError naming the row."""
    import math

    import pandas as pd

    df = df.copy()
    for col, (lo, hi) in _RANGES.items():
        if col not in df.columns:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        for i, (v, raw) in enumerate(zip(values, df[col], strict=True)):
            if col != "miou" and pd.isna(raw):
                continue  # a run profiled without latency
            if not (math.isfinite(v) and v >= lo and (hi is None or v <= hi)):
                allowed = f"a number from {lo:g} to {hi:g}" if hi is not None else f"a number of at least {lo:g}"
                raise UserError(
                    f"{source}: row {i}: {col} is {str(raw)[:40]!r}, not {allowed}"
                    + (" (mIoU is kept as a fraction, as 'aspp-bench collect' writes it)" if col == "miou" else "")
                    + "; fix or drop that row"
                )
        df[col] = values
    return df


def _identify(df: Any, source: Path) -> Any:
    """Add `_identity` (run identity) and `_config` (the same without the seed) to every row."""
    if not any(is_experiment_key(c) for c in df.columns):
        raise UserError(
            f"{source}: no config columns (model.*, data.*, ...): rows are matched by the configuration they "
            "ran, not by position or folder name; give a table written by 'aspp-bench collect'"
        )
    ids, cfgs, resolved = [], [], []
    for i, row in df.iterrows():
        try:
            rid, cid, r = identity_of_dict(config_from_row(row), source=f"{source}: row {i}")
        except UserError as e:
            raise UserError(f"{source}: row {i} does not describe a configuration that resolves ({e})") from None
        ids.append(rid)
        cfgs.append(cid)
        resolved.append(r)
    df = df.copy()
    df["_identity"], df["_config"], df["_resolved"] = ids, cfgs, resolved
    dup = df["_identity"].duplicated(keep="first")
    return df[~dup].reset_index(drop=True)  # one experiment counted once, never as two seeds


def seed_miou(g: Any) -> dict[int, float]:
    """{seed: mIoU in points} of one configuration's rows."""
    seeds = g["train.seed"] if "train.seed" in g else range(len(g))
    return {int(s): 100 * float(m) for s, m in zip(seeds, g["miou"], strict=True)}


def _busy(g: Any) -> bool:
    """Some latency of these rows was measured while the machine ran more jobs than it has cores."""
    if "env.load_avg" not in g or "env.cpu_count" not in g:
        return False
    load = g["env.load_avg"].astype(float)
    cores = g["env.cpu_count"].astype(float)
    return bool((load > cores).any())


def _speed(b: Any, c: Any, tol: float, normalised: bool) -> tuple[str, str | None]:
    """(what the speed column says, a failure or None). Latency is compared only between equal
    environment fingerprints; `normalised` compares the fraction of the machine's measured matmul
    peak each run achieved, which holds between machines."""
    import pandas as pd

    if normalised:
        if "efficiency" not in b or "efficiency" not in c:
            return "no efficiency recorded (profile with latency and FLOPs)", None
        eb, ec = pd.to_numeric(b["efficiency"]).median(), pd.to_numeric(c["efficiency"]).median()
        if pd.isna(eb) or pd.isna(ec) or ec <= 0:
            return "no efficiency recorded", None
        ratio = float(eb / ec)  # > 1: the current run reaches a smaller fraction of its machine's peak
        text = f"fraction of peak {100 * eb:.1f}% -> {100 * ec:.1f}% (x{ratio:.2f} slower, normalised)"
    else:
        if "latency_ms_p50" not in b or "latency_ms_p50" not in c:
            return "no latency recorded", None
        lb, lc = pd.to_numeric(b["latency_ms_p50"]).median(), pd.to_numeric(c["latency_ms_p50"]).median()
        if pd.isna(lb) or pd.isna(lc):
            return "no latency recorded", None
        fps = set(b.get("env_fingerprint", pd.Series([None]))) | set(c.get("env_fingerprint", pd.Series([None])))
        if len(fps) != 1 or None in fps:
            return "not compared: environments differ (--speed-normalised compares fractions of peak)", None
        ratio = float(lc / lb)
        text = f"latency x{ratio:.2f}"
    if _busy(b) or _busy(c):
        return text + " (measured on a busy machine: load above its cores; not judged)", None
    if ratio > 1 + tol:
        return text, f"speed x{ratio:.2f} (tolerance x{1 + tol:.2f})"
    return text, None


def regress(
    baseline: Any,
    current: Any,
    *,
    miou_tol: float = 1.0,
    speed_tol: float = 0.2,
    alpha: float = 0.05,
    speed_normalised: bool = False,
    ignore: tuple[str, ...] = (),
) -> tuple[bool, str, list[dict[str, Any]]]:
    """(passed, Markdown table, one record per configuration of the baseline).

    Per configuration (the run identity without the seed), the seeds of the baseline and of the
    current table are two samples. A configuration regresses when its mean mIoU drops by more than
    `miou_tol` points and the drop is significant: one-sided Welch t-test (the paired t-test where
    both sides ran the same seeds), p Holm-corrected across the configurations compared, below
    `alpha`. A drop beyond the tolerance that is not significant is INCONCLUSIVE (listed with the
    seeds that would resolve it at the measured spread; it does not fail). With one seed on a side
    no test is possible and the plain threshold decides, marked as such."""
    _check_arguments(baseline, current, miou_tol, speed_tol, alpha)
    baseline, current = _with_ignored(baseline, current, ignore)
    records, comps = _compare(baseline, current, ignore, speed_tol, speed_normalised)
    adjusted = stats.holm([cp.p if cp is not None else math.nan for cp in comps])
    for rec, comp, p_holm in zip(records, comps, adjusted, strict=True):
        if comp is not None:
            _judge(rec, comp, p_holm, miou_tol, alpha)
    passed = all(r["verdict"] != "FAIL" for r in records)
    return passed, _markdown(records, alpha), records


def _check_arguments(baseline: Any, current: Any, miou_tol: float, speed_tol: float, alpha: float) -> None:
    if miou_tol < 0 or speed_tol < 0:
        raise UserError(f"--miou-tol ({miou_tol}) and --speed-tol ({speed_tol}) must be non-negative")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha={alpha}: give a significance level between 0 and 1, e.g. 0.05")
    for t in (baseline, current):
        if "_identity" not in t.columns:
            raise UserError("regress takes tables from load_table (rows with their identity)")


def _with_ignored(baseline: Any, current: Any, ignore: tuple[str, ...]) -> tuple[Any, Any]:
    """The two tables with each row's configuration id recomputed without the ignored keys, and
    refused when they then share no configuration."""
    if ignore:
        keys = config_keys(_RC)
        for k in ignore:
            if not is_config_key(k, keys):
                raise UserError(f"--ignore {k}: not a config field{did_you_mean(k, keys)}")
        baseline, current = baseline.copy(), current.copy()
        for t in (baseline, current):
            t["_config"] = [config_id(r, resolved=True, ignore=ignore) for r in t["_resolved"]]
    if not set(baseline["_config"]) & set(current["_config"]):
        raise UserError(
            "baseline and current have no configuration in common, so nothing can be compared; "
            + _difference(baseline, current)
        )
    return baseline, current


def _compare(
    baseline: Any, current: Any, ignore: tuple[str, ...], speed_tol: float, speed_normalised: bool
) -> tuple[list[dict[str, Any]], list[Any]]:
    """A record per configuration of the baseline, with its seeds compared to the current table's
    (None where the current table lacks it: a FAIL) and its speed judged."""
    cfg_cols = [c for c in baseline.columns if is_experiment_key(c) and c != "train.seed" and c not in ignore]
    varying = [c for c in cfg_cols if baseline[c].astype(str).nunique() > 1]
    records: list[dict[str, Any]] = []
    comps: list[Any] = []
    for cid, b in baseline.groupby("_config", sort=False):
        c = current[current["_config"] == cid]
        rec: dict[str, Any] = {"configuration": row_label(b.iloc[0], varying, empty="all"), "config_id": cid}
        if c.empty:
            rec.update(verdict="FAIL", why="missing in current", n_base=len(b), n_cur=0)
            records.append(rec)
            comps.append(None)
            continue
        comp = stats.compare(seed_miou(b), seed_miou(c))
        comps.append(comp)
        rec.update(
            n_base=comp.n_base, n_cur=comp.n_cur, test=comp.test, mean_base=comp.mean_base, mean_cur=comp.mean_cur,
            diff=comp.diff, ci_low=comp.ci_low, ci_high=comp.ci_high, p=comp.p, sd=comp.sd,
        )  # fmt: skip
        rec["speed"], rec["speed_fail"] = _speed(b, c, speed_tol, speed_normalised)
        records.append(rec)
    return records, comps


def _judge(rec: dict[str, Any], comp: Any, p_holm: float, miou_tol: float, alpha: float) -> None:
    """The verdict of one compared configuration, with why, written into its record."""
    rec["p_holm"] = p_holm
    drop = -comp.diff
    fails: list[str] = []
    if comp.test == "threshold":
        if drop > miou_tol:
            fails.append(f"mIoU {comp.diff:+.2f} points, beyond {miou_tol} (threshold: one seed, no test)")
        verdict = "FAIL" if fails else "ok"
        rec["why"] = "threshold verdict: one seed on a side, no test possible"
    elif drop > miou_tol and p_holm < alpha:
        fails.append(f"mIoU {comp.diff:+.2f} points, significant (p {p_holm:.3g} after Holm < {alpha})")
        verdict = "FAIL"
    elif drop > miou_tol:
        need = stats.seeds_needed(drop, comp.sd, alpha=alpha, paired=comp.test == "paired")
        rec["seeds_needed"] = need
        verdict = "INCONCLUSIVE"
        rec["why"] = (
            f"mIoU {comp.diff:+.2f} points, beyond {miou_tol} but not significant (p {p_holm:.3g} after Holm); "
            + (f"{need} seeds per side would resolve a drop this size at sd {comp.sd:.2f}" if need
               else "more than 1000 seeds would be needed at this spread")
        )  # fmt: skip
    else:
        verdict = "ok"
    if rec.get("speed_fail"):
        fails.append(rec["speed_fail"])
        verdict = "FAIL"
    if fails:
        rec["why"] = "; ".join(fails)
    rec["verdict"] = verdict


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _markdown(records: list[dict[str, Any]], alpha: float) -> str:
    lines = ["| configuration | n base/cur | test | baseline mIoU | current mIoU | Δ points [95% CI] | p (Holm) | "
             "speed | verdict |", "|---|---|---|---:|---:|---|---:|---|---|"]  # fmt: skip
    for r in records:
        ci = (
            f" [{_fmt(r.get('ci_low'), '+.2f')}, {_fmt(r.get('ci_high'), '+.2f')}]"
            if r.get("test") != "threshold"
            else ""
        )
        verdict = r["verdict"] + (f": {r['why']}" if r.get("why") else "")
        lines.append(
            f"| {r['configuration']} | {r.get('n_base', 0)}/{r.get('n_cur', 0)} | {r.get('test', '-')} | "
            f"{_fmt(r.get('mean_base'), '.2f')} | {_fmt(r.get('mean_cur'), '.2f')} | "
            f"{_fmt(r.get('diff'), '+.2f')}{ci} | "
            f"{_fmt(r.get('p_holm'), '.3g')} | {r.get('speed', '-')} | {verdict} |"
        )
    return "\n".join(lines)


def _difference(baseline: Any, current: Any) -> str:
    """Which keys of the resolved configs take other values in one table than in the other."""
    import json

    def values(t: Any) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for r in t["_resolved"]:
            for k, v in flatten(json.loads(r.model_dump_json())).items():
                out.setdefault(k, set()).add(json.dumps(v))
        return out

    vb, vc = values(baseline), values(current)
    diffs = [
        f"{k}: baseline {sorted(vb[k])[:4]} vs current {sorted(vc.get(k, set()))[:4]}"
        for k in vb
        if k != "train.seed" and k not in NOT_IDENTITY and vb[k] != vc.get(k, set())
    ]
    return (
        "their resolved configs differ in "
        + ("; ".join(diffs[:8]) if diffs else "the seed only")
        + ". Compare results of the same sweep, or leave keys out of the match with --ignore KEY"
    )
