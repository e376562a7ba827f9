# Snakemake runs the DAG declared in dvc.yaml: `snakemake --cores 1 all`.
# The rules are generated: workflow/engines/dvc_yaml.py reads dvc.yaml (checked with DVC's schema, foreach and
# ${...} resolved from params.yaml), workflow/engines/dag.py makes a Stage of each stage or foreach job, and
# the loop at the bottom one rule per Stage (screen@vit-tiny -> screen_vit_tiny): the stage's
# command, its outs as outputs, the outs of upstream stages as inputs, its `desc:` as the docstring
# that `snakemake --list` prints. Per-rule values are bound through params (evaluated at definition
# time); the shell command reads only {params.*}.
# What is out of date comes from dvc.lock, which both engines read and write (workflow/engines/dvc_lock.py):
# a rule runs when its marker input says so, and records its stage in dvc.lock when it succeeds.
import sys
from pathlib import Path

from workflow.engines import dvc_lock
from workflow.engines.cluster import load_table, stage_resources
from workflow.config import load_params
from workflow.engines.dag import CHECK_STAGE, is_folder, load_stages, rule_name, upstream_outputs
from workflow.core.errors import UserError

try:
    load_params("params.yaml")  # fail before any job, with one line naming the key
except UserError as err:
    sys.exit(f"error: {err}")

# Resolved once, then reused from the cache file while dvc.yaml and params.yaml are unchanged, so a
# cluster job does not import DVC. A dvc.yaml DVC would reject stops here with one line.
try:
    STAGES = load_stages(".", cache=".snakemake/dvc_stages.json")
except UserError as err:
    sys.exit(f"error: {err}")
PRODUCED = {out for stage in STAGES for out in stage.outs}
CHECK_OUTPUTS = {out for stage in STAGES if stage.name == CHECK_STAGE for out in stage.outs}
# Cluster requests per stage (GPUs, memory, runtime): workflow/engines/resources.yaml, with an optional
# site file merged over it (`--config resources=site.yaml`). Local runs ignore them.
try:
    RESOURCES = load_table([stage.name for stage in STAGES], config.get("resources"))
except UserError as err:
    sys.exit(f"error: {err}")

if workflow.is_main_process:
    try:
        CHANGED, PLANNED = dvc_lock.plan(STAGES)
    except UserError as err:
        sys.exit(f"error: {err}")
    dvc_lock.mark(STAGES, CHANGED, PLANNED)
    print(dvc_lock.summary(CHANGED, PLANNED), file=sys.stderr)
else:  # a cluster job: it runs the one job the main process planned (--force), nothing to decide
    PLANNED = [stage.name for stage in STAGES]


CAPTIONS = "workflow/captions"  # {name}.rst: a figure with a caption in `snakemake --report`


def output(path):
    if is_folder(path):
        return directory(path)
    caption = Path(CAPTIONS) / f"{Path(path).stem}.rst"
    if path.endswith(".png") and caption.is_file():
        return report(path, caption=str(caption), category="Figures")
    return path


def inputs(stage):
    # The marker, and the outputs of the stages upstream, which order the jobs. A planned stage takes
    # them as they are, so its dependents re-run with it. An up-to-date stage takes them ancient, so
    # timestamps that DVC rewrites cannot re-run it, and leaves out check_params's constant output:
    # the params file was validated above, and a re-run of the check changes nothing downstream
    # (Snakemake would skip every job below a check that runs, whatever their own markers say).
    if stage.name in PLANNED:
        return [dvc_lock.marker(stage.name), *upstream_outputs(stage, PRODUCED)]
    upstream = [p for p in upstream_outputs(stage, PRODUCED) if p not in CHECK_OUTPUTS]
    return [ancient(dvc_lock.marker(stage.name)), *(ancient(p) for p in upstream)]


rule all:
    "every output of the stages of dvc.yaml"
    input:
        sorted(PRODUCED),


for stage in STAGES:

    rule:
        name:
            rule_name(stage.name)
        input:
            inputs(stage),
        output:
            [output(out) for out in stage.outs],
        params:
            cmd=stage.cmd,
            stage=stage.name,
        log:
            f"logs/snakemake/{rule_name(stage.name)}.log",
        resources:
            **stage_resources(stage.name, RESOURCES),
        shell:
            # Skipped when its inputs came out unchanged (dvc.lock, workflow/engines/dvc_lock.py); else run
            # and recorded in dvc.lock.
            "python -m workflow.engines.dvc_lock restore {params.stage:q} 2>&1 | tee {log} || "
            "{{ ({params.cmd}) 2>&1 | tee {log} && " + dvc_lock.RECORD + " {params.stage:q}; }}"
    # Snakemake's parser takes a rule's docstring only as a plain string literal (an f-string fails
    # on Python 3.12+), the same for every loop iteration; `snakemake --list` prints Rule.docstring.
    workflow.get_rule(rule_name(stage.name)).docstring = stage.desc
