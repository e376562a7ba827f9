"""params.yaml validation: bad values and unknown keys stop with one line naming the key."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from helpers import REPO, write_params

from workflow.config import load_params, load_sections
from workflow.core.errors import UserError


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.source == "builtin"
    assert params.split.val_fraction == 0.05


def test_the_shipped_text_params_are_valid_and_name_a_text_competition():
    params = load_params(REPO / "configs/text.yaml")
    assert (params.data.builtin, params.data.task) == ("reviews", "text")
    assert sorted(params.ablation.variants) == ["bitfit", "full", "head", "lora-r16", "lora-r32", "lora-r8"]


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
    ("augment.normalize", "aut", "augment.normalize: Input should be 'auto' (got 'aut')"),
    ("augment.normalize", {"mean": [0.5, 0.5], "std": [1, 1, 1]}, "augment.normalize.mean: List should have at least 3"),
    ("data.task", "texts", "data.task: Input should be 'auto', 'image' or 'text' (got 'texts')"),
    ("train.select", "bset", "train.select: Input should be 'last' or 'best' (got 'bset')"),
    ("ablation.seeds", [0, 0], "ablation.seeds: expected distinct seeds >= 0, got [0, 0]"),
    ("split.folds", 3, "split.folds: list the folds, one entry each: [0, 1, 2] for 3 folds"),
    ("split.folds", [1, 2], "split.folds: expected 0, 1, ..., k-1, one entry per fold ([0, 1, 2] for 3 folds), got [1, 2]"),
    ("ablation.seeds", [], "ablation.seeds: List should have at least 1 item"),
    ("ablation.variants.lora-r4", {"train": {"seed": 3}},
     "ablation.variants.lora-r4.train.seed: the ablation's seeds are ablation.seeds"),
    ("ablation.base.train", {"seed": 3}, "ablation.base.train.seed: the ablation's seeds are ablation.seeds"),
])
def test_bad_value_names_the_key(tmp_path, key, value, expected):
    with pytest.raises(UserError) as err:
        load_params(write_params(tmp_path, {key: value}))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_is_an_error_listing_the_allowed_ones(tmp_path):
    with pytest.raises(UserError, match=r"lora.rank: unknown key \(allowed here: targets, r, alpha, dropout\)"):
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


@pytest.mark.parametrize("section, typo, nearest", [
    ("train", "epoch", "epochs"), ("augment", "previw_images", "preview_images"), ("lora", "alhpa", "alpha")])
def test_a_misspelled_key_names_the_nearest_valid_one(tmp_path, section, typo, nearest):
    path = write_params(tmp_path)
    params = yaml.safe_load(path.read_text())
    params[section][typo] = params[section].pop(nearest)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(UserError) as err:
        load_params(path)
    # The typo is reported, not the key it left missing.
    assert f"{section}.{typo}: unknown key; did you mean {section}.{nearest}?" in str(err.value)


def test_a_misspelled_variant_key_names_the_nearest_valid_one(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())["ablation"]
    params["variants"]["lora-r4"] = {"lora": {"rr": 4}}
    with pytest.raises(UserError, match=r"ablation.variants.lora-r4.lora.rr: unknown key; did you mean "
                                        r"ablation.variants.lora-r4.lora.r\? \(allowed here: targets, r, alpha"):
        load_params(write_params(tmp_path, {"ablation.variants": params["variants"]}))


def test_a_bad_candidate_value_names_its_full_key(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())["screen"]
    params["candidates"]["vit-tiny"] = {"train": {"lr": -1}}
    with pytest.raises(UserError, match=r"screen.candidates.vit-tiny.train.lr: Input should be greater than 0"):
        load_params(write_params(tmp_path, {"screen.candidates": params["candidates"]}))


def test_every_variant_is_the_base_recipe_with_its_overrides():
    params = load_params(REPO / "params.yaml")
    r16 = params.ablation.recipe("lora-r16")
    assert r16.lora.r == 16 and r16.override({"lora": {"r": 8}}) == params.ablation.recipe("lora-r8")
    assert params.ablation.recipe("full").train.lr == 0.0005 and params.ablation.base.train.lr == 0.002
    resnet = params.screen.recipe("resnet-tiny")
    assert resnet.model.name.endswith("resnet-tiny.json") and resnet.lora.targets == ["conv"]
    assert resnet.train == params.screen.base.train  # the same budget for every candidate


def test_every_key_of_a_section_must_be_present(tmp_path):
    # dvc.yaml tracks each key: DVC itself would fail on a missing one with a message of its own.
    path = write_params(tmp_path)
    params = yaml.safe_load(path.read_text())
    del params["data"]["max_bad_fraction"]  # it has a default, yet DVC needs it
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(UserError, match=r"data.max_bad_fraction: missing \(dvc.yaml tracks every key"):
        load_params(path)


def test_help_lists_every_key_with_its_type_and_range():
    result = subprocess.run([sys.executable, "-m", "workflow.config", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "  lora.r: int, >= 1" in result.stdout
    assert "  data.source: builtin | local | kaggle (default 'builtin')" in result.stdout
    assert "  ablation.base.lora.targets: list[str] (default " in result.stdout


def leaves(node: dict, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def hydra_value(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return f"'{value}'" if isinstance(value, str) else str(value)


@pytest.mark.parametrize("shipped", ["params.yaml", "configs/text.yaml"])
def test_dvc_exp_run_set_param_changes_only_the_lines_of_its_key(tmp_path, shipped):
    # `dvc exp run -S key=value` rewrites params.yaml through this function; the shipped files are
    # written the way it writes, so comments and layout survive and the diff is the one key.
    from dvc.utils.hydra import apply_overrides

    original = (REPO / shipped).read_text()
    path = tmp_path / "params.yaml"
    for key, value in leaves(yaml.safe_load(original)):
        if isinstance(value, list) and any(isinstance(v, dict) for v in value):
            continue  # augment.train: a list of transforms is not set with -S
        path.write_text(original)
        apply_overrides(str(path), [f"{key}={hydra_value(value)}"])
        assert path.read_text() == original, f"-S {key} (same value) rewrote other lines"
    path.write_text(original)
    apply_overrides(str(path), ["lora.r=16"])
    changed = [(a, b) for a, b in zip(original.splitlines(), path.read_text().splitlines()) if a != b]
    assert changed == [("  r: 8", "  r: 16")] and len(path.read_text().splitlines()) == len(original.splitlines())
