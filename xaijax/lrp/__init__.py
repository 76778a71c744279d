"""Layer-wise Relevance Propagation for Flax Linen classifiers (rules, canonizers, composites).

relevance = xaijax.lrp.explain(model, variables, images, composite='epsilon_plus')
maps = xaijax.lrp.heatmap(relevance)                      # [N, H, W], channels summed
"""

from xaijax.lrp.composites import COMPOSITES, Composite, Rule, rule
from xaijax.lrp.explain import Explanation, explain, explain_with_details
from xaijax.lrp.heatmaps import heatmap
from xaijax.lrp.program import UnsupportedModelError

__all__ = [
  'COMPOSITES',
  'Composite',
  'Explanation',
  'Rule',
  'UnsupportedModelError',
  'explain',
  'explain_with_details',
  'heatmap',
  'rule',
]
