#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each, default 10) with the
# nightly toolchain, installing cargo-fuzz from crates.io into target/tools on first use.
# Exits non-zero when a target finds a crash (the input is left in fuzz/artifacts/).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-10}"
tools="$PWD/target/tools"
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  cargo install cargo-fuzz --locked --version 0.13.2 --root "$tools" --quiet
fi
export PATH="$tools/bin:$PATH"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in $(cargo +nightly fuzz list); do
  echo "--- fuzz $target for ${seconds}s"
  if ! cargo +nightly fuzz run -O "$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
    tail -40 "$log"
    exit 1
  fi
  grep -E "^Done [0-9]+ runs" "$log"
done
