"""Benchmark harness: parity, latency and throughput of exported siamese models across runtimes."""
