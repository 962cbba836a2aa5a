#!/bin/bash
# Start a private one-node Slurm cluster for tests/slurm.rs: munged, slurmctld and slurmd, all
# state, sockets, logs and pid files under DIR, on free ports, so nothing system-wide is touched.
#
#   tests/slurm/start.sh DIR CTLD_PORT SLURMD_PORT
#
# Prints `SLURM_CONF=DIR/slurm.conf` on success; the caller exports it for sbatch/squeue and
# stops the daemons with tests/slurm/stop.sh DIR. Needs Debian's slurm-wlm and munge
# (`apt-get install -y slurm-wlm munge`), and root (slurmd runs jobs as their user).
set -euo pipefail
dir=${1:?usage: start.sh DIR CTLD_PORT SLURMD_PORT}
ctld_port=${2:?}
slurmd_port=${3:?}
mkdir -p "$dir"/{state,spool,munge,log}
dir=$(cd "$dir" && pwd)
host=$(hostname -s)
cpus=${SLURM_TEST_CPUS:-2}
mem=$(awk '/MemTotal/ {print int($2/1024/2)}' /proc/meminfo)

# munge: a fresh key, its own socket.
chmod 700 "$dir/munge"
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force \
  --key-file="$dir/munge/munge.key" \
  --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/log/munged.log" \
  --seed-file="$dir/munge/munged.seed"

cat > "$dir/slurm.conf" <<CONF
ClusterName=runnertest
SlurmctldHost=$host
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
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"

slurmctld -i -f "$SLURM_CONF" -L "$dir/log/slurmctld.log"
slurmd -f "$SLURM_CONF" -L "$dir/log/slurmd.log"

# Wait until the node is idle (slurmd registered).
for _ in $(seq 1 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
  case "$state" in
    idle|mixed|allocated) echo "SLURM_CONF=$SLURM_CONF"; exit 0 ;;
  esac
  sleep 0.5
done
echo "the node did not become idle (state: ${state:-none}); logs in $dir/log:" >&2
tail -n 20 "$dir"/log/*.log >&2 || true
exit 1
