"""Stand-in for cupy._core (see ../__init__.py)."""
