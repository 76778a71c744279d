"""RR-ClArC: the Original model fine-tuned with weight * mean((grad_a y_hat . v)^2) in the loss,
v the logo concept at the head's input.

python main.py --config=configs/rrclarc.py --workdir=runs/rrclarc
python main.py --config=configs/rrclarc.py:weight=100 --workdir=runs/rrclarc_100
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, correction='rrclarc')
