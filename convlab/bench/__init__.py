"""Benchmarks that print tables of convlab against PyTorch, measured in one process."""
