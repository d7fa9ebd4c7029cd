from __future__ import annotations

import pytest

from bench.errors import UserError
from bench.registry import Registry


@pytest.fixture
def reg() -> Registry:
    r = Registry("widget")

    @r.register("alpha", paper="A. Author 2020", family="x")
    def alpha(*, size: int = 3, rates: tuple[int, ...] = (1, 2)) -> tuple[int, tuple[int, ...]]:
        """Alpha widget, first line is the description.

        More text that is not part of the description.
        """
        return size, rates

    @r.register("alphabet")
    def alphabet(*, size: int) -> int:
        return size

    return r


def test_build_passes_keywords_and_reads_description(reg: Registry) -> None:
    assert reg.build("alpha", size=5) == (5, (1, 2))
    e = reg.get("alpha")
    assert e.description == "Alpha widget, first line is the description."
    assert e.paper == "A. Author 2020" and e.meta["family"] == "x"
    assert e.knobs == {"size": 3, "rates": (1, 2)}


def test_duplicate_name_raises(reg: Registry) -> None:
    with pytest.raises(KeyError, match="already registered"):
        reg.register("alpha")(lambda: None)


def test_unknown_name_lists_close_matches_and_all_names(reg: Registry) -> None:
    with pytest.raises(UserError) as e:
        reg.get("alpah")
    msg = str(e.value)
    assert "unknown widget 'alpah'" in msg and "did you mean 'alpha'" in msg
    assert "registered widgets: alpha, alphabet" in msg


def test_unknown_keyword_is_an_error_naming_valid_ones(reg: Registry) -> None:
    with pytest.raises(UserError) as e:
        reg.build("alpha", rate=(1,))
    msg = str(e.value)
    assert "no knob 'rate'" in msg and "did you mean 'rates'" in msg and "size, rates" in msg


def test_missing_required_keyword(reg: Registry) -> None:
    with pytest.raises(UserError, match="needs size"):
        reg.build("alphabet")


def test_names_pattern_and_len(reg: Registry) -> None:
    assert reg.names() == ["alpha", "alphabet"]
    assert reg.names("*bet") == ["alphabet"]
    assert len(reg) == 2 and "alpha" in reg and "beta" not in reg
