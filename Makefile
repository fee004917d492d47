# Convenience aliases; the scripts are the source of truth.
.PHONY: run test bench build
build:
	swift build -c release
run:
	Scripts/demo.sh
test:
	Scripts/test.sh
bench:
	Benchmarks/run.sh
