"""Tests of the stateless forward/backward pairs in `convlab.functional`."""
