#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for the scale-out test (as root): Debian's slurm-wlm and munge,
# installed when missing, a generated munge key, controller and node daemons with their state under DIR.
#   cluster.sh start DIR    # prints the SLURM_CONF to export
#   cluster.sh stop DIR     # stops the daemons this script started
set -euo pipefail
cmd=$1
dir=$(realpath -m "$2")
conf=$dir/slurm.conf
case $cmd in
start)
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq slurm-wlm munge >&2
    fi
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
    chown munge:munge "$dir/munge"
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge && chown munge:munge /run/munge
    # munge's own daemon unless one already answers (a machine's service).
    if ! munge -n >/dev/null 2>&1; then
        runuser -u munge -- munged --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" >&2
        echo yes > "$dir/munge/started"
    fi
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    cat > "$conf" <<CONF
ClusterName=carbonmap-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${SLURMCTLD_PORT:-16817}
SlurmdPort=${SLURMD_PORT:-16818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF=$conf
    slurmctld -f "$conf" >&2
    slurmd -f "$conf" >&2
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "$conf"
            exit 0
        fi
        sleep 1
    done
    echo "the Slurm node did not become idle; see $dir/log" >&2
    sinfo >&2 || true
    exit 1
    ;;
stop)
    for p in slurmd slurmctld; do
        if [ -s "$dir/$p.pid" ]; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; fi
    done
    if [ -f "$dir/munge/started" ] && [ -s "$dir/munge/munged.pid" ]; then
        kill "$(cat "$dir/munge/munged.pid")" 2>/dev/null || true
    fi
    ;;
esac
