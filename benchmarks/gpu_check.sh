#!/usr/bin/env bash
# Measures the GPU profile's model stages on this machine's GPU (benchmarks/gpu_check.py):
# seconds of audio per second and GPU memory peak per stage, written as JSON and printed.
#
#   bash benchmarks/gpu_check.sh [OUT.json] [--seconds 600] [--device cuda|cuda:N] [...]  # gpu_check.py's options
#   bash benchmarks/gpu_check.sh OUT.json --device cpu --seconds 20                       # a CPU smoke check
#   bash benchmarks/gpu_check.sh --install-only       # cluster.yaml's GPU nodes: install, measure nothing
#
# Without a CUDA device (nvidia-smi lists no GPU) it refuses in one line and exits 2, unless
# --device cpu. Install: `make setup` (scripts/setup.sh: the venv from requirements.lock, with
# the CPU build of torch), then, for CUDA, the CUDA build of the same torch version from
# $TORCH_CUDA_INDEX (default PyPI, whose Linux torch wheels are CUDA builds; e.g.
# https://download.pytorch.org/whl/cu128 for a given CUDA), and cuBLAS 12 / cuDNN 9 from PyPI
# when CTranslate2 (faster-whisper) finds none: their folders go on LD_LIBRARY_PATH, saved in
# .venv/cuda-libs.env for `ray start` on GPU nodes. It needs a package index (or
# TORCH_FIND_LINKS / a uv configuration pointing at local wheels).
#
# Expected time on a warm GPU node (system packages present): setup 0-60 s, CUDA torch and
# the NVIDIA libraries 1-3 min (about 3-4 GB of wheels), the measurement 1-3 min for the
# default 600 s of audio: about 3-7 minutes in all.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=$VENV/bin/python
log() { echo "gpu_check: $*" >&2; }

install_only=0
device=cuda
args=()
while (($#)); do
  case "$1" in
    --install-only) install_only=1 ;;
    --device) device=${2:-}; args+=("$1" "${2:-}"); shift ;;
    --device=*) device=${1#*=}; args+=("$1") ;;
    *) args+=("$1") ;;
  esac
  shift
done

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }
if [[ $device != cpu ]] && ! has_gpu; then
  if ((install_only)); then
    log "no CUDA device here (nvidia-smi lists no GPU): installing the CPU environment only"
    device=cpu
  else
    log "no CUDA device on this machine (nvidia-smi lists no GPU); pass --device cpu for a CPU smoke check"
    exit 2
  fi
fi

t0=$SECONDS
bash scripts/setup.sh

nvidia_lib_dirs() {
  "$PY" - <<'EOF'
import glob, os, sysconfig
print(":".join(sorted(glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "*", "lib")))))
EOF
}

use_nvidia_libs() {
  local dirs
  dirs=$(nvidia_lib_dirs)
  [[ -n $dirs ]] && export LD_LIBRARY_PATH="$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  return 0
}

ct2_libs_load() {  # CTranslate2 4.x (CUDA 12) dlopens cuBLAS 12 and cuDNN 9 when it runs on a GPU
  "$PY" - <<'EOF'
import ctypes, sys
try:
    for name in ("libcublas.so.12", "libcublasLt.so.12", "libcudnn.so.9"):
        ctypes.CDLL(name)
except OSError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
EOF
}

install_cuda_stack() {
  if "$PY" -c 'import sys, torch; sys.exit(0 if torch.version.cuda and torch.cuda.is_available() else 1)' 2>/dev/null; then
    log "torch $("$PY" -c 'import torch; print(torch.__version__)') already sees the GPU"
  else
    local version index
    version=$(sed -n 's/^torch==\([0-9][0-9.]*\).*/\1/p' requirements.lock)
    index=${TORCH_CUDA_INDEX:-https://pypi.org/simple}
    log "installing the CUDA build of torch $version from $index (the lock pins the CPU build)"
    "$VENV/bin/uv" pip install -q --python "$PY" --index-url "$index" --reinstall-package torch "torch==$version"
    # torchaudio stays the pure-Python one setup.sh left (its compiled libraries match no torch here)
    rm -f "$VENV"/lib/python3.11/site-packages/torchaudio/lib/*.so
    "$PY" -c 'import sys, torch; sys.exit(0 if torch.version.cuda and torch.cuda.is_available() else 1)' \
      || { log "torch $version from $index does not see the GPU (driver too old for its CUDA? set TORCH_CUDA_INDEX)"; exit 1; }
  fi
  use_nvidia_libs
  if ! ct2_libs_load 2>/dev/null; then
    log "installing cuBLAS 12 and cuDNN 9 for CTranslate2 (faster-whisper)"
    "$VENV/bin/uv" pip install -q --python "$PY" nvidia-cublas-cu12 "nvidia-cudnn-cu12>=9,<10"
    use_nvidia_libs
    ct2_libs_load || { log "CTranslate2's CUDA libraries still do not load; Whisper stages will fail on the GPU"; exit 1; }
  fi
  echo "LD_LIBRARY_PATH=$(nvidia_lib_dirs)" > "$VENV/cuda-libs.env"
  log "CUDA stack ready: $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))')"
}

[[ $device != cpu ]] && install_cuda_stack
log "install took $((SECONDS - t0)) s"
((install_only)) && exit 0

export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "${args[@]}"
