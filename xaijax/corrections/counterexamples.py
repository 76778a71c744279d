"""Counterexamples: the artifact swapped between training images, the model told not to care.

Ross et al.'s penalty asks that the log-probabilities not change for an infinitesimal change of
the masked pixels. Here the change is a whole one. Each training image is paired, inside its
batch, with the next one (the batch is a fresh random permutation every epoch), and its
counterexample x' takes the partner's pixels wherever either carries the artifact
(`masks.with_partner_artifact`, which also makes the swapped-overlay validation images). What the
artifact of x' says about the class is then a coin toss. As in Teso and Kersting's
counterexamples (CAIPI, 2019), x' keeps the label of x; and the model is asked to answer both
alike:

    weight * mean over the batch of [cross-entropy(x', y) + symmetric KL(p(x), p(x'))]

averaged over `correction.partners` counterexamples per image (the images 1, 2, ... places on).
Two terms may join it:
* `correction.inpainted_weight`: the same agreement with x̃, x with the artifact Telea-inpainted
  (made once, before training). The swap stops the logo from saying anything, but every image
  still carries text over its defect; x̃ shows the model the defect without it, and the agreement
  asks it to answer the overlaid image as it answers the clean one.
* `correction.lrp_weight`: RRR-LRP's term on the image as it is. Every image, original or
  counterexample, still carries an overlay, and LRP keeps some relevance there.

Every view goes through one forward pass, so BatchNorm sees the originals and their
counterexamples together. Only the training images are edited, and only while training: the model
is evaluated, and used, on the images as they are.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses

import jax
import jax.numpy as jnp
import optax

from xaijax.corrections import masks, rrr


def counterexamples(inputs, artifact, shift: int = 1):
  """Each image with the pixels of the image `shift` places on wherever either carries the
  artifact (`masks.with_partner_artifact`): inputs [B, H, W, C], artifact [B, H, W, 1] ->
  [B, H, W, C]; the partners wrap around the batch."""
  partner_inputs = jnp.roll(inputs, -shift, axis=0)
  partner_artifact = jnp.roll(artifact, -shift, axis=0)
  return masks.with_partner_artifact(inputs, artifact, partner_inputs, partner_artifact)


def symmetric_kl(logits, other_logits):
  """Per image: (KL(p || q) + KL(q || p)) / 2 of the two softmax distributions."""
  log_p, log_q = jax.nn.log_softmax(logits), jax.nn.log_softmax(other_logits)
  return 0.5 * jnp.sum((jnp.exp(log_p) - jnp.exp(log_q)) * (log_p - log_q), axis=-1)


@dataclasses.dataclass(frozen=True)
class CounterexamplePenalty:
  """weight * mean_n [cross-entropy(x'_n, y_n) + symmetric KL(p(x_n), p(x'_n))], plus
  `relevance`'s term on x where given."""

  weight: float
  relevance: rrr.LrpPenalty | None = None
  partners: int = 1
  inpainted_weight: float = 0.0
  preprocess: Callable | None = None  # of the inpainted images, as of `inputs`

  @property
  def batch_keys(self) -> tuple[str, ...]:
    if self.inpainted_weight:
      return (masks.CORRECTION_MASK_KEY, masks.INPAINTED_KEY)
    return (masks.CORRECTION_MASK_KEY,)

  def __call__(self, forward, variables, inputs, batch):
    partners = self.partners if self.weight else 0
    artifact = batch[masks.CORRECTION_MASK_KEY]
    views = [counterexamples(inputs, artifact, shift) for shift in range(1, partners + 1)]
    if self.inpainted_weight:
      views.append(self.preprocess(batch[masks.INPAINTED_KEY]).astype(inputs.dtype))
    every, batch_stats = forward(variables, jnp.concatenate([inputs, *views]))
    logits, *view_logits = jnp.split(every, len(views) + 1)

    def agreement(other_logits):
      cross_entropy = optax.softmax_cross_entropy_with_integer_labels(other_logits, batch['label'])
      return jnp.mean(cross_entropy + symmetric_kl(logits, other_logits))

    value = 0.0
    if partners:
      value = self.weight * sum(map(agreement, view_logits[:partners])) / partners
    if self.inpainted_weight:
      value = value + self.inpainted_weight * agreement(view_logits[-1])
    if self.relevance is not None:
      value = value + self.relevance(forward, variables, inputs, batch)[2]
    return logits, batch_stats, value
