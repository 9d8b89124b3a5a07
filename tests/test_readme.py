"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# ```python blocks are run; ```py blocks are illustrations that need trained weights or data.
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index):
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {})


def test_readme_has_the_two_setup_commands():
    text = README.read_text()
    assert "python examples/pretrained_odenet.py" in text
    assert "python -m pytest" in text


def _tables(text: str) -> list[list[str]]:
    """Markdown tables as lists of lines (header, rule, rows)."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line.strip())
        elif current:
            tables.append(current)
            current = []
    return tables


def test_readme_result_tables_are_the_reports_own():
    """Every table of results in the README is copied whole from a report a build script
    wrote (reports/*/*.md), so no number there is typed by hand."""
    shipped = README.read_text().split("## Shipped models", 1)[1]
    reports = [p.read_text() for p in (README.parent / "reports").glob("*/*.md")]
    report_tables = [table for text in reports for table in _tables(text)]
    readme_tables = _tables(shipped)
    assert readme_tables, "the README's 'Shipped models' section has no tables"
    for table in readme_tables:
        assert table in report_tables, f"README table not found in reports/: {table[:3]}"
