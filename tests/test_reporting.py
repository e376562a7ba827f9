"""One report document, two renderings: the same text, numbers and figures in Markdown and HTML."""
from __future__ import annotations

import base64

import matplotlib.pyplot as plt
import pandas as pd

from workflow.reporting.document import (Bullets, CodeBlock, Document, Figure, InlineCode, Paragraph, Section, Strong,
                                         Table)
from workflow.reporting.render import to_html, to_markdown
from workflow.reporting.tables import significant, table_text

FRAME = pd.DataFrame({"variant": ["007", "lora"], "augment": [True, False], "accuracy": [0.84716, 0.5],
                      "memory MiB": [45.1349, 12345.6], "trainable": [650, 7165541]})


def test_tables_show_three_significant_digits_thousands_and_names_as_written():
    header, rule, *rows = [[cell.strip() for cell in row.split("|")[1:-1]]
                           for row in table_text(FRAME, "pipe").splitlines()]
    assert header == list(FRAME.columns)
    assert [cell[0] + cell[-1] for cell in rule] == [":-", ":-", "-:", "-:", "-:"]  # numbers right-aligned
    assert rows == [["007", "yes", "0.847", "45.1", "650"], ["lora", "no", "0.5", "12,346", "7,165,541"]]
    assert [significant(v) for v in (40.7617, 0.000123456, 100.0, 1234.6)] == ["40.8", "0.000123", "100", "1,235"]


def test_markdown_and_html_carry_the_same_document(tmp_path):
    fig, _ = plt.subplots()
    fig.savefig(tmp_path / "chart.png")
    plt.close(fig)
    document = Document("Report", [
        Paragraph(["Winner: ", Strong("vit<1>"), ", set ", InlineCode("cache.image_size"), "."]),
        CodeBlock("dvc exp run -S 'lora.targets=[query,value]'"),
        Section("Numbers", [Table(FRAME), Figure(tmp_path / "chart.png", "chart", "What it costs.")]),
        Section("Reproducibility", [Bullets(["Seeds: train.seed 0."])]),
    ])
    markdown = to_markdown(document, tmp_path / "out/report.md")
    assert markdown.startswith("# Report\n\nWinner: **vit<1>**, set `cache.image_size`.\n\n```bash\n")
    assert "## Numbers" in markdown and "## Reproducibility\n\n- Seeds: train.seed 0.\n" in markdown
    assert "![chart](../chart.png)\n\n*What it costs.*" in markdown  # relative to the Markdown file
    page = to_html(document)
    assert "<h1>Report</h1>" in page and "<strong>vit&lt;1&gt;</strong>" in page
    assert "<code>cache.image_size</code>" in page and "&#x27;lora.targets=[query,value]&#x27;" in page
    assert "<h2>Numbers</h2>" in page and "<li>Seeds: train.seed 0.</li>" in page
    assert ">7,165,541<" in page.replace(" ", "") and "12,346" in markdown
    embedded = base64.b64encode((tmp_path / "chart.png").read_bytes()).decode()
    assert f'src="data:image/png;base64,{embedded}"' in page and "<figcaption>What it costs.</figcaption>" in page
