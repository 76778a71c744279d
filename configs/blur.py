"""Blur: Gaussian blur of the top and bottom strips (17x17, sigma 20 at 224 px, scaled with resolution).


python main.py --config=configs/blur.py --workdir=runs/blur
python main.py --config=configs/blur.py:paper --workdir=runs/blur_paper
"""

from configs import common


def get_config(arg=None):
  return common.get_config(arg, remedy='blur')
