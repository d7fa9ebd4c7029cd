"""The fault-injection suite (scripts/fault_injection.py) as CI runs it: every local-executor
scenario's fault lands and its recovery runs, and it ends with 0 results lost, 0 duplicated,
and weights bit-equal to an uninterrupted run; with the Slurm cluster of scripts/slurm-up.sh,
the Slurm scenarios too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, executors: str) -> list[dict]:
    out = tmp_path / "rows.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fault_injection.py"), "--executors", executors,
         "--epochs", "120", "--work", str(tmp_path / "work"), "--json", str(out), "--deadline-s", "2400"],
        capture_output=True, text=True, timeout=2700,
    )  # fmt: skip
    assert out.is_file(), r.stdout + r.stderr
    rows = json.loads(out.read_text())
    bad = [row for row in rows if row["lost"] or row["duplicated"] or row["bit_equal"] != "yes" or not row["exercised"]]
    assert not bad and r.returncode == 0, "\n".join(f"{b['scenario']}: {b['outcome']}" for b in bad) + r.stdout[-3000:]
    return rows


@pytest.mark.slow
def test_local_faults_lose_duplicate_and_alter_nothing(tmp_path) -> None:
    rows = _run(tmp_path, "local")
    assert {r["scenario"] for r in rows} == {
        "sigkill", "truncated-result", "corrupt-checkpoint", "two-launchers", "killed-launcher", "changed-config"
    }  # fmt: skip


@pytest.mark.slurm
def test_slurm_faults_lose_duplicate_and_alter_nothing(tmp_path) -> None:
    rows = _run(tmp_path, "slurm")
    assert {r["scenario"] for r in rows} >= {"preemption", "time-limit", "sigkill", "squeue-failing"}
