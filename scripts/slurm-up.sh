#!/usr/bin/env bash
# Bring up a single-node Slurm cluster from Debian's packages (for the `slurm` tests and for
# trying sweeps locally). Safe to run twice: a running cluster of ours is reused. Refuses to
# touch a machine whose /etc/slurm/slurm.conf is not ours unless ASPP_SLURM_FORCE=1.
#   bash scripts/slurm-up.sh        # install if needed, start, wait until the node is idle
#   bash scripts/slurm-down.sh      # stop exactly what this script started
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by aspp-bench scripts/slurm-up.sh"
STATE=/run/aspp-bench-slurm
mkdir -p "$STATE"

need_install=0
for b in slurmctld slurmd sinfo munged; do command -v "$b" >/dev/null 2>&1 || need_install=1; done
if [ "$need_install" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF" && [ "${ASPP_SLURM_FORCE:-0}" != 1 ]; then
  echo "slurm-up: $CONF exists and was not written by aspp-bench; refusing to change it (ASPP_SLURM_FORCE=1 overrides)" >&2
  exit 2
fi

# munge: authentication between the daemons
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || create-munge-key -f; }
  runuser -u munge -- /usr/sbin/munged
  echo started > "$STATE/munged"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
conf=$(cat <<CONF
$MARK
ClusterName=aspp
SlurmctldHost=$host
AuthType=auth/munge
# A requeued job (preemption, time limit) is eligible again after cred_expire + 1 s; Slurm's default
# is 120 s, most of the Slurm test tier's time. 30 s still leaves a step's credential ample time to
# reach slurmd on a busy machine,
AuthInfo=cred_expire=30
# and is started at the next scheduling pass: every 10 s here, not the default 60 s
SchedulerParameters=sched_interval=10,bf_interval=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that names no memory takes its CPUs' share, not the whole node (or one job would hold it all
# and launch.array_parallelism would have no effect)
DefMemPerCPU=$(( mem / cpus ))
ReturnToService=2
# A step that outlives its kill by this long drains the node ("Kill task failed") and every later job
# waits forever; Slurm's 60 s is short for a busy 2-core machine
UnkillableStepTimeout=300
# Logs, so that a failed Slurm test leaves Slurm's own account (CI prints their tails on failure)
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmUser=root
SlurmdUser=root
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)
changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$conf" ]; then
  mkdir -p /etc/slurm
  printf '%s\n' "$conf" > "$CONF"
  changed=1
fi
mkdir -p /var/spool/slurmd /var/spool/slurmctld /var/log/slurm

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! alive /run/slurmctld.pid; then slurmctld; echo started > "$STATE/slurmctld"; fi
if ! alive /run/slurmd.pid; then slurmd; echo started > "$STATE/slurmd"; fi
# daemons of ours that were already running read a changed slurm.conf only when told
[ "$changed" = 1 ] && scontrol reconfigure 2>/dev/null || true

for _ in $(seq 120); do
  st=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
  case "$st" in idle|mix|alloc) echo "slurm-up: node $host is $st"; exit 0 ;; esac
  [ "$st" = "down" ] || [ "$st" = "drain" ] && scontrol update nodename="$host" state=resume 2>/dev/null || true
  sleep 0.5
done
echo "slurm-up: the node did not become idle (sinfo: $(sinfo 2>&1 | tail -1))" >&2
exit 1
