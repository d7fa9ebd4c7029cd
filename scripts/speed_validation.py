"""How often `aspp-bench speed` decides wrongly on a busy machine, and how many rounds it uses.

Runs the real command (in subprocesses, --json) alternately on an A/A pair (the same configuration
on both sides) and on a pair with a real slowdown (aspp_unet with 8 atrous branches against 4:
+10.3% MACs, about x1.11 in CPU time), optionally beside N CPU burners of its own; records every
round; then

- counts the real runs' verdicts and rounds;
- simulates the sequential design on rounds drawn with replacement from the recorded ones (each
  round is a fresh pair of processes, so rounds are independent draws by construction): the
  false 'different' rate of A/A and the 'slower' rate of the slowdown over --sims runs each;
- says what a one-shot ratio (asv continuous: slower beyond factor 1.1, its default, or 1.5, the
  0.7-1.5 noise band scikit-image uses) and a plain median comparison (regress's fixed 20%
  tolerance, and 5%) would have said on the same rounds, by the wall clock they use and by CPU time.

    python scripts/speed_validation.py --runs 10 --out docs/speed_validation.json
    python scripts/speed_validation.py --analyse docs/speed_validation.json   # the tables again

The numbers in docs/measurement.md#speed come from this script; its output says on what machine,
under what load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.verdicts.sequential import decide_arrays  # noqa: E402
from bench.verdicts.speed import SLOWER, SpeedDesign, median_ratio, single_ratio  # noqa: E402

PAIRS = {
    "A/A": ["aspp_unet", "aspp_unet"],
    "slowdown": ["aspp_unet", "aspp_unet", "--set-b", "model.rates=[3,6,9,12,15,18,21,24]"],
}
INPUT = "3x48x64"


def measure(runs: int, burners: int, extra: list[str]) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
    out = []
    try:
        for i in range(runs):
            for kind, argv in PAIRS.items():
                t0 = time.time()
                res = subprocess.run(["aspp-bench", "speed", *argv, "--input", INPUT, "--json", *extra],
                                     capture_output=True, text=True)  # fmt: skip
                if res.returncode not in (0, 1):
                    raise SystemExit(f"aspp-bench speed failed ({res.returncode}):\n{res.stderr[-2000:]}")
                rec = json.loads(res.stdout)
                rec["kind"] = kind
                out.append(rec)
                v = rec["verdict"]
                print(f"run {i + 1} {kind}: {v['state']} x{v['ratio']:.3f} after {v['rounds']} rounds, "
                      f"load {rec['load']['median']:.1f}, {time.time() - t0:.0f} s", flush=True)  # fmt: skip
    finally:
        for p in procs:
            p.kill()
    return out


def simulate(pool: np.ndarray, design: SpeedDesign, sims: int, seed: int = 0) -> dict:
    """The sequential design on `sims` runs of rounds drawn with replacement from `pool` (log ratios)."""
    rng = np.random.default_rng(seed)
    draws = rng.choice(pool, size=(sims, design.max_rounds), replace=True)
    dec = decide_arrays(design.design(), np.zeros_like(draws), draws, paired=True)
    diff = dec.diff
    state = np.where(dec.state == "different", np.where(diff > 0, "slower", "faster"), dec.state)
    rounds = np.where(np.isnan(dec.n), design.max_rounds, dec.n)
    return {
        "sims": sims,
        "slower": float(np.mean(state == "slower")),
        "faster": float(np.mean(state == "faster")),
        "equivalent": float(np.mean(state == "equivalent")),
        "undecided": float(np.mean(state == "undecided")),
        "fails_gate": float(np.mean((state == "slower") & (np.exp(diff) > 1 + design.tolerance))),
        "mean_rounds": float(rounds.mean()),
    }


def one_shot(rounds: list[dict], clock: str) -> dict:
    """What a single measurement per side (one round) says by asv's and a median rule's verdicts."""
    a = [r[f"a_{clock}_ms"] for r in rounds]
    b = [r[f"b_{clock}_ms"] for r in rounds]
    rules = {
        "asv factor 1.1": [single_ratio(x, y, 1.1) for x, y in zip(a, b, strict=True)],
        "asv factor 1.5 (noise band 0.7-1.5)": [single_ratio(x, y, 1.5) for x, y in zip(a, b, strict=True)],
        "median, tolerance 20% (regress)": [median_ratio([x], [y], 0.2) for x, y in zip(a, b, strict=True)],
        "median, tolerance 5%": [median_ratio([x], [y], 0.05) for x, y in zip(a, b, strict=True)],
    }
    return {k: {"slower": float(np.mean([s == SLOWER for s in v])), "faster": float(np.mean([s == "faster" for s in v]))}
            for k, v in rules.items()}  # fmt: skip


def analyse(records: list[dict], sims: int) -> dict:
    d = records[0]["design"]
    design = SpeedDesign(tolerance=d["tolerance"], max_rounds=d["max_rounds"], first=d["first"], every=d["every"],
                         alpha=d["alpha"], spending=d["spending"])  # fmt: skip
    out: dict = {"design": d, "machine": records[0]["sides"]["A"]["env"]["device_name"],
                 "cpu_count": records[0]["cpu_count"]}  # fmt: skip
    for kind in PAIRS:
        recs = [r for r in records if r["kind"] == kind]
        rounds = [x for r in recs for x in r["rounds"]]
        logs = np.log([x["ratio"] for x in rounds])
        loads = [x["load_before"] for x in rounds if x["load_before"] is not None]
        out[kind] = {
            "real_runs": len(recs),
            "real_verdicts": {s: sum(r["verdict"]["state"] == s for r in recs)
                              for s in ("faster", "slower", "equivalent", "undecided")},  # fmt: skip
            "real_fails_gate": sum(bool(r["verdict"]["fails"]) for r in recs),
            "real_mean_rounds": float(np.mean([r["verdict"]["rounds"] for r in recs])),
            "rounds_recorded": len(rounds),
            "ratio_cpu_gmean": float(np.exp(logs.mean())),
            "round_sd_log": float(logs.std(ddof=1)),
            "ratio_wall_gmean": float(np.exp(np.mean(np.log([x["b_wall_ms"] / x["a_wall_ms"] for x in rounds])))),
            "round_sd_log_wall": float(np.std(np.log([x["b_wall_ms"] / x["a_wall_ms"] for x in rounds]), ddof=1)),
            "load": {"min": float(min(loads)), "median": float(np.median(loads)), "max": float(max(loads))},
            "simulated": simulate(logs, design, sims),
            "one_shot_wall": one_shot(rounds, "wall"),
            "one_shot_cpu": one_shot(rounds, "cpu"),
        }
    return out


def markdown(a: dict) -> str:
    lines = [f"Machine: {a['machine']}, {a['cpu_count']} CPUs. Design: tolerance +-{100 * a['design']['tolerance']:g}%, "
             f"alpha {a['design']['alpha']}, looks from round {a['design']['first']} every {a['design']['every']} to "
             f"{a['design']['max_rounds']}.", "",
             "| pair | real runs: verdicts | gate fails | mean rounds | rounds recorded | load (median, range) | "
             "B/A CPU (round sd) | B/A wall (round sd) |", "|---|---|---:|---:|---:|---|---|---|"]  # fmt: skip
    for kind in PAIRS:
        k = a[kind]
        v = ", ".join(f"{s} {n}" for s, n in k["real_verdicts"].items() if n)
        lines.append(f"| {kind} | {v} (of {k['real_runs']}) | {k['real_fails_gate']} | {k['real_mean_rounds']:.1f} | "
                     f"{k['rounds_recorded']} | {k['load']['median']:.1f} ({k['load']['min']:.1f}-{k['load']['max']:.1f}) | "
                     f"x{k['ratio_cpu_gmean']:.3f} ({k['round_sd_log']:.3f}) | x{k['ratio_wall_gmean']:.3f} "
                     f"({k['round_sd_log_wall']:.3f}) |")  # fmt: skip
    lines += ["", "| pair | simulated runs | slower | faster | equivalent | undecided | gate fails | mean rounds |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for kind in PAIRS:
        s = a[kind]["simulated"]
        lines.append(f"| {kind} | {s['sims']} | {s['slower']:.3f} | {s['faster']:.3f} | {s['equivalent']:.3f} | "
                     f"{s['undecided']:.3f} | {s['fails_gate']:.3f} | {s['mean_rounds']:.1f} |")  # fmt: skip
    lines += ["", "| rule, on one round's measurement per side | A/A: called slower / faster | slowdown: called slower |",
              "|---|---|---|"]  # fmt: skip
    for clock in ("wall", "cpu"):
        for rule, aa in a["A/A"][f"one_shot_{clock}"].items():
            sl = a["slowdown"][f"one_shot_{clock}"][rule]
            lines.append(f"| {rule}, {clock} clock | {aa['slower']:.2f} / {aa['faster']:.2f} | {sl['slower']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10, help="real runs of each pair (10)")
    p.add_argument("--burners", type=int, default=0, help="CPU burners this script starts beside the runs (0)")
    p.add_argument("--sims", type=int, default=4000, help="simulated runs per pair (4000)")
    p.add_argument("--out", default="speed_validation.json")
    p.add_argument("--analyse", help="a JSON this script wrote: print its tables again, measure nothing")
    p.add_argument("extra", nargs="*", help="more aspp-bench speed options (after --)")
    args = p.parse_args()
    if args.analyse:
        data = json.loads(Path(args.analyse).read_text())
        print(markdown(analyse(data["records"], args.sims)))
        return 0
    start = time.time()
    records = measure(args.runs, args.burners, args.extra)
    a = analyse(records, args.sims)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - start),
            "burners": args.burners, "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None}
    Path(args.out).write_text(json.dumps({"meta": meta, "analysis": a, "records": records}, default=str) + "\n")
    print(markdown(a))
    print(f"\n{meta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
