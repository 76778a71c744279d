"""Crop: cut the top and bottom strips off and resize the rest back to full size.

python main.py --config=configs/crop.py --workdir=runs/crop
python main.py --config=configs/crop.py:paper --workdir=runs/crop_paper
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, remedy='crop')
