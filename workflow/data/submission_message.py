"""The description a Kaggle submission gets, built from the run that made the file.

    exp r16 | configs/models/beit-tiny.json lora r=16 | val accuracy 0.9312 | git a9e32e2+dirty | <submit.message>

The DVC experiment's name (DVC_EXP_NAME, which `dvc exp run` sets), the model and method the adapter
was trained with (models/adapter: model_meta.json and method.json, as train writes them), the validation
accuracy (reports/train/metrics.json), the git revision ("+dirty" when tracked files differ from it), then
the user's own words. A part that cannot be read is left out, never guessed.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

# The file names workflow/models/methods.py gives them (not imported: it imports torch).
META_FILE, METHOD_FILE = "model_meta.json", "method.json"
# Written by the runs themselves (dvc.lock after each stage), so they do not make the code "dirty".
NOT_CODE = ("dvc.lock",)


def build_message(adapter: Path, metrics: Path, note: str = "") -> str:
    parts = []
    if os.environ.get("DVC_EXP_NAME"):
        parts.append(f"exp {os.environ['DVC_EXP_NAME']}")
    model = " ".join(filter(None, [_model_name(adapter / META_FILE), _method(adapter / METHOD_FILE)]))
    parts += [model] if model else []
    accuracy = _read_json(metrics).get("val", {}).get("accuracy")
    if isinstance(accuracy, (int, float)):
        parts.append(f"val accuracy {accuracy:.4f}")
    parts.append(f"git {git_revision()}")
    if note.strip():
        parts.append(" ".join(note.split()))  # one line, as Kaggle lists it
    return " | ".join(parts)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _model_name(path: Path) -> str:
    return str(_read_json(path).get("recipe", {}).get("model", {}).get("name") or "")


def _method(path: Path) -> str:
    """'lora r=16', 'last_layers N=2', 'full': the method and its main setting."""
    settings = _read_json(path)
    method = str(settings.get("method") or "")
    if method == "lora" and "r" in settings.get("lora", {}):
        return f"lora r={settings['lora']['r']}"
    if method == "last_layers" and "last_layers" in settings:
        return f"last_layers N={settings['last_layers']}"
    return method


def git_revision(root: Path | str = ".") -> str:
    """'a9e32e2', 'a9e32e2+dirty', or 'unknown' outside a git repository."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], check=False, cwd=root, capture_output=True, text=True, timeout=60)

    try:
        sha = git("rev-parse", "--short", "HEAD")
        if sha.returncode != 0:
            return "unknown"
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                      *(f":(exclude){path}" for path in NOT_CODE))
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return sha.stdout.strip() + ("+dirty" if changed.stdout.strip() else "")
