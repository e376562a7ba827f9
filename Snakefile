# Snakemake runs the DAG declared in dvc.yaml: `snakemake --cores 1 all`.
# Rules are built in a loop, so every per-rule value is bound through params (evaluated at
# definition time); the shell command reads only {params.cmd}.
import json
import sys
from pathlib import Path

import yaml

from workflow.cluster import load_table, stage_resources
from workflow.config import load_params
from workflow.dag import (
    CONTENT_TRIGGERED, followed_content, is_folder, load_stages, param_values, rule_name, snakemake_inputs,
)
from workflow.errors import UserError

try:
    load_params("params.yaml")  # fail before any job, with one line naming the key
except UserError as err:
    sys.exit(f"error: {err}")

PARAMS = yaml.safe_load(open("params.yaml"))
# Resolved by DVC itself (foreach and matrix expanded), then reused from the cache file while
# dvc.yaml and params.yaml are unchanged, so a no-op run or a cluster job does not import DVC.
STAGES = load_stages(".", cache=".snakemake/dvc_stages.json")
PRODUCED = {out for stage in STAGES for out in stage.outs}
# Cluster requests per stage (GPUs, memory, runtime): workflow/resources.yaml, with an optional
# site file merged over it (`--config resources=site.yaml`). Local runs ignore them.
try:
    RESOURCES = load_table([stage.name for stage in STAGES], config.get("resources"))
except UserError as err:
    sys.exit(f"error: {err}")


CAPTIONS = "workflow/captions"  # {name}.rst: a figure with a caption in `snakemake --report`


def output(path):
    if is_folder(path):
        return directory(path)
    caption = Path(CAPTIONS) / f"{Path(path).stem}.rst"
    if path.endswith(".png") and caption.is_file():
        return report(path, caption=str(caption), category="Figures")
    return path


def outputs(stage):
    return [output(out) for out in stage.outs]


def inputs(stage):
    # Content-triggered inputs order the jobs but re-run them only through their content (params).
    return [ancient(p) if p in CONTENT_TRIGGERED else p for p in snakemake_inputs(stage, PRODUCED)]


rule all:
    input:
        sorted(PRODUCED),


for stage in STAGES:
    values = param_values(stage.params, PARAMS)

    rule:
        name:
            rule_name(stage.name)
        input:
            inputs(stage),
        output:
            outputs(stage),
        params:
            cmd=stage.cmd,
            values=json.dumps(values, sort_keys=True),
            followed=json.dumps(followed_content(stage.deps, values), sort_keys=True),
        log:
            f"logs/snakemake/{rule_name(stage.name)}.log",
        resources:
            **stage_resources(stage.name, RESOURCES),
        shell:
            "({params.cmd}) 2>&1 | tee {log}"
