import os
import sys

# Tests run on the CPU whatever the machine has; keep XLA from grabbing every core's worth of threads badly.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
