"""Tests of the CUDA fast paths: source compilation (CPU) and agreement with their twins (GPU)."""
