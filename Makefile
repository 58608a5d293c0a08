# Makefile — the two quick-start commands (`make run`, `make test`) and the builds behind them.
# The real build is CMake; this file installs what is missing, configures and drives it.

BUILD      ?= build
SAN_BUILD  ?= build-sanitize
FUZZ_BUILD ?= build-fuzz
NEON_BUILD ?= build-neon
CUDA_BUILD ?= build-cuda
# The golden tests that take --device cuda: on the GPU they hold the CUDA backend to the CPU's tolerances.
CUDA_DEVICE_TESTS = test_multimodal test_bidirectional test_batch test_trained slow_fullsize
NVCC       ?= $(shell command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PACKAGES   := build-essential cmake pkg-config libcjson-dev zlib1g-dev clang libclang-rt-14-dev \
              libavformat-dev libavcodec-dev libavutil-dev libswresample-dev libswscale-dev \
              libpng-dev libjpeg-dev libwebp-dev libgif-dev libedit-dev libmicrohttpd-dev
# The server's tests drive it with real clients: the openai npm package and Debian's Chromium (playwright-core).
NODE_PACKAGES := chromium
# Only the NEON test needs these (a cross compiler and an emulator).
NEON_PACKAGES := gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps deps-node deps-neon install-missing build test-all test-fast test-sanitize test-neon test-install \
        fuzz-smoke test-slow test-cuda-build clean

# Builds gemma4c and streams an answer from a small synthetic model (random weights) it builds itself.
run: build
	./$(BUILD)/gemma4c run

# Everything CI checks: a short fuzzing pass per parser, the tests under ASan + UBSan, the NEON kernels, the
# CUDA kernels' build (where nvcc is), the installed tree, then every test in the release build, the full-size
# E2B/E4B comparison included (last, so the closing summary is ctest's).
test: deps-node fuzz-smoke test-sanitize test-neon test-cuda-build test-install
	$(MAKE) --no-print-directory test-all

test-all: build
	ctest --test-dir $(BUILD) --output-on-failure

deps:
	@$(MAKE) --no-print-directory install-missing WANT="$(PACKAGES)"

# tests/server/node_modules from package-lock.json (the npm registry), and Chromium for the chat page's test.
deps-node:
	@$(MAKE) --no-print-directory install-missing WANT="$(NODE_PACKAGES)"
	@[ -d tests/server/node_modules/openai ] || npm ci --prefix tests/server --no-audit --no-fund

deps-neon:
	@$(MAKE) --no-print-directory install-missing WANT="$(NEON_PACKAGES)"

install-missing:
	@missing=""; for p in $(WANT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test-fast: build
	ctest --test-dir $(BUILD) -LE slow --output-on-failure

test-sanitize: deps
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGEMMA4C_SANITIZE=ON >/dev/null
	cmake --build $(SAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir $(SAN_BUILD) -LE slow --output-on-failure

# The ARM NEON kernels against the portable ones: the kernel test and the sources it needs, cross-compiled for
# aarch64 with dotprod and run under qemu (a CPU model that has it). The grep makes sure NEON was the variant tested.
NEON_SOURCES := tests/test_quant.c $(wildcard src/kernels/quant*.c) src/core/tensor.c src/core/threads.c src/core/error.c
test-neon: deps-neon
	mkdir -p $(NEON_BUILD)
	aarch64-linux-gnu-gcc -O2 -std=c11 -D_GNU_SOURCE -DGEMMA4C_SOURCE_DIR='"$(CURDIR)"' -march=armv8.2-a+dotprod \
	  -Isrc -Iinclude -Itests -static $(NEON_SOURCES) -lm -lpthread -o $(NEON_BUILD)/test_quant
	qemu-aarch64 -cpu max $(NEON_BUILD)/test_quant > $(NEON_BUILD)/test_quant.log 2>&1 || { cat $(NEON_BUILD)/test_quant.log; exit 1; }
	grep -q "best: neon" $(NEON_BUILD)/test_quant.log && tail -1 $(NEON_BUILD)/test_quant.log

# The CUDA kernels and backend built with nvcc (-DGEMMA4C_CUDA=ON) and their tests, which run on a GPU and say they
# skipped elsewhere (bench/cuda_device.sh builds and runs them on a GPU machine). Skipped with a note where there is no nvcc.
test-cuda-build: deps
	@if [ -z "$(NVCC)" ]; then echo "no nvcc: the CUDA kernels are not built"; else \
	  cmake -S . -B $(CUDA_BUILD) -DCMAKE_BUILD_TYPE=Release -DGEMMA4C_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC) >/dev/null && \
	  cmake --build $(CUDA_BUILD) -j $(JOBS) --target test_cuda_quant test_cuda_backend cuda_quant_speed gemma4c_cli \
	    $(CUDA_DEVICE_TESTS) && \
	  { ./$(CUDA_BUILD)/test_cuda_quant; rc=$$?; [ $$rc = 0 ] || [ $$rc = 77 ]; } && \
	  { ./$(CUDA_BUILD)/test_cuda_backend; rc=$$?; [ $$rc = 0 ] || [ $$rc = 77 ]; } && \
	  for t in $(CUDA_DEVICE_TESTS); do ./$(CUDA_BUILD)/$$t --device cuda; rc=$$?; [ $$rc = 0 ] || [ $$rc = 77 ] || exit 1; done; fi

# `cmake --install` into a temporary prefix: the files it must hold, libgemma4c.so exporting gemma4c_* alone, and
# examples/chat_image.c built against that tree through pkg-config (shared and static) and run on the tiny checkpoint.
test-install: build
	CC="$(CC)" bash tests/install_example.sh $(BUILD)

# Each libFuzzer harness for FUZZ_SECONDS (seeded from the golden files when present).
FUZZ_SECONDS ?= 20
fuzz-smoke: deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DGEMMA4C_FUZZ=ON >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Full-size E2B and E4B against golden/synthetic: several minutes and about 10 GB of memory.
test-slow: build
	ctest --test-dir $(BUILD) -L slow --output-on-failure

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD) $(NEON_BUILD) $(CUDA_BUILD)
