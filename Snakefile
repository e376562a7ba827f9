# Snakemake runs the DAG declared in dvc.yaml: `snakemake --cores 1 all`.
# Rules are built in a loop, so every per-rule value is bound through params (evaluated at
# definition time); the shell command reads only {params.cmd}.
import json
import sys

import yaml

from workflow.config import load_params
from workflow.dag import is_folder, load_stages, param_values, snakemake_inputs
from workflow.errors import UserError

try:
    load_params("params.yaml")  # fail before any job, with one line naming the key
except UserError as err:
    sys.exit(f"error: {err}")

PARAMS = yaml.safe_load(open("params.yaml"))
STAGES = load_stages("dvc.yaml")
PRODUCED = {out for stage in STAGES for out in stage.outs}


def outputs(stage):
    return [directory(out) if is_folder(out) else out for out in stage.outs]


rule all:
    input:
        sorted(PRODUCED),


for stage in STAGES:

    rule:
        name:
            stage.name
        input:
            snakemake_inputs(stage, PRODUCED),
        output:
            outputs(stage),
        params:
            cmd=stage.cmd,
            values=json.dumps(param_values(stage.params, PARAMS), sort_keys=True),
        log:
            f"logs/snakemake/{stage.name}.log",
        shell:
            "({params.cmd}) 2>&1 | tee {log}"
