#!/usr/bin/env bash
# The library as a product: install a configured build tree into a temporary prefix, then
# build examples/trade_double_well.c against the installed tree with pkg-config (shared
# library) and with CMake (find_package: the shared and the static library), and run each.
#   bash scripts/install-test.sh BUILD_DIR [STEPS]     (STEPS of the example, default 600)
# Exit 0 when all builds and runs pass; each run prints the ESS/N it reached.
set -euo pipefail
build=${1:?usage: install-test.sh BUILD_DIR [STEPS]}
steps=${2:-600}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/tf_install_XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" > "$work/install.log"
echo "install-test: installed into a temporary prefix: $(find "$prefix" -type f | wc -l) files"
for f in include/tradeflow/model.h include/tradeflow/train.h bin/tradeflow; do
  [ -e "$prefix/$f" ] || { echo "install-test: $f not installed" >&2; exit 1; }
done
libdir=$(dirname "$(find "$prefix" -name tradeflow.pc | head -1)")/..
ls "$libdir"/libtradeflow.a "$libdir"/libtradeflow.so > /dev/null

echo "== pkg-config, shared library"
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -std=c11 -Wall -Wextra -Werror "$src/examples/trade_double_well.c" \
  $(pkg-config --cflags --libs tradeflow) -Wl,-rpath,"$(cd "$libdir" && pwd)" -o "$work/ex_pc"
# (ldd's output first: grep -q would end the pipe early, a SIGPIPE that pipefail reports)
deps=$(ldd "$work/ex_pc")
case $deps in *libtradeflow.so*) ;; *) echo "install-test: not linked to libtradeflow.so" >&2; exit 1 ;; esac
OPENBLAS_NUM_THREADS=1 "$work/ex_pc" "$steps"

echo "== CMake find_package(tradeflow), tradeflow::tradeflow and tradeflow::tradeflow_static"
cmake -S "$src/examples" -B "$work/ex_cmake" -DCMAKE_PREFIX_PATH="$prefix" > "$work/cmake.log"
cmake --build "$work/ex_cmake" > "$work/cmake-build.log"
OPENBLAS_NUM_THREADS=1 "$work/ex_cmake/trade_double_well" "$steps"
OPENBLAS_NUM_THREADS=1 "$work/ex_cmake/trade_double_well_static" "$steps"
echo "install-test: passed"
