"""`receptive`: how far a network's output pixels see (bench.profile.receptive), for one network,
a trained checkpoint, or every configuration of a sweep. Its own module, so that `models`,
`config` and `profile` do not import the data, report and pandas it needs."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch

from bench.configure.config import flatten, load_run_config
from bench.configure.identity import config_id
from bench.configure.naming import factor_names
from bench.data import build_dataset, eval_split, load_split
from bench.errors import UserError
from bench.files import atomic_path, atomic_write_text
from bench.models import build_model
from bench.profile import device_name, parse_input
from bench.profile.receptive import EffectiveField, ReceptiveField, effective_field, receptive_field
from bench.report.figures import erf_heatmap
from bench.report.receptive import sweep_fields_figure, sweep_fields_table
from bench.report.tables import markdown
from bench.run.checkpoint import seed_everything
from bench.run.evaluate import checkpoint_config, checkpoint_model
from bench.run.resources import check_inference_memory
from bench.run.threads import plan_threads
from bench.sweep import expand, load_sweep, varying_keys


def cmd_receptive(args: argparse.Namespace) -> int:
    """The theoretical field of the centre output pixel at --input; with --images, the effective
    field over that many validation images (at initialisation, and trained with --checkpoint)."""
    if args.sweep:
        return _sweep_fields(args)
    if not args.arch or not args.input:
        raise UserError("receptive needs ARCH and --input CxHxW (e.g. aspp_unet --input 3x90x120), or --sweep FILE")
    shape = parse_input(args.input)
    if args.checkpoint:
        cfg, state, _ = checkpoint_config(args.checkpoint, args.set)
        if cfg.model.arch != args.arch:
            raise UserError(f"{args.checkpoint}: a run of {cfg.model.arch}, not {args.arch}; name its architecture")
        trained = checkpoint_model(cfg, state, args.checkpoint)
    else:
        cfg, trained = load_run_config(None, [f"model.arch={args.arch}", *args.set]), None
    check_inference_memory(cfg.model, (1, *shape), source=f"--input {args.input}")
    seed_everything(cfg.train.seed)  # the initial weights are the run's seed's
    init = build_model(cfg.model.arch, **cfg.model.knobs())
    _use_planned_threads()
    theory = receptive_field(init, shape)
    n = args.images if args.images is not None else (32 if args.checkpoint else 0)
    erf: dict[str, EffectiveField] = {}
    if n:
        # a checkpoint's config already names the split its run validated on; a fresh config its training split
        split = cfg.data.split if args.checkpoint else eval_split(cfg.data.split)
        data = build_dataset(load_split(cfg.data, split), train=False)
        images = torch.stack([data[i][0] for i in range(min(n, len(data)))])
        erf["initialisation"] = effective_field(init, images)
        if trained is not None:
            erf["trained"] = effective_field(trained, images)
        where = f"{len(images)} {split} images of {cfg.data.name} at {'x'.join(map(str, cfg.data.size))}"
    if args.figure and erf:
        erf_heatmap(erf, theory, args.figure, title=f"{cfg.model.arch}: {where}")
    record = {
        "arch": cfg.model.arch,
        "model": cfg.model.model_dump(),
        **theory.as_dict(),
        **theory.record(),
        "effective": {k: {**e.record(theory.local), "centre": e.centre, "where": where} for k, e in erf.items()},
    }
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print(format_receptive(cfg.model.arch, theory, erf, where if erf else ""))
    return 0


def format_receptive(arch: str, t: ReceptiveField, erf: dict[str, EffectiveField], where: str) -> str:
    """The fields in words, each with its unit and what it means."""

    def box(f) -> str:  # noqa: ANN001
        holes = f", coverage {f.coverage:.3f}" + (" (holes: gridding)" if f.holes else " (no holes)")
        return f"{f.height} x {f.width} px{holes}" + (" [clipped by the input: the field is larger]" if f.clipped
                                                        else "")  # fmt: skip

    lines = [f"{arch} at {'x'.join(map(str, t.input))}, centre output pixel {t.centre}:"]
    if t.global_pooling:
        lines.append(f"  theoretical field   the whole image (global pooling); without it: {box(t.local)}")
    else:
        lines.append(f"  theoretical field   {box(t.local)}")
    for name, f in t.branches.items():
        lines.append(f"    branch {name}: {box(f)}")
    if t.context is not None:
        c = t.context
        features = f"{'x'.join(map(str, c.input))} features"
        lines.append(f"  context module {t.context_name}, in the pixels of the {features} it reads:")
        lines.append(
            f"    field {box(c.local)}" + ("; with its global pooling the whole map" if c.global_pooling else "")
        )
        for name, f in c.branches.items():
            lines.append(f"    branch {name}: {box(f)}")
    for k, e in erf.items():
        ratio = e.record(t.local).get("erf_ratio")
        lines.append(f"  effective field, {k} ({where}): radius holding 50% of the gradient mass {e.r50:.1f} px, "
                     f"90% {e.r90:.1f} px, 99% {e.r99:.1f} px"
                     + (f"; 90% diameter / theoretical extent {ratio:.2f}" if ratio else ""))  # fmt: skip
    return "\n".join(lines)


def _sweep_fields(args: argparse.Namespace) -> int:
    """The theoretical field of every configuration of a sweep (its first seed's cell; the field
    does not depend on the seed), at the profile size, without training."""
    if args.arch or args.checkpoint or args.images:
        raise UserError("--sweep takes the architectures from the sweep file: leave out ARCH, --checkpoint, --images")
    sweep = load_sweep(args.sweep)
    cells = expand(sweep, source=str(args.sweep))
    axes = [k for k in varying_keys(cells) if k != "train.seed"]
    configs = {config_id(c.config, resolved=True): c for c in reversed(cells)}  # the first cell of each
    _use_planned_threads()
    rows, started = [], time.time()
    for cell in sorted(configs.values(), key=lambda c: c.index):
        cfg = cell.config
        model = build_model(cfg.model.arch, **cfg.model.knobs())
        shape = tuple(cfg.profile.input) if cfg.profile.input else (3, *cfg.data.size)
        rf = receptive_field(model, shape)
        resolved = flatten(json.loads(cfg.model_dump_json()))  # a knob the configuration ignores shows as -
        rows.append({**{a: resolved.get(a) for a in axes}, **rf.record()})
    seconds = time.time() - started
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{device_name('cpu')}, {torch.get_num_threads()} thread(s), load average {load:.1f}"
    names = factor_names(axes)
    table = sweep_fields_table(rows, axes, names)
    if args.json:
        print(json.dumps({"sweep": sweep.name, "configurations": rows, "seconds": seconds}, indent=2, default=str))
    else:
        print(markdown(table, left=1 + len(axes)))
        print(f"\n{len(rows)} configurations of {len(cells)} cells in {seconds:.1f} s ({machine})")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        fig = sweep_fields_figure(rows, axes, out, f"{sweep.name}: context fields at the profile size")
        lines = [f"# {sweep.name}: receptive fields without training", "",
                 f"`aspp-bench receptive --sweep {args.sweep} --out {args.out}`: {len(rows)} configurations of "
                 f"{len(cells)} cells in {seconds:.1f} s ({machine}). The network's field of the centre output "
                 "pixel at the profile size, and the context module's own field and coverage in the pixels of the "
                 "feature map it reads (see docs/receptive-fields.md in the repository).", "",
                 markdown(table, left=1 + len(axes)), ""]  # fmt: skip
        if fig:
            lines += [f"**{fig.title}.** {fig.caption}", "", f"![{fig.path.stem}]({fig.path.stem}.png)", ""]
        atomic_write_text(out / "README.md", "\n".join(lines))
        with atomic_path(out / "receptive_fields.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    return 0


def _use_planned_threads() -> None:
    """Every usable CPU (bench.run.threads), unless the user's OMP_NUM_THREADS already chose."""
    threads = plan_threads(None).threads
    if threads is not None:
        torch.set_num_threads(threads)
