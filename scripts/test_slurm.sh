#!/usr/bin/env bash
# deploy/slurm/ under a real Slurm (issue 15): a one-node cluster from Debian's
# slurm-wlm and munge, started here and stopped afterwards, runs
# deploy/slurm/embed-array.sbatch as an array of 3 tasks over 5 scenes (the sample,
# the Sen1Floods11 S2 chip, a crop of the sample, a crop of the sample reprojected to
# EPSG:3857, the chip reprojected to EPSG:3035), then deploy/slurm/select.sbatch with
# --dependency=afterok on the array. Checks: each scene has exactly one complete
# .parquet in the store and no .tmp is left; each task's log names its shard i/3 and
# the scenes k with k mod 3 = i; suggestions.geojson has the budget of picks from ≥ 2
# scenes; a rerun of the array keeps every file (same mtime, "kept (complete)").
# The cluster is private: its own munge key and socket, its own ports, config, state,
# spool and logs in a temporary folder (removed at exit); slurmd, slurmctld and munged
# are stopped at exit whatever happens. No cgroups (linuxproc process tracking,
# task/none, no accounting), so it runs in containers and VMs.
# Installs slurm-wlm and munge when missing; when they cannot be installed it skips
# loudly, and fails when CI is set. Uses ${NEXTTILE_BIN:-target/debug/nexttile} and the
# shared data folder (NEXTTILE_SHARED_DATA, else ../shared/data).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib.sh

log() { printf '[slurm] %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}
start=$SECONDS

# Nothing from a surrounding Slurm job or the user's Slurm settings may leak in.
while read -r v; do
  unset "$v"
done < <(compgen -e | grep -E '^(SLURM|SBATCH|SALLOC|SRUN|SQUEUE|SINFO|SCONTROL)_' || true)

# skip WHY: the test cannot run here; a failure under CI, a loud SKIP otherwise.
skip() {
  [ -z "${CI:-}" ] || fail "$1; CI is set, so the Slurm test counts as failed"
  log "SKIP: $1; the Slurm test did NOT run"
  exit 0
}
[ "$(id -u)" -eq 0 ] || skip "it needs root (slurmd runs the jobs; SlurmUser=root)"
# Debian puts munged, slurmctld and slurmd in /usr/sbin.
PATH=$PATH:/usr/sbin:/sbin
daemons=(slurmctld slurmd munged sbatch squeue sinfo scontrol scancel)
have_all() {
  local c
  for c in "${daemons[@]}"; do command -v "$c" >/dev/null 2>&1 || return 1; done
}
if ! have_all; then
  ensure_debian_packages slurm slurm-wlm munge || true
  have_all || skip "Debian's slurm-wlm and munge could not be installed (apt-get install slurm-wlm munge)"
fi

bin=${NEXTTILE_BIN:-target/debug/nexttile}
if [ ! -x "$bin" ] && [ -z "${NEXTTILE_BIN:-}" ]; then cargo build --quiet --bin nexttile; fi
[ -x "$bin" ] || fail "no nexttile binary at $bin"
bin=$(realpath "$bin")
chip=${NEXTTILE_SHARED_DATA:-$root/../shared/data}/sen1floods11-spain-7370579/Spain_7370579_S2Hand.tif
[ -f "$chip" ] || fail "$chip is missing (set NEXTTILE_SHARED_DATA)"
chip=$(realpath "$chip")
command -v gdalwarp >/dev/null || ensure_debian_packages slurm gdal-bin

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nexttile-slurm.XXXXXX")
chmod 700 "$tmp"
mkdir -p "$tmp"/{munge,state,spool,scenes,run,store}
munged_pid="" ctld_pid="" slurmd_pid=""
jobs_submitted=()
array_id="" select_id="" rerun_id="" first_job_id=""

stop() {
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# our_stepds: true while a slurmstepd of one of this cluster's jobs runs (read from
# /proc: `ps` is not in every image).
our_stepds() {
  local f args id re='^slurmstepd: \[([0-9]+)[].]'
  [ -n "$first_job_id" ] || return 1
  for f in /proc/[0-9]*/cmdline; do
    args=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
    [[ $args =~ $re ]] || continue
    id=${BASH_REMATCH[1]}
    [ "$id" -ge "$first_job_id" ] && [ "$id" -lt $((first_job_id + 1000)) ] && return 0
  done
  return 1
}
cleanup() {
  local rc=$? f i logs=()
  trap - EXIT
  set +e
  if [ ${#jobs_submitted[@]} -gt 0 ] && [ -n "$ctld_pid" ]; then
    timeout 10 scancel "${jobs_submitted[@]}" 2>/dev/null
    for i in $(seq 30); do
      [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  if [ "$rc" -ne 0 ]; then
    for f in slurmctld slurmd munged; do
      # A daemon logs to its .log once it has read its configuration; before, to .out.
      [ -s "$tmp/$f.log" ] && logs+=("$tmp/$f.log") || logs+=("$tmp/$f.out")
    done
    for f in "${logs[@]}" "$tmp"/run/*.out; do
      [ -f "$f" ] || continue
      log "---- ${f#"$tmp"/} (last 40 lines) ----"
      tail -n 40 "$f" >&2
    done
  fi
  # slurmstepd (double-forked by slurmd) outlives its job for a moment: let ours end.
  for i in $(seq 20); do
    our_stepds || break
    sleep 0.5
  done
  stop "$slurmd_pid"
  stop "$ctld_pid"
  stop "$munged_pid"
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS WHAT COMMAND…: poll COMMAND every half second until it succeeds.
wait_for() {
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what: not within ${limit} s"
    sleep 0.5
  done
}

# ---- munge: a fresh key and a private socket ----
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/munge.key"
munged --foreground --force --key-file="$tmp/munge/munge.key" \
  --socket="$tmp/munge/munge.socket" --pid-file="$tmp/munge/munged.pid" \
  --seed-file="$tmp/munge/munged.seed" --log-file="$tmp/munged.log" \
  >"$tmp/munged.out" 2>&1 &
munged_pid=$!
wait_for 20 "munged's socket" test -S "$tmp/munge/munge.socket"

# ---- slurm.conf: one node, this host; free ports; everything in $tmp ----
host=$(hostname -s)
read -r ctld_port slurmd_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
# The node's CPUs, sockets, cores, threads and RealMemory as slurmd itself detects them.
node_hw=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]* //')
[[ $node_hw == *CPUs=* && $node_hw == *RealMemory=* ]] || fail "slurmd -C said: $node_hw"
# Job ids from a random start, so our job steps' processes can be told from others'.
first_job_id=$((1000000 + RANDOM * 100))
export SLURM_CONF=$tmp/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=nexttile-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$tmp/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=2
DependencyParameters=kill_invalid_depend
ReturnToService=2
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 $node_hw State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
FirstJobId=$first_job_id
EOF
: >"$tmp/plugstack.conf"
log "cluster: node $host ($node_hw), slurmctld port $ctld_port, slurmd port $slurmd_port, in $tmp"
slurmctld -D -f "$SLURM_CONF" >"$tmp/slurmctld.out" 2>&1 &
ctld_pid=$!
slurmd -D -f "$SLURM_CONF" -N "$host" >"$tmp/slurmd.out" 2>&1 &
slurmd_pid=$!
node_idle() {
  kill -0 "$ctld_pid" 2>/dev/null || fail "slurmctld exited"
  kill -0 "$slurmd_pid" 2>/dev/null || fail "slurmd exited"
  [ "$(timeout 5 sinfo -h -N -n "$host" -o %T 2>/dev/null)" = idle ]
}
wait_for 60 "node $host idle in sinfo" node_idle
log "node $host idle after $((SECONDS - start)) s"

# ---- the scenes: the sample, the chip, and three derived from them ----
gdal_translate -q -srcwin 0 0 960 960 samples/chincoteague_s2.tif "$tmp/scenes/sample_crop.tif"
gdal_translate -q -srcwin 900 900 1000 1000 samples/chincoteague_s2.tif "$tmp/scenes/crop2.tif"
gdalwarp -q -t_srs EPSG:3857 -r bilinear "$tmp/scenes/crop2.tif" "$tmp/scenes/sample_crop_3857.tif"
rm "$tmp/scenes/crop2.tif"
gdalwarp -q -t_srs EPSG:3035 -r bilinear "$chip" "$tmp/scenes/chip_3035.tif"
scenes=("$root/samples/chincoteague_s2.tif" "$chip" "$tmp/scenes/sample_crop.tif"
  "$tmp/scenes/sample_crop_3857.tif" "$tmp/scenes/chip_3035.tif")
printf '%s\n' "# NextTile Slurm test scenes" "${scenes[@]}" >"$tmp/scenes.txt"
tasks=3
budget=12

# ---- submit: the array, then the selection after it ----
cd "$tmp/run"
# submit VAR SBATCH-ARGS…: sbatch, the job id into VAR (and into the list cleanup cancels).
submit() {
  local var=$1 id
  shift
  id=$(sbatch --parsable "$@") || fail "sbatch $* refused"
  id=${id%%;*}
  jobs_submitted+=("$id")
  printf -v "$var" '%s' "$id"
}
# The scripts' own --cpus-per-task/--mem are for real nodes; here 1 CPU and 1 GiB a task.
embed_array() {
  submit "$1" --array=0-$((tasks - 1)) --cpus-per-task=1 --mem=1G --time=00:10:00 \
    --export="ALL,NEXTTILE=$bin,SCENES=$tmp/scenes.txt,STORE=$tmp/store" \
    "$root/deploy/slurm/embed-array.sbatch" --cache-dir "$tmp/cache"
}
queue_empty() { [ -z "$(timeout 5 squeue -h -o %i)" ]; }
# job_states JOB: one JobState a line (one per array task).
job_states() { timeout 10 scontrol -o show job "$1" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
all_completed() {
  local want=$1 states
  states=$(job_states "$2")
  [ "$(grep -c '^COMPLETED$' <<<"$states")" -eq "$want" ] && [ "$(wc -l <<<"$states")" -eq "$want" ]
}

embed_array array_id
submit select_id --dependency="afterok:$array_id" --cpus-per-task=1 --mem=1G --time=00:10:00 \
  --export="ALL,NEXTTILE=$bin,STORE=$tmp/store,OUT=$tmp/selection,BUDGET=$budget" \
  "$root/deploy/slurm/select.sbatch"
log "submitted array job $array_id ($tasks tasks) and selection job $select_id (afterok:$array_id)"
wait_for 120 "array $array_id and selection $select_id finished" queue_empty
all_completed "$tasks" "$array_id" || fail "array $array_id: states $(job_states "$array_id" | tr '\n' ' ')"
all_completed 1 "$select_id" || fail "selection $select_id: state $(job_states "$select_id")"
log "array and selection COMPLETED after $((SECONDS - start)) s"

# ---- checks: the store ----
[ -z "$(find "$tmp/store" -name '*.tmp')" ] || fail "temporary files left in the store: $(ls "$tmp/store")"
n_files=$(find "$tmp/store" -name '*.parquet' | wc -l)
[ "$n_files" -eq ${#scenes[@]} ] || fail "$n_files .parquet files for ${#scenes[@]} scenes: $(ls "$tmp/store")"
for s in "${scenes[@]}"; do
  stem=$(basename "$s" .tif)
  n=$(find "$tmp/store" -name "$stem-????????.parquet" | wc -l)
  [ "$n" -eq 1 ] || fail "$n store files for $stem"
done
# ---- checks: each task ran its own shard, and scene k in shard k mod 3 ----
for ((i = 0; i < tasks; i++)); do
  out=$tmp/run/nexttile-embed-${array_id}_$i.out
  [ -f "$out" ] || fail "no log $out"
  grep -q "^shard $i/$tasks: " "$out" || fail "task $i did not run shard $i/$tasks: $(cat "$out")"
done
for k in "${!scenes[@]}"; do
  owner=$((k % tasks))
  for ((i = 0; i < tasks; i++)); do
    n=$(awk -v s=" for ${scenes[$k]}" '/^wrote / && substr($0, length($0) - length(s) + 1) == s' \
      "$tmp/run/nexttile-embed-${array_id}_$i.out" | wc -l)
    want=0
    [ "$i" -ne "$owner" ] || want=1
    [ "$n" -eq "$want" ] || fail "task $i wrote ${scenes[$k]} $n times (scene $k belongs to shard $owner)"
  done
done
# ---- checks: one selection over all scenes ----
python3 - "$tmp/selection/suggestions.geojson" "$budget" "$tmp/store" "${scenes[@]}" <<'PY'
import json, os, sys
path, budget, store, scenes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
feats = json.load(open(path))["features"]
assert len(feats) == budget, f"{len(feats)} suggestions, budget {budget}"
files = {f[: -len(".parquet")] for f in os.listdir(store) if f.endswith(".parquet")}
ids = [f["properties"]["scene_id"] for f in feats]
assert set(ids) <= files, f"scene ids not in the store: {set(ids) - files}"
paths = {f["properties"]["scene_path"] for f in feats}
assert paths <= {os.path.realpath(s) for s in scenes}, f"scene paths not in the list: {paths}"
assert len(set(ids)) >= 2, f"all {budget} picks from one scene: {ids}"
print(f"[slurm] selection: {len(feats)} picks from {len(set(ids))} scenes "
      f"({', '.join(f'{s} {ids.count(s)}' for s in sorted(set(ids)))})", file=sys.stderr)
PY

# ---- a rerun of the array keeps every complete file ----
mtimes() { find "$tmp/store" -name '*.parquet' -printf '%f %T@ %i\n' | sort; }
before=$(mtimes)
embed_array rerun_id
wait_for 90 "rerun array $rerun_id finished" queue_empty
all_completed "$tasks" "$rerun_id" || fail "rerun $rerun_id: states $(job_states "$rerun_id" | tr '\n' ' ')"
[ "$(mtimes)" = "$before" ] || fail "the rerun rewrote store files: before $before; after $(mtimes)"
kept=$(cat "$tmp/run/nexttile-embed-${rerun_id}"_*.out | grep -c 'kept (complete)' || true)
[ "$kept" -eq ${#scenes[@]} ] || fail "the rerun kept $kept of ${#scenes[@]} scenes"

log "PASS: ${#scenes[@]} scenes over a $tasks-task Slurm array, one selection of $budget, rerun kept every file ($((SECONDS - start)) s)"
