"""Parameter count of every registered architecture at paper scale and at CPU scale.

The knobs of each scale are the `presets` beside the registry entry. Output is a Markdown
table (the README's "Model zoo" table is this script's output).

    python scripts/param_table.py
"""

from __future__ import annotations

import torch

from bench.models import build_model
from bench.registry import architectures


def _knobs(k: dict) -> str:
    return ", ".join(f"{n}={list(v) if isinstance(v, tuple) else v}" for n, v in k.items())


def main() -> None:
    torch.manual_seed(0)
    print("| architecture | paper scale | params | CPU scale | params |")
    print("|---|---|---:|---|---:|")
    for e in architectures:
        cells = []
        for scale in ("paper", "cpu"):
            knobs = e.meta["presets"][scale]
            n = sum(p.numel() for p in build_model(e.name, **knobs).parameters())
            cells += [_knobs(knobs), f"{n:,}"]
        print(f"| `{e.name}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
