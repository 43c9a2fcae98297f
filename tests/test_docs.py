"""The API reference's examples run, as doctests, on each core.

Every ``>>>`` example of a page in docs/api/ is one doctest; a page's examples
run in order in one namespace (``...`` matches any text in an expected output).
``make docs`` builds the pages themselves, with warnings as errors.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

PAGES = Path(__file__).resolve().parents[1] / "docs" / "api"
LAYERS = ("storage", "drivers", "caches", "manifests", "server", "hooks")
EXAMPLES = (*LAYERS, "aio")  # the layers' pages and the asyncio facade's


def test_a_page_per_layer() -> None:
    assert {p.stem for p in PAGES.glob("*.rst")} >= set(LAYERS)


@pytest.mark.parametrize("page", EXAMPLES)
def test_page_examples_run(page: str) -> None:
    path = PAGES / f"{page}.rst"
    test = doctest.DocTestParser().get_doctest(
        path.read_text(encoding="utf-8"), {"__name__": f"docs_{page}"}, path.name, str(path), 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{path.name} has no example"
    assert result.failed == 0, f"{result.failed} of {path.name}'s examples failed (output above)"
