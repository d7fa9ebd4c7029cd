"""Deciding every comparison at several budgets keeps the overall false-decision rate at or below
alpha: a simulation of `sweep --until-decided` with `decide.budgets`, where no configuration differs
from another at any budget.

    python3 scripts/simulate_budgets.py [--sims 20000]

For 1, 2, 3 and 4 budgets of three configurations compared with each other (3 pairs a budget), the
design of the claim sweep (first wave 3, waves of 2, max 10 seeds, hsd:-2, delta 2, alpha 0.05):
the rate at which any comparison at any budget is called different, (a) with alpha split over
comparisons x budgets (what design_of does: Bonferroni) and (b) split over the comparisons of one
budget only (each budget treated as its own sweep). A seed's draws are correlated across budgets
(rho 0.5). docs/budgets.md records the output.
"""

from __future__ import annotations

import argparse
import time

from bench.verdicts.budgets import simulate_budgets
from bench.verdicts.sequential import Design


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=20_000)
    ap.add_argument("--rho", type=float, default=0.5)
    args = ap.parse_args()
    alpha, pairs = 0.05, 3
    print(f"{args.sims} simulated sweeps per row, 3 equal configurations, rho {args.rho}; alpha {alpha}")
    print("| budgets | comparisons | alpha each | P(any 'different') [95% MC] | mean seeds | per-budget alpha only |")
    print("|--:|--:|--:|--:|--:|--:|")
    for budgets in (1, 2, 3, 4):
        started = time.perf_counter()
        split = Design(delta=2.0, max_seeds=10, first=3, wave=2, alpha=alpha / (pairs * budgets), spending="hsd:-2")
        naive = Design(delta=2.0, max_seeds=10, first=3, wave=2, alpha=alpha / pairs, spending="hsd:-2")
        a = simulate_budgets(split, budgets=budgets, sims=args.sims, rho=args.rho)
        b = simulate_budgets(naive, budgets=budgets, sims=args.sims, rho=args.rho, seed=1)
        print(f"| {budgets} | {a['comparisons']} | {split.alpha:.4f} | {a['rate']:.4f} "
              f"[{a['rate'] - 1.96 * a['se']:.4f}, {a['rate'] + 1.96 * a['se']:.4f}] | {a['seeds']:.2f} | "
              f"{b['rate']:.4f} |  ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
