"""The process that times one side of `aspp-bench speed`. Standalone on purpose: the command runs
this file's source with `python -c` in the side's own process, under the side's interpreter and
with the side's code version first on the path, so that everything under test (the model, its
config, torch and its kernels) is that side's, and only the timing protocol, the same for both
sides, is this file's. It imports from the code under test only `load_run_config` and
`build_model`.

Protocol (one JSON object per line on stdin, one answer per line on stdout, prefixed with
`@@speed ` so that anything else a library prints is ignored):
  start (argv[1], JSON): {config, sets, input, batch, threads, dtype, channels_last, measure,
                          train_steps}  -> {"ready": {what this process runs}} or {"error": ...}
  {"slice": SECONDS}                    -> {"wall_ms": [...], "cpu_ms": [...]}: per block, the
                                           mean wall time and process CPU time of one forward
                                           (latency) or one training step (train)
  {"quit": true}                        -> exits
Latency follows the profile protocol: eval mode, torch.inference_mode, batch 1, warm-up first,
then blocks of a fixed number of forwards (chosen at warm-up so a block takes about 20 ms) until
the slice is spent, at least 3 blocks, each timed by the wall clock and by the process's CPU time
(all its threads). On a busy machine a block's wall time includes the time the process waited for
a core; its CPU time does not.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

PREFIX = "@@speed "


def _send(obj: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _build(spec: dict):  # type: ignore[no-untyped-def]
    import torch

    try:
        from bench.configure.config import load_run_config
    except ImportError:  # an older layout of the code under test
        from bench.config import load_run_config  # type: ignore[no-redef]
    from bench.models import build_model

    sets = list(spec["sets"])
    if spec.get("arch"):
        sets.insert(0, f"model.arch={spec['arch']}")
    cfg = load_run_config(spec.get("config"), sets)
    torch.manual_seed(0)  # the same weights on both sides of an A/A comparison
    model = build_model(cfg.model.arch, **cfg.model.knobs())
    return cfg, model


def _out(y):  # type: ignore[no-untyped-def]
    if isinstance(y, dict):
        return y["out"]
    return y[0] if isinstance(y, (tuple, list)) else y


def main() -> int:
    spec = json.loads(sys.argv[1])
    try:
        import torch

        import bench  # first: its OpenMP wait policy applies only before torch loads OpenMP

        torch.set_num_threads(int(spec["threads"]))
        cfg, model = _build(spec)
    except Exception as e:  # the side's own code refused the config: relayed, named by side
        _send({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=3)})
        return 2
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[spec["dtype"]]
    train = spec["measure"] == "train"
    batch = int(spec["batch"]) if train else 1
    model = model.to(dtype=dtype)
    x = torch.randn(batch, *spec["input"], dtype=dtype)
    if spec["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if train:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        with torch.no_grad():
            shape = _out(model(x)).shape
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(_out(model(x)).float(), y).backward()
            opt.step()

        for _ in range(2):
            step()
        run, number = step, 1
    else:
        model.eval()

        def run() -> None:
            model(x)

        with torch.inference_mode():
            start, cpu0 = time.perf_counter(), time.process_time()
            for i in range(50):  # warm-up: at least 3 runs and 0.2 s
                model(x)
                if i >= 2 and time.perf_counter() - start > 0.2:
                    break
            per = (time.process_time() - cpu0) / (i + 1)
        number = max(1, int(0.02 / max(per, 1e-9)))  # forwards per block: about 20 ms a block

    import torchvision

    kernels = next((ln.strip().lstrip("-").strip() for ln in torch.__config__.show().splitlines()
                    if "oneDNN" in ln or "MKL-DNN" in ln), "unknown")  # fmt: skip
    _send({"ready": {
        "arch": cfg.model.arch, "model": json.loads(cfg.model.model_dump_json()),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "kernels": kernels,
        "threads": torch.get_num_threads(), "python": sys.executable, "code": os.path.dirname(os.path.dirname(
            os.path.abspath(bench.__file__))), "bench_version": getattr(bench, "__version__", None),
        "params": sum(p.numel() for p in model.parameters()), "pid": os.getpid(),
        "number_per_block": number,
    }})  # fmt: skip
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("quit"):
            break
        slice_s, wall, cpu, start = float(req["slice"]), [], [], time.perf_counter()
        with torch.inference_mode(mode=not train):
            run()  # untimed: the other side has just run, and the first pass after it finds cold caches
            while len(wall) < 3 or time.perf_counter() - start < slice_s:
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(number):
                    run()
                cpu.append((time.process_time() - c0) * 1e3 / number)
                wall.append((time.perf_counter() - w0) * 1e3 / number)
        _send({"wall_ms": wall, "cpu_ms": cpu})
    return 0


if __name__ == "__main__":
    sys.exit(main())
