"""Decode every image of a competition once, so later stages meet only files they can read.

Test images must all decode: the submission needs a prediction for every id, so the first bad one
is an error naming the file and its sample_submission line. Bad training images (empty, not an
image, truncated or corrupt, over the pixel limit) are skipped and reported, as are images that no
row of the labels CSV names; the run fails when more than data.max_bad_fraction of the labelled
training images are bad, or when a class loses every image.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from workflow.core.errors import UserError
from workflow.data.images import BadImage, load_rgb
from workflow.data.layout import Competition


def image_problem(path: Path) -> str | None:
    """Why `path` cannot be decoded by load_rgb, or None if it can."""
    try:
        load_rgb(path)
    except BadImage as err:
        return err.reason
    return None


def _problems(paths: Iterable[Path]) -> list[str | None]:
    # Pillow releases the GIL while decoding, so threads make this several times faster on large
    # competitions; map keeps the input order, so the outcome does not depend on scheduling.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        return list(pool.map(image_problem, paths))


def check_images(competition: Competition, max_bad_fraction: float) -> tuple[Competition, list[tuple[Path, str]]]:
    """The competition with bad training images left out, and every skipped image with the reason."""
    root, submission = competition.root, competition.sample_submission.name
    test_images = [image for _, image in competition.test]
    for line, ((image_id, image), problem) in enumerate(zip(competition.test, _problems(test_images)), start=2):
        if problem:
            raise UserError(f"{image.relative_to(root)}: the test image for id '{image_id}' ({submission} "
                            f"line {line}) {problem}; the submission needs every id, so replace the file")

    train_problems = _problems(image for image, _ in competition.train)
    good = [item for item, problem in zip(competition.train, train_problems) if not problem]
    bad = [(image, problem) for (image, _), problem in zip(competition.train, train_problems) if problem]
    if bad and len(bad) > max_bad_fraction * len(competition.train):
        first, why = bad[0]
        raise UserError(f"{len(bad)} of {len(competition.train)} training images "
                        f"({len(bad) / len(competition.train):.1%}) cannot be read, more than "
                        f"data.max_bad_fraction={max_bad_fraction}; the first: {first.relative_to(root)} {why}; "
                        "replace the files or raise data.max_bad_fraction in params.yaml")
    lost = sorted(set(competition.classes) - {label for _, label in good})
    if lost:
        image = next(image for image, label in competition.train if label == lost[0])
        raise UserError(f"class '{lost[0]}' has no readable training image left (e.g. "
                        f"{image.relative_to(root)} {dict(bad)[image]}); replace its images")

    labels_csv = competition.labels_csv.name if competition.labels_csv else "the labels CSV"
    skipped = bad + [(image, f"has no label: no row of {labels_csv} names it")
                     for image in competition.unlabelled]
    return replace(competition, train=good), skipped
