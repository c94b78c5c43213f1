"""Tests of `convlab.inspect`: the model summary."""
