"""Run one case of the workflow.

python main.py --config=configs/generative.py --workdir=runs/generative
"""

import logging

from absl import app, flags
import jax
from ml_collections import config_flags

from xaijax import cpu_memory, distributed, workflow

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Case config file, e.g. configs/original.py[:paper].'
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for every output; a rerun resumes from it.')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(logging.Filter):
  """Orbax and TFDS narrate every save and read at INFO; keep their warnings, drop the chatter."""

  def filter(self, record):
    return record.levelno >= logging.WARNING or not any(
      name in record.pathname for name in ('orbax', 'tensorflow_datasets', 'etils')
    )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.getLogger('absl').addFilter(_QuietLibraries())
  distributed.initialize(_CONFIG.value.distributed)  # before anything touches a device
  if jax.default_backend() == 'cpu':
    # XLA:CPU's per-step temp buffer stays mapped (xaijax/cpu_memory.py).
    cpu_memory.keep_freed_memory()
  workflow.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
