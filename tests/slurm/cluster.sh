# shellcheck shell=bash
# tests/slurm/cluster.sh — a throw-away single-node SLURM cluster: munged, slurmctld and slurmd
# (Debian's munge and slurm-wlm packages) run as root from a temporary state folder, on free
# ports, with the configuration generated from slurm.conf.in.  Sourced by test_slurm.sh:
#
#   tfc_start STATE   start everything; exports SLURM_CONF; status 0, or 1 with TFC_WHY set
#   tfc_stop          cancel the jobs, stop the daemons and every process of the cluster,
#                     remove STATE (safe to call more than once, and after a failed start)
#   tfc_logs          the tails of the daemon logs (for failure messages)
#
# By hand (to try the job scripts): `bash tests/slurm/cluster.sh start` prints the state folder
# and the export line; `bash tests/slurm/cluster.sh stop STATE` ends it.

TFC_STATE=""
TFC_PIDS=()  # munged, slurmctld, slurmd
TFC_WHY=""
TFC_HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

# a TCP port nobody listens on, from a range clear of SLURM's default 6817-6819
tfc_free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 20000))
    [ "$p" = "${1:-}" ] && continue
    if command -v ss >/dev/null; then
      ss -Htln "sport = :$p" 2>/dev/null | grep -q . && continue
    elif (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      continue
    fi
    echo "$p"
    return 0
  done
  return 1
}

# tfc_wait SECONDS CMD...: poll CMD every 0.2 s until it succeeds
tfc_wait() {
  local end=$((SECONDS + $1))
  shift
  while [ "$SECONDS" -lt "$end" ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  "$@" >/dev/null 2>&1
}

# tfc_wait_daemon NAME SECONDS CMD...: like tfc_wait for the daemon just started ($! in
# TFC_PIDS), but gives up as soon as it has exited; sets TFC_WHY on failure
tfc_wait_daemon() {
  local name=$1 pid=${TFC_PIDS[-1]} secs=$2 end=$((SECONDS + $2))
  shift 2
  while [ "$SECONDS" -lt "$end" ]; do
    "$@" >/dev/null 2>&1 && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      TFC_WHY="$name exited at start (see its log)"
      return 1
    fi
    sleep 0.2
  done
  "$@" >/dev/null 2>&1 && return 0
  TFC_WHY="$name runs but is not ready after $secs s ($*)"
  return 1
}

tfc_fail() {
  TFC_WHY=$1
  return 1
}

tfc_start() {
  local state=$1 b host node cpus mem
  TFC_WHY=""
  for b in munged munge unmunge slurmctld slurmd sbatch squeue scontrol scancel sinfo srun; do
    command -v "$b" >/dev/null || { tfc_fail "$b not found (apt-get install slurm-wlm munge)"; return 1; }
  done
  [ "$(id -u)" -eq 0 ] || { tfc_fail "the daemons must run as root (uid $(id -u))"; return 1; }
  TFC_STATE=$state
  # munged insists on a socket path that everybody can traverse and a private key
  chmod 755 "$state" || { tfc_fail "cannot chmod $state"; return 1; }
  mkdir -p "$state/munge" "$state/ctld" "$state/spool" || { tfc_fail "cannot populate $state"; return 1; }
  { head -c 1024 /dev/urandom >"$state/munge/munge.key" && chmod 600 "$state/munge/munge.key"; } ||
    { tfc_fail "cannot write the munge key"; return 1; }
  munged -F --socket="$state/munge/munge.socket" --key-file="$state/munge/munge.key" \
    --pid-file="$state/munge/munged.pid" --log-file="$state/munge/munged.log" \
    --seed-file="$state/munge/munged.seed" >"$state/munged.log" 2>&1 &
  TFC_PIDS+=($!)
  tfc_wait_daemon munged 15 tfc_munge_ok || return 1

  # the node as slurmd sees it; at least 2 CPUs so that the 2-rank jobs fit (a 1-core runner
  # then oversubscribes, which SlurmdParameters=config_overrides allows)
  node=$(env -u SLURM_CONF slurmd -C 2>/dev/null | grep -m 1 '^NodeName=') ||
    { tfc_fail "slurmd -C failed: $(env -u SLURM_CONF slurmd -C 2>&1 | tail -n 1)"; return 1; }
  host=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node")
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  if [ "${cpus:-0}" -lt 2 ]; then node="NodeName=$host CPUs=2 RealMemory=${mem:-1000}"; fi
  { TFC_CTLD_PORT=$(tfc_free_port) && TFC_SLURMD_PORT=$(tfc_free_port "$TFC_CTLD_PORT"); } ||
    { tfc_fail "no free TCP port"; return 1; }
  sed -e "s#@STATE@#$state#g" -e "s#@HOST@#$host#g" -e "s#@NODE@#$node#g" \
      -e "s#@CTLD_PORT@#$TFC_CTLD_PORT#g" -e "s#@SLURMD_PORT@#$TFC_SLURMD_PORT#g" \
      "$TFC_HERE/slurm.conf.in" >"$state/slurm.conf" || { tfc_fail "cannot write slurm.conf"; return 1; }
  export SLURM_CONF="$state/slurm.conf"
  TFC_NODE=$host

  slurmctld -D >"$state/slurmctld.out" 2>&1 &
  TFC_PIDS+=($!)
  tfc_wait_daemon slurmctld 30 scontrol ping || return 1
  slurmd -D -N "$host" >"$state/slurmd.out" 2>&1 &
  TFC_PIDS+=($!)
  if ! tfc_wait_daemon slurmd 30 tfc_node_idle; then
    TFC_WHY="$TFC_WHY; node state: $(sinfo -h -N -o '%T %E' 2>&1)"
    return 1
  fi
  return 0
}

tfc_munge_ok() {
  munge -n -S "$TFC_STATE/munge/munge.socket" | unmunge -S "$TFC_STATE/munge/munge.socket"
}
tfc_node_idle() { [ "$(sinfo -h -n "$TFC_NODE" -o %T 2>/dev/null)" = idle ]; }

tfc_logs() {
  local f
  for f in munged.log slurmctld.out slurmctld.log slurmd.out slurmd.log; do
    [ -s "$TFC_STATE/$f" ] || continue
    echo "---- tail of $f"
    tail -n 15 "$TFC_STATE/$f"
  done
}

# the pids of processes started by this cluster: the daemons and every job process carry
# SLURM_CONF=<state>/slurm.conf in their environment (this shell and its parents excluded)
tfc_cluster_pids() {
  local e p
  [ -n "$TFC_STATE" ] || return 0
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}
    p=${p%/environ}
    [ "$p" = "$$" ] || [ "$p" = "$BASHPID" ] || [ "$p" = "$PPID" ] && continue
    if { tr '\0' '\n' <"$e"; } 2>/dev/null | grep -qxF "SLURM_CONF=$TFC_STATE/slurm.conf"; then
      echo "$p"
    fi
  done
}

tfc_stop() {
  local p jobs left i
  [ -n "$TFC_STATE" ] || return 0
  if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ] && scontrol ping >/dev/null 2>&1; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null
      tfc_wait 20 tfc_no_jobs
    fi
  fi
  # daemons: slurmd first (it ends the job steps), then slurmctld, munged last
  for ((i = ${#TFC_PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${TFC_PIDS[$i]}" 2>/dev/null
  done
  tfc_wait 10 tfc_daemons_gone
  for p in "${TFC_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  # anything else of the cluster (job steps whose daemons are gone)
  left=$(tfc_cluster_pids)
  if [ -n "$left" ]; then
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null
  fi
  wait "${TFC_PIDS[@]}" 2>/dev/null
  TFC_PIDS=()
  rm -rf -- "$TFC_STATE"
  TFC_STATE=""
}

tfc_no_jobs() { [ -z "$(squeue -h -o %A 2>/dev/null)" ]; }
tfc_daemons_gone() {
  local p
  for p in "${TFC_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 1; done
  return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    start)
      st=$(mktemp -d /tmp/tf-slurm.XXXXXX) || exit 1
      if tfc_start "$st"; then
        echo "cluster up; state in $st; stop with: bash $0 stop $st"
        echo "export SLURM_CONF=$st/slurm.conf"
        TFC_PIDS=() # leave the daemons running
        exit 0
      fi
      echo "cannot start the cluster: $TFC_WHY"
      tfc_logs
      tfc_stop
      exit 1 ;;
    stop)
      [ -f "${2:-}/slurm.conf" ] || { echo "usage: $0 stop STATE" >&2; exit 2; }
      TFC_STATE=$2
      export SLURM_CONF="$2/slurm.conf"
      for f in munge/munged.pid slurmctld.pid slurmd.pid; do
        [ -f "$2/$f" ] && TFC_PIDS+=("$(cat "$2/$f")")
      done
      tfc_stop
      exit 0 ;;
    *) echo "usage: $0 start | stop STATE" >&2; exit 2 ;;
  esac
fi
