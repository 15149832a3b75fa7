#!/usr/bin/env bash
# test_slurm.sh TRADEFLOW SCRATCH_DIR
#
# The SLURM job scripts of jobs/ on a real single-node SLURM cluster, started here from
# Debian's slurm-wlm and munge packages (cluster.sh: munged, slurmctld, slurmd as root in a
# temporary state folder, torn down on exit):
#   0. argument errors of the scripts: a clear message and exit 2 (no cluster needed);
#   1. train.sbatch on 2 ranks, launched by srun --mpi=pmix and by mpirun: done, checkpoint,
#      logs named by job, 2 ranks used, and bit-identical to `mpirun -np 2` outside SLURM;
#      a bad config: the job fails with exit 2 and is not retried;
#   2. array.sbatch over physics.dim = 2,3,4: one model per task with its value in config.ini;
#   3. sample.sbatch on 2 ranks (after the training job): one file per condition, N rows;
#   4. a completed run requeued: it does not train again;
#   5. preemption: `scontrol requeue` of a running training job (SIGTERM from SLURM), then
#      `scancel --batch --signal=USR1` (what --signal=B:USR1@T sends): each time the job
#      checkpoints, comes back and resumes from that step; the final model equals an
#      uninterrupted run bit for bit.
# Exit 0: pass, 1: fail, 77: skipped (not root, packages missing, daemons do not start).
# The job files are removed after a pass (kept after a failure, or always with TF_SLURM_KEEP=1);
# the daemons and their state folder are always removed.
# shellcheck disable=SC2317  # functions called through trap, wait_for and tfc_wait
set -u

if [ $# -ne 2 ]; then
  echo "usage: $0 TRADEFLOW SCRATCH_DIR" >&2
  exit 1
fi
here=$(cd -- "$(dirname -- "$0")" && pwd)
src=$(cd -- "$here/../.." && pwd)
jobs="$src/jobs"
tf=$(realpath -- "$1") || exit 1
[ -x "$tf" ] || { echo "FAIL: $1 is not executable"; exit 1; }
scratch=$2
t_start=$SECONDS

skip() {
  echo "SKIP: $*"
  exit 77
}
[ "$(id -u)" -eq 0 ] || skip "needs root to run slurmctld/slurmd/munged (uid $(id -u))"
for b in munged slurmctld slurmd sbatch; do
  command -v "$b" >/dev/null || skip "$b not found: apt-get install slurm-wlm munge (scripts/setup.sh)"
done
for b in h5dump h5diff mpirun; do
  command -v "$b" >/dev/null || skip "$b not found (scripts/setup.sh installs it)"
done

# a clean environment: not the SLURM job this test may itself run in, no site defaults for
# sbatch/srun (SBATCH_PARTITION, SRUN_CPUS_PER_TASK, ...)
while IFS= read -r v; do unset "$v"; done < <(env | sed -n 's/^\(\(SLURM\|SBATCH\|SRUN\|SALLOC\)_[A-Za-z0-9_]*\)=.*/\1/p')
unset TF_LAUNCHER TF_SRUN_ARGS TF_MPIRUN_ARGS TF_JOBS_DIR
export TRADEFLOW=$tf OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

mkdir -p "$scratch" || exit 1
work=$(mktemp -d "$(realpath "$scratch")/slurm.XXXXXX") || exit 1
# the daemons' folder: short (the munge socket path must fit in 108 bytes)
state=$(mktemp -d /tmp/tf-slurm.XXXXXX) || exit 1
# shellcheck source=tests/slurm/cluster.sh
. "$here/cluster.sh"

watchdog=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
  if { [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; } || [ "${TF_SLURM_KEEP:-0}" = 1 ]; then
    [ -n "$TFC_STATE" ] && mkdir -p "$work/daemon-logs" &&
      cp "$TFC_STATE"/*.log "$TFC_STATE"/*.out "$work/daemon-logs/" 2>/dev/null
  fi
  tfc_stop
  if [ "${TF_SLURM_KEEP:-0}" = 1 ]; then
    echo "(TF_SLURM_KEEP=1: job files kept in $work)"
  elif [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ]; then
    rm -rf -- "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted"; exit 1' INT TERM
# never hang: the whole test ends after 12 minutes (ctest's limit is 15)
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep 720 &
  sp=$!
  wait "$sp" && echo "FAIL: overall time limit of 720 s reached" && kill -TERM $$
) &
watchdog=$!

fail() {
  echo "FAIL: $*"
  echo "(job files kept in $work; daemon logs in $work/daemon-logs)"
  exit 1
}
note() { printf '[%3ds] %s\n' $((SECONDS - t_start)) "$*"; }

# ---------------------------------------------------------------------------------------------
# 0. argument errors: checked before anything runs, exit 2 and one clear message (no SLURM)
cd "$work" || exit 1
tiny="$jobs/examples/tiny.ini"
[ -f "$tiny" ] || fail "$tiny is missing"
: >afile
expect_usage() { # expect_usage PATTERN CMD...: exit 2 and PATTERN in stderr
  local pat=$1 rc
  shift
  "$@" >usage.out 2>usage.err
  rc=$?
  [ "$rc" -eq 2 ] || fail "'$*': exit $rc, expected 2 ($(cat usage.err))"
  grep -q -- "$pat" usage.err || fail "'$*': no message matching '$pat' in: $(cat usage.err)"
}
expect_usage "config 'nope.ini' does not exist" bash "$jobs/train.sbatch" nope.ini out
expect_usage "cannot create output folder" bash "$jobs/train.sbatch" "$tiny" afile/sub
expect_usage "usage:" bash "$jobs/train.sbatch" "$tiny"
expect_usage "output folder is the job's second argument" bash "$jobs/train.sbatch" "$tiny" o --set output.dir=x
expect_usage "resumes by itself" bash "$jobs/train.sbatch" "$tiny" o --resume
expect_usage "not an array task" bash "$jobs/array.sbatch" "$tiny" o physics.dim 2,3
expect_usage "expected section.key" bash "$jobs/array.sbatch" "$tiny" o dim 2,3
expect_usage "array task 5 but only 2 values" env SLURM_ARRAY_TASK_ID=5 bash "$jobs/array.sbatch" "$tiny" o physics.dim 2,3
expect_usage "no readable checkpoint" bash "$jobs/sample.sbatch" nowhere o --n 10
expect_usage "TF_LAUNCHER='foo'" env TF_LAUNCHER=foo bash "$jobs/train.sbatch" "$tiny" o
expect_usage "tradeflow not found" env TRADEFLOW= PATH=/usr/bin:/bin bash "$jobs/train.sbatch" "$tiny" o
[ ! -e o ] || [ -z "$(ls -A o)" ] || fail "an argument error left files in o/"
note "argument errors: exit 2 with a message (11 cases)"

# ---------------------------------------------------------------------------------------------
if ! tfc_start "$state"; then
  why=$TFC_WHY
  tfc_logs
  skip "cannot start the SLURM daemons: $why"
fi
note "cluster up: slurmctld :$TFC_CTLD_PORT, slurmd :$TFC_SLURMD_PORT, node $TFC_NODE ($(sinfo -h -o %c) CPUs), $(srun --version)"

# --- helpers on jobs -------------------------------------------------------------------------
jfield() { # jfield JOB FIELD: a field of `scontrol show job`
  scontrol show job -o "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | head -n 1 | cut -d= -f2-
}
terminal() { case "$(jfield "$1" JobState)" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED) return 0 ;; esac; return 1; }
# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds, or fail naming WHAT
wait_for() {
  local t=$1 what=$2
  shift 2
  tfc_wait "$t" "$@" || fail "timeout after ${t}s waiting for $what"
}
is_state() { [ "$(jfield "$1" JobState)" = "$2" ]; }
held() { is_state "$1" PENDING && [ "$(jfield "$1" Reason)" = BeginTime ]; }
# a requeued job waits for its BeginTime (about 2 minutes in SLURM 22.05): start it in 3 s.
# Not now: slurmd rejects a credential created in the same second as the requeue revoked the
# old one ("Job credential revoked"), and slurmctld then kills the job (seen once in CI).
release() {
  wait_for 30 "job $1 to be requeued (PENDING, Reason=BeginTime)" held "$1"
  scontrol update JobId="$1" StartTime=now+3 || fail "scontrol update JobId=$1 StartTime=now+3"
}
expect_done() { # expect_done JOB STATE EXITCODE
  wait_for 240 "job $1 to finish" terminal "$1"
  local s e
  s=$(jfield "$1" JobState)
  e=$(jfield "$1" ExitCode)
  { [ "$s" = "$2" ] && [ "$e" = "$3" ]; } ||
    fail "job $1: $s with exit code $e, expected $2 $3; log: $(tail -n 15 "$work"/*-"$1".out 2>/dev/null)"
}
ckpt_step() { h5dump -a /step "$1" 2>/dev/null | sed -n 's/^ *(0): *\([0-9]*\).*/\1/p'; }
step_above() { local s; s=$(ckpt_step "$1"); [ -n "$s" ] && [ "$s" -gt "$2" ]; }
same_model() { h5diff -q "$1" "$2" /params /params >/dev/null && h5diff -q "$1" "$2" /optim /optim >/dev/null; }
submit() { sbatch --parsable -D "$work" "$@" || fail "sbatch $*"; }

# ---------------------------------------------------------------------------------------------
# 1-3. submitted together; SLURM runs them as the 2 CPUs allow
j_srun=$(submit -n 2 "$jobs/train.sbatch" "$tiny" train-srun)
j_mpirun=$(submit -n 2 --export=ALL,TF_LAUNCHER=mpirun "$jobs/train.sbatch" "$tiny" train-mpirun)
j_bad=$(submit -n 1 "$jobs/train.sbatch" "$tiny" train-bad --set train.bogus=1)
j_array=$(submit -n 1 --array=0-2 "$jobs/array.sbatch" "$tiny" sweep physics.dim 2,3,4)
j_sample=$(submit -n 2 --dependency=afterok:"$j_srun" "$jobs/sample.sbatch" train-srun samples \
  --n 1000 --condition 0.5,1)
note "submitted train (srun) $j_srun, train (mpirun) $j_mpirun, bad config $j_bad, array $j_array, sample $j_sample"
# the reference: the same run with mpirun -np 2 outside SLURM
mpirun --oversubscribe -np 2 "$tf" train "$tiny" --set output.dir="$work/ref" >ref.out 2>&1 ||
  fail "reference run with mpirun -np 2 outside SLURM: $(tail -n 5 ref.out)"

# 1. one training run on 2 ranks, under both launchers
for pair in "srun:$j_srun" "mpirun:$j_mpirun"; do
  l=${pair%%:*}
  j=${pair#*:}
  d="$work/train-$l"
  expect_done "$j" COMPLETED 0:0
  [ -f "$work/tf-train-$j.out" ] || fail "no SLURM output file tf-train-$j.out (%x-%j)"
  log="$d/logs/tf-train-$j.log"
  [ -f "$log" ] || fail "no job log $log"
  grep -q "launcher $l" "$log" || fail "$l job: launcher not reported in $log"
  grep -q "starting at step 0 of 40 on 2 ranks" "$log" || fail "$l job: not on 2 ranks: $(grep tradeflow "$log")"
  grep -q "^done: 40 steps" "$log" || fail "$l job: no 'done:' line in $log"
  [ "$(ckpt_step "$d/checkpoint.h5")" = 40 ] || fail "$l job: checkpoint step $(ckpt_step "$d/checkpoint.h5"), expected 40"
  h5dump -a /extra/ranks "$d/checkpoint.h5" | grep -q "(0): 2" || fail "$l job: checkpoint does not record 2 ranks"
  { [ -f "$d/DONE" ] && [ -f "$d/config.ini" ]; } || fail "$l job: no DONE or config.ini in $d"
  same_model "$d/checkpoint.h5" "$work/ref/checkpoint.h5" ||
    fail "$l job: the model differs from mpirun -np 2 outside SLURM"
done
note "train.sbatch on 2 ranks: srun --mpi=pmix and mpirun give the model of mpirun -np 2 outside SLURM, bit for bit"

expect_done "$j_bad" FAILED 2:0
grep -q "bogus" "$work/tf-train-$j_bad.out" || fail "bad config: the message does not name the key"
[ "$(jfield "$j_bad" Restarts)" = 0 ] || fail "bad config: the job was requeued"
[ ! -e "$work/train-bad/checkpoint.h5" ] || fail "bad config: a checkpoint was written"
note "a bad config: job FAILED with exit 2, not requeued"

# 2. the array: one model per value
for i in 0 1 2; do
  v=$((i + 2))
  j="${j_array}_$i"
  expect_done "$j" COMPLETED 0:0
  d="$work/sweep/physics.dim_$v"
  { [ -f "$d/checkpoint.h5" ] && [ -f "$d/DONE" ]; } || fail "array task $i: no checkpoint or DONE in $d"
  got=$(sed -n '/^\[physics\]/,/^\[/s/^dim *= *\([0-9]*\).*/\1/p' "$d/config.ini")
  [ "$got" = "$v" ] || fail "array task $i: config.ini has physics.dim = '$got', expected $v"
  grep -q "D = $v, " "$work/sweep/logs/tf-array-${j_array}_$i.log" ||
    fail "array task $i: the log does not show D = $v"
  [ -f "$work/tf-array-${j_array}_$i.out" ] || fail "array task $i: no SLURM output file tf-array-${j_array}_$i.out"
  [ "$(ckpt_step "$d/checkpoint.h5")" = 40 ] || fail "array task $i: not trained to step 40"
done
note "array.sbatch: 3 tasks, 3 models with physics.dim = 2, 3, 4"

# 3. sampling on 2 ranks
expect_done "$j_sample" COMPLETED 0:0
for c in 0.5 1; do
  f="$work/samples/samples_c$c.h5"
  [ -f "$f" ] || fail "sample job: no $f"
  h5dump -H -d /x "$f" | grep -q "SIMPLE { ( 1000, 2 )" || fail "sample job: $f:/x is not (1000, 2): $(h5dump -H -d /x "$f" | grep DATASPACE)"
done
grep -q "written to .* by 2 ranks" "$work/samples/logs/tf-sample-$j_sample.log" || fail "sample job: not on 2 ranks"
note "sample.sbatch on 2 ranks: 2 files of 1000 samples"

# 4. a completed run that is requeued does not train again
sum=$(md5sum <"$work/train-srun/checkpoint.h5")
scontrol requeue "$j_srun" || fail "scontrol requeue of the completed job $j_srun"
release "$j_srun"
wait_for 60 "job $j_srun to run again" eval "[ \"\$(jfield $j_srun Restarts)\" = 1 ] && terminal $j_srun"
expect_done "$j_srun" COMPLETED 0:0
grep -q "already complete" "$work/train-srun/logs/tf-train-$j_srun.log" || fail "requeued complete run: no 'already complete'"
[ "$(md5sum <"$work/train-srun/checkpoint.h5")" = "$sum" ] || fail "requeued complete run: the checkpoint changed"
note "a completed run requeued: 'already complete', checkpoint unchanged"

# ---------------------------------------------------------------------------------------------
# 5. preemption: a longer run, stopped twice while it trains
steps=2000
long=(--set "train.steps=$steps" --set train.log_every=250 --set output.checkpoint_every=50)
j=$(submit -n 2 "$jobs/train.sbatch" "$tiny" long "${long[@]}")
d="$work/long"
log="$d/logs/tf-train-$j.log"
wait_for 120 "a first checkpoint of job $j" step_above "$d/checkpoint.h5" 0
stops() { [ "$(grep -c '^stopped at step' "$log")" -ge "$1" ]; }
# 5a. SLURM requeues the running job: SIGTERM to every process of the job
scontrol requeue "$j" || fail "scontrol requeue $j"
wait_for 60 "job $j to stop after scontrol requeue ('stopped at step' in $log)" stops 1
wait_for 60 "job $j to be pending again (Reason=BeginTime)" held "$j"
s1=$(sed -n 's/^stopped at step \([0-9]*\) of.*/\1/p' "$log" | tail -n 1)
[ "$(ckpt_step "$d/checkpoint.h5")" = "$s1" ] || fail "after scontrol requeue: checkpoint at step $(ckpt_step "$d/checkpoint.h5"), log says $s1"
[ "$s1" -lt "$steps" ] || fail "the job finished before it was requeued: raise steps"
grep -q "not requeueing it myself" "$log" || fail "scontrol requeue: the script did not leave the requeue to SLURM"
note "scontrol requeue: job $j stopped with a checkpoint at step $s1 and is pending again"
release "$j"
wait_for 60 "job $j to resume at step $s1" grep -q "resuming at step $s1 of $steps on 2 ranks" "$log"
# 5b. the time-limit warning: --signal=B:USR1 sends SIGUSR1 to the batch shell only
wait_for 120 "progress after the resume (checkpoint beyond step $s1)" step_above "$d/checkpoint.h5" "$s1"
scancel --batch --signal=USR1 "$j" || fail "scancel --batch --signal=USR1 $j"
wait_for 60 "job $j to stop after SIGUSR1 (a second 'stopped at step' in $log)" stops 2
wait_for 60 "job $j to requeue itself (Reason=BeginTime)" held "$j"
s2=$(sed -n 's/^stopped at step \([0-9]*\) of.*/\1/p' "$log" | tail -n 1)
[ "$s2" -gt "$s1" ] || fail "after SIGUSR1: stopped at step $s2, expected > $s1: $(tail -n 8 "$log")"
[ "$(ckpt_step "$d/checkpoint.h5")" = "$s2" ] || fail "after SIGUSR1: checkpoint at step $(ckpt_step "$d/checkpoint.h5"), log says $s2"
[ "$s2" -lt "$steps" ] || fail "the job finished before SIGUSR1: raise steps"
grep -q "requeued job $j" "$log" || fail "SIGUSR1: the script did not requeue the job: $(tail -n 5 "$log")"
note "SIGUSR1 to the batch shell: checkpoint at step $s2, the job requeued itself"
release "$j"
expect_done "$j" COMPLETED 0:0
grep -q "resuming at step $s2 of $steps on 2 ranks" "$log" || fail "the second restart did not resume at step $s2"
[ "$(grep -c "starting at step 0" "$log")" = 1 ] || fail "the run started from step 0 more than once"
grep -q "restart 2," "$log" || fail "no third start (restart 2) in $log"
[ "$(ckpt_step "$d/checkpoint.h5")" = "$steps" ] || fail "final checkpoint at step $(ckpt_step "$d/checkpoint.h5"), expected $steps"
[ -f "$d/DONE" ] || fail "no DONE after the preempted run"
mpirun --oversubscribe -np 2 "$tf" train "$tiny" --set output.dir="$work/ref-long" "${long[@]}" >ref-long.out 2>&1 ||
  fail "uninterrupted reference run: $(tail -n 5 ref-long.out)"
same_model "$d/checkpoint.h5" "$work/ref-long/checkpoint.h5" ||
  fail "the run stopped at steps $s1 and $s2 differs from the uninterrupted run"
note "preempted run: resumed at $s1 and $s2, finished at $steps, equal to the uninterrupted run bit for bit"

echo "PASS: SLURM jobs (train on 2 ranks with srun and mpirun, array, sample, requeue and preemption) in $((SECONDS - t_start)) s"
exit 0
