"""Revise the model, not the images: corrections that train (or edit) the classifier so that it
stops using the artifact, with the images left as they are.

  rrr          Right for the Right Reasons (Ross et al. 2017): input-gradient penalty on the mask
  rrr_lrp      the same with differentiable LRP: the relevance share on the mask in the loss
  counterexamples
               the artifact swapped between training images (CAIPI's counterexamples): the
               swapped image keeps the label and must get the same answer
  pclarc       Projective ClArC (Anders et al. 2022): the concept direction projected out of a
               layer's activations at inference, no training
  aclarc       Augmentative ClArC: fine-tuned with the concept direction added to the activations
  rrclarc      Right-Reason ClArC: fine-tuned with weight * mean((grad_a y . v)^2) in the loss

Modules: `masks` (what a correction is told about the artifact), `rrr` (penalties on the input),
`counterexamples` (the swap and its penalty),
`activations` (a layer's activations, read or edited in an unmodified Linen model), `clarc`
(concept activation vectors and the three ClArC corrections), `stages` (the workflow's steps).
"""

from xaijax.case_config import CORRECTION_NAMES as CORRECTIONS
from xaijax.corrections import activations, clarc, counterexamples, masks, rrr

__all__ = ['CORRECTIONS', 'activations', 'clarc', 'counterexamples', 'masks', 'rrr']
