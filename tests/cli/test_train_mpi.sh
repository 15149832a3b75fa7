#!/usr/bin/env bash
# test_train_mpi.sh TRADEFLOW MPIEXEC SCRATCH_DIR
#
# `tradeflow train` under mpiexec, as a user runs it: a TRADE run on 2 ranks prints once and
# records its rank count; a repeat is bit-identical (h5diff of /params and /optim); a run
# stopped by train.max_steps_per_run and resumed equals the straight run; the 2-rank
# checkpoint resumes without mpirun on one process; SIGTERM to the ranks stops every rank
# after the same step with a checkpoint that resumes (exit 3); a bad config gives one message and exit 2.
# Exit 0: pass, 1: fail.
set -u

if [ $# -ne 3 ]; then
  echo "usage: $0 TRADEFLOW MPIEXEC SCRATCH_DIR" >&2
  exit 1
fi
tf=$(realpath "$1")
mpiexec=$2
scratch=$3
mkdir -p "$scratch" || exit 1
work=$(mktemp -d "$scratch/train_mpi.XXXXXX") || exit 1
cd "$work" || exit 1
export OPENBLAS_NUM_THREADS=1

fail() {
  echo "FAIL: $*"
  echo "(files kept in $work)"
  exit 1
}

mpi=("$mpiexec" --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)

cat >run.ini <<'EOF'
[model]
name = mw2
coupling = spline
blocks = 3
hidden = 16
spline_bound = 4
[physics]
name = multiwell
dim = 2
c_min = 0.5
c_max = 1.1
c0 = 1
[data]
exact_samples = 4000
[loss]
kind = trade
grid_points = 6
grid_samples = 64
points = 64
lambda_warmup = 5
lambda_ramp = 10
[train]
steps = 40
batch = 64
log_every = 10
val_every = 20
check_every = 5
[output]
checkpoint_every = 10
EOF

# run NAME CMD...: stdout to NAME.out, stderr to NAME.err, exit status in $rc
run() {
  local name=$1
  shift
  "$@" >"$name.out" 2>"$name.err"
  rc=$?
}
same() { # same A.h5 B.h5: parameters and moments bit for bit
  h5diff -q "$1" "$2" /params /params >/dev/null && h5diff -q "$1" "$2" /optim /optim >/dev/null
}

run a "${mpi[@]}" -np 2 "$tf" train run.ini --set output.dir=a
[ $rc -eq 0 ] || fail "2-rank run: exit $rc: $(cat a.err)"
[ "$(grep -c '^done:' a.out)" -eq 1 ] || fail "2-rank run: expected one 'done:' line: $(cat a.out)"
grep -q "on 2 ranks" a.out || fail "2-rank run: the start line does not name the ranks"
h5dump -a /extra/ranks a/checkpoint.h5 | grep -q "(0): 2" || fail "checkpoint does not record 2 ranks"

run b "${mpi[@]}" -np 2 "$tf" train run.ini --set output.dir=b
[ $rc -eq 0 ] || fail "repeat: exit $rc"
same a/checkpoint.h5 b/checkpoint.h5 || fail "two 2-rank runs differ"

run c1 "${mpi[@]}" -np 2 "$tf" train run.ini --set output.dir=c --set train.max_steps_per_run=20
[ $rc -eq 3 ] || fail "max_steps_per_run: exit $rc, expected 3"
run c2 "${mpi[@]}" -np 2 "$tf" train run.ini --set output.dir=c --resume
[ $rc -eq 0 ] || fail "2-rank resume: exit $rc: $(cat c2.err)"
same a/checkpoint.h5 c/checkpoint.h5 || fail "20 + resume + 20 steps differ from 40 steps"

# the 2-rank checkpoint continues on one process without mpiexec
run d "$tf" train run.ini --set output.dir=a --set train.steps=60 --resume
[ $rc -eq 0 ] || fail "1-process resume of a 2-rank checkpoint: exit $rc: $(cat d.err)"
grep -q "written by a run on 2 rank" d.out || fail "resume on another rank count: no note"
grep -q "step 60/60" d.out || fail "1-process resume did not reach step 60"

# SIGTERM to the ranks (what SLURM's --signal does): they reach the ranks at different moments,
# yet every rank stops after the same step, rank 0 checkpoints, the status is 3
"${mpi[@]}" -np 2 "$tf" train run.ini --set output.dir=e --set train.steps=1000000 \
  --set output.checkpoint_every=0 >e.out 2>e.err &
pid=$!
for _ in $(seq 1 100); do
  grep -q "^step" e.out 2>/dev/null && break
  sleep 0.2
done
pkill -TERM -P $pid
wait $pid
rc=$?
[ $rc -eq 3 ] || fail "SIGTERM: exit $rc, expected 3: $(cat e.err)"
grep -q "stopped at step" e.out || fail "SIGTERM: no 'stopped at step' line: $(tail -3 e.out)"
[ -f e/checkpoint.h5 ] || fail "SIGTERM: no checkpoint"
run f "$tf" train run.ini --set output.dir=e --set train.steps=1000000 --resume \
  --set train.max_steps_per_run=5
[ $rc -eq 3 ] || fail "resume after SIGTERM: exit $rc: $(cat f.err)"

# a bad config: one message, exit 2, nothing run
run g "${mpi[@]}" -np 2 "$tf" train run.ini --set output.dir=g --set train.bogus=1
[ $rc -eq 2 ] || fail "bad key: exit $rc, expected 2"
[ "$(grep -c "bogus" g.err)" -eq 1 ] || fail "bad key: expected the message once: $(cat g.err)"
[ ! -e g/checkpoint.h5 ] || fail "bad key: a checkpoint was written"

echo "PASS: 2-rank runs repeat bit for bit, resume on 2 ranks and on 1 process, stop on SIGTERM, refuse a bad config"
rm -rf "$work"
exit 0
