#!/usr/bin/env bash
# The test command: setup + configure + build (all targets, every .cu file) + ctest.
# GPU tests (label "gpu") skip visibly where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
