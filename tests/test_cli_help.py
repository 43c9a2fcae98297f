"""``ocistore --help`` and each command's help: plain text, and no module loaded that is not needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ocistore.cli import main

COMMANDS = ["serve", "scrub", "export", "import", "du", "referrers", "gc"]


@pytest.mark.parametrize("argv", [[], *([c] for c in COMMANDS)], ids=["ocistore", *COMMANDS])
def test_help_is_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: ocistore")
    for markup in ("``", ":mod:", ":class:", "`"):
        assert markup not in text, (markup, text)


def test_help_and_serve_load_no_other_command() -> None:
    code = (
        "import sys\n"
        "from ocistore.cli import _parser\n"
        "for argv in (['--help'], ['serve', '--help']):\n"
        "    try:\n"
        "        _parser(argv[0]).parse_args(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ocistore.gc', 'ocistore.maint'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]"
