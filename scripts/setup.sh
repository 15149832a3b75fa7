#!/usr/bin/env bash
# Install the Debian packages tradeflow needs.  Idempotent and quick when all are present.
#   bash scripts/setup.sh           build, test and run dependencies
#   bash scripts/setup.sh --bench   also python3-torch, the reference for bench/run
# As root it installs what is missing; otherwise it prints the one apt-get line to run.
set -euo pipefail

pkgs=(cmake make gcc libc6-dev pkg-config
      libopenmpi-dev openmpi-bin libfftw3-dev libgsl-dev libhdf5-openmpi-dev hdf5-tools
      libcmocka-dev libopenblas-dev librandom123-dev zlib1g-dev libinih-dev gnuplot-nox
      python3-h5py slurm-wlm munge)
for a in "$@"; do
  case "$a" in
    --bench) pkgs+=(python3-torch) ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$a' (known: --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$st" == ii* ]] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#pkgs[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages; run:" >&2
  echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
