"""What to pick: the best variant, those the validation split cannot tell from it, the Pareto front,
and the headline that names the cheapest variant as good as the best, with the costs of both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workflow.reporting.document import InlineCode, Strong, Text
from workflow.reporting.intervals import paired_accuracy_difference
from workflow.reporting.tables import significant
from workflow.reporting.variants import Validation, Variants

OVERLAP_RULE = "its 95% accuracy interval overlaps the best's"
PAIRED_RULE = ("the 95% paired-bootstrap interval of its accuracy difference to the best (the same resampled "
               "validation rows for both) contains 0")


def best_of(table: pd.DataFrame, name: str = "variant") -> int:
    """The position of the best row: highest accuracy, then macro-F1, then fewer trainable parameters."""
    order = table.sort_values(["val_accuracy", "val_macro_f1", "params_trainable", name],
                              ascending=[False, False, True, True])
    return table.index.get_loc(order.index[0])


def overlaps_best(table: pd.DataFrame, best: int) -> pd.Series:
    """Rows whose accuracy interval reaches the best's (the best included)."""
    return (table["val_accuracy_high"] >= table["val_accuracy_low"].iloc[best]) & (
        table["val_accuracy_low"] <= table["val_accuracy_high"].iloc[best])


@dataclass(frozen=True)
class Verdict:
    best: str
    indistinguishable: pd.Series  # bool per row of the table: cannot be told from the best (the best included)
    rules: tuple[str, ...]  # the rule(s) used, as the report states them


def judge(variants: Variants, validation: Validation) -> Verdict:
    """Which variants are indistinguishable from the best: a paired bootstrap where both carry
    per-row predictions, otherwise overlapping intervals."""
    table = variants.table
    best = best_of(table)
    best_name = table["variant"].iloc[best]
    overlapping = overlaps_best(table, best)
    same, used = [], set()
    for index, name in table["variant"].items():
        if name in variants.predicted and best_name in variants.predicted:
            low, _ = paired_accuracy_difference(validation.truth, variants.predicted[best_name],
                                                variants.predicted[name], validation.draws)
            same.append(name == best_name or low <= 0)
            used.add(PAIRED_RULE)
        else:
            same.append(bool(overlapping[index]))
            used.add(OVERLAP_RULE)
    rules = tuple(rule for rule in (PAIRED_RULE, OVERLAP_RULE) if rule in used)
    return Verdict(best_name, pd.Series(same, index=table.index), rules)


def pareto_front(cost: pd.Series, benefit: pd.Series) -> pd.Series:
    """True where no other point costs as little or less and gives as much or more (one strictly)."""
    c, b = cost.to_numpy(dtype=float), benefit.to_numpy(dtype=float)
    cheaper, better = c[None, :] <= c[:, None], b[None, :] >= b[:, None]  # [i, j]: j against i
    strictly = (c[None, :] < c[:, None]) | (b[None, :] > b[:, None])
    return pd.Series(~(cheaper & better & strictly).any(axis=1), index=cost.index)


def percent(value: float) -> str:
    return f"{significant(100 * value)}%"


def with_interval(row: pd.Series, score: str = "val_accuracy") -> str:
    """'84.7% (95% CI 75.1-91.2)'."""
    return (f"{percent(row[score])} (95% CI {significant(100 * row[f'{score}_low'])}-"
            f"{significant(100 * row[f'{score}_high'])})")


def costs(row: pd.Series) -> str:
    """What a variant costs, in the table's units ('memory': the table's peak memory column)."""
    parts = [f"{int(row['params_trainable']):,} trainable parameters",
             f"{significant(row['train_seconds'])} s training"]
    if not pd.isna(row.get("memory", np.nan)):
        parts.append(f"{significant(row['memory'])} MiB peak memory")
    if not pd.isna(row.get("artefact_mib", np.nan)):
        parts.append(f"a {significant(row['artefact_mib'])} MiB artefact")
    return ", ".join(parts)


def pick(table: pd.DataFrame, verdict: Verdict) -> str:
    """The cheapest variant (fewest trainable parameters) that cannot be told from the best."""
    candidates = table[verdict.indistinguishable.to_numpy()]
    return candidates.sort_values(["params_trainable", "val_accuracy", "variant"],
                                  ascending=[True, False, True])["variant"].iloc[0]


def headline(table: pd.DataFrame, verdict: Verdict, validation: Validation) -> list[Text]:
    """The report's first lines: what to pick and why, in the numbers of the table."""
    rows = table.set_index("variant", drop=False)
    best, cheapest = rows.loc[verdict.best], rows.loc[pick(table, verdict)]
    if cheapest["variant"] == verdict.best:
        choice = [Strong(f"Pick {verdict.best}"),
                  (f" ({best['method']}): the best validation accuracy, {with_interval(best)}, and no cheaper "
                   f"variant is indistinguishable from it. It costs {costs(best)}.")]
    else:
        ratio = best["params_trainable"] / max(cheapest["params_trainable"], 1)
        choice = [Strong(f"Pick {cheapest['variant']}"),
                  (f" ({cheapest['method']}): its validation accuracy, {with_interval(cheapest)}, cannot be told "
                   "from that of the best variant, "), InlineCode(verdict.best),
                  (f", {with_interval(best)}, and it trains {significant(ratio)}x fewer parameters. It costs "
                   f"{costs(cheapest)}; {verdict.best} costs {costs(best)}.")]
    others = int(verdict.indistinguishable.sum()) - 1
    rule = " or, without per-row predictions, ".join(verdict.rules)
    context = (f"{others} of the other {len(table) - 1} variants cannot be told from the best on "
               f"{validation.size} validation rows (one row is {significant(100 / validation.size)} points of "
               f"accuracy). A variant is indistinguishable from the best when {rule}.")
    return [choice, context]
