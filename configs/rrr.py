"""RRR: Right for the Right Reasons (Ross et al. 2017), the input gradient on the overlay mask
penalised while training from scratch; the images keep their overlays (beyond the paper).

python main.py --config=configs/rrr.py --workdir=runs/rrr
python main.py --config=configs/rrr.py:weight=1000 --workdir=runs/rrr_1000
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, correction='rrr')
