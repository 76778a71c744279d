"""Reveal: find and outline a shortcut nobody told the tool about.

SpRAy (Lapuschkin et al. 2019) clusters each class's explanations (`spray`), on concept relevances
(`relevance`); every cluster gets evidence that needs no ground truth (`evidence`: concentration,
consistency, the paste-and-flip attack); clusters with shortcut evidence are outlined in every image
that shows them (`localisation`), which `remedy.region='found'` then removes. `stage.reveal` runs
it all on a trained model and writes reveal.json, found_masks.npz and the figures (`figures`).
"""

from xaijax.reveal import evidence, localisation, relevance, spray

__all__ = ['evidence', 'localisation', 'relevance', 'spray']
