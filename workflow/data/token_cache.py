"""The tokenize-once text cache: every training and test row tokenized once by the model's own
tokenizer, stored as arrays that every epoch, job and worker memory-maps (as the image cache does).

    data/cache/input_ids.npy       int32 [N, L], right-padded with the tokenizer's pad id; L = cache.max_length
    data/cache/token_type_ids.npy  int8 [N, L] (segment ids of a sentence pair; zeros for one sentence)
    data/cache/lengths.npy         int32 [N]: real tokens per row (batches are cut to their longest)
    data/cache/index.csv           part,id,row: each manifest row ('train' or 'test', its id) and its row
    data/cache/cache.json          the tokenizer (name, sha256 of its serialization), max_length, how many
                                   rows were truncated, the sha256 of the manifests and of the arrays
                                   (checked on every open: a damaged cache is refused)

A row longer than L is truncated (a pair: the longer text first, tokenizers' longest_first); the
share of truncated rows is recorded and printed, so max_length can be chosen from the data.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workflow.core.errors import UserError
from workflow.data.cache import MANIFESTS, manifest_digest
from workflow.models.tokenizers import fingerprint

ARRAYS = ("input_ids", "token_type_ids", "lengths")
INDEX_FILE, META_FILE = "index.csv", "cache.json"
PARTS = dict(zip(("train", "test"), MANIFESTS))  # part -> its manifest in data/raw
REBUILD = "rebuild it (dvc repro cache, or python -m workflow.stages.cache)"


@dataclass(frozen=True)
class TokenCache:
    """Tokenized rows (memory-mapped when opened from a folder), and each (part, id)'s row."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray
    rows: dict[tuple[str, str], int]
    meta: dict

    @property
    def array_sha256(self) -> str:  # identifies the tokens (training checkpoints are tied to them)
        return self.meta["array_sha256"]

    @property
    def max_length(self) -> int:
        return int(self.meta["max_length"])

    @property
    def model_inputs(self) -> list[str]:
        """The inputs the tokenizer makes for its model: BERT takes token_type_ids, RoBERTa-style ones may not."""
        return self.meta["model_inputs"]

    @classmethod
    def tokenize(cls, raw: Path | str, tokenizer, tokenizer_name: str, max_length: int) -> "TokenCache":
        """Tokenize every row of raw's manifests in memory."""
        raw = Path(raw)
        frames = [pd.read_csv(raw / name, dtype=str, keep_default_na=False).assign(part=part)
                  for part, name in PARTS.items()]
        rows = pd.concat(frames, ignore_index=True)
        pair = "text_pair" in rows.columns
        texts = rows["text"].tolist()
        pairs = rows["text_pair"].tolist() if pair else None
        full = tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"]  # only to count truncation
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        input_ids = np.full((len(rows), max_length), tokenizer.pad_token_id or 0, dtype=np.int32)
        token_type_ids = np.zeros((len(rows), max_length), dtype=np.int8)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int32)
        for i, ids in enumerate(encoded["input_ids"]):
            input_ids[i, :len(ids)] = ids
            if "token_type_ids" in encoded:
                token_type_ids[i, :len(ids)] = encoded["token_type_ids"][i]
        arrays = {"input_ids": input_ids, "token_type_ids": token_type_ids, "lengths": lengths}
        truncated = int(sum(len(ids) > max_length for ids in full))
        meta = {"task": "text", "tokenizer": tokenizer_name, "tokenizer_sha256": fingerprint(tokenizer),
                "model_inputs": [name for name in ("input_ids", "token_type_ids", "attention_mask")
                                 if name in tokenizer.model_input_names],
                "max_length": max_length, "count": len(rows), "pair": pair, "truncated": truncated,
                "truncated_share": truncated / max(len(rows), 1),
                "longest_tokens": int(max((len(ids) for ids in full), default=0)),
                "manifests_sha256": manifest_digest(raw), "array_sha256": arrays_digest(arrays)}
        keys = dict(zip(zip(rows["part"], rows["id"]), range(len(rows))))
        return cls(**arrays, rows=keys, meta=meta)

    def write(self, out: Path | str) -> None:
        """Into `out` (a new folder): the arrays, index.csv and cache.json."""
        out = Path(out)
        out.mkdir(parents=True)
        for name in ARRAYS:
            np.save(out / f"{name}.npy", getattr(self, name))
        index = pd.DataFrame([(part, key, row) for (part, key), row in self.rows.items()], columns=["part", "id", "row"])
        index.to_csv(out / INDEX_FILE, index=False)
        (out / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n")

    @classmethod
    def open(cls, folder: Path | str, raw: Path | str) -> "TokenCache":
        """Open the cache built from `raw`; a stale, damaged or missing one is a UserError saying what to run."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text())
            meta["array_sha256"], meta["manifests_sha256"]  # noqa: B018 (a record without them is not ours)
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
            index = pd.read_csv(folder / INDEX_FILE, dtype={"part": str, "id": str, "row": np.int64},
                                keep_default_na=False)
        except FileNotFoundError:
            raise UserError(f"{folder}: no token cache here; build it with the cache stage (dvc repro cache)") from None
        except (ValueError, KeyError, TypeError, EOFError) as err:
            raise UserError(f"{folder}: not a readable token cache ({type(err).__name__}: {err}); {REBUILD}") from None
        if meta["manifests_sha256"] != manifest_digest(raw):
            raise UserError(f"{folder}: the token cache was built from other rows than {raw} lists; "
                            f"rebuild it (dvc repro cache)")
        if arrays_digest(arrays) != meta["array_sha256"]:
            raise UserError(f"{folder}: its arrays differ from the sha256 recorded in {META_FILE} (changed after "
                            f"they were built); {REBUILD}")
        rows = dict(zip(zip(index["part"], index["id"]), index["row"]))
        return cls(**arrays, rows=rows, meta=meta)

    def rows_of(self, ids, part: str) -> np.ndarray:
        try:
            return np.array([self.rows[(part, key)] for key in ids], dtype=np.int64)
        except KeyError as err:
            raise UserError(f"token cache: {part} row '{err.args[0][1]}' is not in it; rebuild it (dvc repro cache)"
                            ) from None

    def for_tokenizer(self, raw: Path | str, tokenizer, name: str) -> tuple["TokenCache", str]:
        """This cache when `tokenizer` tokenizes as the cache's did; else the rows tokenized in memory by
        it (a screening candidate of another family), with a note saying so."""
        if fingerprint(tokenizer) == self.meta["tokenizer_sha256"]:
            return self, ""
        note = (f"'{name}' tokenizes differently from the cache's '{self.meta['tokenizer']}': "
                f"its {self.meta['count']:,} rows are tokenized in memory for this run")
        return TokenCache.tokenize(raw, tokenizer, name, self.max_length), note


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in ARRAYS:
        digest.update(name.encode())
        digest.update(memoryview(np.ascontiguousarray(arrays[name])))
    return digest.hexdigest()


def is_token_cache(folder: Path | str) -> bool:
    try:
        return json.loads((Path(folder) / META_FILE).read_text()).get("task") == "text"
    except (OSError, ValueError):
        return False
