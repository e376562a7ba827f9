"""What a report says, independent of its format: a title, then sections of blocks.

The stages build a Document; render.py writes it as Markdown or as a self-contained HTML page, so
both files always carry the same text, tables and figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Strong:
    """Emphasised words inside a paragraph (the winner's name)."""

    text: str


@dataclass(frozen=True)
class InlineCode:
    """A params key or a name the reader types, inside a paragraph."""

    text: str


Inline = str | Strong | InlineCode
Text = Inline | list[Inline]  # one run of text, or runs of several kinds in a row


@dataclass(frozen=True)
class Paragraph:
    text: Text


@dataclass(frozen=True)
class Bullets:
    items: list[Text]


@dataclass(frozen=True)
class CodeBlock:
    """A command to copy as it is."""

    code: str
    language: str = "bash"


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame


@dataclass(frozen=True)
class Figure:
    """A PNG written by the stage: Markdown links it, HTML embeds it."""

    path: Path
    alt: str
    caption: str


Block = Paragraph | Bullets | CodeBlock | Table | Figure


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block | Section] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    title: str
    blocks: list[Block | Section] = field(default_factory=list)


def runs(text: Text) -> list[Inline]:
    """The runs of a Text: a single run stands alone, several come as a list."""
    return text if isinstance(text, list) else [text]
