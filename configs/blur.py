"""Blur: Gaussian blur of the top and bottom strips (17x17, sigma 20 at 224 px, scaled to size).

python main.py --config=configs/blur.py --workdir=runs/blur
python main.py --config=configs/blur.py:paper --workdir=runs/blur_paper
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, remedy='blur')
