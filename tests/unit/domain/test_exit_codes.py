"""One exit code per meaning: the constants in domain/errors.py, the table operators read
in runbooks/README.md, and the codes the commands pass, held together."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from domain import errors
from domain.errors import EXIT_CODES, EXIT_CONFIG, DataFormatError
from executor.exit_codes import exit_code_for

ROOT = Path(__file__).resolve().parents[3]


def test_every_exit_constant_has_one_distinct_code_and_a_meaning() -> None:
    constants = {k: v for k, v in vars(errors).items() if k.startswith("EXIT_")
                 and isinstance(v, int)}
    assert len(set(constants.values())) == len(constants), constants
    assert set(EXIT_CODES) == set(constants.values())


def test_the_runbooks_readme_table_is_the_code_table() -> None:
    text = (ROOT / "runbooks" / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\d+)` \| (.+?) \|$", text, flags=re.MULTILINE))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES


def test_commands_pass_named_codes_only() -> None:
    """A bare number in ``fail(...)`` or ``typer.Exit(...)`` is how a code drifts away
    from its meaning; every command names the constant instead."""
    literal = []
    for path in sorted((ROOT / "runbooks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else \
                getattr(node.func, "id", "")
            args = node.args[1:] if name == "fail" else node.args if name == "Exit" else []
            literal += [f"{path.name}:{node.lineno}" for a in args
                        if isinstance(a, ast.Constant) and isinstance(a.value, int)]
    assert not literal, literal


def test_an_input_file_that_cannot_be_read_is_invalid_input_everywhere() -> None:
    """`dta run --data` and `dta replay` exit 2 for an unreadable bar file; `dta shadow
    report` used to exit 1 for an unreadable EA deals file (the same meaning)."""
    assert exit_code_for(DataFormatError("bad EA deal row")) == EXIT_CONFIG
