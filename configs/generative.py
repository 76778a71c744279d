"""Generative: a conditional-GAN inpainter (pix2pix-style U-Net + PatchGAN) fills the overlay.

The inpainter learns from the overlaid training images alone (self-supervised: overlay-shaped holes
cut into overlay-free parts), so the same case runs on real GC10-DET. The paper's best case (F1 0.50
-> 0.65).

    python main.py --config=configs/generative.py --workdir=runs/generative
    python main.py --config=configs/generative.py:paper --workdir=runs/generative_paper
"""

from xaijax import case_config


def get_config(arg=None):
  return case_config.get_config(arg, remedy='generative')
