"""bench/commands/sweeps.py `_wait`: what `sweep --wait` prints while it watches, off a terminal."""

from __future__ import annotations

from types import SimpleNamespace

import bench.commands.sweeps
from bench.commands.sweeps import _wait
from tests.fixtures import deciding_sweep, seeds_by_configuration


def _cell(run_id: str, rates: str) -> SimpleNamespace:
    return SimpleNamespace(run_id=run_id, varying={"model.rates": rates})


def test_off_a_terminal_each_ending_cell_gets_a_line_and_the_watch_a_summary(monkeypatch, capsys) -> None:
    """A CI log or a piped tmux pane saw nothing between 'submitted' and the end (10 minutes for
    the smoke grid): each cell that ends while watched now prints a line (a failure with its
    reason), and a summary comes at a steady interval; a cell ended before the watch is not
    announced again."""
    a, b, c = _cell("aaaa1111", "6,12"), _cell("bbbb2222", "3,6"), _cell("cccc3333", "12,24")
    st = lambda cell, state, detail="": SimpleNamespace(cell=cell, state=state, detail=detail)  # noqa: E731
    polls = iter(
        [
            [st(a, "done"), st(b, "running"), st(c, "queued")],
            [st(a, "done"), st(b, "done"), st(c, "running")],
            [st(a, "done"), st(b, "done"), st(c, "failed", "exit code 1")],
        ]
    )
    monkeypatch.setattr(bench.commands.sweeps, "cell_states", lambda cells, results: next(polls))
    rc = _wait([a, b, c], results=None, poll=0.001, summary_every=0.0)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert rc == 1
    assert not any("aaaa1111" in line and "done" in line for line in lines[:1]), out  # ended before the watch
    assert any(line.strip().startswith("done: bbbb2222") and "2/3" in line for line in lines), out
    assert any(line.strip().startswith("failed: cccc3333") and "exit code 1" in line for line in lines), out
    summaries = [line for line in lines if "finished" in line and "running" in line]
    assert summaries and "1 done" in summaries[0] and "1 running" in summaries[0] and "1 queued" in summaries[0], out


def test_until_decided_adds_seeds_only_where_a_comparison_is_open(cli, tmp_path) -> None:
    """Three configurations, two seeds as the first wave, max 3. profile.batch does not touch
    training, so that configuration's runs equal the base's to the bit: equivalent at the first
    look, and it gets no third seed. The lr-0.011 one is still open there (alpha 0.001 leaves a
    2-seed look no room to call it different), so it gets a third seed, and the base with it."""
    spec = deciding_sweep(tmp_path, launch="executor: inline", alpha=0.001)
    results = tmp_path / "results"
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--until-decided")
    assert code == 0, out + err
    seeds = seeds_by_configuration(results)
    assert seeds["batch2"] == [0, 1], seeds  # decided at the first look: no more seeds
    first_look = out.split("look 2:")[1].split("look 3:")[0]  # look 1 is before any run finished
    assert "open:" in next(line for line in first_look.splitlines() if "optim.lr=0.011" in line), out
    assert seeds["lr"] == [0, 1, 2] and seeds["base"] == [0, 1, 2], seeds
    # the report of such a sweep says each comparison's verdict, seeds, interval and P(improvement)
    rep = tmp_path / "rep"
    code, _, err = cli("report", str(results), "--out", str(rep), "--sweep", str(spec), "--format", "md,tex")
    assert code == 0, err
    md = (rep / "README.md").read_text()
    table = md.split("## Decisions")[1].split("\n## ")[0]
    batch2 = [c.strip() for c in next(ln for ln in table.splitlines() if "batch=2," in ln).strip("|").split("|")]
    lr = [c.strip() for c in next(ln for ln in table.splitlines() if "lr=0.011" in ln).strip("|").split("|")]
    # a 1-epoch curve cannot have flattened: the verdict holds at this budget, and says so
    assert batch2[2:6] == ["equivalent within ±0.001 at this budget", "2", "+0.00 [+0.00, +0.00] (TOST)",
                           "0.50 (0.50–0.50)"], batch2  # fmt: skip
    assert batch2[6].startswith("undetermined") or batch2[6].startswith("rising"), batch2
    assert lr[2:4] == ["undecided at max_seeds", "3"], lr
    assert "Lan-DeMets spending hsd:-2, alpha 0.001, Bonferroni over the 2 comparisons" in table
    assert (rep / "decisions.tex").is_file()
    assert "equivalent within ±0.001" in out and "every comparison decided" in out, out
    assert "; 8 finished runs in" in out, out  # seeds 0-1 of the three configurations, seed 2 of two
    # status says where each comparison stands, and a second launcher submits nothing (no seed twice)
    code, status, _ = cli("status", str(spec), "--results", str(results))
    assert code == 0 and "comparisons (decide: delta 0.001" in status and "equivalent" in status, status
    code, again, _ = cli("sweep", str(spec), "--results", str(results), "--until-decided")
    assert code == 0 and "submitted" not in again.split("every comparison")[0].split("look 1")[1], again
