"""A Document as Markdown (figures linked beside it) or as one self-contained HTML page."""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from workflow.reporting.document import (Block, Bullets, CodeBlock, Document, Figure, InlineCode, Paragraph, Section,
                                         Strong, Table, Text, runs)
from workflow.reporting.tables import table_text

# Wide tables scroll inside their own box, so the page keeps the width of a laptop's window.
STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:0.9em}"
         "td,th{border:1px solid #ccc;padding:3px 6px}td:first-child{white-space:nowrap}img{max-width:100%}"
         ".table{overflow-x:auto}"
         "pre{background:#f6f8fa;padding:8px;overflow-x:auto}figcaption{color:#555}")


def to_markdown(document: Document, dest: Path | str) -> str:
    """Markdown for the file `dest`: figures are linked relative to its folder, as viewers resolve them."""
    folder = Path(dest).parent
    blocks = [_markdown_block(block, folder, level=2) for block in document.blocks]
    return "\n\n".join([f"# {document.title}", *blocks]) + "\n"


def _markdown_text(text: Text) -> str:
    marks = {Strong: "**", InlineCode: "`"}
    return "".join(run if isinstance(run, str) else f"{marks[type(run)]}{run.text}{marks[type(run)]}"
                   for run in runs(text))


def _markdown_block(block: Block | Section, folder: Path, level: int) -> str:
    match block:
        case Section(title, blocks):
            return "\n\n".join([f"{'#' * level} {title}", *(_markdown_block(b, folder, level + 1) for b in blocks)])
        case Paragraph(text):
            return _markdown_text(text)
        case Bullets(items):
            return "\n".join(f"- {_markdown_text(item)}" for item in items)
        case CodeBlock(code, language):
            return f"```{language}\n{code}\n```"
        case Table(frame):
            return table_text(frame, "pipe")
        case Figure(path, alt, caption):
            return f"![{alt}]({Path(os.path.relpath(path, folder)).as_posix()})\n\n*{caption}*"
    raise TypeError(f"not a report block: {block!r}")


def to_html(document: Document) -> str:
    """One HTML page that needs no other file: figures are embedded as base64 PNG."""
    title = html.escape(document.title)
    return "\n".join([
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{STYLE}</style></head><body>", f"<h1>{title}</h1>",
        *(_html_block(block, level=2) for block in document.blocks),
        "</body></html>",
    ]) + "\n"


def _html_text(text: Text) -> str:
    tags = {Strong: "strong", InlineCode: "code"}
    return "".join(html.escape(run) if isinstance(run, str)
                   else f"<{tags[type(run)]}>{html.escape(run.text)}</{tags[type(run)]}>" for run in runs(text))


def _html_block(block: Block | Section, level: int) -> str:
    match block:
        case Section(title, blocks):
            return "\n".join([f"<h{level}>{html.escape(title)}</h{level}>", *(_html_block(b, level + 1) for b in blocks)])
        case Paragraph(text):
            return f"<p>{_html_text(text)}</p>"
        case Bullets(items):
            return "<ul>" + "".join(f"<li>{_html_text(item)}</li>" for item in items) + "</ul>"
        case CodeBlock(code, language):
            return f'<pre><code class="language-{language}">{html.escape(code)}</code></pre>'
        case Table(frame):
            return f'<div class="table">{table_text(frame, "html")}</div>'
        case Figure(path, alt, caption):
            data = base64.b64encode(Path(path).read_bytes()).decode()
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    raise TypeError(f"not a report block: {block!r}")
