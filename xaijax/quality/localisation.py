"""How well a heatmap points at a known region (a binary mask), per example; Quantus' names.

  relevance_mass_accuracy   positive relevance inside the mask / positive relevance (Arras et al.
                            2022); Quantus 0.6.0 divides the *signed* sums, which is undefined
                            where positive and negative relevance cancel, so we count positive
                            relevance only (as `xaijax.lrp.metrics.relevance_mass_in_mask`)
  relevance_rank_accuracy   share of the K most relevant pixels inside the mask, K = mask size
  pointing_game             1 where the most relevant pixel lies inside the mask (Zhang et al. 2018)
  auc                       ROC AUC of the map as a score for "inside the mask" (ties count half)

An example whose mask is empty scores NaN (the question has no answer); average with nanmean.
The first three are `xaijax.lrp.metrics`' functions, here behind the quality interface.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xaijax.lrp import metrics
from xaijax.quality.maps import average_ranks

relevance_mass_accuracy = jax.jit(metrics.relevance_mass_in_mask)
relevance_rank_accuracy = jax.jit(metrics.relevance_rank_accuracy)
pointing_game = jax.jit(metrics.pointing_game)


@jax.jit
def auc(maps, mask):
  """Mann-Whitney form of the ROC AUC (equal to sklearn's roc_curve + auc, ties included)."""
  values, inside = metrics.maps_and_masks(maps, mask)
  ranks = average_ranks(values)
  positives = inside.sum(axis=1)
  negatives = inside.shape[1] - positives
  rank_sum = jnp.where(inside, ranks, 0).sum(axis=1)
  u = rank_sum - positives * (positives + 1) / 2
  score = u / jnp.maximum(positives * negatives, 1)
  return jnp.where((positives > 0) & (negatives > 0), score, jnp.nan)
