"""dvc.lock is the one record of what is up to date, for both engines.

DVC writes it after each stage it runs: the hashes of the stage's deps and outs and the values of its
params. Snakemake keeps a record of its own (.snakemake/metadata) that DVC never updates, so after a
DVC run, an experiment or a `dvc checkout` the two would disagree. Here Snakemake plans from
dvc.lock instead, and writes to it:

- Planning: `dvc status` names the stages whose deps, params, command or outs differ from dvc.lock
  (by content: rewritten mtimes do not count). Those stages and everything downstream of them are
  the plan. Each rule has one more input, a marker file in MARKERS, rewritten now for a planned
  stage (new content, so Snakemake's input checksums see it too). A planned stage takes its inputs
  as they are, so the re-run of one stage re-runs its dependents; a stage that is up to date takes
  them `ancient()`, so their timestamps, which DVC rewrites, cannot re-run it (and does not take
  check_params's constant output at all: Snakemake does not look at the jobs below a job that runs,
  and would miss their own markers). The profile in
  profiles/default turns off Snakemake's other triggers (params, input, code), which read its own
  records.
- Running: Snakemake re-runs the dependents of a re-run stage before it can know whether that
  stage's outputs changed; DVC looks after each stage. So a planned job first asks dvc.lock again
  (`python -m workflow.engines.dvc_lock restore STAGE`): when only its outputs differ (Snakemake removes
  them before a job), its inputs came out the same, and its outputs come back from DVC's cache
  instead of being recomputed, as `dvc repro` would skip it.
- Recording: after a rule's command succeeds, `dvc commit` records that stage in dvc.lock (and its
  outputs in DVC's cache), as `dvc repro` would have done.

    python -m workflow.engines.dvc_lock status         # what Snakemake would run, and why
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from workflow.core.errors import UserError
from workflow.engines.dag import Stage, downstream, rule_name

MARKERS = Path(".snakemake/dvc_lock")  # one empty file per rule; only its mtime means something
UP_TO_DATE_MTIME = 946684800  # 2000-01-01: a marker nobody planned is older than any output
# The command a rule runs after its stage's command: it records the stage in dvc.lock. Parallel jobs
# take turns on DVC's lock; --no-relink leaves the outputs in place (their mtimes do not matter).
RECORD = "dvc --wait-for-lock commit --force --no-relink"


def dvc_status(*stages: str, root: Path | str = ".") -> dict[str, list]:
    """`dvc status --json` (DVC's public CLI): stage name -> its changes, for all stages or some."""
    result = subprocess.run([sys.executable, "-m", "dvc", "--wait-for-lock", "status", "--json", *stages],
                            cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise UserError(f"dvc status failed ({lines[-1] if lines else 'no output'}); "
                        f"fix what it names, then run again")
    return json.loads(result.stdout or "{}")


def changed_stages(root: Path | str = ".") -> dict[str, str]:
    """Stage name -> why it differs from dvc.lock."""
    return {name: describe(changes) for name, changes in dvc_status(root=root).items()}


def restore(stage: str, root: Path | str = ".") -> bool:
    """True when `stage` need not run: dvc.lock records its deps, params and command as they are now,
    and its outputs are there or came back from DVC's cache (`dvc checkout`)."""
    changes = dvc_status(stage, root=root).get(stage, [])
    if not all(isinstance(change, dict) and set(change) == {"changed outs"} for change in changes):
        return False
    if changes:
        checkout = subprocess.run([sys.executable, "-m", "dvc", "--wait-for-lock", "checkout", "--force", stage],
                                  cwd=root, capture_output=True, text=True)
        if checkout.returncode != 0:  # not in the cache (a clone without `dvc pull`): run it
            return False
    return not dvc_status(stage, root=root)


def describe(changes: list) -> str:
    """A short reason from one stage's `dvc status --json` entry: 'params lora.r; deps workflow/core/io.py'."""
    reasons = []
    for change in changes:
        if isinstance(change, str):  # "changed command", "always changed"
            reasons.append(change.removeprefix("changed "))
            continue
        for kind, paths in change.items():
            items = []
            for path, state in paths.items():
                if isinstance(state, dict):  # a params file: key -> state
                    reasons += [f"param {key} {value}" for key, value in state.items()]
                else:
                    items.append(f"{path} {state}")
            if items:
                reasons.append(f"{kind.removeprefix('changed ')} {', '.join(items)}")
    return "; ".join(reasons)


def marker(stage_name: str) -> str:
    return str(MARKERS / rule_name(stage_name))


def mark(stages: list[Stage], changed: dict[str, str], planned: list[str]) -> None:
    """Rewrite the marker of each planned stage (its mtime now, its content new); create the rest."""
    MARKERS.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for stage in stages:
        path = Path(marker(stage.name))
        if stage.name in planned:
            why = changed.get(stage.name, "downstream of a changed stage")
            path.write_text(f"planned at {now:.6f}: {why}\n")
        elif not path.exists():
            path.write_text("up to date\n")
            os.utime(path, (UP_TO_DATE_MTIME, UP_TO_DATE_MTIME))


def plan(stages: list[Stage], root: Path | str = ".") -> tuple[dict[str, str], list[str]]:
    """What dvc.lock says has changed, and what must run for it: those stages and their dependents."""
    changed = changed_stages(root)
    return changed, downstream(stages, set(changed))


def summary(changed: dict[str, str], planned: list[str], shown: int = 4) -> str:
    """One line: what dvc.lock says changed (the first few, with why) and what will run."""
    if not changed:
        return "dvc.lock: every stage is up to date"
    reasons = [f"{name} ({why})" for name, why in list(changed.items())[:shown]]
    if len(changed) > shown:
        reasons.append(f"{len(changed) - shown} more")
    return f"dvc.lock: changed: {'; '.join(reasons)}. To run: {', '.join(planned)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="what dvc.lock says changed and what Snakemake would run")
    restoring = commands.add_parser("restore", help="exit 0 when STAGE need not run (its outputs restored "
                                                    "from DVC's cache if missing), 1 when it must run")
    restoring.add_argument("stage")
    args = parser.parse_args(argv)
    if args.command == "status":
        from workflow.engines.dag import load_stages

        print(summary(*plan(load_stages("."))))
        return 0
    if restore(args.stage):
        print(f"{args.stage}: its deps, params and command are as dvc.lock records them (its inputs came out "
              f"unchanged): not run, outputs from DVC's cache")
        return 0
    return 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
