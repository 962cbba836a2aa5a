#!/bin/bash
# Stop the daemons tests/slurm/start.sh DIR started (by their pid files only).
dir=${1:?usage: stop.sh DIR}
for f in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
  if [ -f "$f" ]; then
    pid=$(cat "$f")
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  fi
done
exit 0
