# Thin wrapper over CMake and ctest. `make demo` and `make test` are the two commands the
# README promises: each installs the Debian packages it needs, configures, builds and runs.

BUILD_DIR ?= build
# clang with AddressSanitizer + UndefinedBehaviorSanitizer: the fuzz targets, and every test
# a second time (`make asan-test`).
FUZZ_BUILD_DIR ?= build-fuzz
# clang with ThreadSanitizer: the gateway and its tests (`make tsan-test`).
TSAN_BUILD_DIR ?= build-tsan
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
# Per fuzz target in `make test`; `make fuzz-long` runs each for FUZZ_LONG_RUNS executions
# (FUZZ_LONG_SECONDS is a cap: reaching it first fails the run).
FUZZ_SECONDS ?= 30
FUZZ_LONG_RUNS ?= 10000000
FUZZ_LONG_SECONDS ?= 14400
FUZZ_TARGETS = config_loader_fuzzer http1_codec_fuzzer decision_table_fuzzer admin_request_fuzzer
# Sanitizer reports of the programs the integration tests start (server, gateway, stub) go to
# files, which the run then checks: a report fails the run even if the test passed.
SAN_LOGS = $(abspath $(FUZZ_BUILD_DIR))/sanitizer-logs
TSAN_LOGS = $(abspath $(TSAN_BUILD_DIR))/sanitizer-logs
# tests/tsan.supp: false positives of the libraries Debian ships uninstrumented (gRPC), for the
# gateway the integration tests start (the test binaries read it by default).
TSAN_OPTIONS = log_path=$(TSAN_LOGS)/tsan:log_exe_name=1:suppressions=$(abspath tests/tsan.supp)

.PHONY: deps configure build demo test unit-test fuzz fuzz-long asan-test tsan-test format \
	clean bench
.NOTPARALLEL:

deps:
	./scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	./scripts/demo.sh $(BUILD_DIR)

unit-test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The fuzz targets need clang's libFuzzer, so they live in a second build folder.
fuzz-configure: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSLUICE_FUZZ=ON -DSLUICE_BUILD_TESTS=ON -DSLUICE_BUILD_BENCH=OFF

fuzz: fuzz-configure
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target $(FUZZ_TARGETS)
	./scripts/run-fuzzers.sh $(FUZZ_BUILD_DIR) $(FUZZ_SECONDS)

# At least 10^7 executions per target (the figures are in README.md, "Fuzzing").
fuzz-long: fuzz-configure
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target $(FUZZ_TARGETS)
	FUZZ_UNIT_TIMEOUT=$${FUZZ_UNIT_TIMEOUT:-60} \
	  ./scripts/run-fuzzers.sh $(FUZZ_BUILD_DIR) $(FUZZ_LONG_SECONDS) $(FUZZ_LONG_RUNS)

# Every unit and integration test again, built with ASan + UBSan (in the fuzz build folder:
# one more build, not two). Leaks are reported at each program's exit.
asan-test: fuzz-configure
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS)
	rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	cd $(FUZZ_BUILD_DIR) && \
	  ASAN_OPTIONS=detect_leaks=1:log_path=$(SAN_LOGS)/asan:log_exe_name=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(SAN_LOGS)/ubsan:log_exe_name=1 \
	  ctest --output-on-failure -j $(JOBS)
	./scripts/check-sanitizer-logs.sh $(SAN_LOGS)

# The gateway's unit tests, and the gateway integration tests run against a ThreadSanitizer
# build of sluice-gateway with --io epoll (the other stages run the default, io_uring; the
# server and stubs they start are the main build's). Left out:
# the 100 file edits, a test of the server's file handling whose 60 ms mid-write pause a
# machine this loaded can stretch past the server's settle delay.
tsan-test: build
	CC=clang CXX=clang++ cmake -S . -B $(TSAN_BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSLUICE_SANITIZE=thread -DSLUICE_BUILD_BENCH=OFF
	cmake --build $(TSAN_BUILD_DIR) -j $(JOBS) --target sluice-gateway gateway_unit_tests
	rm -rf $(TSAN_LOGS) && mkdir -p $(TSAN_LOGS)
	cd $(TSAN_BUILD_DIR) && TSAN_OPTIONS=$(TSAN_OPTIONS) \
	  SLUICE_TEST_SERVER_BINARY=$(abspath $(BUILD_DIR))/server/sluice-server \
	  ctest --output-on-failure -j $(JOBS) -L gateway
	cd $(BUILD_DIR) && TSAN_OPTIONS=$(TSAN_OPTIONS) \
	  SLUICE_TEST_GATEWAY_BINARY=$(abspath scripts/gateway-with-epoll.sh) \
	  SLUICE_EPOLL_GATEWAY=$(abspath $(TSAN_BUILD_DIR))/gateway/sluice-gateway \
	  ctest --output-on-failure -j $(JOBS) -R 'GatewayTest' -E 'HundredFileEdits'
	./scripts/check-sanitizer-logs.sh $(TSAN_LOGS)

# The fuzzers run first and ctest's summaries close the output; the plain build's tests last.
test: fuzz asan-test tsan-test unit-test

format:
	find cli lib server gateway tools tests bench -name '*.h' -o -name '*.cc' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(FUZZ_BUILD_DIR) $(TSAN_BUILD_DIR)

# Benchmarks (not part of `make test`): in-process decisions and gRPC against an echo.
bench: build
	./bench/run.sh $(BUILD_DIR)
