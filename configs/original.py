"""Original: train on the images as distributed, overlays and all (the paper's baseline).

python main.py --config=configs/original.py --workdir=runs/original
python main.py --config=configs/original.py:paper --workdir=runs/original_paper
"""

from configs import common


def get_config(arg=None):
  return common.get_config(arg, remedy='none')
