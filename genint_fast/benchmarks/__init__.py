"""Throughput benchmarks: each module times a fused path and its named baseline in the same run
and reports the ratio. `genint-fast bench` and bench/ (pytest-benchmark) both use them."""
