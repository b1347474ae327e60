"""Throughput benchmarks: each module times a fused path and its named baseline in the same run
and reports the ratio; `genint-fast bench NAME` runs them (registered in cli/bench.py)."""
