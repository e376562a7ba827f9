"""The tokenizer of a text model, from the same names the zoo loads (workflow/models/zoo.py).

A hub id or a local model folder: its own tokenizer (AutoTokenizer). A packaged hub id: the
package's copy. A shipped config (random init, no files of its own) names the model whose
tokenizer it uses under its "tokenizer" key. A tokenizer's fingerprint (sha256 of its full
serialization: vocabulary, normalizer, special tokens) tells whether two models tokenize alike, so a
token cache built for one serves the other.
"""
from __future__ import annotations

import hashlib
import json

from workflow.core.errors import UserError
from workflow.models.names import TOKENIZER_KEY, packaged_dir, shipped_config_path


def load_tokenizer(name: str, trust_remote_code: bool = False, key: str = "model.name"):
    """The tokenizer that goes with model `name` (params key `key`, for the error message)."""
    from transformers import AutoTokenizer  # ~1 s: not for --help

    config_path = shipped_config_path(name)
    if config_path is not None:
        source = json.loads(config_path.read_text()).get(TOKENIZER_KEY)
        if not source:
            raise UserError(f"{config_path}: a text model's config needs a \"{TOKENIZER_KEY}\" key naming the model "
                            f"whose tokenizer it uses (e.g. \"bert-base-uncased\"), since it has no files of its own")
        return load_tokenizer(source, trust_remote_code, f"{config_path} {TOKENIZER_KEY}")
    try:
        return AutoTokenizer.from_pretrained(packaged_dir(name) or name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0]
        raise UserError(f"{key}: no tokenizer for '{name}' ({reason}); check the id and the network, or use a "
                        f"shipped text config such as configs/models/bert-tiny.json") from None


def fingerprint(tokenizer) -> str:
    """sha256 of everything that decides the token ids: the fast tokenizer's serialization, less the
    truncation and padding state that its last call left behind (each call sets them)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return hashlib.sha256(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode()).hexdigest()
    state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
