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
