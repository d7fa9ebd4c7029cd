"""Real submitit LocalExecutor runs: concurrent cells, corrupt results, resubmission."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from bench.launch import cell_states
from bench.sweep import expand, load_sweep

EIGHT = """
name: local8
base:
  model: {arch: aspp_unet, width: 2}
  data: {size: [24, 24], count: 4, batch_size: 2}
  train: {epochs: 1}
  profile: {latency: false}
grid:
  model.rates: [[1], [2], [3], [4]]
  loss.name: [ce, dice]
launch: {executor: local, cpus_per_task: 1}
"""


@pytest.mark.slow
def test_local_executor_eight_concurrent_cells(cli, tmp_path) -> None:
    spec = tmp_path / "local8.yaml"
    spec.write_text(textwrap.dedent(EIGHT))
    results = tmp_path / "results"
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--wait")
    assert code == 0, err + out
    assert "submitted 8 of 8" in out
    cells = expand(load_sweep(spec))
    for c in cells:
        r = json.loads((results / c.run_id / "result.json").read_text())
        assert r["status"] == "done" and r["config"]["loss"]["name"] == c.config.loss.name
    # resubmitting a finished sweep submits nothing
    code, out, _ = cli("sweep", str(spec), "--results", str(results))
    assert code == 0 and "submitted 0 of 8" in out and "8 done" in out
    # a truncated result is reported as corrupt, not a crash, and --retry-failed redoes it
    victim = results / cells[3].run_id / "result.json"
    victim.write_text(victim.read_text()[:50])
    states = {s.cell.run_id: s.state for s in cell_states(cells, results)}
    assert states[cells[3].run_id] == "corrupt" and list(states.values()).count("done") == 7
    code, out, _ = cli("status", str(spec), "--results", str(results))
    assert code == 0 and "corrupt" in out and "7 done" in out
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--retry-failed", "--wait")
    assert code == 0, err + out
    assert "submitted 1 of 8" in out
    assert json.loads(victim.read_text())["status"] == "done"
    assert list(victim.parent.glob("result.json.*.old"))  # the corrupt file was kept aside, not lost


def test_inline_executor_runs_in_process(cli, tmp_path) -> None:
    spec = tmp_path / "inline.yaml"
    spec.write_text(textwrap.dedent(EIGHT).replace("[[1], [2], [3], [4]]", "[[1]]").replace("[ce, dice]", "[ce]"))
    results = tmp_path / "results"
    t0 = time.time()
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--executor", "inline")
    assert code == 0, err
    (cell,) = expand(load_sweep(spec))
    assert (results / cell.run_id / "result.json").is_file() and time.time() - t0 < 120
    assert json.loads((results / cell.run_id / "job.json").read_text())["executor"] == "inline"


def test_killed_local_job_shows_failed_then_retry_resumes(cli, tmp_path) -> None:
    import os
    import signal

    spec = tmp_path / "kill.yaml"
    spec.write_text(
        textwrap.dedent(EIGHT)
        .replace("[[1], [2], [3], [4]]", "[[1]]")
        .replace("[ce, dice]", "[ce]")
        .replace("train: {epochs: 1}", "train: {epochs: 30, eval_every: 100}")
    )
    results = tmp_path / "results"
    assert cli("sweep", str(spec), "--results", str(results))[0] == 0
    (cell,) = expand(load_sweep(spec))
    job = json.loads((results / cell.run_id / "job.json").read_text())
    deadline = time.time() + 120
    while time.time() < deadline and not (results / cell.run_id / "checkpoint.pt").is_file():
        time.sleep(0.2)
    assert (results / cell.run_id / "checkpoint.pt").is_file()
    assert cell_states([cell], results)[0].state == "running"
    # kill the job outright: submitit's controller and the task it runs (as a node failure would)
    controller = int(job["job_id"])
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    for pid in [controller, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline and cell_states([cell], results)[0].state == "running":
        time.sleep(0.2)
    assert cell_states([cell], results)[0].state == "failed"
    code, out, _ = cli("sweep", str(spec), "--results", str(results))
    assert "submitted 0 of 1" in out and "1 failed" in out  # failed cells wait for --retry-failed
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--retry-failed", "--wait")
    assert code == 0, err + out
    assert "resumed from" in (results / cell.run_id / "train.log").read_text()
    assert json.loads((results / cell.run_id / "result.json").read_text())["train"]["epochs"] == 30
