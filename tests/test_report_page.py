"""The report stage on hand-made inputs: one page, in Markdown and HTML, checked as a user sees it.

The browser test opens the HTML in headless Chromium (Debian's `chromium` package; .ci/run installs
it): no broken image, no console message, and a screenshot saved with the test's output.
"""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from report_inputs import ROWS, VARIANTS, job_row, write_inputs

from workflow.core.errors import UserError
from workflow.stages import report

WIDTH = 1280  # a laptop's browser window
FIGURES = 6  # screening, training curves, ablation bars, rank sweep, cost against benefit, confusion matrix


def tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every pipe table of a Markdown page, as rows of {header: cell}, runs of spaces (not NBSP) as one."""
    found = []
    for block in markdown.split("\n\n"):
        lines = block.splitlines()
        if len(lines) > 2 and all(line.startswith("|") for line in lines):
            cells = [[re.sub(" +", " ", cell.strip(" ")) for cell in line.split("|")[1:-1]] for line in lines]
            found.append([dict(zip(cells[0], row)) for row in cells[2:]])
    return found


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """The report's outputs folder, written once for this module."""
    root = tmp_path_factory.mktemp("report")
    report.main(write_inputs(root))
    return root / "out"


def test_the_page_opens_with_the_pick_and_carries_every_section(page):
    markdown = (page / "ablation.md").read_text()
    first = markdown.split("\n\n")[1]
    # full is best (38 of 40); lora-r8 (36) is the cheapest whose paired difference to it contains 0.
    assert first.startswith("**Pick lora-r8** (lora r=8 ")
    assert "cannot be told from that of the best variant, `full`, 95% (95% CI 83.1-99.4)" in first
    assert "3,588 trainable parameters, 15 s training, 40.8 MiB peak memory, a 0.02 MiB artefact" in first
    assert "one row is 2.5 points of accuracy" in markdown and "paired-bootstrap" in markdown
    titles = re.findall(r"^## (.+)$", markdown, re.M)
    assert titles == ["Screening", "Main model", "Ablation", "Per-class results and confusion matrix",
                      "Reproducibility: environment and seeds"]
    assert "Winner: **vit-tiny**, validation accuracy 85% (95% CI 70.2-94.3)" in markdown
    assert "validation accuracy 87.5% (95% CI 73.2-95.8)" in markdown and "epoch 4 of 5 trained" in markdown
    # 3 significant figures in the tables, units in the headers, intervals beside the scores (unbroken).
    screening, ablation, classes = tables(markdown)
    assert [row["vs winner"] for row in screening] == ["winner", "overlaps", "overlaps"]
    row = next(row for row in ablation if row["variant"] == "lora-r8")
    assert row == {"variant": "lora-r8", "method": "lora r=8 alpha=16 dropout=0.1 targets=query,value",
                   "augment": "yes", "accuracy % [95% CI]": "90\u00a0[76.3,\u00a097.2]",
                   "macro-F1 % [95% CI]": "90\u00a0[78.7,\u00a097.8]",
                   "log loss": "0.54", "trainable": "3,588", "trainable (formula)": "3,588", "trainable %": "1.86",
                   "peak memory MiB": "40.8", "train s": "15", "artefact MiB": "0.02", "vs best": "\u2248\u00a0best",
                   "Pareto": "yes"}
    assert [row["vs best"] for row in ablation] == ["worse"] * 3 + ["\u2248\u00a0best"] * 2 + ["best"]
    assert classes[0] == {"class": "cat", "precision": "0.818", "recall": "0.9", "f1-score": "0.857", "support": "10"}
    assert "40.7617" not in markdown and "40.76" not in markdown
    assert len(re.findall(r"^!\[", markdown, re.M)) == FIGURES
    assert "![screening](../screening.png)" in markdown  # screen_summary's chart, linked from beside the page


def test_the_html_embeds_every_figure_and_the_csv_keeps_raw_numbers(page):
    html = (page / "ablation.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == FIGURES
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.format == "PNG" and image.size[0] >= 500
    assert html.index("Pick lora-r8") < html.index("<h2>Screening</h2>")
    table = pd.read_csv(page / "ablation.csv")
    assert list(table["variant"]) == ["head", "bitfit", "lora-r4", "lora-r8", "lora-r16", "full"]  # cheapest first
    assert table.loc[3, "accuracy"] == 0.9 and 0.76 < table.loc[3, "accuracy low"] < 0.77
    assert list(table["indistinguishable from best"]) == [False, False, False, True, True, True]
    assert table["Pareto (trainable)"].all()
    assert "seeds" in table and "accuracy sd" not in table  # one seed each: no spread to show
    summary = json.loads((page / "ablation.json").read_text())["ablations"]
    assert summary["full"] == {"accuracy": 0.95, "macro_f1": pytest.approx(0.9499, abs=1e-4),
                               "trainable_params": 192_586}


def test_without_per_row_predictions_the_rule_is_overlapping_intervals(tmp_path):
    args = write_inputs(tmp_path, with_predictions=False)
    report.main(args)
    markdown = (tmp_path / "out/ablation.md").read_text()
    assert "its 95% accuracy interval overlaps the best's" in markdown and "paired" not in markdown
    # head's interval (50.9-81.4) reaches full's (83.1-99.4)? No; bitfit's (61.5-89.2) does: bitfit is the pick.
    assert markdown.split("\n\n")[1].startswith("**Pick bitfit** (bitfit)")
    head = tables(markdown)[1][0]  # macro-F1 has no interval without per-row predictions
    assert (head["accuracy % [95% CI]"], head["macro-F1 % [95% CI]"]) == ("67.5\u00a0[50.9,\u00a081.4]", "67.5")


def test_several_seeds_show_their_count_mean_and_spread(tmp_path):
    args = write_inputs(tmp_path, seeds=(0, 1, 2))
    for variant in VARIANTS:  # lora-r8's seeds differ, the others' agree
        for seed, shift in ((1, -2), (2, 2)):
            row = job_row(variant, seed=seed, shift=shift if variant == "lora-r8" else 0)
            (tmp_path / f"ablation/{variant}-{seed}.json").write_text(json.dumps(row))
    report.main(args)
    table = pd.read_csv(tmp_path / "out/ablation.csv").set_index("variant")
    assert table.loc["lora-r8", "seeds"] == 3 and table.loc["full", "seeds"] == 3
    assert table.loc["full", "accuracy sd"] == pytest.approx(0, abs=1e-12)
    assert table.loc["lora-r8", "accuracy"] == pytest.approx(0.9)  # 34, 36 and 38 of 40
    assert table.loc["lora-r8", "accuracy sd"] == pytest.approx(0.05)
    markdown = (tmp_path / "out/ablation.md").read_text()
    row = next(row for row in tables(markdown)[1] if row["variant"] == "lora-r8")
    # The interval pools every seed's rows: 108 of 120 right.
    assert (row["seeds"], row["accuracy % [95% CI]"], row["accuracy sd %"]) == ("3", "90\u00a0[83.2,\u00a094.7]", "5")
    assert "ablation seeds 0, 1, 2." in markdown


def test_a_missing_input_is_one_line_naming_the_stage_to_run(tmp_path):
    args = write_inputs(tmp_path)
    (tmp_path / "screening_winner.json").unlink()
    with pytest.raises(UserError, match=r"screening_winner.json: missing; run the screen_summary stage first"):
        report.main(args)
    write_inputs(tmp_path)
    (tmp_path / "ablation/full-0.json").write_text(json.dumps(job_row("full") | {"val_predicted": [0] * (ROWS - 1)}))
    with pytest.raises(UserError, match=f"full: val_predicted has {ROWS - 1} rows, the validation split {ROWS}"):
        report.main(args)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHECK = """<script>
window.addEventListener("load", () => {
  const broken = [...document.images].filter(image => !image.complete || image.naturalWidth === 0).length;
  document.body.dataset.images = document.images.length;
  document.body.dataset.broken = broken;
  document.body.dataset.height = document.documentElement.scrollHeight;
});
</script>"""


def browse(browser: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """One headless Chromium run on `page`, its console messages on stderr."""
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120)


def open_in_browser(browser: str, page: Path, tmp_path: Path) -> tuple[dict[str, int], list[str]]:
    """The page's images (count, broken) and height as a loaded copy with CHECK reports them, and
    every console message (errors, uncaught exceptions) Chromium logged for the page itself."""
    checked = tmp_path / f"checked-{page.name}"
    checked.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    result = browse(browser, checked, tmp_path / "profile", "--dump-dom", f"--window-size={WIDTH},800")
    assert result.returncode == 0, result.stderr[-2000:]
    found = dict(re.findall(r'data-(images|broken|height)="(\d+)"', result.stdout))
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return {key: int(value) for key, value in found.items()}, console


@pytest.mark.skipif(chromium() is None, reason="no chromium: `apt-get install -y chromium` (as .ci/run does)")
def test_the_html_in_a_real_browser_has_no_broken_image_or_console_error(page, tmp_path):
    browser = chromium()
    # The check itself: a broken image and a script error are seen.
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><html><body><img src="data:image/png;base64,AAAA" alt="x">'
                   "<script>undefinedFunction()</script></body></html>")
    found, console = open_in_browser(browser, bad, tmp_path)
    assert found["broken"] == 1 and any("Uncaught ReferenceError" in line for line in console)

    found, console = open_in_browser(browser, page / "ablation.html", tmp_path)
    assert found["images"] == FIGURES and found["broken"] == 0, found
    assert console == []
    # A screenshot of the whole page at a laptop's width, kept with the test's output.
    shot = tmp_path / "report.png"
    result = browse(browser, page / "ablation.html", tmp_path / "profile", f"--screenshot={shot}",
                    f"--window-size={WIDTH},{found['height']}", "--hide-scrollbars")
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (WIDTH, found["height"])
        assert len(image.convert("L").getcolors(2**16) or []) > 50  # drawn, not a blank page
    print(f"screenshot: {shot}")
