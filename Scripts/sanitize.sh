#!/usr/bin/env bash
# The Swift test suite under a sanitizer, in its own build folder (.build-asan / .build-tsan).
#   Scripts/sanitize.sh address      AddressSanitizer (use after free, overflows, double free)
#   Scripts/sanitize.sh thread       ThreadSanitizer (data races between workers, the signal
#                                    thread, the log and DNS threads); then the real daemon,
#                                    built with TSan, under the reload/limits/routing/hostile
#                                    integration tests (its reports must be empty)
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
if [ "$kind" = thread ] && [ "$status" -eq 0 ]; then
    # Note: ThreadSanitizer does not model Synchronization.Mutex (a futex), so two threads in
    # the same Mutex-protected section can be reported; locks several threads contend are
    # pthread mutexes for that reason.
    swift build --sanitize=thread --scratch-path "$dir" --product portcullis 2>&1 | grep -E "error:" || true
    swift build --sanitize=thread --scratch-path "$dir" --product FakeProvider 2>&1 | grep -E "error:" || true
    reports=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$port" --save "" --daemonize yes --pidfile "$reports/redis.pid" >/dev/null
    TSAN_OPTIONS="log_path=$reports/report" PORTCULLIS_TEST_REDIS="127.0.0.1:$port" \
        PORTCULLIS_BIN_DIR="$(swift build --scratch-path "$dir" --show-bin-path)" \
        python3 -m pytest -q Tests/Integration/test_operations.py Tests/Integration/test_limits.py \
        Tests/Integration/test_routing.py Tests/Integration/test_hostile.py | tail -2 || status=1
    kill "$(cat "$reports/redis.pid")" 2>/dev/null || true
    if ls "$reports"/report.* >/dev/null 2>&1; then
        grep -h SUMMARY "$reports"/report.* | sort | uniq -c
        status=1
    fi
fi
[ "$status" -eq 0 ] && echo "$kind sanitizer: clean" || echo "FAILED: $kind sanitizer (see $dir/sanitize.log)"
exit "$status"
