"""Counterexamples: the overlay swapped between training images, the model asked to answer both
alike; the images keep their overlays at inference.

python main.py --config=configs/counterexamples.py --workdir=runs/counterexamples
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, correction='counterexamples')
