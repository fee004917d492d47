#!/usr/bin/env bash
# The Swift test suite under a sanitizer, in its own build folder (.build-asan / .build-tsan).
#   Scripts/sanitize.sh address      AddressSanitizer (use after free, overflows, double free)
#   Scripts/sanitize.sh thread       ThreadSanitizer (data races between workers, the signal
#                                    thread, the log and DNS threads)
# Leak checking is off under `address`: swift-corelibs XCTest keeps every test case (and what
# it references) alive to the end of the process, so LeakSanitizer reports them all; leaks are
# looked for by the fuzzers' RSS limit and the soak (Benchmarks/soak.py) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: Scripts/sanitize.sh address|thread}
case $kind in address) dir=.build-asan ;; thread) dir=.build-tsan ;; *) echo "address or thread" >&2; exit 2 ;; esac
Scripts/bootstrap.sh >/dev/null
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
swift build --build-tests --sanitize="$kind" --scratch-path "$dir" 2>&1 | grep -E "error:|Build complete" || true
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
swift test --skip-build --sanitize="$kind" --scratch-path "$dir" 2>&1 | tee "$dir/sanitize.log" | grep -E "error|WARNING: ThreadSanitizer|ERROR: AddressSanitizer|Executed .* tests" | tail -20
status=${PIPESTATUS[0]}
if grep -qE "WARNING: ThreadSanitizer|ERROR: AddressSanitizer" "$dir/sanitize.log"; then status=1; fi
[ "$status" -eq 0 ] && echo "$kind sanitizer: clean" || echo "FAILED: $kind sanitizer (see $dir/sanitize.log)"
exit "$status"
