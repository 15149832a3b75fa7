#!/usr/bin/env bash
# The default job: a short TRADE run for 2-D phi^4 (L = 8, lambda = 0.02) over kappa in
# [0.22, 0.32] on 2 MPI ranks, end to end, in a few minutes on 2 cores:
#   1. HMC boundary data at kappa = 0.25 and 0.29              -> OUT/boundary.h5
#   2. HMC reference chains at kappa = 0.22, 0.23, ..., 0.32     -> OUT/reference.h5
#   3. TRADE training on 2 ranks (mpirun)                        -> OUT/run/checkpoint.h5
#   4. flow samples at kappa = 0.27 on 2 ranks                   -> OUT/samples.h5
#   5. evaluation at every kappa: ESS, <|m|>, <s>, chi, U_L after reweighting and after
#      independence-Metropolis correction, against the HMC values -> OUT/eval.h5, OUT/eval.txt
#   6. plots of every observable and of the ESS against kappa     -> OUT/plots/*.png
# Usage: bash jobs/phi4-demo.sh [OUT] [--set section.key=value ...]   (OUT default: phi4-demo)
# Extra --set arguments go to training (e.g. --set train.steps=2000 for a better flow).
# Environment: TRADEFLOW (the executable; default build/tradeflow), NP (ranks, default 2).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tf=${TRADEFLOW:-$here/build/tradeflow}
np=${NP:-2}
out=phi4-demo
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out=$1; shift; fi
cfg=$here/jobs/examples/phi4.ini
[ -x "$tf" ] || { echo "phi4-demo: $tf not found: build first (cmake -S . -B build && cmake --build build -j2)" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "phi4-demo: mpirun not found (bash scripts/setup.sh installs Open MPI)" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
# mpirun refuses root and more ranks than cores unless told; this is a workstation job
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1
t0=$SECONDS
step() { echo; echo "== [$((SECONDS - t0)) s] $*"; }

step "1/6 HMC boundary data at kappa = 0.25, 0.29"
"$tf" mcmc "$cfg" --set mcmc.out="$out/boundary.h5"
kappas=0.22,0.23,0.24,0.25,0.26,0.27,0.28,0.29,0.30,0.31,0.32
step "2/6 HMC reference chains at kappa = $kappas"
"$tf" mcmc "$cfg" --set mcmc.conditions="$kappas" --set mcmc.samples=20000 \
  --set mcmc.seed=2 --set mcmc.out="$out/reference.h5" > "$out/reference.txt"
cat "$out/reference.txt"
step "3/6 TRADE training on $np ranks"
resume=()
[ -f "$out/run/checkpoint.h5" ] && resume=(--resume)
mpirun -np "$np" "$tf" train "$cfg" --set data.file="$out/boundary.h5" \
  --set output.dir="$out/run" "${resume[@]}" "$@"
step "4/6 10000 flow samples at kappa = 0.27 on $np ranks"
mpirun -np "$np" "$tf" sample "$out/run/checkpoint.h5" --condition 0.27 --n 10000 \
  --out "$out/samples.h5"
step "5/6 evaluation at kappa = $kappas"
"$tf" eval "$out/run/checkpoint.h5" --conditions "$kappas" --n 10000 \
  --reference "$out/reference.h5" --out "$out/eval.h5" | tee "$out/eval.txt"
step "6/6 plots"
"$tf" plot "$out/eval.h5" --labels TRADE --out "$out/plots"
echo
echo "phi4-demo: done in $((SECONDS - t0)) s.  Outputs in $out:"
echo "  boundary.h5 reference.h5 (HMC chains; reference.txt: their observables), run/ (checkpoint),"
echo "  samples.h5 (flow samples at kappa = 0.27), eval.h5 + eval.txt (tables), plots/*.png"
