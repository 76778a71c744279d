import os

# Tests run on the CPU whatever the machine has, so they give the same numbers everywhere.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
