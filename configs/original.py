"""Original: train on the images as distributed, overlays and all (the paper's baseline).

python main.py --config=configs/original.py --workdir=runs/original
python main.py --config=configs/original.py:paper --workdir=runs/original_paper
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, remedy='none')
