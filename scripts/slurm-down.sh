#!/usr/bin/env bash
# Stop the daemons that scripts/slurm-up.sh started, by their pid files (never by name).
set -u
STATE=/run/aspp-bench-slurm
stop() {  # $1 name, $2 pid file
  if [ -f "$STATE/$1" ] && [ -f "$2" ]; then
    kill "$(cat "$2")" 2>/dev/null && echo "slurm-down: stopped $1"
    rm -f "$STATE/$1"
  fi
}
stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
if [ -f "$STATE/munged" ]; then
  pidf=/run/munge/munged.pid
  [ -f "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null && echo "slurm-down: stopped munged"
  rm -f "$STATE/munged"
fi
exit 0
