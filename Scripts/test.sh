#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs missing packages, builds, starts its
# own Redis on a free port, runs the Swift unit tests, then the integration tests against the
# real binaries. Exit status is non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

extra=(redis-server)
command -v python3 >/dev/null 2>&1 || extra+=(python3)
python3 -m pip --version >/dev/null 2>&1 || extra+=(python3-pip)
Scripts/bootstrap.sh "${extra[@]}"
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH

pip_install() {  # pip refuses system-wide installs on PEP 668 systems; retry with the override
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
python3 -m pytest --version >/dev/null 2>&1 || pip_install pytest
# Tokens for the auth tests are minted with `cryptography` (RSA, EC, Ed25519).
python3 -c "import cryptography" 2>/dev/null || pip_install cryptography
# The official OpenAI SDK as a real client (its tests are skipped if it cannot be installed).
python3 -c "import openai" 2>/dev/null || python3 -m pip install -q openai 2>/dev/null \
    || python3 -m pip install -q --break-system-packages openai 2>/dev/null || echo "note: openai SDK not installed; its tests will be skipped"
# The official Anthropic SDK, against the native /v1/messages pass-through (skipped if missing).
python3 -c "import anthropic" 2>/dev/null || python3 -m pip install -q anthropic 2>/dev/null \
    || python3 -m pip install -q --break-system-packages anthropic 2>/dev/null || echo "note: anthropic SDK not installed; its tests will be skipped"

echo "== build"
BUILD_LOG=$(mktemp)
set +e
swift build --build-tests > "$BUILD_LOG" 2>&1
build_status=$?
set -e
grep -E "error:|Build complete|Compiling" "$BUILD_LOG" | tail -20 || true
[ "$build_status" -eq 0 ] || { tail -50 "$BUILD_LOG"; echo "FAILED: build"; exit 1; }

# Our own Redis on a free port (the limiter's tests use it); stopped on exit.
REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REDIS_DIR=$(mktemp -d)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$REDIS_DIR" \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" >/dev/null
release_pid=""   # the background release build (below), stopped with its compilers if the run ends first
cleanup() {
    [ -n "$release_pid" ] && kill -- "-$release_pid" 2>/dev/null || true
    [ -f "$REDIS_DIR/redis.pid" ] && kill "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null || true
    rm -rf "$REDIS_DIR"
}
trap cleanup EXIT
export PORTCULLIS_TEST_REDIS="127.0.0.1:$REDIS_PORT"
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "== unit tests (swift test)"
set +e
swift test --skip-build > "$REDIS_DIR/swift-test.log" 2>&1
unit_status=$?
set -e
grep -E "error:|failed \(|Executed .* tests" "$REDIS_DIR/swift-test.log" | tail -20 || true

echo "== integration tests (pytest: real binaries, real sockets)"
set +e
PORTCULLIS_BIN_DIR="$ROOT/.build/debug" python3 -m pytest -q Tests/Integration
integ_status=$?
set -e

# The release binaries (what ships and what Benchmarks/ measures: link-time optimised, their own
# compiler flags, see Package.swift) build in the background while the fuzzers and the sanitizer
# run; the core integration tests then run against them too.
release_status=0
release_tests=${PORTCULLIS_RELEASE_TESTS:-1}
if [ "$release_tests" -ne 0 ]; then
    # In a session of its own (setsid), so an interrupted run stops the whole build (cleanup).
    setsid Scripts/build-release.sh -q portcullis FakeProvider > "$REDIS_DIR/release-build.out" 2>&1 &
    release_pid=$!
fi

echo "== fuzz findings and seeds replayed (Tests/Fuzz)"
set +e
replay_status=0
for t in $(Scripts/fuzz.sh); do
    dirs=("Tests/Fuzz/Corpus/$t")
    [ -d "Tests/Fuzz/Regressions/$t" ] && dirs+=("Tests/Fuzz/Regressions/$t")
    "$ROOT/.build/debug/PortcullisFuzz" "$t" "${dirs[@]}" || replay_status=1
done
set -e

# Coverage-guided fuzzing, briefly (PORTCULLIS_FUZZ_SECONDS per target, default 30; 0 skips).
fuzz_status=0
if [ "${PORTCULLIS_FUZZ_SECONDS:-30}" -gt 0 ]; then
    echo "== fuzzing each target for ${PORTCULLIS_FUZZ_SECONDS:-30} s (Scripts/fuzz.sh)"
    set +e
    for t in $(Scripts/fuzz.sh); do
        Scripts/fuzz.sh "$t" "${PORTCULLIS_FUZZ_SECONDS:-30}" > "$REDIS_DIR/fuzz-$t.log" 2>&1
        s=$?
        echo "$t: $(grep -E '^stat::number_of_executed_units' "$REDIS_DIR/fuzz-$t.log" | awk '{print $2}') runs, exit $s"
        [ "$s" -eq 0 ] || { fuzz_status=1; tail -40 "$REDIS_DIR/fuzz-$t.log"; }
    done
    set -e
fi

# The unit suite under AddressSanitizer (ThreadSanitizer: Scripts/sanitize.sh thread).
asan_status=0
if [ "${PORTCULLIS_ASAN:-1}" -ne 0 ]; then
    echo "== unit tests under AddressSanitizer (Scripts/sanitize.sh address)"
    Scripts/sanitize.sh address || asan_status=1
fi

if [ "$release_tests" -ne 0 ]; then
    echo "== integration tests against the release binaries (proxy, routing, limits, concurrency, hostile clients, outages)"
    set +e
    wait "$release_pid"; build_status=$?
    release_pid=""
    if [ "$build_status" -eq 0 ]; then
        PORTCULLIS_BIN_DIR="$(tail -1 "$REDIS_DIR/release-build.out")" python3 -m pytest -q \
            Tests/Integration/test_proxy.py Tests/Integration/test_routing.py Tests/Integration/test_limits.py \
            Tests/Integration/test_concurrency.py Tests/Integration/test_hostile.py Tests/Integration/test_outages.py
        release_status=$?
    else
        cat "$REDIS_DIR/release-build.out"; echo "release build failed"; release_status=1
    fi
    set -e
fi

if [ "$unit_status" -ne 0 ] || [ "$integ_status" -ne 0 ] || [ "$replay_status" -ne 0 ] || [ "$fuzz_status" -ne 0 ] || [ "$asan_status" -ne 0 ] || [ "$release_status" -ne 0 ]; then
    echo "FAILED: unit=$unit_status integration=$integ_status fuzz-replay=$replay_status fuzz=$fuzz_status asan=$asan_status release=$release_status"
    exit 1
fi
echo "all tests passed"
