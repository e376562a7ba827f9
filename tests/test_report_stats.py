"""The report's statistics: the intervals, the verdict against the best, the Pareto front and the headline."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import f1_score

from workflow.reporting.choice import OVERLAP_RULE, PAIRED_RULE, headline, judge, pareto_front, pick
from workflow.reporting.document import InlineCode, Strong
from workflow.reporting.intervals import (RESAMPLES, bootstrap_macro_f1, clopper_pearson, macro_f1,
                                          paired_accuracy_difference, resamples)
from workflow.reporting.variants import Validation, lora_rank, rank_sweep, summarize


@pytest.mark.parametrize(("correct", "total"), [(0, 72), (1, 72), (61, 72), (72, 72), (36, 50), (999, 1000)])
def test_clopper_pearson_is_scipys_exact_interval(correct, total):
    expected = binomtest(correct, total).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(correct, total) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_macro_f1_is_sklearns_on_every_draw_and_the_bootstrap_is_seeded():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, 60)
    guess = np.where(rng.random(60) < 0.7, truth, rng.integers(0, 7, 60))  # classes 5, 6 only predicted
    draws = resamples(60)
    assert draws.shape == (RESAMPLES, 60) and (draws == resamples(60)).all()
    scores = macro_f1(truth[draws[:50]], guess[draws[:50]], classes=7)
    assert scores == pytest.approx([f1_score(truth[d], guess[d], average="macro") for d in draws[:50]], abs=1e-12)
    low, high = bootstrap_macro_f1(truth, guess, 7, draws)
    assert low < f1_score(truth, guess, average="macro") < high
    assert (low, high) == bootstrap_macro_f1(truth, guess, 7, resamples(60))  # the same bytes on every run


def test_the_paired_difference_sees_a_consistent_gain_that_unpaired_intervals_miss():
    truth = np.zeros(72, dtype=int)
    worse = np.ones(72, dtype=int)
    worse[:58] = 0  # 58 of 72 right
    better = worse.copy()
    better[58:64] = 0  # the same rows right, and 6 more: 64 of 72
    draws = resamples(72)
    low, high = paired_accuracy_difference(truth, better, worse, draws)
    assert 0 < low < 6 / 72 < high
    # Unpaired, the two accuracy intervals overlap: the overlap rule would call them the same.
    assert clopper_pearson(64, 72)[0] < clopper_pearson(58, 72)[1]
    assert paired_accuracy_difference(truth, worse, worse, draws) == (0.0, 0.0)


def test_pareto_front():
    cost = pd.Series([10, 20, 20, 40, 5, 40])
    benefit = pd.Series([0.5, 0.7, 0.6, 0.7, 0.5, 0.9])
    # 10 is beaten by 5 at the same benefit; (20, 0.6) by (20, 0.7); (40, 0.7) by (20, 0.7).
    assert pareto_front(cost, benefit).tolist() == [False, True, False, False, True, True]


def rows(*variants: tuple[str, str, int, int, float]) -> pd.DataFrame:
    """Job rows of (name, method, trainable, right of 50, seconds)."""
    return pd.DataFrame([{"variant": name, "method": method, "augment": True, "seed": 0, "val_accuracy": right / 50,
                          "val_macro_f1": right / 50 - 0.01, "params_trainable": trainable, "train_seconds": seconds,
                          "training_rss_mib": 40.7617, "artefact_mib": trainable * 4 / 2**20}
                         for name, method, trainable, right, seconds in variants])


VALIDATION = Validation(np.zeros(50, dtype=int), 2)


def test_the_headline_picks_the_cheapest_variant_whose_interval_overlaps_the_best():
    variants = summarize(rows(("head", "head", 500, 30, 10.0), ("lora-r8", "lora r=8", 4_000, 42, 20.0),
                              ("full", "full", 200_000, 45, 60.0)), VALIDATION)
    verdict = judge(variants, VALIDATION)
    assert verdict.best == "full" and verdict.rules == (OVERLAP_RULE,)
    assert verdict.indistinguishable.tolist() == [False, True, True]  # head: 30 of 50 is out of reach
    assert pick(variants.table, verdict) == "lora-r8"
    choice, context = headline(variants.table.assign(memory=variants.table["training_rss_mib"]), verdict, VALIDATION)
    assert choice[0] == Strong("Pick lora-r8") and choice[2] == InlineCode("full")
    text = "".join(run if isinstance(run, str) else run.text for run in choice)
    assert text == ("Pick lora-r8 (lora r=8): its validation accuracy, 84% (95% CI 70.9-92.8), cannot be told from "
                    "that of the best variant, full, 90% (95% CI 78.2-96.7), and it trains 50x fewer parameters. It "
                    "costs 4,000 trainable parameters, 20 s training, 40.8 MiB peak memory, a 0.0153 MiB artefact; "
                    "full costs 200,000 trainable parameters, 60 s training, 40.8 MiB peak memory, a 0.763 MiB "
                    "artefact.")
    assert context.startswith("1 of the other 2 variants cannot be told from the best on 50 validation rows (one row "
                              "is 2 points of accuracy).") and OVERLAP_RULE in context


def test_when_the_best_is_also_the_cheapest_it_is_the_pick():
    variants = summarize(rows(("head", "head", 500, 49, 10.0), ("full", "full", 200_000, 30, 60.0)), VALIDATION)
    verdict = judge(variants, VALIDATION)
    choice, _ = headline(variants.table, verdict, VALIDATION)
    assert choice[0] == Strong("Pick head") and "no cheaper variant is indistinguishable from it" in choice[1]
    assert "peak memory" not in choice[1]  # no memory column given


def test_per_row_predictions_switch_the_verdict_to_the_paired_bootstrap():
    table = rows(("a", "head", 10, 40, 1.0), ("b", "full", 20, 45, 1.0))
    truth = VALIDATION.truth
    table["val_predicted"] = [np.where(np.arange(50) < right, 0, 1).tolist() for right in (40, 45)]
    variants = summarize(table, VALIDATION)
    assert set(variants.predicted) == {"a", "b"}
    assert variants.table["val_macro_f1_low"].notna().all()
    verdict = judge(variants, VALIDATION)
    assert verdict.rules == (PAIRED_RULE,) and verdict.indistinguishable.tolist() == [False, True]
    assert (variants.predicted["b"][0] == truth).sum() == 45


def test_seeds_of_a_variant_are_one_line_with_mean_spread_and_pooled_interval():
    table = rows(("r8", "lora r=8", 4_000, 40, 20.0), ("r8", "lora r=8", 4_000, 44, 22.0), ("full", "full", 9, 45, 1.0))
    table.loc[1, "seed"] = 1
    line = summarize(table, VALIDATION).table.set_index("variant").loc["r8"]
    assert line["seeds"] == 2 and line["val_accuracy"] == pytest.approx(0.84) and line["train_seconds"] == 21.0
    assert line["val_accuracy_sd"] == pytest.approx(np.std([0.8, 0.88], ddof=1))
    expected = binomtest(84, 100).proportion_ci(method="exact")
    assert (line["val_accuracy_low"], line["val_accuracy_high"]) == pytest.approx((expected.low, expected.high))


def test_the_rank_sweep_is_the_lora_variants_that_differ_only_in_rank():
    method = "lora r={} alpha={} dropout=0.1 targets=query,value"
    table = pd.DataFrame({
        "variant": ["r16", "r4", "r8", "r8-no-aug", "full", "r8-qkv"],
        "method": [method.format(16, 32), method.format(4, 8), method.format(8, 16), method.format(8, 16), "full",
                   "lora r=8 alpha=16 dropout=0.1 targets=query,key,value"],
        "augment": [True, True, True, False, True, True]})
    assert rank_sweep(table)["variant"].tolist() == ["r4", "r8", "r16"]
    assert rank_sweep(table.iloc[[3, 4, 5]]).empty
    assert lora_rank("lora r=32 alpha=16") == 32 and lora_rank("last_layers N=1") is None
