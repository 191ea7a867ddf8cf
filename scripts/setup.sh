#!/usr/bin/env bash
# Installs the Debian packages truthput builds with. Idempotent: returns at once when they are
# all present. CUDA Toolkit 13 is expected at /usr/local/cuda (or nvcc on PATH).
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ pkg-config
  libabsl-dev libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-matplotlib python3-pytest
  libbenchmark-tools python3-scipy  # Google Benchmark's compare.py, and the scipy it imports
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
    fi
  fi
  if ! { $SUDO apt-get update -qq && \
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
       >/tmp/truthput-setup.log 2>&1; then
    echo "setup: apt-get could not install ${missing[*]}; see /tmp/truthput-setup.log" >&2
    tail -5 /tmp/truthput-setup.log >&2
    exit 1
  fi
fi

if ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: CUDA Toolkit 13 not found (no nvcc on PATH or at /usr/local/cuda/bin/nvcc)." >&2
  echo "setup: install it from NVIDIA (https://developer.nvidia.com/cuda-downloads) and retry." >&2
  exit 1
fi
echo "setup: ok"
