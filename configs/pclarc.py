"""P-ClArC: the logo concept (CAVs at the head's input) projected out of the Original model at
inference, without training and without editing a pixel.

python main.py --config=configs/pclarc.py --workdir=runs/pclarc
python main.py --config=configs/pclarc.py --workdir=runs/pclarc \\
    --config.correction.base_classifier=runs/original/classifier   # reuse a trained Original
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, correction='pclarc')
