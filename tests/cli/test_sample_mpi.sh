#!/usr/bin/env bash
# test_sample_mpi.sh TRADEFLOW MPIEXEC SCRATCH_DIR
#
# `tradeflow sample` on several ranks writes the file one rank writes: a tiny model is trained
# serially, sampled once serially and then under mpiexec (2 ranks; 3 ranks with a batch size
# that shares the chunks unevenly; 3 ranks with fewer chunks than ranks), and the files are
# compared with h5py: every dataset bit for bit, every attribute but `created`, the storage
# (chunks, shuffle + deflate).  The summary line must appear once, errors once and with the
# same exit status as serially, and no temporary may be left behind.
# Exit 0: pass, 1: fail, 77: skipped (no python3 with h5py).
set -u

if [ $# -ne 3 ]; then
  echo "usage: $0 TRADEFLOW MPIEXEC SCRATCH_DIR" >&2
  exit 1
fi
tf=$(realpath "$1")
mpiexec=$2
scratch=$3

py=""
for c in python3 /usr/bin/python3; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import h5py' >/dev/null 2>&1; then
    py=$c
    break
  fi
done
if [ -z "$py" ]; then
  echo "SKIP: no python3 with h5py"
  exit 77
fi

mkdir -p "$scratch" || exit 1
work=$(mktemp -d "$scratch/sample_mpi.XXXXXX") || exit 1
cd "$work" || exit 1
export OPENBLAS_NUM_THREADS=1

fail() {
  echo "FAIL: $*"
  echo "(files kept in $work)"
  exit 1
}

# run NAME CMD...: stdout to NAME.out, stderr to NAME.err, exit status in $rc
run() {
  local name=$1
  shift
  "$@" >"$name.out" 2>"$name.err"
  rc=$?
}

par() { # par NP ARGS...: tradeflow on NP ranks
  local np=$1
  shift
  # In sanitizer builds LeakSanitizer would report Open MPI's own allocations (see
  # tf_add_mpi_test); the serial runs above and below stay leak-checked.
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    "$mpiexec" -np "$np" --oversubscribe --allow-run-as-root "$tf" "$@"
}

cat >tiny.ini <<'EOF'
[model]
name = tiny-mpi
blocks = 2
hidden = 8
embed = 4
[physics]
name = double_well
[data]
exact_samples = 500
[train]
steps = 10
batch = 64
log_every = 0
val_every = 0
[output]
dir = run
EOF

run train "$tf" train tiny.ini
[ "$rc" -eq 0 ] || { cat train.out train.err; fail "training the tiny model (exit $rc)"; }
ckpt=run/checkpoint.h5
[ -f "$ckpt" ] || fail "no checkpoint after training"

cat >compare.py <<'EOF'
import sys
import h5py
import numpy as np

a_path, b_path = sys.argv[1], sys.argv[2]
bad = []
with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
    if sorted(a.keys()) != sorted(b.keys()):
        bad.append(f"datasets {sorted(a.keys())} vs {sorted(b.keys())}")
    for k in ("x", "c", "log_p", "log_q", "log_w"):
        if k not in a or k not in b:
            bad.append(f"dataset {k} missing")
            continue
        da, db = a[k], b[k]
        if da.shape != db.shape or da.dtype != db.dtype:
            bad.append(f"{k}: shape/type {da.shape} {da.dtype} vs {db.shape} {db.dtype}")
            continue
        va, vb = da[()], db[()]
        if not np.array_equal(va.view(np.uint64), vb.view(np.uint64)):
            i = np.argwhere(va.view(np.uint64) != vb.view(np.uint64))[0]
            bad.append(f"{k}: differs first at {tuple(i)}: {va[tuple(i)]!r} vs {vb[tuple(i)]!r}")
        if (da.chunks, da.compression, da.shuffle, da.maxshape) != \
           (db.chunks, db.compression, db.shuffle, db.maxshape):
            bad.append(f"{k}: storage {da.chunks} {da.compression} {da.shuffle} {da.maxshape} "
                       f"vs {db.chunks} {db.compression} {db.shuffle} {db.maxshape}")
        if da.compression != "gzip" or not da.shuffle:
            bad.append(f"{k}: not compressed (compression {da.compression}, shuffle {da.shuffle})")
    ka = sorted(k for k in a.attrs if k != "created")
    kb = sorted(k for k in b.attrs if k != "created")
    if ka != kb:
        bad.append(f"attributes {ka} vs {kb}")
    for k in ka:
        if k in b.attrs and not np.array_equal(a.attrs[k], b.attrs[k]):
            bad.append(f"attribute {k}: {a.attrs[k]!r} vs {b.attrs[k]!r}")
    for f in (a, b):
        if "created" not in f.attrs:
            bad.append(f"{f.filename}: no attribute created")
    n = int(a.attrs["N"])
    if n != a["x"].shape[0] or not np.all(np.isfinite(a["log_q"][()])):
        bad.append(f"N = {n}, x {a['x'].shape}, or log_q not finite (the physics gives it)")
for m in bad:
    print(m)
sys.exit(1 if bad else 0)
EOF

# NAME NP N BATCH: sample serially and on NP ranks, compare
check() {
  local name=$1 np=$2 n=$3 batch=$4
  local args=(sample "$ckpt" --n "$n" --batch "$batch" --condition 1 --seed 7)
  run "$name.serial" "$tf" "${args[@]}" --out "$name.serial.h5"
  [ "$rc" -eq 0 ] || { cat "$name.serial.err"; fail "$name: serial sample (exit $rc)"; }
  run "$name.par" par "$np" "${args[@]}" --out "$name.par.h5"
  [ "$rc" -eq 0 ] ||
    { cat "$name.par.out" "$name.par.err"; fail "$name: sample on $np ranks (exit $rc)"; }
  local lines
  lines=$(grep -c '^tradeflow sample:' "$name.par.out")
  [ "$lines" -eq 1 ] || { cat "$name.par.out"; fail "$name: $lines summary lines, expected 1"; }
  grep -q "^tradeflow sample: $n samples .* by $np ranks" "$name.par.out" ||
    { cat "$name.par.out"; fail "$name: summary line does not give N = $n and $np ranks"; }
  "$py" compare.py "$name.serial.h5" "$name.par.h5" >"$name.cmp" 2>&1 ||
    { cat "$name.cmp"; fail "$name: $np-rank file differs from the serial one"; }
  echo "ok: $name ($np ranks, N = $n, batch $batch)"
}

check np2 2 10000 1000       # 10 chunks, 5 per rank
check np3uneven 3 10000 777  # 13 chunks (5, 4, 4), the last one partial
check np3few 3 1500 1000     # 2 chunks: rank 2 only takes part with empty writes

# errors: one message, the serial exit status, nothing left behind
run err.serial "$tf" sample "$ckpt" --n 100 --condition 1 --out missing/x.h5
serial_rc=$rc
[ "$serial_rc" -ne 0 ] || fail "serial sample into a missing directory succeeded"
run err.par par 2 sample "$ckpt" --n 100 --condition 1 --out missing/x.h5
[ "$rc" -eq "$serial_rc" ] ||
  { cat err.par.err; fail "2 ranks, missing directory: exit $rc, serial $serial_rc"; }
lines=$(grep -c '^tradeflow sample:' err.par.err)
[ "$lines" -eq 1 ] ||
  { cat err.par.err; fail "2 ranks, missing directory: $lines messages, expected 1"; }
grep -q 'cannot create temporary file' err.par.err || { cat err.par.err; fail "unclear message"; }

run range.par par 2 sample "$ckpt" --n 100 --condition 1e6 --out r.h5
[ "$rc" -eq 2 ] ||
  { cat range.par.err; fail "2 ranks, condition out of range: exit $rc, expected 2"; }
lines=$(grep -c '^tradeflow sample:' range.par.err)
[ "$lines" -eq 1 ] ||
  { cat range.par.err; fail "2 ranks, bad condition: $lines messages, expected 1"; }
[ ! -e r.h5 ] || fail "a file was written for a refused condition"
if ls ./*.tmp.* >/dev/null 2>&1; then fail "temporaries left: $(ls ./*.tmp.*)"; fi
echo "ok: errors under mpiexec"

cd / && rm -rf "$work"
echo "PASS"
exit 0
