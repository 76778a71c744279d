"""keep_freed_memory: big buffers are reused instead of page-faulted in again on every cycle."""

import subprocess
import sys
import textwrap

import pytest

# Allocates and frees a 64 MB buffer (above glibc's 32 MB mmap limit) a few times, touching all
# of it, and prints the minor page faults of the last cycles. Run in a fresh process: the
# malloc settings last for the life of a process.
_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    # numpy asks for transparent huge pages on big arrays; XLA's allocations do not.
    (getattr(np, '_core', None) or np.core).multiarray._set_madvise_hugepage(False)
    if sys.argv[1] == 'keep':
        from xaijax.cpu_memory import keep_freed_memory
        assert keep_freed_memory()
    for _ in range(2):
        np.ones(16 * 2**20, np.float32).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        np.ones(16 * 2**20, np.float32).sum()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode):
  result = subprocess.run(
    [sys.executable, '-c', _SCRIPT, mode], capture_output=True, text=True, check=True
  )
  return int(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc only')
def test_freed_buffers_are_reused_without_page_faults():
  pages_per_buffer = 64 * 2**20 // 4096
  default = _faults('default')
  kept = _faults('keep')
  assert default > 2 * pages_per_buffer  # each cycle maps and faults a fresh buffer
  assert kept < pages_per_buffer // 4  # the same pages are reused
