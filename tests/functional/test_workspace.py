"""Scratch buffers and the allocator setting that keeps freed memory for reuse."""

import os
import subprocess
import sys

import numpy as np
import pytest

from convlab.functional import workspace

# Allocate, touch and free a 48 MiB array five times (as a step's activations come and go) and
# print the page faults the last four took.
CYCLE = """
import resource, numpy as np
import convlab.functional.workspace as w
def cycle():
    a = np.empty(12 << 20, dtype=np.float32); a.fill(1.0); del a
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    cycle()
print(w.KEEPS_FREED_MEMORY, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_over_cycles(keep):
    env = dict(os.environ, CONVLAB_KEEP_FREED_MEMORY="1" if keep else "0")
    out = subprocess.run([sys.executable, "-c", CYCLE], env=env, capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_activations_are_reused_without_faulting_their_pages_in_again():
    kept, faults = faults_over_cycles(keep=True)
    if not kept:
        pytest.skip("this C library has no mallopt (not glibc)")
    off, faults_off = faults_over_cycles(keep=False)
    assert not off
    # 48 MiB is 12,288 pages of 4 KiB, or 24 huge pages of 2 MiB, freed to the OS each time unless kept
    assert faults_off > 40, f"without the setting the cycles should fault their pages in ({faults_off})"
    assert faults < faults_off / 10, f"kept memory still faulted: {faults} against {faults_off}"


def test_scratch_reuses_its_buffer_per_slot_and_grows_when_asked():
    a = workspace.scratch(np, (4, 5), np.float32, "test-slot")
    b = workspace.scratch(np, (2, 10), np.float32, "test-slot")
    assert np.shares_memory(a, b) and b.shape == (2, 10)
    c = workspace.scratch(np, (100,), np.float32, "test-slot")
    assert c.size == 100 and not np.shares_memory(a, c)
    assert not np.shares_memory(c, workspace.scratch(np, (100,), np.float32, "other-slot"))
