"""Packaging beyond pyproject.toml: ship the top-level model_cards/ as ``nodezoo.model_cards``.

The published zoo folders live at the repository root (the layout of their Hugging Face repos),
and must also be inside the installed package so ``from_pretrained("<name>")`` works after a
plain ``pip install .``; a package_dir mapping does that without copying them.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["nodezoo*"]), "nodezoo.model_cards"],
    package_dir={"nodezoo.model_cards": "model_cards"},
    package_data={"nodezoo.model_cards": ["*/*", "*/*/*"]},
)
