"""Accuracy and speed regression gate of CURRENT against a committed BASELINE, by configuration
and over seeds, with verdicts that hold on another machine (see `regress`).

Rows are grouped by configuration: the identity of the resolved config each row records, computed
afresh from its config columns (so tables collected under an earlier identity scheme, the
committed baselines among them, match by what they ran, not by folder names), without the seed.
Speed is compared only where the environment fingerprints are equal, or, with
`speed_normalised`, as fractions of each machine's measured compute limit (bench.profile.limits); never silently.
"""

from __future__ import annotations

import json
import math
from typing import Any

from bench.configure.config import RunConfig as _RC
from bench.configure.config import config_keys, flatten, is_config_key, is_experiment_key, load_run_config
from bench.configure.identity import NOT_IDENTITY, config_id
from bench.configure.naming import row_label
from bench.errors import UserError, did_you_mean
from bench.verdicts import noise, stats

__all__ = ["regress", "seed_miou"]


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


def _loads(g: Any) -> str:
    if "env.load_avg" not in g:
        return "?"
    load = g["env.load_avg"].astype(float)
    return f"{load.min():.1f}" if load.min() == load.max() else f"{load.min():.1f}-{load.max():.1f}"


def speed_command(b: Any, c: Any) -> str:
    """The `aspp-bench speed` command that decides this configuration's speed between the two
    code versions on one machine, interleaved: the configuration from the baseline's resolved
    config, the revisions from what each side's runs recorded (env.code)."""
    import shlex

    cfg = b["_resolved"].iloc[0]
    arch = cfg.model.arch
    defaults = load_run_config(None, [f"model.arch={arch}"]).model.model_dump()
    sets = [f"model.{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in cfg.model.model_dump().items()
            if k != "arch" and v is not None and v != defaults.get(k)]  # fmt: skip
    shape = list(cfg.profile.input) if cfg.profile.input else [3, *cfg.data.size]
    revs = []
    for g, unknown in ((b, "BASELINE_COMMIT"), (c, "worktree")):
        codes = {str(v).removesuffix("-dirty") for v in g["env.code"]} if "env.code" in g else set()
        revs.append(codes.pop() if len(codes) == 1 and not codes & {"None", "nan", ""} else unknown)
    if revs[0] == revs[1] != "BASELINE_COMMIT":
        revs[1] = "worktree"  # one commit measured both: time it against the code here
    text = f"aspp-bench speed {arch} {arch}"
    if sets:
        text += " --set " + " ".join(shlex.quote(x) for x in sets)
    return text + f" --input {'x'.join(map(str, shape))} --rev {revs[0]} {revs[1]}"


# What a fixed tolerance between two quiet measurements of one environment assumes (the profile
# protocol's timings repeat within a few percent on an idle machine; no test is made of it).
QUIET_NOISE = "assumed: two quiet measurements of one environment differ by less than the tolerance"


def _speed(b: Any, c: Any, tol: float, normalised: bool) -> tuple[str, str | None, str, str | None]:
    """(what the speed column says, a failure or None, the speed verdict, the deciding command or
    None). A latency is judged only between equal environment fingerprints measured on quiet
    machines (load at most the cores), by the fixed tolerance, whose noise assumption the column
    states; anywhere else the speed verdict is INCONCLUSIVE and names the `aspp-bench speed`
    command that decides it on one machine. `normalised` compares the fraction of the machine's
    measured compute limit each run reached instead, which holds between machines of one kind
    (not between a busy and a quiet measurement)."""
    import pandas as pd

    if normalised:
        if "efficiency" not in b or "efficiency" not in c:
            return "no efficiency recorded (profile with latency and FLOPs)", None, "n/a", None
        eb, ec = pd.to_numeric(b["efficiency"]).median(), pd.to_numeric(c["efficiency"]).median()
        if pd.isna(eb) or pd.isna(ec) or ec <= 0:
            return "no efficiency recorded", None, "n/a", None
        ratio = float(eb / ec)  # > 1: the current run reaches a smaller fraction of its machine's limit
        text = f"fraction of the limit {100 * eb:.1f}% -> {100 * ec:.1f}% (x{ratio:.2f} slower, normalised)"
        why = None
    else:
        if "latency_ms_p50" not in b or "latency_ms_p50" not in c:
            return "no latency recorded", None, "n/a", None
        lb, lc = pd.to_numeric(b["latency_ms_p50"]).median(), pd.to_numeric(c["latency_ms_p50"]).median()
        if pd.isna(lb) or pd.isna(lc):
            return "no latency recorded", None, "n/a", None
        ratio = float(lc / lb)
        text = f"latency x{ratio:.2f}"
        fps = set(b.get("env_fingerprint", pd.Series([None]))) | set(c.get("env_fingerprint", pd.Series([None])))
        why = None if len(fps) == 1 and None not in fps else "environments differ"
    if _busy(b) or _busy(c):
        why = "; ".join(filter(None, [why, f"measured on a busy machine (load {_loads(b)} baseline, {_loads(c)} "
                                            "current, above the cores)"]))  # fmt: skip
    if why:
        command = speed_command(b, c)
        return f"INCONCLUSIVE: {text}, {why}; decide it with: {command}", None, "INCONCLUSIVE", command
    if ratio > 1 + tol:
        return f"{text} ({QUIET_NOISE})", f"speed x{ratio:.2f} (tolerance x{1 + tol:.2f})", "FAIL", None
    return f"{text} ({QUIET_NOISE})", None, "ok", None


def regress(
    baseline: Any,
    current: Any,
    *,
    miou_tol: float = 1.0,
    speed_tol: float = 0.2,
    alpha: float = 0.05,
    speed_normalised: bool = False,
    ignore: tuple[str, ...] = (),
    noise_model: str = "auto",
    dropped: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], []),
    require_all: bool = False,
) -> tuple[bool, str, list[dict[str, Any]]]:
    """(passed, Markdown table, one record per configuration of the baseline).

    Per configuration (the run identity without the seed), the seeds of the baseline and of the
    current table are two samples. A configuration regresses when its mean mIoU drops by more than
    `miou_tol` points and the drop is significant: one-sided Welch t-test (the paired t-test where
    both sides ran the same seeds), p Holm-corrected across the configurations compared, below
    `alpha`. A drop beyond the tolerance that is not significant is INCONCLUSIVE (listed with the
    seeds that would resolve it at the measured spread; it does not fail). With one seed on a side
    no test is possible: between two environments (not provably one host and one fingerprint) the
    drop is tested against the environment noise model of the results' dataset (bench.verdicts.noise;
    `noise_model` 'auto', 'none' or a model's name): its one-sided p = P(a change of environment
    alone drops it this far) joins Holm's correction with the t-tests; otherwise the plain
    threshold decides. The verdict says which.

    A configuration on one side only is a row of its own, MISSING ("missing in current" or "missing
    in baseline"), which fails only with `require_all` (a rerun of a subset is ordinary). `dropped`:
    the runs each side's table left out (load_table's), counted in the rows of their configurations,
    with a note where the comparison lost its pairing by them."""
    _check_arguments(baseline, current, miou_tol, speed_tol, alpha)
    data = set(baseline["data.name"].astype(str)) if "data.name" in baseline.columns else set()
    if noise_model not in ("auto", "none"):
        noise.choose(noise_model, data)  # an unknown model name is refused whether or not it is needed
    baseline, current = _with_ignored(baseline, current, ignore)
    records, comps = _compare(baseline, current, ignore, speed_tol, speed_normalised, require_all)
    _count_dropped(records, baseline, current, dropped)
    models = [None if r.get("same_environment") or cp is None or cp.test != "threshold"
              else noise.choose(noise_model, data, r.get("change"))
              for r, cp in zip(records, comps, strict=True)]  # fmt: skip
    raw = [math.nan if cp is None else _noise_p(cp, m) if cp.test == "threshold" else cp.p
           for cp, m in zip(comps, models, strict=True)]  # fmt: skip
    adjusted = stats.holm(raw)
    for rec, comp, p_holm, m in zip(records, comps, adjusted, models, strict=True):
        if comp is not None:
            _judge(rec, comp, p_holm, miou_tol, alpha, m)
    for rec in records:
        if rec.get("dropped_note"):
            rec["why"] = "; ".join(x for x in (rec.get("why"), rec["dropped_note"]) if x)
    passed = all(r["verdict"] != "FAIL" for r in records)
    return passed, _markdown(records, alpha), records


def _count_dropped(records: list[dict[str, Any]], baseline: Any, current: Any,
                   dropped: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:  # fmt: skip
    """Each configuration's runs that a side's table left out, counted in its record, and whether
    the comparison lost its pairing by them (the other side has those seeds)."""
    for side, other, runs in (("base", current, dropped[0]), ("cur", baseline, dropped[1])):
        for rec in records:
            mine = [d for d in runs if d.get("config_id") == rec["config_id"]]
            rec[f"dropped_{side}"] = len(mine)
            if not mine:
                continue
            theirs = {int(s) for s in other.loc[other["_config"] == rec["config_id"], "train.seed"]}
            lost = sorted(int(d["seed"]) for d in mine if d.get("seed") is not None and int(d["seed"]) in theirs)
            name = "baseline" if side == "base" else "current"
            note = (f"{name}: {len(mine)} run(s) left out (" + "; ".join(
                f"seed {d['seed']}: {d['why']}" for d in mine) + ")")  # fmt: skip
            if lost:
                note += f"; the comparison lost its pairing on seed(s) {', '.join(map(str, lost))}"
            rec["dropped_note"] = "; ".join(x for x in (rec.get("dropped_note"), note) if x)


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
    baseline: Any, current: Any, ignore: tuple[str, ...], speed_tol: float, speed_normalised: bool,
    require_all: bool = False,
) -> tuple[list[dict[str, Any]], list[Any]]:
    """A record per configuration of either table, with its seeds compared (None where one side
    lacks it: MISSING, a FAIL only with `require_all`) and its speed judged."""
    cfg_cols = [c for c in baseline.columns if is_experiment_key(c) and c != "train.seed" and c not in ignore]
    varying = [c for c in cfg_cols if baseline[c].astype(str).nunique() > 1]
    records: list[dict[str, Any]] = []
    comps: list[Any] = []
    for cid, b in baseline.groupby("_config", sort=False):
        c = current[current["_config"] == cid]
        rec: dict[str, Any] = {"configuration": row_label(b.iloc[0], varying, empty="all"), "config_id": cid}
        if c.empty:
            rec.update(verdict="FAIL" if require_all else "MISSING", n_base=len(b), n_cur=0,
                       why="missing in current" + (" (--require-all)" if require_all else ""))  # fmt: skip
            records.append(rec)
            comps.append(None)
            continue
        comp = stats.compare(seed_miou(b), seed_miou(c))
        comps.append(comp)
        imp = stats.probability_of_improvement(seed_miou(b), seed_miou(c))
        rec.update(
            n_base=comp.n_base, n_cur=comp.n_cur, test=comp.test, mean_base=comp.mean_base, mean_cur=comp.mean_cur,
            diff=comp.diff, ci_low=comp.ci_low, ci_high=comp.ci_high, p=comp.p, sd=comp.sd,
            p_improvement=imp.p, p_improvement_low=imp.low, p_improvement_high=imp.high,
        )  # fmt: skip
        rec["speed"], rec["speed_fail"], rec["speed_verdict"], rec["speed_command"] = _speed(
            b, c, speed_tol, speed_normalised)
        rec["same_environment"] = noise.same_environment(b, c)
        rec["change"] = None if rec["same_environment"] else noise.change_between(b, c)
        records.append(rec)
    for cid, c in current.groupby("_config", sort=False):
        if cid not in set(baseline["_config"]):
            records.append({"configuration": row_label(c.iloc[0], varying, empty="all"), "config_id": cid,
                            "n_base": 0, "n_cur": len(c), "verdict": "FAIL" if require_all else "MISSING",
                            "why": "missing in baseline" + (" (--require-all)" if require_all else "")})  # fmt: skip
            comps.append(None)
    return records, comps


def _judge(
    rec: dict[str, Any], comp: Any, p_holm: float, miou_tol: float, alpha: float, model: noise.NoiseModel | None
) -> None:
    """The verdict of one compared configuration, with why, written into its record. `model`: the
    environment noise a one-seed comparison is judged against (None: the plain threshold)."""
    rec["p_holm"] = p_holm
    drop = -comp.diff
    fails: list[str] = []
    if comp.test == "threshold" and model is not None:
        verdict = _within_noise(rec, comp, p_holm, miou_tol, alpha, model, fails)
    elif comp.test == "threshold":
        if drop > miou_tol:
            fails.append(f"mIoU {comp.diff:+.2f} points, beyond {miou_tol} (threshold: one seed, no test)")
        verdict = "FAIL" if fails else "ok"
        rec["noise_model"] = None
        rec["why"] = "threshold verdict: one seed on a side, no test possible" + (
            "; one environment (same host and fingerprint), where results repeat to the bit"
            if rec.get("same_environment") else "; no environment noise model for these results")  # fmt: skip
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


def _noise_p(comp: Any, model: noise.NoiseModel | None) -> float:
    """One seed a side: P(a change of environment alone drops the result this far), one-sided
    normal with the model's sd; nan without a model (the plain threshold decides)."""
    from scipy.stats import norm

    if model is None:
        return math.nan
    if model.sd == 0:  # the change never moved a result: any drop is beyond it
        return 0.0 if comp.diff < 0 else 1.0
    return float(norm.sf(-comp.diff / model.sd))


def _within_noise(
    rec: dict[str, Any], comp: Any, p_holm: float, miou_tol: float, alpha: float, model: noise.NoiseModel,
    fails: list[str],
) -> str:  # fmt: skip
    """A one-seed comparison between environments: a drop beyond the tolerance fails only where a
    change of environment alone would give it with probability below alpha (after Holm)."""
    drop = -comp.diff
    rec["noise_model"] = {"name": model.name, "sd": model.sd, "n": model.n, "change": rec.get("change")}
    seen = f" (the two environments differ in: {rec['change']})" if rec.get("change") else ""
    if drop > miou_tol and p_holm < alpha:
        fails.append(f"mIoU {comp.diff:+.2f} points, beyond {miou_tol} and beyond what the {model.describe()} "
                     f"gives{seen} (p {p_holm:.3g} after Holm < {alpha})")  # fmt: skip
        return "FAIL"
    if drop > miou_tol:
        need = stats.seeds_needed(drop, model.sd, alpha=alpha)
        rec["seeds_needed"] = need
        rec["why"] = (
            f"mIoU {comp.diff:+.2f} points, beyond {miou_tol} but inside what the {model.describe()} gives{seen} "
            f"(p {p_holm:.3g} after Holm); "
            + (f"{need} seeds per side would resolve a drop this size" if need else "more than 1000 seeds needed")
        )
        return "INCONCLUSIVE"
    rec["why"] = f"one seed on a side: judged against the {model.describe()}{seen}"
    return "ok"


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _markdown(records: list[dict[str, Any]], alpha: float) -> str:
    lines = ["| configuration | n base/cur | test | baseline mIoU | current mIoU | Δ points [95% CI] | p (Holm) | "
             "P(cur > base) (95% CI) | speed | verdict |", "|---|---|---|---:|---:|---|---:|---|---|---|"]  # fmt: skip
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
            f"{_fmt(r.get('p_holm'), '.3g')} | "
            f"{stats.poi_text(r.get('p_improvement', math.nan), r.get('p_improvement_low', math.nan), r.get('p_improvement_high', math.nan))} | "  # noqa: E501
            f"{r.get('speed', '-')} | {verdict} |"
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
