# The two commands of README's quick start, and a few more. Each installs the Debian packages
# it lacks first (with sudo when not root), and does nothing it need not do on a second run.
BUILD ?= build
JOBS ?= 2
PACKAGES := cmake ninja-build g++ libtbb-dev libfmt-dev libbenchmark-dev doctest-dev libyaml-cpp-dev libcli11-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SLUICE := $(BUILD)/src/cli/sluice

.PHONY: run test build bench deps clean

run: $(BUILD)/build.ninja
	cmake --build $(BUILD) --target sluice_cli -- -j$(JOBS)
	$(SLUICE) run pipelines/square_filter.yaml

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -- -j$(JOBS)

bench: $(BUILD)/build.ninja
	cmake --build $(BUILD) --target sluice_bench -- -j$(JOBS)
	$(BUILD)/bench/sluice_bench --benchmark_enable_random_interleaving=true --benchmark_repetitions=5 \
	  --benchmark_report_aggregates_only=true

# Configured once; after that ninja re-runs cmake itself when a CMakeLists.txt changes.
$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

deps:
	@missing=""; for package in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf $(BUILD) build-asan build-tsan
