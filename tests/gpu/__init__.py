"""Tests that need a CUDA GPU with CuPy; skipped elsewhere."""
