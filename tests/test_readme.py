"""The README's library example runs, as a doctest, on each core.

Every ```pycon block of README.md is one doctest (``...`` matches any text in
an expected output); the blocks run in order in one namespace.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```pycon\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def test_readme_has_an_example() -> None:
    assert len(_BLOCK.findall(README.read_text(encoding="utf-8"))) >= 1


def test_readme_examples_run() -> None:
    text = "\n".join(_BLOCK.findall(README.read_text(encoding="utf-8")))
    test = doctest.DocTestParser().get_doctest(text, {}, "README.md", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of the README's examples failed (output above)"
