"""params.yaml validation: bad values and unknown keys stop with one line naming the key."""
from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO, write_params
from workflow.config import load_params, load_sections
from workflow.errors import UserError


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.source == "builtin"
    assert params.split.val_fraction == 0.05


@pytest.mark.parametrize("key, value, expected", [
    ("lora.r", 0, "lora.r: Input should be greater than or equal to 1 (got 0)"),
    ("train.lr", -1, "train.lr: Input should be greater than 0 (got -1)"),
    ("split.val_fraction", 1.5, "split.val_fraction: Input should be less than 1 (got 1.5)"),
    ("train.epochs", "ten", "train.epochs: Input should be a valid integer (got 'ten')"),
    ("train.batch_size", 8.5, "train.batch_size: Input should be a valid integer"),
    ("data.source", "s3", "data.source: Input should be 'builtin', 'local' or 'kaggle'"),
    ("data.source", "local", "data.path: source 'local' needs the path of a zip or folder"),
    ("data.source", "kaggle", "data.competition: source 'kaggle' needs a competition slug"),
    ("augment.normalize", {"mean": [0, 0, 0], "std": [1, 0, 1]}, "augment.normalize.std: every std must be > 0"),
])
def test_bad_value_names_the_key(tmp_path, key, value, expected):
    with pytest.raises(UserError) as err:
        load_params(write_params(tmp_path, {key: value}))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_is_an_error_listing_the_allowed_ones(tmp_path):
    with pytest.raises(UserError, match=r"lora.rank: unknown key \(allowed here: r, alpha, dropout, targets\)"):
        load_params(write_params(tmp_path, {"lora.rank": 8}))


def test_unknown_section_is_an_error(tmp_path):
    path = write_params(tmp_path)
    path.write_text(path.read_text() + "\noptimiser: {name: sgd}\n")
    with pytest.raises(UserError, match="optimiser: unknown key"):
        load_params(path)


def test_targets_accept_a_comma_separated_string(tmp_path):
    sections = load_sections("lora", path=write_params(tmp_path, {"lora.targets": "query, value"}))
    assert sections["lora"].targets == ["query", "value"]


def test_a_stage_gets_only_its_sections(tmp_path):
    assert set(load_sections("model", "lora", path=write_params(tmp_path))) == {"model", "lora"}


def test_invalid_params_stop_a_stage_with_one_line_and_exit_2(tmp_path):
    params = write_params(tmp_path, {"lora.r": 0})
    result = subprocess.run(
        [sys.executable, "-m", "workflow.stages.split", "--params", str(params), "--out", str(tmp_path / "s")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {params}: lora.r: Input should be greater than or "
                                                  f"equal to 1 (got 0); fix it in {params}"]
    assert not (tmp_path / "s").exists()
