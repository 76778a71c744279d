import os
import tempfile

# Tests run on the CPU whatever the machine has, so they give the same numbers everywhere.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Many tests (and the main.py runs they start as subprocesses) compile the same small programs;
# JAX's persistent compilation cache, keyed by the program itself, lets each compile once. The
# environment carries it into the subprocesses.
os.environ.setdefault(
  'JAX_COMPILATION_CACHE_DIR', os.path.join(tempfile.gettempdir(), 'xaijax-tests-jax-cache')
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
