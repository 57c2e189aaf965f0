"""SECURITY.md names a test for every defence: each ``tests/<file>.py::<test>`` it cites must exist,
so the threat model can't silently point at a test that was renamed or removed."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITE = re.compile(r"tests/([A-Za-z0-9_]+\.py)::([A-Za-z0-9_]+)")


def _names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_every_test_security_md_cites_exists():
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    cited = CITE.findall(text)
    assert len(cited) >= 40, "SECURITY.md should cite a test for each defence"
    missing = []
    names: dict[str, set[str]] = {}
    for file, name in cited:
        path = ROOT / "tests" / file
        if not path.exists():
            missing.append(f"tests/{file} (no such file)")
            continue
        if name not in names.setdefault(file, _names(path)):
            missing.append(f"tests/{file}::{name}")
    assert not missing, "SECURITY.md cites tests that do not exist: " + ", ".join(missing)


def test_every_defence_row_cites_a_test():
    """Each row of the threat tables (headed "| Threat") names at least one test."""
    rows, in_table = [], False
    for line in (ROOT / "SECURITY.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| Threat"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("| ---"):
            rows.append(line)
    assert len(rows) >= 30
    bare = [row for row in rows if not CITE.search(row)]
    assert not bare, "rows without a test: " + "\n".join(bare)
