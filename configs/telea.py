"""Telea: OpenCV's Telea inpainting of the overlay mask (beyond the paper).

python main.py --config=configs/telea.py --workdir=runs/telea
python main.py --config=configs/telea.py:paper --workdir=runs/telea_paper
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, remedy='telea')
