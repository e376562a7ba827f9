"""The split stage on a tiny real manifest: singleton classes go to train, a too-small val_fraction is one line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import write_params

from workflow.core.errors import UserError
from workflow.stages.split import main

REPO = Path(__file__).resolve().parents[1]


def write_raw(folder: Path, counts: dict[str, int]) -> Path:
    """data/raw/train.csv with `counts[label]` rows per class (the split reads only this file)."""
    rows = [(f"files/train/{label}_{i:02d}.png", label) for label, n in counts.items() for i in range(n)]
    folder.mkdir(parents=True)
    pd.DataFrame(sorted(rows), columns=["path", "label"]).to_csv(folder / "train.csv", index=False)
    return folder


def split(tmp_path: Path, val_fraction: float) -> Path:
    raw = write_raw(tmp_path / "raw", {"cat": 20, "dog": 20, "owl": 1})
    params = write_params(tmp_path, {"split.val_fraction": val_fraction})
    main(["--params", str(params), "--raw", str(raw), "--out", str(tmp_path / "split")])
    return tmp_path / "split"


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_a_class_with_one_image_goes_to_train(tmp_path):
    out = split(tmp_path, 0.1)
    train, val = read(out / "train.csv"), read(out / "val.csv")
    everything = read(tmp_path / "raw" / "train.csv")
    assert sorted([*train["path"], *val["path"]]) == list(everything["path"])  # each image once
    assert "files/train/owl_00.png" in set(train["path"])
    assert sorted(val["label"]) == ["cat", "cat", "dog", "dog"]  # 10% of the 40 splittable, stratified
    assert read(out / "class_counts.csv").values.tolist() == [
        ["cat", "18", "2"], ["dog", "18", "2"], ["owl", "1", "0"]]


def test_too_small_val_fraction_names_the_params_key(tmp_path):
    with pytest.raises(UserError) as err:
        split(tmp_path, 0.01)
    assert str(err.value) == ("split.val_fraction: 0.01 gives 0 validation images for 2 classes; "
                              "raise it to at least 0.050 so each class is seen")
    assert not (tmp_path / "split").exists()


def test_the_cli_prints_that_error_in_one_line(tmp_path):
    raw = write_raw(tmp_path / "raw", {"cat": 20, "dog": 20, "owl": 1})
    params = write_params(tmp_path, {"split.val_fraction": 0.01})
    result = subprocess.run(
        [sys.executable, "-m", "workflow.stages.split", "--params", str(params), "--raw", str(raw),
         "--out", str(tmp_path / "split")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: split.val_fraction: 0.01 gives 0 validation images")
    assert len(result.stderr.splitlines()) == 1


def test_too_large_val_fraction_names_the_params_key(tmp_path):
    with pytest.raises(UserError, match=r"split.val_fraction: 0.98 leaves 1 training images for 2 classes"):
        split(tmp_path, 0.98)


def test_only_singleton_classes_is_one_clear_line(tmp_path):
    raw = write_raw(tmp_path / "raw", {"cat": 1, "dog": 1})
    params = write_params(tmp_path, {"split.val_fraction": 0.5})
    with pytest.raises(UserError, match="every class has a single image"):
        main(["--params", str(params), "--raw", str(raw), "--out", str(tmp_path / "split")])
