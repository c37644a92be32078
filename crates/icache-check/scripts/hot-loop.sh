#!/bin/bash
# Measures the checker's cost where JIT code runs hot: fixtures/hotloop.c runs
# a loop it wrote (and made coherent) ITERS times, under plain qemu-aarch64
# and under icache-check, and prints the user CPU time of both and the ratio.
#
# Run from the workspace root after `cargo build -p icache-check --release`.
set -euo pipefail
CPU=${CPU:-cortex-a72}
ITERS=${ITERS:-200000000}
CHECK=$PWD/target/release/icache-check
PROG=$(mktemp -d)/hotloop
aarch64-linux-gnu-gcc -O2 -static -o "$PROG" crates/icache-check/fixtures/hotloop.c

user() { # prints the user CPU seconds of "$@"
    /usr/bin/time -f %U "$@" 2>&1 >/dev/null | tail -1
}
plain=$(user qemu-aarch64 -cpu "$CPU" "$PROG" "$ITERS")
check=$(user "$CHECK" --cpu "$CPU" -- "$PROG" "$ITERS")
echo "hot loop, $ITERS iterations on $CPU: plain $plain s user, checker $check s user," \
    "ratio $(echo "scale=2; $check / $plain" | bc)"
