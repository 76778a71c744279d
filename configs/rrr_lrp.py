"""RRR with LRP: the share of LRP relevance on the overlay mask, differentiated through the LRP
backward pass, penalised while training from scratch; the images keep their overlays.

python main.py --config=configs/rrr_lrp.py --workdir=runs/rrr_lrp
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, correction='rrr_lrp')
