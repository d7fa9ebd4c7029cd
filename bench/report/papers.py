"""A paper's published table (bench/references/<name>.csv) joined to the measured rows on the
configuration keys both name.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from bench.configure.config import is_experiment_key
from bench.configure.naming import factor_names, value_text
from bench.errors import UserError
from bench.report.tables import num


def reference_table(name: str) -> Any:
    """A paper's published table (bench/references/<name>.csv)."""
    import pandas as pd

    try:
        path = resources.files("bench.references") / f"{name}.csv"
        with resources.as_file(path) as p:
            return pd.read_csv(p, comment="#")
    except (FileNotFoundError, ModuleNotFoundError):
        raise UserError(f"reference table '{name}' not found in bench/references/") from None


def paper_vs_measured(t: Any, ref: Any) -> Any | None:
    """Join measured configurations to the paper's rows on the config columns both name. Where several
    rows of Table 1 match one of the paper's (a sweep run at several budgets), the last: the largest
    budget, as budgets are listed smallest first."""
    import pandas as pd

    keys = [c for c in ref.columns if c in t.columns and is_experiment_key(c)]  # the join is on config only
    if not keys or "miou" not in ref.columns:
        return None
    names = factor_names(keys)
    rows = []
    for _, pr in ref.iterrows():
        sel = t
        for k in keys:
            sel = sel[sel[k].astype(str) == str(pr[k])]
        row = {"#": str(sel.iloc[-1]["row"]) if not sel.empty else "-"}
        row.update({names[k]: value_text(pr[k]) for k in keys})
        row["paper mIoU (%)"] = f"{pr['miou']:.2f}"
        if sel.empty:
            row["measured mIoU (%)"], row["difference"] = "-", "-"
        else:
            m = sel.iloc[-1]
            row["measured mIoU (%)"] = num(m["miou"], m["miou_std"], 2, " ± ")
            row["difference"] = f"{m['miou'] - pr['miou']:+.2f}"
        rows.append(row)
    return pd.DataFrame(rows)
