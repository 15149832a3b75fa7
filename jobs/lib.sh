# shellcheck shell=bash
# jobs/lib.sh — shared by train.sbatch, array.sbatch and sample.sbatch; sourced, not run.
#
# What it provides (jobs/README.md describes the behaviour for users):
#   tfj_init NAME           common checks: tradeflow binary, launcher, signal traps
#   tfj_outdir DIR          create DIR, check it is writable, print its absolute path
#   tfj_open_log FILE       copy everything the job prints into FILE (appending)
#   tfj_run READY RAN CMD.. run CMD under the launcher; forward SIGUSR1/SIGTERM to it
#   tfj_train CONFIG DIR .. one training run: fresh, resumed, or already complete
#   tfj_requeue             requeue this job if SLURM still runs it
# Settings (environment): TRADEFLOW, TF_LAUNCHER, TF_SRUN_MPI, TF_SRUN_ARGS, TF_MPIRUN_ARGS.

TFJ_SIGNAL=""      # the first stop signal received (USR1, TERM, INT), "" if none
TFJ_NSIG=0         # how many stop signals have arrived
TFJ_CHILD=""       # pid of the running launcher, "" if none
TFJ_FORWARDED=0    # 1 once the stop signal has been passed on to TFJ_CHILD
TFJ_READY=""       # ERE that the child prints once it handles signals ("" = at once)
TFJ_LOG=""         # this job's log file
TFJ_TEE=""         # pid of the tee that writes it
TFJ_LOG_OFF=0      # size of TFJ_LOG when the child started
TFJ_RC=0           # exit status of the last tfj_run
TFJ_OUT=""         # what it printed
TFJ_EXIT_REQUEUED=0  # the status a job exits with after requeueing itself

# (printf's %(...)T, not date: no child process that SLURM's SIGTERM could kill mid-message)
tfj_msg() { printf '[%s %(%F %T)T] %s\n' "${TFJ_NAME:-job}" -1 "$*"; }
tfj_die() {
  local code=$1
  shift
  printf '[%s] error: %s\n' "${TFJ_NAME:-job}" "$*" >&2
  exit "$code"
}

# tfj_init NAME: checks shared by every job script.
tfj_init() {
  TFJ_NAME=$1
  TRADEFLOW=${TRADEFLOW:-$(command -v tradeflow || true)}
  [ -n "$TRADEFLOW" ] || tfj_die 2 "tradeflow not found: put it on PATH or set TRADEFLOW=/path/to/tradeflow"
  [ -x "$TRADEFLOW" ] || tfj_die 2 "TRADEFLOW=$TRADEFLOW is not an executable file"
  # one BLAS thread per rank unless the job asks for more CPUs per task
  export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

  if [ -z "${TF_LAUNCHER:-}" ]; then
    if [ -n "${SLURM_JOB_ID:-}" ]; then TF_LAUNCHER=srun; else TF_LAUNCHER=none; fi
  fi
  TFJ_LAUNCH=()
  case "$TF_LAUNCHER" in
    srun)
      command -v srun >/dev/null || tfj_die 2 "TF_LAUNCHER=srun but srun is not on PATH"
      [ -n "${SLURM_JOB_ID:-}" ] || tfj_die 2 "TF_LAUNCHER=srun needs a SLURM allocation"
      # --mpi: Debian's Open MPI 4.1 starts under PMIx only (pmi2 fails in MPI_Init; none
      # gives N independent serial runs). --kill-on-bad-exit: one failed rank ends the step.
      TFJ_LAUNCH=(srun "--mpi=${TF_SRUN_MPI:-pmix}" --kill-on-bad-exit=1)
      # SLURM 22.05's srun does not take --cpus-per-task over from the allocation
      [ -n "${SLURM_CPUS_PER_TASK:-}" ] && TFJ_LAUNCH+=("--cpus-per-task=$SLURM_CPUS_PER_TASK")
      # shellcheck disable=SC2206  # TF_SRUN_ARGS is a word list by design
      TFJ_LAUNCH+=(${TF_SRUN_ARGS:-}) ;;
    mpirun)
      command -v mpirun >/dev/null || tfj_die 2 "TF_LAUNCHER=mpirun but mpirun is not on PATH"
      # Open MPI reads the SLURM allocation itself: -np defaults to SLURM_NTASKS
      TFJ_LAUNCH=(mpirun)
      [ "$(id -u)" -eq 0 ] && TFJ_LAUNCH+=(--allow-run-as-root)
      # shellcheck disable=SC2206
      TFJ_LAUNCH+=(${TF_MPIRUN_ARGS:-}) ;;
    none) TFJ_LAUNCH=() ;;
    *) tfj_die 2 "TF_LAUNCHER='$TF_LAUNCHER': expected srun, mpirun or none" ;;
  esac

  trap 'tfj_on_signal USR1' USR1
  trap 'tfj_on_signal TERM' TERM
  trap 'tfj_on_signal INT' INT
}

# tfj_outdir DIR: create DIR (and parents), check that files can be written there and print
# its absolute path.
tfj_outdir() {
  local dir=$1 probe
  [ -n "$dir" ] || tfj_die 2 "empty output folder"
  mkdir -p -- "$dir" 2>/dev/null || tfj_die 2 "cannot create output folder '$dir'"
  dir=$(cd -- "$dir" && pwd -P) || tfj_die 2 "cannot enter output folder '$1'"
  probe="$dir/.write-test.$$"
  if ! : >"$probe" 2>/dev/null; then
    tfj_die 2 "output folder '$dir' is not writable"
  fi
  rm -f -- "$probe"
  printf '%s\n' "$dir"
}

# tfj_open_log FILE: from here on, everything this script and its children print goes to the
# SLURM output file and is appended to FILE.  tee ignores the stop signals, so that SLURM's
# SIGTERM to every process of the job cannot cut the log while the checkpoint is written.
tfj_open_log() {
  TFJ_LOG=$1
  mkdir -p -- "$(dirname -- "$TFJ_LOG")" || tfj_die 2 "cannot create the log folder for $TFJ_LOG"
  : >>"$TFJ_LOG" || tfj_die 2 "cannot write log file $TFJ_LOG"
  exec > >(trap '' TERM INT USR1 HUP; exec tee -a -- "$TFJ_LOG") 2>&1
  TFJ_TEE=$!
  trap tfj_close_log EXIT
}

# at exit: let tee write the last lines before SLURM ends the job's remaining processes
tfj_close_log() {
  local rc=$?
  exec 1>&- 2>&-
  wait "$TFJ_TEE" 2>/dev/null
  exit "$rc"
}

# What a job says about itself at the top of its log (once per start, so also after a requeue).
tfj_banner() {
  local id=${SLURM_JOB_ID:-none}
  [ -n "${SLURM_ARRAY_JOB_ID:-}" ] && id="$id (array ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID})"
  tfj_msg "==== start: job $id, restart ${SLURM_RESTART_COUNT:-0}, host $(hostname -s)," \
          "${SLURM_NTASKS:-1} task(s), launcher ${TF_LAUNCHER}: ${TFJ_LAUNCH[*]:-(direct)}"
  tfj_msg "tradeflow: $TRADEFLOW ($("$TRADEFLOW" version 2>/dev/null || echo 'version unknown'))"
}

# The signal handler.  The child (srun, mpirun or tradeflow) always gets SIGUSR1: srun and
# mpirun pass SIGUSR1 on to every rank (mpirun would treat SIGTERM as "kill the job"), and
# tradeflow train treats SIGUSR1 like SIGTERM (checkpoint at the next step boundary, exit 3).
tfj_on_signal() {
  [ -n "$TFJ_SIGNAL" ] || TFJ_SIGNAL=$1
  TFJ_NSIG=$((TFJ_NSIG + 1))
  tfj_msg "received SIG$1"
  tfj_forward
}

# Pass the stop request on, but only once the child has installed its handlers (it prints
# TFJ_READY then): before that, SIGUSR1 would kill it without a checkpoint.
tfj_forward() {
  [ -n "$TFJ_SIGNAL" ] && [ -n "$TFJ_CHILD" ] && [ "$TFJ_FORWARDED" -eq 0 ] || return 0
  if [ -n "$TFJ_READY" ]; then
    local i
    for ((i = 0; i < 600; i++)); do
      kill -0 "$TFJ_CHILD" 2>/dev/null || return 0
      tail -c "+$((TFJ_LOG_OFF + 1))" -- "$TFJ_LOG" 2>/dev/null | grep -Eq -- "$TFJ_READY" && break
      [ "$i" -eq 0 ] && tfj_msg "holding the signal back until tradeflow has started its loop"
      sleep 0.2
    done
  fi
  TFJ_FORWARDED=1
  tfj_msg "asking tradeflow to stop (SIGUSR1 to pid $TFJ_CHILD)"
  kill -USR1 "$TFJ_CHILD" 2>/dev/null || true
}

# tfj_run READY RAN CMD...: run CMD under the launcher in the background and wait for it,
# while the traps stay live.  READY: what the child prints once it handles signals (see
# tfj_forward); RAN: what it prints in any case once it runs (its first line, or an error).
# Sets TFJ_RC and TFJ_OUT (the child's output, from the log).
#
# A launch that fails before tradeflow runs (RAN never printed, no stop requested) is retried
# TF_LAUNCH_RETRIES times (default 2) after 5 s: right after a requeue, srun --mpi=pmix can
# fail to start the step (SLURM 22.05 reuses the step id, and the previous incarnation's
# slurmstepd may still hold its PMIx socket: "Cannot bind() UNIX socket ... Address already
# in use"), and srun then returns 0.
TFJ_NRUN=0
tfj_run() {
  local ready=$1 ran=$2 try
  shift 2
  for ((try = 0; ; try++)); do
    tfj_run_once "$ready" "$@"
    if [ -n "$TFJ_SIGNAL" ] || grep -Eq -- "$ran" <<<"$TFJ_OUT"; then return 0; fi
    if [ "$try" -ge "${TF_LAUNCH_RETRIES:-2}" ]; then
      tfj_msg "tradeflow did not start (the launcher exited with $TFJ_RC and tradeflow printed nothing)"
      [ "$TFJ_RC" -ne 0 ] || TFJ_RC=1
      return 0
    fi
    tfj_msg "tradeflow did not start (launcher exit $TFJ_RC, no output): retrying in 5 s"
    sleep 5
  done
}

tfj_run_once() {
  TFJ_READY=$1
  shift
  TFJ_FORWARDED=0
  TFJ_NRUN=$((TFJ_NRUN + 1))
  TFJ_LOG_OFF=$(stat -c %s -- "$TFJ_LOG" 2>/dev/null || echo 0)
  tfj_msg "run $TFJ_NRUN: ${TFJ_LAUNCH[*]:+${TFJ_LAUNCH[*]} }$*"
  "${TFJ_LAUNCH[@]}" "$@" &
  TFJ_CHILD=$!
  tfj_forward # a signal that came before the launch
  # wait returns early (status > 128) when a trapped signal arrives: then wait again.  127 on
  # a later pass: the previous pass had collected the status after all.
  local n rc i
  TFJ_RC=""
  while :; do
    n=$TFJ_NSIG
    wait "$TFJ_CHILD"
    rc=$?
    [ "$rc" -eq 127 ] && [ -n "$TFJ_RC" ] && break
    TFJ_RC=$rc
    [ "$n" -eq "$TFJ_NSIG" ] && break
  done
  TFJ_CHILD=""
  tfj_msg "run $TFJ_NRUN: exit status $TFJ_RC"
  # tee writes the log behind us: once this last line is there, so is the child's output
  for ((i = 0; i < 50; i++)); do
    TFJ_OUT=$(tail -c "+$((TFJ_LOG_OFF + 1))" -- "$TFJ_LOG" 2>/dev/null)
    grep -qF "] run $TFJ_NRUN: exit status" <<<"$TFJ_OUT" && break
    sleep 0.1
  done
}

# tfj_ckpt_step FILE: the `step` attribute of a checkpoint (empty if unreadable).
tfj_ckpt_step() {
  [ -f "$1" ] || return 0
  if command -v h5dump >/dev/null; then
    h5dump -a /step -- "$1" 2>/dev/null | sed -n 's/^ *(0): *\([0-9][0-9]*\).*/\1/p' | head -n 1
  fi
}

# tfj_check_sets ARG...: the extra arguments of a training job must be --set pairs; the job
# sets output.dir and --resume itself.
tfj_check_sets() {
  local a expect=0
  for a in "$@"; do
    if [ "$expect" -eq 1 ]; then
      expect=0
      case "$a" in
        output.dir=*) tfj_die 2 "--set $a: the output folder is the job's second argument" ;;
        *.*=*) ;;
        *) tfj_die 2 "--set '$a': expected section.key=value" ;;
      esac
      continue
    fi
    case "$a" in
      --set) expect=1 ;;
      --set=output.dir=*) tfj_die 2 "$a: the output folder is the job's second argument" ;;
      --set=*.*=*) ;;
      --resume) tfj_die 2 "--resume is not needed: the job resumes by itself when the output folder has a checkpoint" ;;
      *) tfj_die 2 "unexpected argument '$a' (extra arguments are --set section.key=value)" ;;
    esac
  done
  [ "$expect" -eq 0 ] || tfj_die 2 "--set needs a value"
}

# tfj_requeue: put this job back into the queue if SLURM still shows it RUNNING, i.e. the stop
# came from the --signal warning, from `scancel --signal=USR1` or from train.max_steps_per_run.
# When SLURM itself is ending the job (scancel, scontrol requeue, preemption, the time limit)
# its state is no longer RUNNING: a requeue by SLURM brings the job back anyway, a cancelled
# job stays cancelled.  Returns 0 if the job was requeued.
tfj_requeue() {
  [ -n "${SLURM_JOB_ID:-}" ] || { tfj_msg "not under SLURM: nothing to requeue"; return 1; }
  local state
  state=$(scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1)
  state=${state#JobState=}
  if [ "$state" != RUNNING ]; then
    tfj_msg "job state ${state:-unknown}: SLURM is ending this job; not requeueing it myself"
    return 1
  fi
  if scontrol requeue "$SLURM_JOB_ID"; then
    tfj_msg "requeued job $SLURM_JOB_ID: it resumes from the checkpoint when it starts again"
    return 0
  fi
  tfj_msg "scontrol requeue $SLURM_JOB_ID failed (was it submitted with --no-requeue?);" \
          "resubmit the same command to resume"
  return 1
}

# tfj_train CONFIG RUNDIR [--set k=v ...]: one training run in RUNDIR.  Returns (as the status
# for the job script) 0 complete, 2 bad config, 3 stopped with a checkpoint, 1 failure;
# TFJ_EXIT_REQUEUED when the job requeued itself.
tfj_train() {
  local config=$1 dir=$2
  shift 2
  local ckpt="$dir/checkpoint.h5" done_file="$dir/DONE" step0="" step1 total resume=()
  if [ -f "$done_file" ]; then
    tfj_msg "already complete: $(cat -- "$done_file"); nothing to do" \
            "(delete $done_file and raise train.steps to train further)"
    return 0
  fi
  if [ -f "$ckpt" ]; then
    step0=$(tfj_ckpt_step "$ckpt")
    tfj_msg "found $ckpt (step ${step0:-?}): resuming"
    resume=(--resume)
  else
    tfj_msg "no checkpoint in $dir: starting a new run"
  fi
  if [ -n "$TFJ_SIGNAL" ]; then
    tfj_msg "stop requested before the start (SIG$TFJ_SIGNAL): not starting"
    return 3
  fi
  tfj_run '^tradeflow train: .* (starting|resuming) at step' '^tradeflow( train)?:' \
    "$TRADEFLOW" train "$config" --set "output.dir=$dir" "$@" "${resume[@]}"
  step1=$(tfj_ckpt_step "$ckpt")
  # the steps in effect (config + --set), as tradeflow recorded them at the start
  total=$(sed -n '/^\[train\]/,/^\[/s/^steps *= *\([0-9][0-9]*\).*/\1/p' "$dir/config.ini" 2>/dev/null | head -n 1)
  case "$TFJ_RC" in
    0)
      # trust the exit status only with tradeflow's own word (srun has returned 0 for a step
      # that never ran) and a checkpoint at the last step
      if ! grep -q '^done: ' <<<"$TFJ_OUT" || { [ -n "$total" ] && [ "${step1:-}" != "$total" ]; }; then
        tfj_msg "exit status 0, but tradeflow did not report the end of training (checkpoint" \
                "at step ${step1:-?} of ${total:-?}): treated as a failure"
        return 1
      fi
      printf 'job %s finished at step %s on %(%F %T)T\n' "${SLURM_JOB_ID:-none}" "${step1:-?}" -1 \
        >"$done_file"
      tfj_msg "training complete at step ${step1:-?} ($done_file written)"
      return 0 ;;
    2) tfj_msg "tradeflow refused the configuration (exit 2): not retrying"; return 2 ;;
    3) tfj_msg "stopped with a checkpoint at step ${step1:-?}" ;;
    *)
      if [ -n "$TFJ_SIGNAL" ] && [ -f "$ckpt" ]; then
        tfj_msg "tradeflow exited with status $TFJ_RC after SIG$TFJ_SIGNAL; the last checkpoint" \
                "is at step ${step1:-?}"
      else
        tfj_msg "tradeflow failed (exit $TFJ_RC)"
        return 1
      fi ;;
  esac
  # stopped: requeue only if this run made progress (no loop when the job is too short);
  # without h5dump the steps are unknown and the check is skipped
  if command -v h5dump >/dev/null && { [ -z "$step1" ] || [ "$step1" = "${step0:-}" ]; }; then
    tfj_msg "no progress in this run (checkpoint step ${step1:-none}): not requeueing; give" \
            "the job a longer --time or an earlier --signal"
    return 3
  fi
  if tfj_requeue; then return "$TFJ_EXIT_REQUEUED"; fi
  return 3
}
