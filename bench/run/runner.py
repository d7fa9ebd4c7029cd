"""execute(RunConfig, out_dir): one configuration trained, evaluated and profiled into its run folder.

data -> model -> loss -> optimiser -> Trainer (resumes a checkpoint if there is one) ->
profile -> result.json (atomic). A folder whose result.json exists is left untouched.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bench.configure.config import RunConfig
from bench.configure.identity import earlier_run_ids, resolve
from bench.data import build_dataset, data_problem, eval_split, load_split, locate_root, make_loader
from bench.distributed import SINGLE, World, gather_objects, sync_batchnorm
from bench.errors import UserError
from bench.files import make_new_folder, remove_new_paths, write_json, write_yaml
from bench.losses import run_loss
from bench.models import build_model
from bench.optim import make_optimizer, make_scheduler
from bench.profile import ProfileSpec, environment, profile_model
from bench.profile.receptive import ERF_IMAGES, receptive_record
from bench.results.convergence import convergence, curve_of
from bench.results.folders import (
    CHECKPOINT,
    CONFIG,
    LOCK,
    LOG,
    RESULT,
    RunLock,
    check_folder,
    read_result,
    remove_stale_temps,
)
from bench.run.bf16 import probe as bf16_probe
from bench.run.checkpoint import seed_everything
from bench.run.device import resolve_device
from bench.run.engine import Trainer, TrainSpec
from bench.run.resources import check_disk, check_memory, device_problem, step_gflop
from bench.run.tensorboard_log import tensorboard_hparams, tensorboard_logger
from bench.run.threads import plan_threads, torch_threads_kept, wait_policy

__all__ = ["build_data", "execute"]


def _logger(out_dir: Path, world: World = SINGLE) -> logging.Logger:
    """The run's log: run.log and stderr for rank 0 (a single process is rank 0); the other ranks
    of a distributed cell write to their own stderr (the job's per-task log) only."""
    log = logging.getLogger(f"aspp-bench.run.{out_dir}.{world.rank}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        who = f"[{world.describe()}] " if world.distributed else ""
        fmt = logging.Formatter(f"%(asctime)s {who}%(message)s", "%Y-%m-%d %H:%M:%S")
        if world.main:
            fh = logging.FileHandler(out_dir / LOG)
            fh.setFormatter(fmt)
            log.addHandler(fh)
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        log.addHandler(sh)
    return log


def build_data(cfg: RunConfig):  # type: ignore[no-untyped-def]
    """Both splits decoded (validating the dataset before any model is built)."""
    train = load_split(cfg.data, cfg.data.split)
    val = load_split(cfg.data, eval_split(cfg.data.split))
    return train, val


def execute(
    cfg: RunConfig, out_dir: str | Path, *, trainer_hook: Any = None, world: World = SINGLE, resolved: bool = False
) -> dict[str, Any]:
    """Train, evaluate and profile one configuration into out_dir; returns the result. The
    config is resolved first; a folder that holds another experiment is refused (UserError)
    before anything in it changes. The folder is locked for the whole run: a second process on
    it stops with an error. In a distributed cell every rank calls this; rank 0 alone locks and
    writes the folder, and tells the others whether to train. `resolved=True`: the caller has
    resolved it (as `train` has, to check the folder first), so it is not resolved twice."""
    out = Path(out_dir)
    cfg = cfg if resolved else resolve(cfg)
    rid = check_folder(cfg, out)
    done = read_result(out)
    if done is not None:
        return done
    _preflight(cfg, out)
    lock = None
    verdict = "train"
    created = None
    if world.main:
        created = make_new_folder(out)  # the topmost folder this run created, if any
        lock = RunLock(out)
        if not lock.acquire():
            lock, verdict = (
                None,
                (f"{out}: another process is training this run (its {out / '.lock'} is held); not starting twice"),
            )
        elif read_result(out) is not None:  # it may have finished while we waited for the lock
            verdict = "done"
        else:
            remove_stale_temps(out, (CHECKPOINT, RESULT, CONFIG))  # a killed writer's leftovers
    if world.distributed:  # the others follow rank 0's verdict
        verdict = gather_objects(verdict, world)[0]
    try:
        if verdict == "done":
            return read_result(out)  # type: ignore[return-value]
        if verdict != "train":
            raise UserError(verdict)
        with torch_threads_kept():  # the run's own thread count ends with it
            return _execute(cfg, rid, out, trainer_hook, world)
    except UserError:
        if created and not (out / CHECKPOINT).exists() and not (out / RESULT).exists():
            _close_log(out, world)  # refused before training: the folder goes as it came
            remove_new_paths(created, set(), last=(out / LOCK,))
        raise
    finally:
        if lock is not None:
            lock.release()


def _close_log(out: Path, world: World) -> None:
    log = logging.getLogger(f"aspp-bench.run.{out}.{world.rank}")
    for h in list(log.handlers):
        h.close()
        log.removeHandler(h)


def _preflight(cfg: RunConfig, out: Path) -> None:
    """What can be refused before the run folder is touched: the model (built on the meta device:
    no memory, no weights), the dataset's files, the device and its number format, the memory the
    cell needs and the disk its checkpoints need (bench.run.resources)."""
    needs = check_memory(cfg, source=f"{out}")
    problem = data_problem(cfg.data, (cfg.data.split, eval_split(cfg.data.split)))
    problem = problem or device_problem(cfg.train.device, cfg.train.amp)
    if problem:
        raise UserError(problem)
    if read_result(out) is None:
        check_disk(out, needs)


def _execute(cfg: RunConfig, rid: str, out: Path, trainer_hook: Any, world: World = SINGLE) -> dict[str, Any]:
    """One run in stages: where it runs, its data, its trainer, the fit, the result it writes."""
    log = _logger(out, world)
    device, threads = _device(cfg, world)
    train_data, val_data = _data(cfg)
    if world.main and not (out / CONFIG).is_file():
        write_yaml(out / CONFIG, json.loads(cfg.model_dump_json()))
    trainer = _trainer(cfg, rid, out, (train_data, val_data), device, world, log)
    if trainer_hook is not None:
        trainer_hook(trainer)
    where = (
        f"{world.size} ranks ({world.backend}, global batch {cfg.data.batch_size})"
        if world.distributed
        else str(device)
    )
    log.info(
        f"training {cfg.model.arch} on {cfg.data.name} ({len(train_data.images)} train / "
        f"{len(val_data.images)} val images) for {trainer.total_iters} iterations on {where}"
    )
    started = time.time()
    fit = trainer.fit()
    if world.distributed:
        dist.barrier()  # every rank has finished training and the last evaluation
        if not world.main:  # rank 0 profiles once, on one device, and writes the result
            return {"status": fit["status"], "run_id": rid, "metrics": fit["metrics"], "rank": world.rank}
    result = _result(cfg, rid, fit, trainer, device, world, threads, train_data.class_names)
    if result["profile"] and cfg.profile.receptive:  # a finished run's receptive fields, with its profile
        images = build_dataset(val_data, train=False)
        first = torch.stack([images[i][0] for i in range(min(ERF_IMAGES, len(images)))])
        result["profile"].update(receptive_record(_deployed(cfg, trainer, device, world), _profile_input(cfg), first))
    if result["status"] == "done":  # has the validation curve flattened at this budget
        epochs, miou = curve_of(result)
        result["convergence"] = convergence(epochs, miou, fit["train"].get("epochs"))
    result["wall_seconds"] = time.time() - started
    write_json(out / RESULT, result)
    if result["status"] == "done":
        tensorboard_hparams(out, rid, result["config"], result)
    m = fit["metrics"]
    if m is not None:
        tr = fit["train"]
        log.info(
            f"{fit['status']}: val mIoU {100 * m['miou']:.2f}, pixel acc {100 * m['pixel_acc']:.2f} "
            f"({tr['train_seconds']:.0f} s training, {tr['images_per_s'] or 0:.1f} img/s)"
        )
    else:
        log.info(f"{fit['status']} after {fit['train']['iterations']} iterations")
    return result


def _deployed(cfg: RunConfig, trainer: Trainer, device: torch.device, world: World) -> torch.nn.Module:
    """The trained network as it is deployed: plain batch norm where it trained with synchronised."""
    if world.distributed and cfg.train.sync_bn:
        model = build_model(cfg.model.arch, **cfg.model.knobs()).to(device)
        model.load_state_dict(trainer.model.state_dict())
        return model
    return trainer.model


def _profile_input(cfg: RunConfig) -> tuple[int, int, int]:
    return tuple(cfg.profile.input) if cfg.profile.input else (3, *cfg.data.size)


def _device(cfg: RunConfig, world: World) -> tuple[torch.device, Any]:
    """The device (one per task when distributed) and, on the CPU, the thread plan set for training:
    threads from the CPUs this process may use and the step's work (bench.run.threads)."""
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    threads = None
    if device.type == "cpu":
        threads = plan_threads(step_gflop(cfg))
        if threads.threads:
            torch.set_num_threads(threads.threads)
    return device, threads


def _data(cfg: RunConfig) -> tuple[Any, Any]:
    """The decoded train and evaluation splits, checked against the classes the config resolved."""
    train_data, val_data = build_data(cfg)
    facts = (train_data.num_classes, train_data.ignore_index)
    if facts != (
        cfg.model.num_classes or facts[0],
        cfg.loss.ignore_index if cfg.loss.ignore_index is not None else facts[1],
    ):
        raise UserError(
            f"dataset '{cfg.data.name}' decoded with {facts[0]} classes (ignore {facts[1]}), the resolved config says "
            f"{cfg.model.num_classes} (ignore {cfg.loss.ignore_index})"
        )
    return train_data, val_data


def _trainer(
    cfg: RunConfig, rid: str, out: Path, splits: tuple[Any, Any], device: torch.device, world: World, log: Any
) -> Trainer:
    """The model (its initial weights the seed's), loss, loaders, optimiser and schedule, in a Trainer."""
    train_data, val_data = splits
    seed_everything(cfg.train.seed)  # the initial weights are the seed's, whatever ran before in this process
    model = build_model(cfg.model.arch, **cfg.model.knobs())
    if world.distributed and cfg.train.sync_bn:  # batch statistics of the global batch, as one process has
        model = sync_batchnorm(model, device.type)
    loss_fn = run_loss(cfg.loss, train_data, cfg.data)
    bs = cfg.data.batch_size
    train_loader = make_loader(
        build_dataset(train_data, train=True, data_cfg=cfg.data),
        batch_size=bs,
        shuffle=True,
        num_workers=cfg.data.num_workers,
        seed=cfg.train.seed,
        pin_memory=device.type == "cuda",
        world=world,
    )
    val_loader = make_loader(
        build_dataset(val_data, train=False),
        batch_size=bs,
        shuffle=False,
        pin_memory=device.type == "cuda",
        world=world,
    )
    o, t = cfg.optim, cfg.train
    optimizer = make_optimizer(o.name, model.parameters(), lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)
    total = t.iters or (t.epochs or 1) * max(len(train_loader), 1)
    scheduler = make_scheduler(o.schedule, optimizer, total_iters=total, power=o.power)
    return Trainer(
        model,
        optimizer,
        scheduler,
        loss_fn,
        train_loader,
        val_loader,
        spec=TrainSpec.from_config(t),
        device=device,
        num_classes=train_data.num_classes,
        ignore_index=cfg.loss.ignore_index,
        class_names=train_data.class_names,
        checkpoint_path=out / CHECKPOINT,
        log=log.info,
        identity=rid,
        earlier_identities=earlier_run_ids(cfg, resolved=True),
        on_epoch=tensorboard_logger(out, rid, log.info) if world.main else None,
        world=world,
    )


def _result(
    cfg: RunConfig,
    rid: str,
    fit: dict[str, Any],
    trainer: Trainer,
    device: torch.device,
    world: World,
    threads: Any,
    class_names: Any,
) -> dict[str, Any]:
    """result.json's content: the fit's metrics, the profile of the trained network (a finished run's
    only), and the environment it trained in."""
    t = cfg.train
    pspec = ProfileSpec.for_run(cfg, device.type)
    train_threads = torch.get_num_threads() if device.type == "cpu" else None  # as it trained
    profiled = _deployed(cfg, trainer, device, world)
    prof = (
        profile_model(profiled, pspec, train_threads=train_threads, train_world_size=world.size)
        if fit["status"] == "done"
        else {}
    )
    result = {
        "status": fit["status"],
        "run_id": rid,
        "diverged": fit.get("diverged"),
        "arch": cfg.model.arch,
        "config": json.loads(cfg.model_dump_json()),
        # as reached from where it ran
        "data_root": str(Path(locate_root(cfg.data.root)).resolve()) if cfg.data.root else None,
        "metrics": fit["metrics"],
        "class_names": list(class_names),
        "train": fit["train"],
        "profile": {k: v for k, v in prof.items() if k not in ("env", "spec")},
        "env": prof["env"] if prof else environment(pspec, train_threads=train_threads, train_world_size=world.size),
    }
    # how it trained (the profile's dtype/layout are the latency's, not the training's)
    if threads is not None:
        result["env"]["thread_plan"] = threads.reason
        result["env"]["omp_wait"] = wait_policy()
    if t.amp == "bf16" and device.type == "cpu":
        result["env"]["bf16_probe"] = bf16_probe()
    result["env"] = {**result["env"], "train_amp": t.amp, "train_channels_last": t.channels_last,
                     "train_compile": t.compile, "train_nodes": world.nodes,
                     "train_dist_backend": world.backend,
                     "train_sync_bn": bool(t.sync_bn and world.distributed)}  # fmt: skip
    return result
