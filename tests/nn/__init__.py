"""Tests of `convlab.nn`: modules, layers and blocks."""
