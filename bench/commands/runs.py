"""`train` and `evaluate`: one run into its folder, one checkpoint scored."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.configure.config import load_run_config
from bench.configure.identity import resolve
from bench.results.folders import RESULT, check_folder
from bench.run.evaluate import evaluate_checkpoint
from bench.run.runner import execute


def cmd_train(args: argparse.Namespace) -> int:
    cfg = resolve(load_run_config(args.config, args.set))
    out = Path(args.out)
    rid = check_folder(cfg, out)  # a folder holding another experiment: exit 2, nothing changed
    if (out / RESULT).is_file():
        print(f"{out / RESULT} exists: run {rid} is finished (remove the folder to run it again)")
        return 0

    result = execute(cfg, out, resolved=True)
    m = result["metrics"] or {}
    print(
        json.dumps(
            {"status": result["status"], "out": str(out), "miou": m.get("miou"), "pixel_acc": m.get("pixel_acc")}
        )
    )
    return 0 if result["status"] == "done" else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    result = evaluate_checkpoint(args.checkpoint, args.set, resolution=args.resolution)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    m = result["metrics"]
    print(
        f"{result['arch']} on {result['data']['name']}, split '{result['split']}' ({result['images']} images), "
        f"scored at {result['scored_at']}: mIoU {100 * m['miou']:.2f}, "
        f"pixel acc {100 * m['pixel_acc']:.2f}, mean class acc {100 * m['mean_class_acc']:.2f}"
    )
    for name, v in m["iou"].items():
        print(f"  {name:<14} IoU {100 * v:6.2f}")
    return 0
