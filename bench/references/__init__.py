"""Published tables of the five papers (cited in docs/README.md), as CSV: facts for "paper vs measured"."""

from importlib import resources

__all__ = ["names"]


def names() -> list[str]:
    """Every published table shipped with the suite (the stems of bench/references/*.csv)."""
    return sorted(f.name[:-4] for f in resources.files(__name__).iterdir() if f.name.endswith(".csv"))
