#!/usr/bin/env bash
# End-to-end test of examples/slurm on a real, single-node Slurm cluster: installs Slurm and
# munge from Debian's packages when they are missing (needs root and apt-get), starts munged,
# slurmctld and slurmd as root under a private state directory, submits record.sbatch as a
# 4-task array over the bundled stories260K samples and merge.sbatch with
# --dependency=afterok on it, waits (bounded), checks that the merged stats equal a single-pass
# `neurosurg record` byte for byte and that the merge job's locate/patch/verify/write ran, and
# tears the cluster down on exit, failure included. No cgroups, no accounting.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
say() { echo "slurm-e2e: $*" >&2; }
die() { say "FAIL: $*"; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "Slurm and munge are missing and cannot be installed here (needs root and apt-get)"
  t=$(date +%s)
  log=$(mktemp)
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; die "installing slurm-wlm and munge failed"
  fi
  rm -f "$log"
  say "installed slurm-wlm and munge in $(($(date +%s) - t)) s"
fi
[ "$(id -u)" = 0 ] || die "the daemons run as root here; run as root"
start=$(date +%s)

work=$(mktemp -d /tmp/neurosurg-slurm.XXXXXX)
chmod 0711 "$work" # munged insists its socket directory (and the way to it) is o+x
pids=()
jobs_submitted=()
cleanup() {
  rc=$?
  set +e
  if [ ${#jobs_submitted[@]} -gt 0 ]; then
    timeout 5 scancel "${jobs_submitted[@]}" 2>/dev/null
    for _ in $(seq 1 20); do [ -z "$(timeout 2 squeue -h -j "$(IFS=,; echo "${jobs_submitted[*]}")" 2>/dev/null)" ] && break; sleep 0.25; done
  fi
  # The daemons in reverse order of starting, each by its own pid.
  for ((k = ${#pids[@]} - 1; k >= 0; k--)); do kill "${pids[k]}" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$p" 2>/dev/null; then kill -9 "$p" 2>/dev/null; fi
  done
  if [ $rc != 0 ]; then
    for f in "$work"/log/*.log "$work"/run/*.out; do [ -f "$f" ] && { echo "---- $f" >&2; tail -n 30 "$f" >&2; }; done
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work"/{munge,etc,log,state,spool,run,out}
chmod 0711 "$work/munge"
ns="$work/neurosurg"
go build -o "$ns" ./cmd/neurosurg

# munge: a private key, socket, pid and log.
dd if=/dev/urandom of="$work/etc/munge.key" bs=1024 count=1 status=none
chmod 0400 "$work/etc/munge.key"
sock="$work/munge/munge.socket"
munged -F -f --key-file="$work/etc/munge.key" --socket="$sock" --pid-file="$work/munge/munged.pid" \
  --log-file="$work/log/munged.log" --seed-file="$work/munge/munged.seed" >>"$work/log/munged.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 40); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || die "munged did not start"

# slurm.conf: one node at 127.0.0.1 with this machine's CPUs; no cgroups, no accounting.
node=nsnode
cpus=$(nproc)
port=$((20000 + RANDOM % 20000))
export SLURM_CONF="$work/etc/slurm.conf"
cat >"$SLURM_CONF" <<CONF
ClusterName=neurosurg-e2e
SlurmctldHost=$(hostname -s)(127.0.0.1)
MailProg=/bin/true
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0,kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=e2e Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -D -i -f "$SLURM_CONF" >"$work/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N "$node" -f "$SLURM_CONF" >"$work/log/slurmd.out" 2>&1 &
pids+=($!)
alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "a daemon exited (pid $p)"; done; }
up=
t=$(date +%s)
while [ $(($(date +%s) - t)) -le 30 ]; do
  alive
  state=$(timeout 5 sinfo -h -n "$node" -o %T 2>/dev/null || true)
  if [ "$state" = idle ]; then up=1; break; fi
  sleep 0.2
done
[ -n "$up" ] || die "the node did not come up within 30 s (state: ${state:-none})"
say "cluster up in $(($(date +%s) - start)) s"

# The array and the dependent merge job, configured through the environment (--export=ALL).
export CKPT="$repo/testdata/stories260K" DATA="$repo/testdata/samples/stories-animals-food.jsonl" OUT="$work/out" SHARDS=4
export RECORD_FLAGS="--miner --concept Lily" NEUROSURG="$ns" GATE="kl<10"
cd "$work/run"
array=$(sbatch --parsable --array=0-$((SHARDS - 1)) "$repo/examples/slurm/record.sbatch")
jobs_submitted+=("$array")
merge=$(sbatch --parsable --dependency=afterok:"$array" "$repo/examples/slurm/merge.sbatch")
jobs_submitted+=("$merge")
say "submitted array job $array and merge job $merge"
t=$(date +%s)
while [ -n "$(timeout 5 squeue -h -j "$array,$merge" 2>/dev/null || echo unknown)" ]; do
  [ $(($(date +%s) - t)) -le 120 ] || die "the jobs did not finish within 120 s: $(timeout 5 squeue -j "$array,$merge" 2>&1)"
  alive
  sleep 0.5
done
say "jobs done in $(($(date +%s) - t)) s"
for j in "$array" "$merge"; do
  bad=$(timeout 5 scontrol -o show job "$j" | grep -o 'JobState=[A-Z_]*' | grep -v 'JobState=COMPLETED' || true)
  [ -z "$bad" ] || die "job $j: $bad"
done

# The merged stats are the single pass's, byte for byte; the later stages left their files.
# shellcheck disable=SC2086
"$ns" record "$CKPT" --data "$DATA" $RECORD_FLAGS --out "$work/single.st"
cmp "$work/single.st" "$OUT/stats.st" || die "merged stats differ from a single pass"
for i in 0 1 2 3; do [ -f "$OUT/part-$i.st" ] || die "no part-$i.st"; done
for f in neurons.json edit.nsd edited/config.json; do [ -f "$OUT/$f" ] || die "the merge job left no $f"; done
cd "$repo"
say "ok: 4 shards merged == single pass; locate, patch, verify, write ran ($(($(date +%s) - start)) s after install)"
