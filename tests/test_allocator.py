"""retain_freed_memory: a large tensor freed and made again reuses the process's pages (no page faults)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")

# In a child process, so this test's allocator setting and page counts are its own.
CHILD = """
import resource, sys, torch
from recmodels.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
def faults_of_one_step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**20 // 4)  # 64 MB, above glibc's largest default mmap threshold, freed at once
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_step()
print(min(faults_of_one_step() for _ in range(3)))
"""


def page_faults_per_step(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_retained_memory_is_reused_without_page_faults():
    pages = 64 * 2**20 // 4096
    assert page_faults_per_step("default") >= pages // 2  # the 64 MB is mapped and faulted in every time
    assert page_faults_per_step("retain") < pages // 20
