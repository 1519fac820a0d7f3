#!/usr/bin/env bash
# One-shot GPU check for a single H100/H200 machine with torch + triton but no internet and no mamba-ssm.
#
# 1. builds causal-conv1d and mamba-ssm from their sdists in .whl/ (git-ignored), sm_90 only, 16 jobs,
#    each build under a timeout; a failed build is reported and the check goes on without it;
# 2. runs benchmarks/gpu_check.py: our chunked path vs mamba-ssm's kernels on CUDA (scan outputs and
#    gradients; a RecMamba forward with our ops vs the cuda backend), then RecMamba vs SDPA SASRec
#    timings at L in {2048, 8192} (our own CUDA path is timed even when the build failed).
# Prints PASS/FAIL lines; writes gpu_check.json and the logs to $OUT when it is set.
#
# Bring the sdists along first (on a machine with internet, from the repository root):
#   MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE .venv/bin/pip download --no-deps \
#       --no-binary :all: --no-build-isolation mamba-ssm==2.3.2.post1 causal-conv1d==1.7.0 -d .whl
# (the SKIP variables only let pip read the packages' metadata without a GPU; plain
#  `pip download --no-deps --no-binary :all: mamba-ssm==2.3.2.post1 causal-conv1d==1.7.0` needs torch in
#  the build environment.)  Run:  bash benchmarks/gpu_check.sh   (about 5-8 minutes; builds dominate)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}"
OUT_DIR="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT_DIR"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-240}"   # seconds per package; the whole script must stay well under 10 min
WHEELS="${WHEELS:-.whl}"
status=0

echo "== environment"
"$PYTHON" - <<'EOF' || { echo "FAIL environment: torch with CUDA is required"; exit 1; }
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
EOF
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"

build() {  # build <package import name> <sdist glob>
    local name="$1" pattern="$2" sdist
    if "$PYTHON" -c "import $name" 2>/dev/null; then
        echo "PASS build $name: already installed"; return 0
    fi
    sdist=$(ls $WHEELS/$pattern 2>/dev/null | head -n 1 || true)
    if [ -z "$sdist" ]; then
        echo "FAIL build $name: no sdist matching $WHEELS/$pattern (see the download command above)"; return 1
    fi
    echo "== building $sdist (timeout ${BUILD_TIMEOUT}s, log $OUT_DIR/build-$name.log)"
    local start=$SECONDS
    if MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 \
        timeout "$BUILD_TIMEOUT" "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index \
        "$sdist" >"$OUT_DIR/build-$name.log" 2>&1; then
        echo "PASS build $name in $((SECONDS - start)) s"
    else
        echo "FAIL build $name after $((SECONDS - start)) s; last lines:"; tail -n 15 "$OUT_DIR/build-$name.log" || true
        return 1
    fi
}

# causal-conv1d first: mamba-ssm's fused inner function imports it.
build causal_conv1d 'causal_conv1d-*.tar.gz' || status=1
build mamba_ssm 'mamba_ssm-*.tar.gz' || status=1

echo "== checks and timings"
if ! timeout 300 "$PYTHON" benchmarks/gpu_check.py --out "$OUT_DIR/gpu_check.json"; then
    status=1
fi
echo "results in $OUT_DIR"
if [ "$status" -eq 0 ]; then echo "OVERALL PASS"; else echo "OVERALL FAIL (see FAIL lines above)"; fi
exit "$status"
