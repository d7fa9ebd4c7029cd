"""The thread policy (bench.run.threads) and the bf16 probe (bench.run.bf16): threads sized from the CPUs
this process may use and the step's work, never from the load; OpenMP threads that stop spinning
soon; bf16 refused where it runs slower than fp32 (oneDNN capped at AVX2 stands in for such a CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import bf16, threads

TINY = ["model.width=4", "data.count=8", "data.size=[32,32]", "train.epochs=1", "profile.latency=false"]


def _child(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    full.update(env)
    done = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_bench_shortens_openmp_spin_before_torch_loads() -> None:
    out = _child(
        "import os, bench, torch; from bench.run.threads import wait_policy; "
        "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('KMP_BLOCKTIME'), '|', wait_policy())"
    )
    spin, block = threads.SPIN_ROUNDS, threads.BLOCKTIME_MS
    assert out == f"{spin} {block} | GOMP_SPINCOUNT={spin} KMP_BLOCKTIME={block} (set by aspp-bench)"


def test_a_users_wait_policy_wins_and_is_recorded_as_theirs() -> None:
    out = _child("import os, bench; from bench.run.threads import wait_policy; "
                 "print(os.environ.get('GOMP_SPINCOUNT'), '|', wait_policy())", OMP_WAIT_POLICY="ACTIVE")  # fmt: skip
    assert out == "None | OMP_WAIT_POLICY=ACTIVE (set by user)"


def test_torch_loaded_before_bench_is_recorded_as_not_in_effect() -> None:
    out = _child("import torch, bench; from bench.run.threads import wait_policy; print(wait_policy())")
    assert "not in effect" in out


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A machine of `cpus` CPUs with no quota, no Slurm, no user thread count; the load average
    raises, so a policy that read it would fail."""

    def make(cpus: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
        monkeypatch.setattr(threads, "_physical_cores", lambda mask: len(mask))
        monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
        for k in ("SLURM_CPUS_PER_TASK", "ASPP_BENCH_CPUS", "OMP_NUM_THREADS"):
            monkeypatch.delenv(k, raising=False)

        def no_load() -> None:
            raise AssertionError("the thread count must not depend on the load average")

        monkeypatch.setattr(os, "getloadavg", no_load)

    return make


def test_threads_come_from_the_cpus_this_process_may_use(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(16)
    assert threads.usable_cpus() == (16, "16 CPUs in the affinity mask")
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 6)
    assert threads.usable_cpus()[0] == 6
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    assert threads.usable_cpus() == (4, "SLURM_CPUS_PER_TASK=4")
    monkeypatch.setenv("ASPP_BENCH_CPUS", "2")
    assert threads.usable_cpus() == (2, "ASPP_BENCH_CPUS=2")
    monkeypatch.setenv("ASPP_BENCH_CPUS", "junk")  # not a positive count: ignored
    assert threads.usable_cpus()[0] == 4


def test_a_cells_cpu_limit_does_not_outlive_the_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASPP_BENCH_CPUS", raising=False)
    with threads.cpus_allowed(1):
        assert os.environ["ASPP_BENCH_CPUS"] == "1"
    assert "ASPP_BENCH_CPUS" not in os.environ
    monkeypatch.setenv("ASPP_BENCH_CPUS", "3")
    with pytest.raises(RuntimeError), threads.cpus_allowed(1):
        raise RuntimeError("a cell that failed")
    assert os.environ["ASPP_BENCH_CPUS"] == "3"


def test_an_inline_sweep_leaves_no_cpu_limit_in_the_process(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ASPP_BENCH_CPUS", raising=False)
    spec = tmp_path / "s.yaml"
    spec.write_text("name: inl\nbase:\n  model: {arch: aspp_unet, width: 2}\n  data: {size: [24, 24], count: 4, "
                    "batch_size: 2}\n  train: {epochs: 1}\n  profile: {latency: false}\n"
                    "launch: {executor: inline, cpus_per_task: 1}\n")  # fmt: skip
    code, out, err = cli("sweep", str(spec), "--results", str(tmp_path / "r"), "--wait")
    assert code == 0, out + err
    assert "ASPP_BENCH_CPUS" not in os.environ


def test_smt_siblings_count_as_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path
    topo = {0: ("0", "0"), 1: ("0", "0"), 2: ("0", "1"), 3: ("0", "1")}  # 2 cores x 2 hyperthreads

    class FakePath(type(real())):  # type: ignore[misc]
        def read_text(self, *a, **k):  # type: ignore[no-untyped-def]
            parts = self.parts
            if "topology" in parts:
                cpu = int(parts[-3][3:])
                return topo[cpu][0] if parts[-1] == "physical_package_id" else topo[cpu][1]
            return super().read_text(*a, **k)

    monkeypatch.setattr(threads, "Path", FakePath)
    assert threads._physical_cores({0, 1, 2, 3}) == 2
    assert threads._physical_cores({0, 2}) == 2


def test_a_small_step_trains_on_fewer_threads_a_large_one_on_all(machine) -> None:
    machine(8)
    g = threads.MIN_STEP_GFLOP_PER_THREAD
    assert threads.plan_threads(0.1).threads == 1
    assert threads.plan_threads(3 * g).threads == 3
    assert threads.plan_threads(100 * g).threads == 8
    assert threads.plan_threads(None).threads == 8  # work unknown: every usable CPU
    assert "pays for 3" in threads.plan_threads(3 * g).reason


def test_omp_num_threads_is_the_users_choice(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(8)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    plan = threads.plan_threads(1000.0)
    assert plan.threads is None and "OMP_NUM_THREADS=3" in plan.reason


def test_a_run_records_its_threads_and_how_they_wait(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("ASPP_BENCH_CPUS", raising=False)
    torch.set_num_threads(2)
    code, _, err = cli("train", "--out", str(tmp_path / "run"), "--set", *TINY)
    assert code == 0, err
    assert torch.get_num_threads() == 2  # the run's one thread ended with the run
    env = json.loads((tmp_path / "run" / "result.json").read_text())["env"]
    assert env["train_threads"] == 1  # a step of a few MFLOPs: one thread (bench.run.threads)
    assert "pays for 1" in env["thread_plan"] or env["thread_plan"].startswith("1 ")
    assert "omp_wait" in env


# --------------------------------------------------------------------------- bf16


def _aspp(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], env=full, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_bf16_training_is_refused_before_training_where_bf16_convs_are_slow(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _aspp("train", "--out", str(out), "--set", *TINY, "train.amp=bf16", ONEDNN_MAX_CPU_ISA="AVX2")
    assert done.returncode == 2, done.stderr
    assert "train.amp=bf16: bf16 is slower than fp32 on this CPU" in done.stderr
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in done.stderr and "x the time" in done.stderr
    assert "use train.amp=fp32" in done.stderr.lower() and bf16.FORCE_ENV in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()  # refused before the folder was made


def test_bf16_profile_is_refused_where_bf16_convs_are_slow() -> None:
    done = _aspp("profile", "aspp_unet", "--input", "3x32x32", "--dtype", "bf16", "--set", "model.width=4",
                 ONEDNN_MAX_CPU_ISA="AVX2")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--dtype bf16: bf16 is slower than fp32" in done.stderr and "--dtype fp32" in done.stderr


def test_bf16_can_be_forced(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _aspp("train", "--out", str(out), "--set", *TINY, "train.amp=bf16", ONEDNN_MAX_CPU_ISA="AVX2",
                 **{bf16.FORCE_ENV: "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    probe = json.loads((out / "result.json").read_text())["env"]["bf16_probe"]
    assert probe["verdict"] == "slow" and probe["kernel"] == "SlowDilated2d"


def test_the_probe_is_measured_once_and_cached_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = bf16.probe()
    assert first["cached"] is False and first["bf16_ms"] > 0 and first["fp32_ms"] > 0
    assert bf16.probe()["cached"] is True
    (tmp_path / "aspp-bench" / "bf16-probe.json").write_text("{not json")  # damaged: probed again, no error
    assert bf16.probe()["cached"] is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # another kernel set: another entry
    assert bf16.probe()["cached"] is False


@pytest.mark.skipif(bf16.measure()["verdict"] != "fast", reason="this CPU has no fast bf16 convolution")
def test_bf16_on_a_cpu_with_native_bf16_is_accepted_and_recorded(cli, tmp_path: Path) -> None:
    code, _, err = cli("train", "--out", str(tmp_path / "run"), "--set", *TINY, "train.amp=bf16")
    assert code == 0, err
    probe = json.loads((tmp_path / "run" / "result.json").read_text())["env"]["bf16_probe"]
    assert probe["verdict"] == "fast" and probe["kernel"] == "Mkldnn" and probe["ratio"] < bf16.SLOW_RATIO
