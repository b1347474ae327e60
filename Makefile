# Set-up and everyday commands. Everything runs inside .venv, created on first use.
#   make demo   the main job: GenInt and CGN end to end on the built-in biased digits (no downloads)
#   make test   build (CPU + CUDA kernels where nvcc is found) and run every test: pytest + ctest
#   make bench  the throughput benchmarks against their baselines (built-in data, no downloads)
PY        ?= python3
VENV      := .venv
VPY       := $(VENV)/bin/python
PIP       := $(VPY) -m pip
CUDA_HOME ?= $(if $(wildcard /usr/local/cuda/bin/nvcc),/usr/local/cuda,)
export CUDA_HOME
export TORCH_CUDA_ARCH_LIST ?= 9.0
export MAX_JOBS ?= 2
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
SOURCES   := $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh csrc/cuda/*.h) setup.py

.PHONY: demo test pytest ctest bench build clean gpu-check

$(VENV)/.stamp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q "setuptools>=77" wheel "pybind11>=2.10" "ninja>=1.10" "cmake>=3.18"
	GENINT_FAST_SKIP_EXT=1 $(PIP) install -q -e ".[dev,dali]" --no-build-isolation   # the tests cover both loaders
	# tests compare our corruptions with the imagecorruptions release, which declares the GUI
	# build of OpenCV and cannot import as released: installed without its declared deps
	$(PIP) install -q --no-deps "imagecorruptions==1.1.2" "opencv-python-headless>=4.8"
	touch $@

build/.ext-stamp: $(VENV)/.stamp $(SOURCES)
	$(VPY) setup.py build_ext --inplace
	mkdir -p build && touch $@

build: build/.ext-stamp

pytest: build
	$(VPY) -m pytest tests -q --durations=15

build-cmake/.stamp: build $(SOURCES) CMakeLists.txt $(wildcard tests/cpp/*)
	$(VENV)/bin/cmake -S . -B build-cmake -DCMAKE_PREFIX_PATH="$$($(VPY) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	$(VENV)/bin/cmake --build build-cmake -j $(MAX_JOBS)
	touch $@

ctest: build-cmake/.stamp
	$(VENV)/bin/ctest --test-dir build-cmake --output-on-failure

test: pytest ctest

bench: build
	$(VENV)/bin/genint-fast bench

demo: build
	$(VENV)/bin/genint-fast demo --out out/demo

# On a machine with an NVIDIA GPU: build, every CUDA test (also under compute-sanitizer memcheck
# and racecheck when it is on PATH), the GPU benchmarks; one report, out/gpu_check.md.
gpu-check:
	@$(PY) tools/gpu_check.py --preflight
	$(MAKE) build
	$(VPY) tools/gpu_check.py --report out/gpu_check.md

clean:
	rm -rf build build-cmake genint_fast/_C*.so
