#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a prepared one: starts (or installs) the
# services the tests need, then checks formatting and lints and runs every test.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outputs live outside the clone so that later runs reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/maas/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
# llama.cpp's OpenMP workers spin between decodes by default; on a 2-core machine running
# several test servers that starves everything else (decision 009).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

if ! command -v cargo >/dev/null; then
  echo "cargo is not installed: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# shellcheck source=scripts/services.sh
source scripts/services.sh
ensure_build_tools
ensure_postgres
ensure_redis
ensure_nats
ensure_python_venv
ensure_onnxruntime
ensure_seaweedfs
ensure_model_fixtures

step() { printf '\n=== %s\n' "$*"; }
start=$SECONDS
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The GPU path that builds without CUDA (ONNX Runtime's execution provider) must keep building.
cargo clippy -p maas --features onnx-cuda --locked -- -D warnings
step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
# One closing line for the whole suite, summed over every test binary.
step "all checks passed in $((SECONDS - start)) s"
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
