"""Builds genint_fast._C with torch.utils.cpp_extension (ninja).

CUDA sources (csrc/cuda/*.cu) are compiled when the installed torch is a CUDA build and nvcc is
found through CUDA_HOME (or on PATH); otherwise the build is CPU-only and every CPU path works.
Set GENINT_FAST_FORCE_CPU=1 to skip CUDA even where it is available. TORCH_CUDA_ARCH_LIST picks the
GPU architectures. When it is unset (a release build: pip install, bdist_wheel) the kernels are
compiled for Ampere and Hopper (sm_80, sm_90) plus PTX of the newest target, which later GPUs
JIT-compile: RELEASE_CUDA_ARCH_LIST. CI and `make` set TORCH_CUDA_ARCH_LIST=9.0 (one
architecture, a shorter build).
"""
import glob
import os
import sys

from setuptools import setup

import torch
from torch.utils import cpp_extension

HERE = os.path.dirname(os.path.abspath(__file__))
# Architectures of a release build (TORCH_CUDA_ARCH_LIST unset): sm_80 (A100), sm_90 (H100, H200)
# and compute_90 PTX for anything newer.
RELEASE_CUDA_ARCH_LIST = "8.0;9.0+PTX"


def _want_cuda():
    if os.environ.get("GENINT_FAST_FORCE_CPU", "0") == "1":
        return False
    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def _wheel_cuda_includes():
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    found = []
    for root in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("cu13", "cu12", "cusparse", "cublas"):
            inc = os.path.join(root, sub, "include")
            if os.path.exists(os.path.join(inc, "cusparse.h")) or os.path.exists(
                os.path.join(inc, "cublas_v2.h")
            ):
                found.append(inc)
    return found


def _sources(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def build_extension():
    with_cuda = _want_cuda()
    sources = ["csrc/module.cpp"] + _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    sources = list(dict.fromkeys(sources))
    debug = os.environ.get("GENINT_FAST_DEBUG", "0") == "1"
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    cxx += ["-fopenmp"]
    extra = {"cxx": cxx}
    define_macros = []
    libraries = ["gomp"] if sys.platform.startswith("linux") else []
    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip():
            os.environ["TORCH_CUDA_ARCH_LIST"] = RELEASE_CUDA_ARCH_LIST
        print(f"genint_fast: CUDA architectures {os.environ['TORCH_CUDA_ARCH_LIST']}",
              flush=True)
        sources += _sources("csrc/cuda/*.cu")
        extra["nvcc"] = ["-O3", "-lineinfo"]
        # A minimal toolkit (nvcc + cudart) lacks the cuBLAS/cuSPARSE headers that some ATen CUDA
        # headers include; the CUDA wheels torch depends on ship them. Searched last (-isystem).
        for inc in _wheel_cuda_includes():
            extra["cxx"] += ["-isystem", inc]
            extra["nvcc"] += ["-isystem", inc]
        define_macros.append(("GENINT_FAST_WITH_CUDA", None))
        ext_cls = cpp_extension.CUDAExtension
    else:
        ext_cls = cpp_extension.CppExtension
    print(f"genint_fast: building {'CPU + CUDA' if with_cuda else 'CPU-only'} extension", flush=True)
    return ext_cls(
        name="genint_fast._C",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc")],
        extra_compile_args=extra,
        define_macros=define_macros,
        libraries=libraries,
    )


# GENINT_FAST_SKIP_EXT=1: install the Python package only (the Makefile does this for its editable
# install and then builds the extension in place with build_ext, so it is compiled once).
_skip_ext = os.environ.get("GENINT_FAST_SKIP_EXT", "0") == "1"

setup(
    ext_modules=[] if _skip_ext else [build_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
