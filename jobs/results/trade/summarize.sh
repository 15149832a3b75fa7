#!/usr/bin/env bash
# summarize.sh OUTDIR — mean and spread (sample standard deviation over seeds; "-" for one
# seed) of Kish ESS/N, log Z error and KL per experiment, method and condition, from the
# tables `tradeflow eval` wrote (OUTDIR/<exp>/<method>-s<seed>.txt).
set -euo pipefail
out="$1"
for expdir in "$out"/*/; do
  exp="$(basename "$expdir")"
  ls "$expdir"/*-s*.txt > /dev/null 2>&1 || continue
  echo "== $exp"
  printf "%-12s %8s %20s %20s %22s\n" method c "ESS/N" "logZ - exact" "KL(p||q)"
  for f in "$expdir"/*-s*.txt; do
    case "$f" in */profile-*) continue ;; esac
    m="$(basename "$f" .txt)"
    # first table only: until the first empty line; columns are separated by 2+ spaces
    awk -v m="${m%-s*}" -F'  +' 'NR > 2 && NF == 0 { exit } NR > 2 && NF >= 7 {
        split($3, e, " "); split($4, z, " ");
        kl = $6; split(kl, k, " ");
        printf "%s %s %s %s %s\n", m, $2, e[1], (z[1] - $5), (kl == "-" ? "nan" : k[1]) }' "$f"
  done | sort -k1,1 -k2,2g | awk '
    { key = $1 " " $2; n[key]++; s[key] += $3; q[key] += $3 * $3; z[key] += $4; zz[key] += $4 * $4;
      kl[key] += $5; kk[key] += $5 * $5 }
    END {
      for (key in n) {
        split(key, a, " "); c = n[key];
        me = s[key] / c; mz = z[key] / c; mk = kl[key] / c;
        se = (c > 1) ? sqrt((q[key] - c * me * me) / (c - 1)) : -1;
        sz = (c > 1) ? sqrt((zz[key] - c * mz * mz) / (c - 1)) : -1;
        sk = (c > 1) ? sqrt((kk[key] - c * mk * mk) / (c - 1)) : -1;
        printf "%-12s %8s %10.4f %-9s %10.4f %-9s %11.4g %-10s (%d seeds)\n", a[1], a[2],
               me, (se >= 0) ? sprintf("+-%.4f", se) : "", mz, (sz >= 0) ? sprintf("+-%.4f", sz) : "",
               mk, (sk >= 0) ? sprintf("+-%.3g", sk) : "", c
      }
    }' | sort -k1,1 -k2,2g
  for p in "$expdir"/profile-*.txt; do
    [[ -f "$p" ]] && echo "profile $(basename "$p" .txt): $(cat "$p")"
  done
  echo
done
