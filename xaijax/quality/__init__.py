"""Can the heatmaps be trusted? Sanity checks, faithfulness, localisation and complexity scores
for every explainer, batched, jit-compiled and vmapped over seeds (measures named as in Quantus).

Modules: `explainers` (one signature for gradient, gradient x input, integrated gradients,
SmoothGrad, the controls and the LRP composites), `randomisation` (MPRT, EfficientMPRT,
RandomLogit), `faithfulness` (RegionPerturbation, AOPC, FaithfulnessCorrelation), `localisation`,
`complexity`, `maps` (normalisation, Spearman, SSIM), `table` (all of it for a trained case),
`summary` (verdict and figure), `stage` (the workflow's quality stage).
"""

from xaijax.quality import complexity, explainers, faithfulness, localisation, maps, randomisation
from xaijax.quality.explainers import EXPLAINERS, explain
from xaijax.quality.table import MEASURES

__all__ = [
  'EXPLAINERS',
  'MEASURES',
  'complexity',
  'explain',
  'explainers',
  'faithfulness',
  'localisation',
  'maps',
  'randomisation',
]
