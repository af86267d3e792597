# Shared by bench/gpu/bench.sh and bench/gpu/validate_compress.sh (sourced).
#
# Environment:
#   KG_BUILD_DIR    a build with -DKG_CUDA=ON to use as is (kickgrid and
#                   tests/ inside); unset: configure and build build-gpu
#   KG_DEPS_PREFIX  root of extracted Debian packages with kickgrid's other
#                   dependencies (cJSON, libconfig, PCRE2, HDF5, OpenBLAS),
#                   for machines where they are not installed
#   KG_DATA_DIR     data directory (default ../shared/data beside the checkout)
#   OUT             where logs go (default bench/results/gpu-<date>)
# NVLink SHARP stays off (NCCL_NVLS_ENABLE=0): on shared hosts it can take
# the GPUs out of service.

kg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
export KG_DATA_DIR=${KG_DATA_DIR:-$kg_root/../shared/data}
OUT=${OUT:-$kg_root/bench/results/gpu-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

kg_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Paths of an extracted-deb prefix for the compiler, linker, pkg-config and
# the loader (Debian keeps HDF5 and the OpenMP OpenBLAS in subfolders).
kg_deps_env() {
  local p=$KG_DEPS_PREFIX a=x86_64-linux-gnu
  [ -n "$p" ] && [ -d "$p" ] || return 0
  export PKG_CONFIG_SYSROOT_DIR=$p
  export PKG_CONFIG_PATH=$p/usr/lib/$a/pkgconfig:$p/usr/share/pkgconfig:$p/usr/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  local inc="$p/usr/include:$p/usr/include/$a:$p/usr/include/hdf5/serial:$p/usr/include/$a/openblas-openmp"
  local lib="$p/usr/lib/$a:$p/usr/lib/$a/hdf5/serial:$p/usr/lib/$a/openblas-openmp:$p/lib/$a"
  export CPATH=$inc${CPATH:+:$CPATH}
  export LIBRARY_PATH=$lib${LIBRARY_PATH:+:$LIBRARY_PATH}
  export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  KG_CMAKE_DEPS_ARGS=(-DCMAKE_PREFIX_PATH="$p/usr" -DHDF5_ROOT="$p/usr"
    -DHDF5_INCLUDE_DIRS="$p/usr/include/hdf5/serial"
    -DHDF5_C_LIBRARIES="$p/usr/lib/$a/hdf5/serial/libhdf5.so"
    -DHDF5_HL_LIBRARIES="$p/usr/lib/$a/hdf5/serial/libhdf5_hl.so"
    -DKG_OPENBLAS_OMP="$p/usr/lib/$a/openblas-openmp/libopenblas.so"
    -DKG_OPENBLAS_OMP_INCLUDE="$p/usr/include/$a/openblas-openmp")
}

# Sets KG_BUILD_DIR to a CUDA build, building one when needed.
kg_build() {
  if [ -n "${KG_BUILD_DIR:-}" ] && [ -x "$KG_BUILD_DIR/kickgrid" ]; then
    kg_log "using the build in $KG_BUILD_DIR"
    return 0
  fi
  KG_BUILD_DIR=${KG_BUILD_DIR:-$kg_root/build-gpu}
  KG_CMAKE_DEPS_ARGS=()
  kg_deps_env
  kg_log "configuring $KG_BUILD_DIR (KG_CUDA=ON${KG_DEPS_PREFIX:+, deps in $KG_DEPS_PREFIX})"
  cmake -S "$kg_root" -B "$KG_BUILD_DIR" -DKG_CUDA=ON -DCMAKE_BUILD_TYPE=Release "${KG_CMAKE_DEPS_ARGS[@]}" \
    > "$OUT/configure.log" 2>&1 || { tail -20 "$OUT/configure.log"; return 1; }
  cmake --build "$KG_BUILD_DIR" -j"$(nproc)" > "$OUT/build.log" 2>&1 || { grep -m20 -E "error|Error" "$OUT/build.log"; return 1; }
}

# GPU memory in use, board power and SM clock, polled every 200 ms
# (nvidia-smi: memory counts the process's allocations, the CUDA context
# and library workspaces, i.e. more than PyTorch's max_memory_allocated).
# kg_memwatch_start NAME; ...; kg_memwatch_stop prints the peak in GiB minus
# the idle baseline; kg_memwatch_power then prints the mean power and clock
# over the busy samples (above 250 W: model loading idles near 120 W), e.g.
# "690 W 1590 MHz", because a 700 W board slows its clocks under long runs
# and the same code runs slower on a board that holds lower clocks.
kg_memwatch_start() {
  _kg_mw_file=$OUT/mem_$1.csv
  _kg_mw_base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "${KG_GPU:-0}" 2>/dev/null | head -1)
  nvidia-smi --query-gpu=memory.used,power.draw,clocks.sm --format=csv,noheader,nounits -i "${KG_GPU:-0}" -lms 200 \
    > "$_kg_mw_file" 2>/dev/null &
  _kg_mw_pid=$!
}
kg_memwatch_stop() {
  kill "$_kg_mw_pid" 2>/dev/null; wait "$_kg_mw_pid" 2>/dev/null
  cut -d, -f1 "$_kg_mw_file" | sort -n | tail -1 | awk -v b="${_kg_mw_base:-0}" '{printf "%.2f\n", ($1 - b) / 1024}'
}
kg_memwatch_power() {
  awk -F', *' '$2 + 0 > 250 { w += $2; f += $3; n++ }
    END { if (n) printf "%.0f W %.0f MHz\n", w / n, f / n; else print "" }' "$_kg_mw_file"
}
