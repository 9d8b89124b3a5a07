"""The README's Python examples run as written."""

import math
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
# ```python blocks are run; ```py blocks are illustrations that need trained weights or data.
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _check_solver_tour(ns):
    import nodezoo

    assert ns["ys"].shape == (10, 256, 2)
    stats = ns["stats"]
    assert stats.nfe_forward > 0 and stats.nfe_backward > 0  # checkpoint gradients ran
    assert nodezoo.SolverConfig.from_dict(ns["cfg"].to_dict()) == ns["cfg"]
    assert all(p.grad is not None for p in ns["f"].parameters())


def _check_events_and_dense(ns):
    g, t_hit = 9.81, float(ns["t_hit"])
    assert t_hit == pytest.approx(math.sqrt(2 * 10.0 / g), rel=1e-5)  # free fall from 10 m
    assert float(ns["h0"].grad) == pytest.approx(1 / (g * t_hit), rel=1e-4)  # as the comment says
    expected = torch.exp(-torch.tensor([0.25, 0.5])).unsqueeze(-1).expand(2, 3)
    assert torch.allclose(ns["y_mid"], expected, atol=1e-5)


def _check_independent(ns):
    import nodezoo

    ys, times, y0 = ns["ys"], ns["times"], ns["y0"]
    assert ys.shape == (10, 256, 2)
    exact = y0 * torch.exp(-(times + times**2 / 2)).t().unsqueeze(-1)  # y' = -(1 + t) y
    assert torch.allclose(ys, exact, rtol=1e-2, atol=1e-2)
    alone = nodezoo.solve(lambda t, y: -y * (1 + t), y0[7], times[7], {"gradient": "backprop"})
    assert torch.allclose(ys[:, 7], alone, rtol=1e-5, atol=1e-6)  # each sample as if alone


# Each block's claims, found by the names it defines: a new block needs its check here.
CHECKS = {
    ("cfg", "stats", "ys"): _check_solver_tour,
    ("t_hit", "y_mid"): _check_events_and_dense,
    ("times", "decay", "ys"): _check_independent,
}


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs_and_does_what_it_says(index):
    ns = {}
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), ns)
    checks = [check for names, check in CHECKS.items() if all(n in ns for n in names)]
    assert checks, f"README python block {index} has no check in tests/test_readme.py: add one."
    for check in checks:
        check(ns)


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


def test_readme_compare_section_matches_the_command():
    """The README explains ``nodezoo compare``: its command parses with the real options, names
    the zoo's models, and every output file it names is one the command writes."""
    import shlex

    from nodezoo.reports.commands import _parser
    from nodezoo.zoo import list_models

    text = README.read_text()
    assert "### Comparing models and runs: `nodezoo compare`" in text, "no compare section"
    section = text.split("`nodezoo compare`", 2)[-1].split("\n## ", 1)[0]
    (command,) = re.findall(r"```bash\n(nodezoo compare .*?)\n```", section)
    args = _parser().parse_args(shlex.split(command)[2:])
    shipped = {model["name"] for model in list_models()}
    assert all(name in shipped for name in args.inputs), args.inputs
    assert args.limit_batches is None  # the section says: the whole test set by default
    sources = "".join(p.read_text() for p in (README.parent / "nodezoo" / "reports").glob("*.py"))
    outputs = section.split("It prints", 1)[-1]  # inputs (summary.json ...) come before
    files = set(re.findall(r"`([a-z_]+\.(?:png|csv|md|json))`", outputs))
    assert {"table.md", "tolerance_sweep.png", "tolerance_sweep.csv"} <= files
    for name in files:
        assert f'"{name}"' in sources, f"README names {name}, which compare does not write"


def test_readme_solver_table_names_solver_config_settings():
    """The solver table's step-control row names ``SolverConfig``'s ``max_steps``; torchdiffeq's
    ``max_num_steps`` appears only as the ``odeint`` option it is."""
    import dataclasses

    import nodezoo

    (row,) = [line for line in README.read_text().splitlines() if line.startswith("| step control")]
    assert "`max_steps`" in row
    assert "max_steps" in {f.name for f in dataclasses.fields(nodezoo.SolverConfig)}
    assert row.count("max_num_steps") == row.count('options={"max_num_steps"')
