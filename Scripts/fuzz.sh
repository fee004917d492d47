#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of the gateway's parsers.
#   Scripts/fuzz.sh                      list the targets, one a line
#   Scripts/fuzz.sh TARGET SECONDS       fuzz TARGET for SECONDS from its corpus
#   Scripts/fuzz.sh all SECONDS          every target in turn
# Seeds: Tests/Fuzz/Corpus/TARGET (kept small; committed). New interesting inputs go to
# .build-fuzz/corpus/TARGET (not committed); a crash or a failed differential check exits
# non-zero and leaves crash-*/leak-* files in .build-fuzz/findings/TARGET: copy them to
# Tests/Fuzz/Regressions/TARGET, where the test suite replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
TARGETS="request response jwt json anthropic config"
if [ $# -eq 0 ]; then printf '%s\n' $TARGETS; exit 0; fi
target=$1; seconds=${2:-60}
if [ "$target" = all ]; then
    for t in $TARGETS; do "$0" "$t" "$seconds"; done
    exit 0
fi
case " $TARGETS " in *" $target "*) ;; *) echo "unknown target '$target'; one of: $TARGETS" >&2; exit 2 ;; esac
Scripts/bootstrap.sh >/dev/null
swift build -c release --scratch-path .build-fuzz --product PortcullisFuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING >&2
BIN=$(swift build -c release --scratch-path .build-fuzz --show-bin-path)/PortcullisFuzz
mkdir -p ".build-fuzz/corpus/$target" ".build-fuzz/findings/$target"
dict=()
[ -f "Tests/Fuzz/Dictionaries/$target.dict" ] && dict=(-dict="Tests/Fuzz/Dictionaries/$target.dict")
# -detect_leaks=0: LeakSanitizer cannot follow Swift references stored with tag bits in enum
# payloads (it reports the keys built once at start as leaked); a real per-input leak still
# shows as growing RSS over millions of runs, which -rss_limit_mb turns into a finding.
ASAN_OPTIONS=detect_leaks=0 PORTCULLIS_FUZZ_TARGET=$target "$BIN" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=1024 -detect_leaks=0 \
    -print_final_stats=1 "${dict[@]}" -artifact_prefix=".build-fuzz/findings/$target/" \
    ".build-fuzz/corpus/$target" "Tests/Fuzz/Corpus/$target"
