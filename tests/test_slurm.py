"""The SLURM profile on a real single-node SLURM cluster on localhost (slow; marked slurm).

scripts/slurm_local.sh installs Debian's slurm-wlm and munge when they are missing (root and
apt-get), and starts munged, slurmctld and slurmd. The screening jobs then run through
snakemake-executor-plugin-slurm with profiles/slurm (every job a real sbatch job), and their
validation metrics must equal those of a local `snakemake --cores 2` run of the same project.
The fixture stops every daemon it started, by the PIDs the script recorded, also when a test fails.

Run alone: python -m pytest -m slurm        Skip: python -m pytest -m "not slurm"
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from test_engines import make_project, snakemake_ran

from workflow.engines.cluster import DECLARATION, load_table, stage_base, stage_resources
from workflow.engines.dag import load_stages, rule_name

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = REPO / "scripts/slurm_local.sh"
# The screening metrics that depend only on code, data, params and seeds; times and memory differ.
SAME = ["candidate", "model", "epochs", "seed", "params_total", "params_trainable", "val_accuracy", "val_macro_f1"]


def missing_setup() -> str | None:
    """Why this machine cannot start the cluster at all, or None. Anything else that stops the
    daemons (a failed install, a daemon that exits) fails the test with the script's error."""
    if os.geteuid() != 0:
        return "not root: slurmd runs as root, munged as user munge, and installing them needs apt-get as root"
    installed = all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch"))
    if not installed and not shutil.which("apt-get"):
        return "slurm-wlm and munge are not installed, and there is no apt-get to install them"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(name: str, pid: int) -> bool:
    """Whether daemon `name` still runs as `pid` (not some later process that reused the pid)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except OSError:
        return False


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    try:
        result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        output = "".join(part.decode() if isinstance(part, bytes) else part for part in (err.stdout or "", err.stderr or ""))
        pytest.fail(f"{' '.join(map(str, args))} ran past {timeout}s:\n{output[-4000:]}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def slurm_env():
    """A running single-node cluster: the environment that points sbatch, squeue and snakemake at it."""
    reason = missing_setup()
    if reason:
        pytest.skip(f"no SLURM here: {reason}")
    # Under /tmp, not pytest's tmp_path: munged runs as user munge and must reach its socket.
    state = Path(tempfile.mkdtemp(prefix="slurm-local-", dir="/tmp"))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SLURM_CONF": str(state / "slurm.conf"),
        "SLURM_LOCAL_CTLD_PORT": str(free_port()),
        "SLURM_LOCAL_SLURMD_PORT": str(free_port()),
    }
    pids: dict[str, int] = {}
    try:
        started = subprocess.run([str(SCRIPT), "start", str(state)], env=env, capture_output=True, text=True, timeout=300)
        pids = dict((name, int(pid)) for name, pid in
                    (line.split() for line in (state / "pids").read_text().splitlines() if line.strip())) \
            if (state / "pids").is_file() else {}
        assert started.returncode == 0, f"the SLURM daemons did not start:\n{started.stdout}{started.stderr}"
        assert set(pids) == {"munged", "slurmctld", "slurmd"} and all(alive(*item) for item in pids.items()), pids
        yield env
    finally:
        stopped = subprocess.run([str(SCRIPT), "stop", str(state)], env=env, capture_output=True, text=True, timeout=120)
        survivors = {name: pid for name, pid in pids.items() if alive(name, pid)}
        for pid in survivors.values():  # the script failed to stop them: kill by PID, then fail
            os.kill(pid, 9)
        shutil.rmtree(state, ignore_errors=True)
        assert not survivors, f"daemons outlived `slurm_local.sh stop`: {survivors}\n{stopped.stdout}{stopped.stderr}"


def node_layer(project: Path, folder: Path) -> Path:
    """A test-only profile layered over profiles/slurm for the one-node test cluster.

    The node has no GPU: its site file drops every GPU request (gpu, cpus_per_gpu: null) and asks
    for CPUs, memory and time that fit the node; all else (executor, partition guess, sbatch options)
    is the shipped profile and workflow/engines/resources.yaml. This cluster has no accounting database
    (`sacct` fails) and no accounts, hence squeue for job status and no -A.
    """
    declared = yaml.safe_load((project / DECLARATION).read_text())
    site = {}
    for entry, resources in declared.items():
        site[entry] = {"mem_mb": 2000, "runtime": 10}
        if "gpu" in resources:
            site[entry].update(gpu=None, cpus_per_gpu=None)
        if "cpus_per_task" in resources:  # no more CPUs than the node has, or the job never starts
            site[entry]["cpus_per_task"] = min(resources["cpus_per_task"], os.cpu_count())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.yaml").write_text(yaml.safe_dump(site))
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "slurm-status-command": "squeue",
        "slurm-no-account": True,
        "slurm-init-seconds-before-status-checks": 1,
        "config": {"resources": str(folder / "site.yaml")},
    }))
    return folder


def screening_outputs(project: Path) -> list[str]:
    """Each screening job's result file (its dvclive folder is written beside it)."""
    return [out for stage in load_stages(project) if stage_base(stage.name) == "screen"
            for out in stage.outs if out.endswith(".json") and out.count("/") == 2]


def test_screening_jobs_on_slurm_match_a_local_run(slurm_env, tmp_path):
    local, cluster = make_project(tmp_path / "local"), make_project(tmp_path / "cluster")
    targets = screening_outputs(local)
    assert len(targets) == len(yaml.safe_load((local / "params.yaml").read_text())["screen"]["candidates"])

    # The local reference runs beside the cluster run: the cluster's jobs spend much of their time
    # queued and polled, and the results do not depend on timing.
    with (tmp_path / "local.log").open("w+") as log:
        reference = subprocess.Popen(["snakemake", "--cores", "2", *targets], cwd=local, env=slurm_env,
                                     stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            layer = node_layer(cluster, tmp_path / "node-profile")
            output = run(["snakemake", "--profile", "profiles/slurm", "--profile", str(layer), "--verbose", *targets],
                         cluster, slurm_env)
            returncode = reference.wait(timeout=600)
        finally:
            if reference.poll() is None:  # by its PID, if the cluster run failed first
                reference.kill()
                reference.wait()
        log.seek(0)
        local_output = log.read()
    assert returncode == 0, f"the local run failed:\n{local_output[-4000:]}"
    ran_local = snakemake_ran(local_output)
    ran = snakemake_ran(output)
    assert ran == ran_local and {rule_name(f"screen@{Path(t).stem}") for t in targets} <= ran

    # Every job went through sbatch, with the requests of workflow/engines/resources.yaml and the node layer.
    calls = {re.search(r"--comment (\w+)", line).group(1).removeprefix("rule_"): line
             for line in output.splitlines() if line.startswith("sbatch call:")}
    assert set(calls) == ran, output[-4000:]
    stages = {rule_name(stage.name): stage.name for stage in load_stages(cluster)}
    table = load_table(stages.values(), layer / "site.yaml", declaration=cluster / DECLARATION)
    for rule, call in calls.items():
        asked = stage_resources(stages[rule], table)
        assert f" --mem {asked['mem_mb']} " in call and f" -t {asked['runtime']} " in call, call
        assert f" --cpus-per-task={asked.get('cpus_per_task', 1)} " in call and "--gpus" not in call, call
    assert len(re.findall(r"has been submitted with SLURM jobid \d+", output)) == len(ran)

    # slurmctld itself ran them on the node: each rule's job COMPLETED (squeue keeps them MinJobAge).
    queue = run(["squeue", "-h", "-t", "all", "-o", "%k %T %N"], cluster, slurm_env).split("\n")
    states = {line.split()[0].removeprefix("rule_"): line.split()[1:] for line in queue if line.startswith("rule_")}
    assert {rule: states.get(rule) for rule in ran} == {rule: ["COMPLETED", "localnode"] for rule in ran}

    for target in targets:
        on_slurm, on_local = (json.loads((root / target).read_text()) for root in (cluster, local))
        assert {k: on_slurm[k] for k in SAME} == {k: on_local[k] for k in SAME}, target
