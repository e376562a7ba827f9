"""A text competition through the same stages and both engines (slow: real training, real tokenizers).

The project is the repository with configs/text.yaml as its params.yaml (the shipped text demo: the
Rotten Tomatoes reviews, written out as a Kaggle text competition), at a small size: 240 rows, the
tiny BERT for train and the ablation, and the real pretrained MiniLM (from its package) as one
screening candidate. One `dvc repro` is shared by the tests of this module; the sentence-pair
competition runs under Snakemake in a project of its own.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import REPO
from test_engines import commit, dvc_ran, dvc_status, make_project, set_params, sh, snakemake_plan, snakemake_ran

from workflow.data.token_cache import TokenCache

pytestmark = pytest.mark.slow

SMALL = {
    "data.builtin_rows": 240,
    "cache.max_length": 32,
    "model.name": "configs/models/bert-tiny.json",
    "train.epochs": 1,
    "train.lr": 0.005,
    "screen.base.train.epochs": 1,  # screen.base stays the real MiniLM: candidate minilm-l6
    "ablation.base.model.name": "configs/models/bert-tiny.json",
    "ablation.base.train.epochs": 1,
}


def text_project(root, **overrides):
    make_project(root, fast=False)
    shutil.copyfile(REPO / "configs/text.yaml", root / "params.yaml")
    set_params(root, {**SMALL, **overrides})
    commit(root, "the text demo, small")
    return root


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    root = text_project(tmp_path_factory.mktemp("text"))
    output = sh(["dvc", "repro"], root)
    commit(root, "the run to keep")
    return root, output


def check_submission(root) -> pd.DataFrame:
    sample = pd.read_csv(root / "data/raw/sample_submission.csv", dtype=str)
    predictions = pd.read_csv(root / "predictions.csv", dtype=str)
    assert list(predictions.columns) == list(sample.columns)
    assert list(predictions["id"]) == list(sample["id"])
    competition = json.loads((root / "data/raw/competition.json").read_text())
    assert set(predictions[competition["label_column"]]) <= set(competition["classes"])
    return predictions


def test_dvc_repro_runs_every_stage_of_the_same_dag_on_a_text_competition(reviews):
    root, output = reviews
    ran = dvc_ran(output)
    assert {"check_params", "download", "split", "augment", "cache", "train", "infer", "report",
            "screen_summary"} <= ran
    competition = json.loads((root / "data/raw/competition.json").read_text())
    assert competition["task"] == "text" and competition["classes"] == ["fresh", "rotten"] and not competition["pair"]
    check_submission(root)
    # The augment stage says it does nothing for text; the cache stage tokenized with the model's tokenizer.
    assert json.loads((root / "data/augment/pipelines.json").read_text())["task"] == "text"
    assert "truncated" in output and "tokenized by configs/models/bert-tiny.json's tokenizer" in output
    cache = json.loads((root / "data/cache/cache.json").read_text())
    assert cache["count"] == 240 and cache["max_length"] == 32 and 0 <= cache["truncated_share"] <= 1


def test_the_report_has_bitfit_lora_ranks_head_and_full_with_binary_f1(reviews):
    root, _ = reviews
    table = pd.read_csv(root / "reports/ablation.csv")
    assert set(table["variant"]) == {"bitfit", "lora-r8", "lora-r16", "lora-r32", "head", "full"}
    assert (table["trainable"] == table["trainable (formula)"]).all()
    for column in ("accuracy", "macro-F1", "F1", "peak memory MiB", "train s", "artefact MiB"):
        assert table[column].notna().all(), column
    by_variant = table.set_index("variant")["trainable"]
    assert by_variant["head"] < by_variant["bitfit"] < by_variant["full"]
    assert by_variant["lora-r8"] < by_variant["lora-r16"] < by_variant["lora-r32"] < by_variant["full"]
    metrics = json.loads((root / "reports/train/metrics.json").read_text())
    assert "f1" in metrics["val"] and metrics["time/tokens_per_s"] > 0
    assert ", F1 " in (root / "reports/ablation.md").read_text()


def test_the_pretrained_candidate_uses_the_cache_and_the_screening_names_a_winner(reviews):
    root, output = reviews
    # MiniLM's tokenizer is the one the tiny BERT names: the cache serves both, nothing re-tokenized.
    assert "tokenized in memory" not in output
    rows = {p.stem: json.loads(p.read_text()) for p in (root / "reports/screening").glob("*.json")}
    assert set(rows) == {"minilm-l6", "bert-tiny-random-init"}
    assert rows["minilm-l6"]["params_total"] > 20_000_000  # the real 22.7M MiniLM, not a tiny one
    assert "Winner: **" in (root / "reports/screening.md").read_text()


def test_after_dvc_both_engines_plan_nothing_then_snakemake_reruns_only_what_lora_r_reaches(reviews):
    root, _ = reviews
    assert dvc_status(root) == set() and snakemake_plan(root) == set()
    before = (root / "data/cache/input_ids.npy").read_bytes()
    set_params(root, {"lora.r": 16})
    ran = snakemake_ran(sh(["snakemake", "--cores", "1", "all"], root))
    assert ran == {"check_params", "train", "fold_0", "infer", "report", "submit", "cv"}
    assert dvc_status(root) == set() and snakemake_plan(root) == set()
    assert (root / "data/cache/input_ids.npy").read_bytes() == before  # tokenized once
    check_submission(root)


def test_a_sentence_pair_competition_is_tokenized_as_pairs_end_to_end_under_snakemake(tmp_path):
    root = text_project(tmp_path, **{"data.builtin": "review_pairs", "data.builtin_rows": 160})
    ran = snakemake_ran(sh(["snakemake", "--cores", "1", "infer"], root))
    assert ran == {"check_params", "download", "split", "augment", "cache", "train", "infer"}
    competition = json.loads((root / "data/raw/competition.json").read_text())
    assert competition["pair"] and competition["text_columns"] == ["sentence1", "sentence2"]
    assert competition["classes"] == ["different", "same"]
    tokens = TokenCache.open(root / "data/cache", root / "data/raw")
    # Each row is [CLS] a [SEP] b [SEP]: segment 0 then segment 1, never one concatenated string.
    for row in range(tokens.meta["count"]):
        length = tokens.lengths[row]
        types = np.asarray(tokens.token_type_ids[row, :length])
        assert types[0] == 0 and types[-1] == 1 and (np.diff(types) >= 0).all()
        assert (np.asarray(tokens.input_ids[row, :length]) == 102).sum() == 2  # two [SEP]
    check_submission(root)
    # What infer does not need never ran; what it needs is recorded in dvc.lock, as after `dvc repro infer`.
    never_ran = {"screen@minilm-l6", "screen@bert-tiny-random-init", "screen_summary", "report", "submit",
                 "kfold", "fold@0", "cv",
                 *(f"ablation@{v}-0" for v in ("bitfit", "lora-r8", "lora-r16", "lora-r32", "head", "full"))}
    assert dvc_status(root) == never_ran
