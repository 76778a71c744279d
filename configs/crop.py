"""Crop: cut the top and bottom strips off and resize the rest back to full size.


python main.py --config=configs/crop.py --workdir=runs/crop
python main.py --config=configs/crop.py:paper --workdir=runs/crop_paper
"""

from configs import common


def get_config(arg=None):
  return common.get_config(arg, remedy='crop')
