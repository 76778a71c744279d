"""Black stripe: censor bars, the top and bottom strips painted black.

python main.py --config=configs/black_stripe.py --workdir=runs/black_stripe
python main.py --config=configs/black_stripe.py:paper --workdir=runs/black_stripe_paper
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, remedy='black_stripe')
