"""Layer-wise Relevance Propagation for Flax Linen classifiers, in Zennit's three ideas: rules (one
layer's relevance), composites (which rule on which layer) and canonizers (BatchNorm folded into the
layer before it), plus the traced program they walk and the measures built on relevance.

    from xaijax import lrp
    relevance = lrp.explain(model, variables, images, composite='epsilon_plus')  # shape of images
    maps = lrp.heatmap(relevance)                                 # [N, H, W], channels summed
    share = lrp.metrics.relevance_mass_in_mask(relevance, masks)  # [N]

Modules: `attribution` (explain, explain_with_details), `rules`, `composites`, `canonize`,
`tracing` (a Linen model into a program), `program` (the program's nodes, canonical form and
forward evaluation), `metrics`, `heatmaps`.
"""

from xaijax.lrp import attribution, canonize, composites, heatmaps, metrics, program, rules, tracing
from xaijax.lrp.attribution import Explanation, explain, explain_with_details
from xaijax.lrp.composites import COMPOSITES, Composite, Rule, rule
from xaijax.lrp.heatmaps import heatmap
from xaijax.lrp.program import UnsupportedModelError

__all__ = [
  'COMPOSITES',
  'Composite',
  'Explanation',
  'Rule',
  'UnsupportedModelError',
  'attribution',
  'canonize',
  'composites',
  'explain',
  'explain_with_details',
  'heatmap',
  'heatmaps',
  'metrics',
  'program',
  'rule',
  'rules',
  'tracing',
]
