"""The README's two commands are the ones CI and newcomers run."""
from __future__ import annotations

import re

from helpers import REPO


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_starts_with_install_and_run_then_install_and_test():
    install_and_run, install_and_test = readme_commands()
    assert "pip install -r requirements.txt" in install_and_run and install_and_run.endswith("dvc repro")
    assert "requirements-dev.txt" in install_and_test and install_and_test.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command():
    ci_lines = (REPO / ".ci/run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def test_requirements_pin_torch():
    assert "torch==2.13.0" in (REPO / "requirements.txt").read_text().splitlines()
