#!/usr/bin/env bash
# jobs/results/trade/run.sh — reproduce docs/RESULTS-trade.md (issue 4): train every method on
# every target, evaluate, plot, and summarise.
#
#   jobs/results/trade/run.sh [-j JOBS] [--seeds "1 2 3"] [--only "multiwell gmm ..."] OUTDIR
#
# Needs the built `tradeflow` (TRADEFLOW=path, default build/tradeflow at the repo root) and,
# for dw4, ../shared/data/molecular/dw4.h5 (TF_SHARED_DATA overrides ../shared/data).
# Runs JOBS trainings at a time (default 2: one per core).  Everything lands in OUTDIR:
#   <exp>/<method>-s<seed>/        run directory (checkpoint.h5, config.ini, train.log)
#   <exp>/<method>-s<seed>.h5      `tradeflow eval` result file, .txt its table
#   <exp>/plots/                   `tradeflow plot` of all methods (first seed)
#   double_well/profile-<method>-s<seed>.dat   free-energy profile at T = 0.4 (samples at 0.4)
#   double_well/profile-mix-<method>-s<seed>.dat  the same from samples at T = 0.4, 0.7, 1.1
#   summary.txt                    ESS / log Z / KL per method: mean and spread over seeds
# Rerunning with the same OUTDIR continues: finished trainings return at once, interrupted ones
# resume from their checkpoint, and evaluations newer than their checkpoint are kept.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
tf="${TRADEFLOW:-$root/build/tradeflow}"
data="${TF_SHARED_DATA:-$root/../shared/data}"
jobs=2
seeds="1"
only="multiwell double_well gmm manywell dw4"
while (($#)); do
  case "$1" in
    -j) jobs="$2"; shift ;;
    --seeds) seeds="$2"; shift ;;
    --only) only="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) out="$1" ;;
  esac
  shift
done
[[ -n "${out:-}" ]] || { echo "run.sh: give an output directory (see --help)" >&2; exit 2; }
[[ -x "$tf" ]] || { echo "run.sh: no tradeflow executable at $tf (build first, or set TRADEFLOW)" >&2; exit 2; }
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# method -> --set overrides (the config's [loss] kind = trade is the grid variant)
declare -A M=(
  [trade_grid]="--set loss.kind=trade --set loss.variant=grid"
  [trade_cont]="--set loss.kind=trade --set loss.variant=continuous"
  [nll_latent]="--set loss.kind=nll --set model.subnet_condition=false --set model.base_temperature=true"
  [reverse_kl]="--set loss.kind=reverse_kl --set data.exact_samples=0"
  [reweight]="--set loss.kind=reweight"
)
declare -A METHODS=(
  [multiwell]="trade_grid trade_cont nll_latent reverse_kl reweight"
  [double_well]="trade_grid trade_cont nll_latent reverse_kl reweight"
  [gmm]="trade_grid trade_cont nll_latent reverse_kl reweight"
  [manywell]="nll"
  [dw4]="trade_cont"
)
declare -A COND=(
  [multiwell]="0.4,0.5,0.7,1,1.1"
  [double_well]="0.4,0.5,0.7,1,1.1"
  [gmm]="0.21,0.34,0.55,0.89,1,1.13,1.83,2.98,4.83"
  [manywell]="1"
  [dw4]="0.7,1,1.5"
)
M[nll]=""

# one line per training job: exp method seed
joblist="$out/jobs.txt"
: > "$joblist"
for exp in $only; do
  for method in ${METHODS[$exp]}; do
    for seed in $seeds; do echo "$exp $method $seed" >> "$joblist"; done
  done
done

# train_in DIR ARGS...: train $exp.ini into DIR (log DIR.train.log) with this seed; a run
# with a checkpoint there (finished or interrupted earlier) is continued with --resume (a
# finished run returns at once)
train_in() {
  local d="$1"
  shift
  if [[ -f "$d/checkpoint.h5" ]]; then
    "$tf" train "$here/$exp.ini" "$@" --set "output.dir=$d" --set "model.seed=$seed" \
      --set "train.seed=$seed" --resume >> "$d.train.log" 2>&1
  else
    "$tf" train "$here/$exp.ini" "$@" --set "output.dir=$d" --set "model.seed=$seed" \
      --set "train.seed=$seed" > "$d.train.log" 2>&1
  fi
}

# stale OUTPUT INPUT: true when OUTPUT is missing or older than INPUT (the tables are renamed
# into place after their command succeeded, so an existing one is a finished one)
stale() { [[ ! -s "$1" || "$1" -ot "$2" ]]; }

run_one() {
  local exp="$1" method="$2" seed="$3"
  local dir="$out/$exp/$method-s$seed" extra=()
  mkdir -p "$out/$exp"
  [[ "$exp" == dw4 ]] && extra=(--set "data.file=$data/molecular/dw4.h5")
  # beta-parameterised family: latent scaling means a base N(0, I / beta)
  [[ "$exp" == gmm && "$method" == nll_latent ]] && extra=(--set model.base_scale=inverse)
  if [[ "$exp" == dw4 ]]; then
    # stage 1: NLL on the augmented data (shared by the methods of a seed); stage 2: the
    # method's loss from that checkpoint for 3000 more steps (dw4.ini explains why)
    local pre="$out/$exp/nll-s$seed"
    if [[ ! -f "$pre.done" ]]; then
      train_in "$pre" --set loss.kind=nll "${extra[@]}" || {
        echo "run.sh: $exp nll stage seed $seed failed or stopped (see $pre.train.log)" >&2
        return 1
      }
      touch "$pre.done"
    fi
    [[ -f "$dir/checkpoint.h5" ]] || { mkdir -p "$dir" && cp "$pre/checkpoint.h5" "$dir/"; }
    extra+=(--set train.steps=23000)
  fi
  train_in "$dir" ${M[$method]} "${extra[@]}" || {
    echo "run.sh: $exp $method seed $seed: training failed or stopped (see $dir.train.log)" >&2
    return 1
  }
  # evaluations are redone only when missing or older than the checkpoint, so that a rerun
  # of an interrupted sweep (or one with more seeds) repeats no finished work; each table is
  # renamed into place when its command has succeeded, so an existing one is complete
  if stale "$dir.txt" "$dir/checkpoint.h5"; then
    "$tf" eval "$dir/checkpoint.h5" --conditions "${COND[$exp]}" --n 20000 --seed "$seed" \
      --out "$dir.h5" > "$dir.txt.part" 2> "$dir.eval.log" && mv "$dir.txt.part" "$dir.txt" ||
      { echo "run.sh: eval of $dir failed (see $dir.eval.log)" >&2; return 1; }
  fi
  if [[ "$exp" == double_well ]]; then
    local p="$out/$exp/profile-$method-s$seed" pm="$out/$exp/profile-mix-$method-s$seed"
    if stale "$p.txt" "$dir/checkpoint.h5"; then
      "$tf" profile "$dir/checkpoint.h5" --condition 0.4 --coord 0 --range -2,2 --bins 40 \
        --n 10000000 --seed "$seed" --out "$p.dat" > "$p.txt.part" && mv "$p.txt.part" "$p.txt" ||
        { echo "run.sh: profile of $dir failed" >&2; return 1; }
    fi
    # the same from samples drawn at T = 0.4, 0.7 and 1.1, weighted against their mixture:
    # the hotter conditions sample the barrier and the walls (10 kT at T = 0.4)
    if stale "$pm.txt" "$dir/checkpoint.h5"; then
      "$tf" profile "$dir/checkpoint.h5" --condition 0.4 --coord 0 --range -2,2 --bins 40 \
        --n 10000000 --seed "$seed" --proposal 0.4,0.7,1.1 --out "$pm.dat" > "$pm.txt.part" &&
        mv "$pm.txt.part" "$pm.txt" || { echo "run.sh: mixture profile of $dir failed" >&2; return 1; }
    fi
  fi
  echo "done: $exp $method seed $seed"
}
export -f run_one train_in stale
export out tf here data
export M_DEF="$(declare -p M COND)"

# xargs cannot pass associative arrays: re-declare them in each child
# a failed job is reported and the others go on; the exit status says that one failed
failed=0
while read -r exp method seed; do echo "$exp $method $seed"; done < "$joblist" |
  xargs -P "$jobs" -L 1 bash -c 'eval "$M_DEF"; run_one "$@"' _ || failed=1

# plots of the first seed, all methods together
first="${seeds%% *}"
for exp in $only; do
  files=() labels=()
  for method in ${METHODS[$exp]}; do
    files+=("$out/$exp/$method-s$first.h5")
    labels+=("$method")
  done
  (IFS=,; "$tf" plot "${files[@]}" --labels "${labels[*]}" --out "$out/$exp/plots" \
     > "$out/$exp/plots.log" 2>&1) || echo "run.sh: plot of $exp failed (see $out/$exp/plots.log)" >&2
done
"$here/summarize.sh" "$out" > "$out/summary.txt"
cat "$out/summary.txt"
if ((failed)); then
  echo "run.sh: some jobs failed or were stopped (messages above); rerun the same command to continue" >&2
  exit 1
fi
