#!/bin/bash
# Measures the checker's overhead on the library's AArch64 test suite: runs
# every test binary under plain qemu-aarch64 and under icache-check, one after
# the other, and prints the wall and user CPU times of both runs.
#
# Run from the workspace root after
#   cargo build -p icache-check --release
#   cargo test -p icache-coherence --target aarch64-unknown-linux-gnu --no-run
set -euo pipefail
CPU=${CPU:-a64fx}
DIR=target/aarch64-unknown-linux-gnu/debug/deps
CHECK=$PWD/target/release/icache-check
mapfile -t TESTS < <(find "$DIR" -maxdepth 1 -type f -executable -name '*-*' ! -name '*.so' | sort)
[ ${#TESTS[@]} -gt 0 ] || { echo "no test binaries in $DIR" >&2; exit 1; }

run_all() {
    for t in "${TESTS[@]}"; do
        if [ "$1" = plain ]; then
            qemu-aarch64 -cpu "$CPU" -L /usr/aarch64-linux-gnu "$t" >/dev/null 2>&1 ||
                echo "plain: $t failed" >&2
        else
            "$CHECK" --cpu "$CPU" -- "$t" >/dev/null 2>&1 || echo "check: $t failed ($?)" >&2
        fi
    done
}

for mode in plain check; do
    TIMEFORMAT="$mode: %R s wall, %U s user"
    time run_all "$mode"
done
