"""How the sequential design of `sweep --until-decided` behaves, by simulation of the very code
that decides (bench.verdicts.sequential), against the two procedures it replaces:
- naive: look after every wave and stop as 'different' the first time the plain t-test's p < alpha;
- fixed: one look at n_fix seeds, the n that gives the plain t-test the sequential design's power
  at delta (statsmodels' power solver), with the same two decisions at alpha.

Per scenario (true difference 0 or delta; per-configuration seed sd; paired or Welch):
  P(different) under no difference (the false-decision rate, target <= alpha), the naive rate on
  the same draws, power at delta, expected seeds per side at delta against n_fix, and
  P(equivalent) under no difference for both designs.

    python scripts/simulate_sequential.py                  # 20,000 comparisons a scenario
    python scripts/simulate_sequential.py --sims 100000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from statsmodels.stats.power import TTestIndPower, TTestPower

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.sweep import DecideConfig  # noqa: E402
from bench.verdicts.sequential import (  # noqa: E402
    DIFFERENT,
    EQUIVALENT,
    Design,
    decide_arrays,
    draws,
    fixed_arrays,
    naive_arrays,
)

# (name, design keywords, per-configuration seed sd, paired); delta 2 points throughout
SCENARIOS = [
    ("paired, sd 2 per configuration, max 30", {"max_seeds": 30, "first": 4, "wave": 2}, 2.0, True),
    ("paired, sd 2 per configuration, max 36", {"max_seeds": 36, "first": 4, "wave": 2}, 2.0, True),
    ("Welch, sd 2 per configuration, max 24", {"max_seeds": 24, "first": 4, "wave": 2}, 2.0, False),
    ("Welch, sd 2 per configuration, max 40", {"max_seeds": 40, "first": 3, "wave": 2}, 2.0, False),
    ("paired, sd 1 per configuration, max 10", {"max_seeds": 10, "first": 3, "wave": 1}, 1.0, True),
]


def scenario(design: Design, sd: float, paired: bool, sims: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    delta, n = design.delta, design.max_seeds
    b0, c0 = draws(rng, sims, n, sd, 0.0)
    b1, c1 = draws(rng, sims, n, sd, delta)
    null, alt = decide_arrays(design, b0, c0, paired=paired), decide_arrays(design, b1, c1, paired=paired)
    naive = naive_arrays(design, b0, c0, paired=paired, alpha=design.alpha)
    power = float(np.mean(alt.state == DIFFERENT))
    effect = delta / (sd * math.sqrt(2)) if paired else delta / sd
    solver = TTestPower() if paired else TTestIndPower()
    n_fix = int(math.ceil(float(solver.solve_power(effect_size=effect, alpha=design.alpha, power=min(power, 0.999)))))
    fb0, fc0 = draws(rng, sims, n_fix, sd, 0.0)
    fb1, fc1 = draws(rng, sims, n_fix, sd, delta)
    fixed_null = fixed_arrays(fb0, fc0, paired=paired, delta=delta, alpha=design.alpha)
    fixed_alt = fixed_arrays(fb1, fc1, paired=paired, delta=delta, alpha=design.alpha)
    asn = float(np.mean(alt.n))
    return {
        "false_different": float(np.mean(null.state == DIFFERENT)),
        "naive_false_different": float(np.mean(naive)),
        "mc_error": math.sqrt(design.alpha * (1 - design.alpha) / sims),
        "power": power,
        "fixed_power": float(np.mean(fixed_alt == DIFFERENT)),
        "expected_seeds": asn,
        "expected_seeds_null": float(np.mean(null.n)),
        "n_fix": n_fix,
        "saving": 1 - asn / n_fix,
        "equivalent_null": float(np.mean(null.state == EQUIVALENT)),
        "fixed_equivalent_null": float(np.mean(fixed_null == EQUIVALENT)),
        "false_equivalent_at_delta": float(np.mean(alt.state == EQUIVALENT)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sims", type=int, default=20_000, help="simulated comparisons per scenario and truth")
    defaults = {k: f.default for k, f in DecideConfig.model_fields.items()}  # a decide section's own defaults
    p.add_argument("--spending", default=defaults["spending"], help="obrien-fleming, pocock or hsd:GAMMA")
    p.add_argument("--json", help="write the rows as JSON here")
    a = p.parse_args()
    rows = []
    print(f"{a.sims} comparisons a scenario and truth; delta 2 points; alpha 0.05; spending {a.spending}\n")
    print(
        "| scenario | looks | P(different) at 0 (naive) | power at delta (fixed) | expected seeds at delta "
        "/ n_fix (saving) | P(equivalent) at 0: sequential / fixed | P(equivalent) at delta |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, (name, kw, sd, paired) in enumerate(SCENARIOS):
        design = Design(delta=2.0, alpha=defaults["alpha"], spending=a.spending, **kw)
        t0 = time.time()
        r = scenario(design, sd, paired, a.sims, seed=1000 + i)
        r.update(scenario=name, looks=list(design.looks()), spending=a.spending, seconds=round(time.time() - t0, 1))
        rows.append(r)
        looks = ",".join(map(str, design.looks()))
        print(f"| {name} | {looks} | {r['false_different']:.4f} ± {r['mc_error']:.4f} "
              f"({r['naive_false_different']:.4f}) "
              f"| {r['power']:.3f} ({r['fixed_power']:.3f}) | {r['expected_seeds']:.2f} / {r['n_fix']} "
              f"({100 * r['saving']:.0f}%) | {r['equivalent_null']:.3f} / {r['fixed_equivalent_null']:.3f} "
              f"| {r['false_equivalent_at_delta']:.4f} |", flush=True)  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
