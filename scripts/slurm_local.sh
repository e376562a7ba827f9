#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, to try the SLURM profile and for tests/test_slurm.py.
#
#   scripts/slurm_local.sh start DIR   # as root: installs Debian's slurm-wlm and munge if missing,
#                                      # writes DIR/slurm.conf, starts munged, slurmctld and slurmd
#   export SLURM_CONF=DIR/slurm.conf   # then sinfo, sbatch, squeue and snakemake use this cluster
#   scripts/slurm_local.sh stop DIR    # cancels its jobs and stops the three daemons by PID
#
# Everything lives in DIR (absolute, created if missing): its own munge key and socket, the
# config, state, spool, pid files and logs. Outside it, `start` adds one symlink,
# /run/slurm/conf/slurm.conf (see link_config), and `stop` removes it; it runs beside a system
# munge. DIR/pids lists "name pid" for every daemon started (foreground daemons, so each pid is
# the daemon itself), and `stop` kills exactly those pids, after cancelling the cluster's jobs.
# Ports come from SLURM_LOCAL_CTLD_PORT and SLURM_LOCAL_SLURMD_PORT (default 6817 and 6818).
#
# The configuration is the least a container without systemd or cgroups needs: no cgroup process
# tracking or task binding (proctrack/linuxproc, task/none), no accounting database (so `sacct`
# does not work; query jobs with squeue), no mail.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
dir=$2
[[ $dir = /* ]] || { echo "error: DIR must be an absolute path (got $dir)" >&2; exit 2; }
ctld_port=${SLURM_LOCAL_CTLD_PORT:-6817}
slurmd_port=${SLURM_LOCAL_SLURMD_PORT:-6818}
export SLURM_CONF=$dir/slurm.conf
node=localnode

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }
# ours NAME PID: PID is alive and still daemon NAME (not a later process that reused the pid)
ours() { alive "$2" && [[ $(cat "/proc/$2/comm" 2>/dev/null) == "$1" ]]; }

wait_for() {  # wait_for SECONDS NAME COMMAND...: retry COMMAND while daemon NAME runs
    local seconds=$1 name=$2 pid; shift 2
    pid=$(awk -v n="$name" '$1 == n {print $2}' "$dir/pids")
    for ((i = 0; i < seconds * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        alive "$pid" || { echo "error: $name exited; its log ($dir/log/$name.out):" >&2; break; }
        sleep 0.2
    done
    alive "$pid" && echo "error: $name did not come up within ${seconds}s; its log ($dir/log/$name.out):" >&2
    tail -n 20 "$dir/log/$name.out" >&2 || true
    return 1
}

start_daemon() {  # start_daemon NAME COMMAND...: run in the background, record its pid
    local name=$1; shift
    setsid "$@" </dev/null >>"$dir/log/$name.out" 2>&1 &
    echo "$name $!" >>"$dir/pids"
}

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return 0
    [[ $(id -u) -eq 0 ]] || { echo "error: slurm-wlm and munge are not installed and installing them needs root" >&2; exit 3; }
    command -v apt-get >/dev/null || { echo "error: slurm-wlm and munge are not installed and there is no apt-get" >&2; exit 3; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >"$dir/log/apt.log" 2>&1 \
        || { apt-get update -q >>"$dir/log/apt.log" 2>&1 && apt-get install -y -q slurm-wlm munge >>"$dir/log/apt.log" 2>&1; } \
        || { echo "error: apt-get install slurm-wlm munge failed; see $dir/log/apt.log" >&2; tail -n 5 "$dir/log/apt.log" >&2; exit 3; }
}

write_config() {
    local host memory cpus
    host=$(hostname -s)
    cpus=$(nproc)
    # The node's real memory in MB, as slurmd measures it, less 5% so slurmd never finds less.
    memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    memory=$((memory * 95 / 100))
    cat >"$SLURM_CONF" <<EOF
# Written by scripts/slurm_local.sh: one node on localhost.
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=5
SlurmdTimeout=60
NodeName=$node NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

# Inside a job, snakemake-executor-plugin-slurm-jobstep runs `srun` with every SLURM_* variable
# removed, SLURM_CONF included, so srun must find the config where a compute node keeps it
# without one: /etc/slurm/slurm.conf, or /run/slurm/conf/slurm.conf (a configless slurmd's copy).
# `start` links the latter to DIR/slurm.conf (/run is a tmpfs: nothing outlives a reboot) and
# `stop` removes the link; a system config in either place is never replaced.
run_link=/run/slurm/conf/slurm.conf

link_config() {
    if [[ -e /etc/slurm/slurm.conf ]]; then
        echo "error: /etc/slurm/slurm.conf exists: srun inside jobs would use that cluster's config" >&2
        return 1
    fi
    if [[ -e $run_link || -L $run_link ]]; then
        local target
        target=$(readlink "$run_link" || true)
        if [[ -n $target && ! -e $target ]]; then
            rm -f "$run_link"  # left by a cluster of this script that was never stopped
        else
            echo "error: $run_link exists (-> ${target:-a file}): another SLURM uses it; stop that first" >&2
            return 1
        fi
    fi
    mkdir -p "$(dirname "$run_link")"
    ln -s "$SLURM_CONF" "$run_link"
}

unlink_config() {
    if [[ -L $run_link && $(readlink "$run_link") == "$SLURM_CONF" ]]; then
        rm -f "$run_link"
        rmdir "$(dirname "$run_link")" 2>/dev/null && rmdir "$(dirname "$(dirname "$run_link")")" 2>/dev/null || true
        echo "removed $run_link"
    fi
}

start() {
    mkdir -p "$dir/log" "$dir/state" "$dir/spool" "$dir/munge"
    chmod 755 "$dir"
    if [[ -s $dir/pids ]]; then
        while read -r name pid; do
            if ours "$name" "$pid"; then echo "error: $name (pid $pid) from an earlier start still runs; run: $0 stop $dir" >&2; exit 1; fi
        done <"$dir/pids"
    fi
    : >"$dir/pids"
    # A failed start stops whatever it had started.
    trap 'echo "start failed; stopping what it started" >&2; stop >&2' ERR
    install_packages
    id munge >/dev/null 2>&1 || { echo "error: no user munge (the munge package creates it)" >&2; exit 3; }

    # munge: its own key and socket, run as the munge user. munged checks ownership and modes:
    # the socket's folder must be searchable by all, the key's readable by munge alone.
    mkdir -p "$dir/munge/private"
    chown munge:munge "$dir/munge" "$dir/munge/private"
    chmod 755 "$dir/munge"
    chmod 700 "$dir/munge/private"
    local key=$dir/munge/private/munge.key
    rm -f "$key"
    mungekey --create --keyfile="$key" 2>/dev/null || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    chown munge:munge "$key"
    chmod 400 "$key"
    start_daemon munged setpriv --reuid=munge --regid=munge --clear-groups \
        munged --foreground --key-file="$key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/private/munged.pid" --log-file="$dir/munge/private/munged.log" \
        --seed-file="$dir/munge/private/munged.seed"
    wait_for 20 munged bash -c "munge -n -S '$dir/munge/munge.socket' | unmunge -S '$dir/munge/munge.socket'"

    write_config
    link_config
    start_daemon slurmctld slurmctld -D -f "$SLURM_CONF"
    wait_for 30 slurmctld bash -c "scontrol ping | grep -q UP"
    start_daemon slurmd slurmd -D -f "$SLURM_CONF" -N "$node"
    wait_for 30 slurmd bash -c "sinfo -h -n $node -o %t | grep -qx idle"
    trap - ERR
    echo "started: $(tr '\n' ' ' <"$dir/pids")"
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop() {
    [[ -f $dir/pids ]] || { unlink_config; echo "nothing to stop: no $dir/pids"; return 0; }
    local slurmctld_pid
    slurmctld_pid=$(awk '$1 == "slurmctld" {print $2}' "$dir/pids")
    if ours slurmctld "$slurmctld_pid" && [[ -f $SLURM_CONF ]]; then
        # Cancel this cluster's jobs first, so no job step outlives slurmd.
        local jobs
        jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                [[ -z $(timeout 10 squeue -h -t R,CG,PD -o %i 2>/dev/null) ]] && break
                sleep 0.2
            done
        fi
    fi
    local status=0
    # Reverse start order: slurmd, slurmctld, munged.
    while read -r name pid; do
        ours "$name" "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.2; done
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
        if alive "$pid"; then echo "error: $name (pid $pid) is still running" >&2; status=1; else echo "stopped $name (pid $pid)"; fi
    done < <(tac "$dir/pids")
    unlink_config
    return $status
}

status() {
    [[ -f $dir/pids ]] || { echo "not started: no $dir/pids"; return 1; }
    local status=0
    while read -r name pid; do
        if ours "$name" "$pid"; then echo "$name (pid $pid): running"; else echo "$name (pid $pid): not running"; status=1; fi
    done <"$dir/pids"
    return $status
}

case $action in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage ;;
esac
