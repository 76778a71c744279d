"""PNG grids of the dataset: one example per class (paper Fig. 4), one image under every remedy
(Fig. 5).

  python scripts/show_dataset.py --config=configs/original.py --out=runs/preview
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from xaijax import case_config, data
from xaijax.data import preview

_CONFIG = config_flags.DEFINE_config_file(
  'config', 'configs/original.py', 'Case config (dataset settings).'
)
_OUT = flags.DEFINE_string('out', 'runs/preview', 'Folder for the PNG files.')


def main(argv):
  del argv
  config = _CONFIG.value
  splits = data.load_splits(config.data, splits=('train', 'test'))
  for path in preview.write_previews(splits, _OUT.value, case_config.describe_data(config.data)):
    print(path)


if __name__ == '__main__':
  app.run(main)
