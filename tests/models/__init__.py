"""Tests of `convlab.models`: the zoo and its registry."""
