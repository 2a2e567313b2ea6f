"""`dim` start-up: only the command being run is imported, so `dim --help` loads no numerical library and
`dim evaluate` never loads torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dimatting.cli import COMMANDS, build_parser

PROBE = ("import sys; from dimatting.cli import main\n"
         "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         "print(' '.join(m for m in ('numpy', 'cv2', 'torch', 'numba', 'pymatting', 'onnx') if m in sys.modules))")


def _loaded(*argv: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True)
    return set(out.stdout.splitlines()[-1].split())


def test_help_imports_no_numerical_library() -> None:
    assert _loaded("--help") == set()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_command_help_leaves_torch_unloaded(command: str) -> None:
    assert _loaded(command, "--help") <= {"numpy", "cv2"}


def test_full_parser_lists_every_command_with_its_summary() -> None:
    text = build_parser().format_help()
    for command, (_, summary) in COMMANDS.items():
        assert command in text and summary.split()[0] in text
    chosen = build_parser(["evaluate", "a", "b", "c"]).parse_args(["evaluate", "a", "b", "c"])
    assert chosen.command == "evaluate" and chosen.workers == "auto"
