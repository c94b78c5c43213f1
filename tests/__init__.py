"""convlab's test suite (a package, so tests can share `tests.gradcheck` and `tests.torch_reference`)."""
