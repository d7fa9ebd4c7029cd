"""One cell on several processes: data sharding, batch norm over the global batch, launch
settings, failure reports (default tier); real 2-task cells through the local executor (slow):
equal first losses to one process with the same global batch, a preemption that resumes to
the same weights, a killed rank reported failed and retried. The Slurm half is in
tests/test_launch_slurm.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.distributed import SINGLE, GlobalBatchNorm, ShardedBatchSampler, World, shard_indices, sync_batchnorm
from tests.fixtures import write_sweep

# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("skip_batches", [0, 3])
def test_ranks_together_see_the_single_process_batches(size: int, skip_batches: int) -> None:
    from bench.data import make_loader
    from bench.data.base import SegData, SegDataset

    n, gb = 37, 8
    data = SegData(torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, 2, 2).clone(),
                   torch.zeros(n, 2, 2, dtype=torch.uint8), 2, ("a", "b"), 255)  # fmt: skip
    ds = SegDataset(data, lambda img, m: (img[0, 0, 0].long(), m))  # each sample is its index
    single = make_loader(ds, batch_size=gb, shuffle=True, seed=5)
    single.generator.manual_seed(11)
    if skip_batches:
        single.sampler.skip_next(skip_batches * gb)
    want = [b[0].tolist() for b in single]
    per_rank = []
    for r in range(size):
        w = World(rank=r, size=size)
        loader = make_loader(ds, batch_size=gb, shuffle=True, seed=5, world=w)
        loader.generator.manual_seed(11)
        assert len(loader) == n // gb  # the same number of steps per epoch as one process
        if skip_batches:
            loader.sampler.skip_next(skip_batches * (gb // size))
        per_rank.append([b[0].tolist() for b in loader])
    got = [sum((per_rank[r][k] for r in range(size)), []) for k in range(len(per_rank[0]))]
    assert got == want[: len(got)] and len(got) == n // gb - skip_batches


def test_evaluation_shards_cover_every_image_once() -> None:
    n, size = 11, 4
    shards = [shard_indices(n, World(rank=r, size=size)) for r in range(size)]
    assert sorted(sum(shards, [])) == list(range(n))


def test_a_global_batch_that_does_not_split_is_refused() -> None:
    with pytest.raises(ValueError, match="does not split"):
        ShardedBatchSampler(10, torch.Generator(), global_batch=6, world=World(rank=0, size=4))


# --------------------------------------------------------------------------- batch norm over ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bn_worker(rank: int, size: int, port: int, x: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        torch.manual_seed(0)
        bn = sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), "cpu")
        assert isinstance(bn[0], GlobalBatchNorm)
        with torch.no_grad():
            bn[0].weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
            bn[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        share = x.chunk(size)[rank].clone().requires_grad_(True)
        y = bn(share)
        (y * torch.arange(y.numel()).reshape(y.shape).float().chunk(1)[0]).sum().backward()
        gathered = [torch.zeros_like(y) for _ in range(size)]
        dist.all_gather(gathered, y.detach())
        grads = [torch.zeros_like(share) for _ in range(size)]
        dist.all_gather(grads, share.grad)
        wgrad = bn[0].weight.grad.clone()
        dist.all_reduce(wgrad)
        if rank == 0:
            torch.save({"y": torch.cat(gathered), "grad": torch.cat(grads), "wgrad": wgrad,
                        "rm": bn[0].running_mean, "rv": bn[0].running_var}, out["path"])  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_over_two_ranks_is_batchnorm_of_the_whole_batch(tmp_path: Path) -> None:
    """Forward, input gradients, weight gradients and running statistics of two gloo ranks equal
    one BatchNorm2d over the concatenated batch (torch's SyncBatchNorm would refuse the CPU)."""
    import torch.multiprocessing as mp

    x = torch.randn(4, 3, 5, 6) * 3 + 1
    path = tmp_path / "bn.pt"
    mp.spawn(_bn_worker, args=(2, _free_port(), x, {"path": str(path)}), nprocs=2, join=True)
    got = torch.load(path, weights_only=True)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    xs = x.clone().requires_grad_(True)
    y = bn(xs)
    weights = torch.cat([torch.arange(y.numel() // 2).reshape(2, 3, 5, 6).float()] * 2)  # each rank's own ramp
    (y * weights).sum().backward()
    torch.testing.assert_close(got["y"], y.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["grad"], xs.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["wgrad"], bn.weight.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got["rm"], bn.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["rv"], bn.running_var, rtol=1e-5, atol=1e-6)


def test_global_batchnorm_is_plain_batchnorm_without_a_process_group() -> None:
    torch.manual_seed(1)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    converted = sync_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), "cpu")
    converted.load_state_dict(plain.state_dict())
    assert set(converted.state_dict()) == set(plain.state_dict())  # checkpoints load into the plain model
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(converted(x), plain(x))


# --------------------------------------------------------------------------- launch settings


def _sweep(tmp_path: Path, launch: str, base_extra: str = "", name: str = "ddp", epochs: int = 2) -> Path:
    return write_sweep(
        tmp_path, name, model="arch: aspp_unet, width: 4", data=f"size: [32, 32], count: 16, batch_size: 4{base_extra}",
        train=f"epochs: {epochs}, device: cpu, eval_every: 1000", launch=launch,
    )  # fmt: skip


@pytest.mark.parametrize(
    "launch, needles",
    [
        ("executor: slurm, gpus_per_node: 4, tasks_per_node: 2",
         ["tasks_per_node=2", "gpus_per_node=4", "one task per device"]),
        ("executor: local, nodes: 2", ["launch.nodes=2", "only Slurm runs a cell on several nodes"]),
        ("executor: inline, tasks_per_node: 2", ["executor=inline", "local or slurm"]),
        ("executor: local, tasks_per_node: 3", ["data.batch_size=4", "3 tasks", "multiple of 3"]),
    ],
)  # fmt: skip
def test_bad_distributed_launch_settings_exit_2(cli, tmp_path: Path, launch: str, needles: list[str]) -> None:
    spec = _sweep(tmp_path, launch)
    code, out, err = cli("sweep", str(spec), "--results", str(tmp_path / "r"), "--dry-run")
    assert code == 2, out + err
    assert "Traceback" not in err and all(n in err for n in needles), err
    assert not (tmp_path / "r").exists()


def test_executor_override_that_cannot_run_several_tasks_exits_2(cli, tmp_path: Path) -> None:
    spec = _sweep(tmp_path, "executor: local, tasks_per_node: 2")
    code, _, err = cli("sweep", str(spec), "--results", str(tmp_path / "r"), "--executor", "inline")
    assert code == 2 and "--executor inline runs one process" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_dry_run_shows_the_tasks_and_the_sbatch_lines(cli, tmp_path: Path) -> None:
    spec = _sweep(tmp_path, "executor: slurm, nodes: 2, gpus_per_node: 4, cpus_per_task: 8", base_extra="")
    text = spec.read_text().replace("batch_size: 4", "batch_size: 16")
    spec.write_text(text)
    code, out, err = cli("sweep", str(spec), "--results", str(tmp_path / "r"), "--dry-run")
    assert code == 0, err
    assert "one DistributedDataParallel job of 8 tasks (2 node(s) x 4 task(s)" in out
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4"):
        assert line in out, out


def test_world_size_and_sync_bn_default_keep_the_run_id(tmp_path: Path) -> None:
    """The same experiment on 1, 2 or 8 devices is one run: the world size is a launch setting, and
    train.sync_bn at its default (true) is left out of the hash like every key added later."""
    from bench.configure.identity import run_id
    from bench.sweep import expand, load_sweep

    ids = set()
    launches = ("executor: local", "executor: local, tasks_per_node: 2", "executor: slurm, nodes: 2, tasks_per_node: 2")
    for launch in launches:
        ids |= {c.run_id for c in expand(load_sweep(_sweep(tmp_path, launch)))}
    assert len(ids) == 1
    (cell,) = expand(load_sweep(_sweep(tmp_path, "executor: local")))
    off = cell.config.model_copy(update={"train": cell.config.train.model_copy(update={"sync_bn": False})})
    assert run_id(off) != cell.run_id


# --------------------------------------------------------------------------- failure reports


def test_rank_report_names_the_silent_rank_first_then_the_errors(tmp_path: Path) -> None:
    from bench.launch import rank_report

    assert rank_report(tmp_path) is None  # a single-process cell
    for r in (0, 1):
        (tmp_path / f"rank-{r}.json").write_text(json.dumps({"rank": r, "world_size": 2, "host": "n1", "pid": 100 + r}))
    (tmp_path / "rank-0.error").write_text(json.dumps({"rank": 0, "error": "RuntimeError: Connection closed by peer",
                                                       "time": 5.0}))  # fmt: skip
    text = rank_report(tmp_path)
    assert text is not None
    assert text.index("rank 1 of 2 (n1 pid 101) stopped without an error report") < text.index("rank 0 of 2: Runtime")


def test_single_process_world_is_untouched() -> None:
    assert not SINGLE.distributed and SINGLE.main and SINGLE.record()["world_size"] == 1


# --------------------------------------------------------------------------- real 2-task cells (local executor)


def _result(results: Path) -> tuple[Path, dict]:
    (run,) = [p for p in results.iterdir() if (p / "config.yaml").is_file()]
    return run, json.loads((run / "result.json").read_text())


def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_two_task_cell_matches_one_process_with_the_same_global_batch(cli, tmp_path: Path) -> None:
    """Local executor, 2 gloo tasks: one result with world size 2 recorded, the same run_id as one
    process, and the first steps' losses equal to one process's (same global batch, batch norm
    over it, no augmentation: the ranks see exactly the single process's batches)."""
    no_aug = ", augment: {flip: false}"
    two = _sweep(tmp_path, "executor: local, tasks_per_node: 2", no_aug, name="two")
    one = _sweep(tmp_path, "executor: local", no_aug, name="one")
    for spec, res in ((two, "r2"), (one, "r1")):
        code, out, err = cli("sweep", str(spec), "--results", str(tmp_path / res), "--wait")
        assert code == 0, out + err
    run2, r2 = _result(tmp_path / "r2")
    run1, r1 = _result(tmp_path / "r1")
    assert run2.name == run1.name and r2["run_id"] == r1["run_id"]
    assert r2["env"]["train_world_size"] == 2 and r2["env"]["train_dist_backend"] == "gloo"
    assert r1["env"]["train_world_size"] == 1
    assert len([p for p in (tmp_path / "r2").iterdir() if (p / "result.json").is_file()]) == 1
    a, b = r2["train"]["first_losses"], r1["train"]["first_losses"]
    assert len(a) == len(b) == 8
    assert a[:2] == pytest.approx(b[:2], rel=1e-6)  # the first forward and the first update agree to float noise
    assert a == pytest.approx(b, rel=1e-3)  # Adam amplifies the last bits over later steps
    assert r2["train"]["iterations"] == r1["train"]["iterations"] == 8


@pytest.mark.slow
def test_preempted_two_task_cell_resumes_to_the_same_weights(cli, tmp_path: Path) -> None:
    """USR2 to rank 1 alone, mid-training: both ranks stop after the same step, rank 0 checkpoints
    and the local executor restarts the job; it finishes bit-equal to an uninterrupted 2-task run."""
    launch = "executor: local, tasks_per_node: 2, timeout_min: 10"
    spec = _sweep(tmp_path, launch, epochs=60)
    results = tmp_path / "pre"
    code, out, err = cli("sweep", str(spec), "--results", str(results))
    assert code == 0, err
    run_of = lambda: next((p for p in results.iterdir() if (p / "rank-1.json").is_file()), None)  # noqa: E731
    _wait_for(lambda: run_of() is not None, 60, "rank 1 to start")
    run = run_of()
    _wait_for(lambda: "epoch 3/" in (run / "train.log").read_text() if (run / "train.log").is_file() else False,
              120, "three epochs")  # fmt: skip
    os.kill(json.loads((run / "rank-1.json").read_text())["pid"], signal.SIGUSR2)
    _wait_for(lambda: (run / "result.json").is_file(), 300, "the resumed run to finish")
    log = (run / "train.log").read_text()
    assert "stop signal: all 2 ranks stopped after iteration" in log and "resumed from" in log
    assert "requeued: the job is back in the queue" in log
    code, out, err = cli("sweep", str(spec), "--results", str(tmp_path / "ref"), "--wait")
    assert code == 0, err
    ref, _ = _result(tmp_path / "ref")
    a, b = _weights(run), _weights(ref)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.loads((r / "result.json").read_text())["metrics"] for r in (run, ref)]
    assert metrics[0] == metrics[1]


@pytest.mark.slow
def test_killed_rank_fails_the_cell_within_a_minute_and_retry_completes_it(cli, tmp_path: Path) -> None:
    from bench.launch import cell_states
    from bench.sweep import expand, load_sweep

    spec = _sweep(tmp_path, "executor: local, tasks_per_node: 2, collective_timeout_s: 60", epochs=200)
    text = spec.read_text().replace("eval_every: 1000", "eval_every: 1000, checkpoint_every: 2")
    spec.write_text(text)
    results = tmp_path / "kill"
    assert cli("sweep", str(spec), "--results", str(results))[0] == 0
    (cell,) = expand(load_sweep(spec))
    run = results / cell.run_id
    _wait_for(lambda: (run / "checkpoint.pt").is_file() and (run / "rank-1.json").is_file(), 120, "a checkpoint")
    victim = json.loads((run / "rank-1.json").read_text())["pid"]
    os.kill(victim, signal.SIGKILL)
    killed = time.time()
    _wait_for(lambda: cell_states([cell], results)[0].state == "failed", 60, "the cell to be reported failed")
    assert time.time() - killed < 60
    (state,) = cell_states([cell], results)
    assert "rank 1 of 2 (" in state.detail and f"pid {victim}) stopped without an error report" in state.detail
    assert "rank 0 of 2:" in state.detail, state.detail  # the survivor's collective error, after the cause
    code, out, _ = cli("status", str(spec), "--results", str(results))
    assert "failed" in out and "rank 1 of 2" in out
    assert not list(run.glob("*.tmp")) and not (run / "result.json").exists()  # nothing half-written
    torch.load(run / "checkpoint.pt", weights_only=True)  # the last checkpoint is whole
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--retry-failed", "--wait")
    assert code == 0 and "submitted 1 of 1" in out, out + err
    assert cell_states([cell], results)[0].state == "done"
    assert "resumed from" in (run / "train.log").read_text()
    assert json.loads((run / "result.json").read_text())["env"]["train_world_size"] == 2


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs one GPU per rank: 2 or more GPUs")
def test_two_gpu_cell_trains_over_nccl(cli, tmp_path: Path) -> None:
    """The CUDA path of a distributed cell: 2 tasks, one GPU each (local executor), NCCL, torch's
    SyncBatchNorm; one result with the backend recorded."""
    spec = _sweep(tmp_path, "executor: local, gpus_per_node: 2", name="nccl")
    spec.write_text(spec.read_text().replace("device: cpu", "device: cuda"))
    code, out, err = cli("sweep", str(spec), "--results", str(tmp_path / "r"), "--wait")
    assert code == 0, out + err
    _, r = _result(tmp_path / "r")
    assert r["env"]["train_world_size"] == 2 and r["env"]["train_dist_backend"] == "nccl"
    assert r["env"]["train_sync_bn"] is True


def test_world_size_joins_the_speed_fingerprint_only_above_one() -> None:
    """DESIGN: the fingerprint tells world sizes apart; a single-process run keeps the fingerprint
    it always had, so the committed baselines still match new single-process runs."""
    from bench.profile import ProfileSpec, environment, fingerprint

    spec = ProfileSpec(input=(3, 8, 8))
    one, two = environment(spec, train_threads=1), environment(spec, train_threads=1, train_world_size=2)
    legacy = {k: v for k, v in one.items() if k != "train_world_size"}  # a result written before the key
    assert fingerprint(one) == fingerprint(legacy)
    assert fingerprint(two) == fingerprint(one) + "|world=2"
