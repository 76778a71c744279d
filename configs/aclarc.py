"""A-ClArC: the Original model fine-tuned with the logo concept added to every image's activations
at the head's input, so that it stops using it; inference runs the plain model.

python main.py --config=configs/aclarc.py --workdir=runs/aclarc
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, correction='aclarc')
