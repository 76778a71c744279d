"""Is a cluster a shortcut? Evidence that needs no ground truth.

* Concentration: the share of the class's positive relevance that falls inside the outlined region,
  and how small that region is. A shortcut is a small object carrying much of the decision.
* Consistency: how alike the cluster's concept relevances are (mean cosine to their centroid), and
  whether its outlines agree in place (a fixed artifact) or move (an artifact anywhere).
* Repetition: how alike the members' pixels are around their relevance peaks, each window matched
  anywhere near the other's peak. An artifact is a copy of one object (a logo, a watermark, a
  tag) wherever it sits, while a defect differs from image to image; this ranks the clusters
  (`appearance.repetition`).
* A copy: the object the members look at, found by its look in every image of the split
  (`appearance.fit_to_object`): how exactly its copies agree pixel for pixel against their
  surroundings, and how many of the images showing it are of the cluster's class.
* The paste-and-flip attack (Reveal2Revise's attacked test set, used as a probe): paste a member's
  outlined pixels, in place, into images of other classes, x' = x (1 - m) + a m, and count how often
  the prediction turns to the cluster's class. The control pastes the same region cut from images of
  other classes, so a flip caused by any patch of that shape is not counted as the cluster's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def paste(receivers: np.ndarray, donors: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """uint8 images [N, H, W, 1]: the donors' pixels inside masks [N, H, W], receivers' elsewhere."""
  inside = np.asarray(masks, bool)[..., None]
  return np.where(inside, donors, receivers).astype(np.uint8)


def flip_rates(
  predict: Callable[[np.ndarray], np.ndarray],
  target_class: int,
  donors: np.ndarray,
  donor_masks: np.ndarray,
  receivers: np.ndarray,
  receiver_predictions: np.ndarray,
  receiver_labels: np.ndarray,
  rng: np.random.Generator,
  count: int,
) -> dict:
  """How often pasting a donor's outlined region turns another class's image into `target_class`.

  Receivers are images of other classes that the model does not already call `target_class`; each
  gets the region of a random donor (with a non-empty mask) and, for the control, the same region
  cut from another random receiver. Returns the flip rate, the control's, and how many were pasted.
  """
  usable = np.flatnonzero(np.asarray(donor_masks).reshape(len(donor_masks), -1).any(axis=1))
  candidates = np.flatnonzero(
    (receiver_labels != target_class) & (receiver_predictions != target_class)
  )
  if len(usable) == 0 or len(candidates) < 2:
    return {'flip_rate': float('nan'), 'control_flip_rate': float('nan'), 'pairs': 0}
  chosen = rng.permutation(candidates)[:count]
  donor = rng.choice(usable, size=len(chosen))
  masks = np.asarray(donor_masks, bool)[donor]
  # The control's content: another receiver's pixels under the same mask (never the image itself).
  shift = rng.integers(1, len(candidates), size=len(chosen))
  position = np.searchsorted(candidates, chosen)
  control_source = candidates[(position + shift) % len(candidates)]
  attacked = paste(receivers[chosen], donors[donor], masks)
  control = paste(receivers[chosen], receivers[control_source], masks)
  flipped = np.asarray(predict(attacked)) == target_class
  control_flipped = np.asarray(predict(control)) == target_class
  return {
    'flip_rate': float(flipped.mean()),
    'control_flip_rate': float(control_flipped.mean()),
    'pairs': len(chosen),
  }


def cosine_to_centroid(features: np.ndarray, centroid: np.ndarray) -> np.ndarray:
  """Cosine similarity [N] of feature rows to a centroid vector."""
  features = np.asarray(features, np.float64)
  norms = np.linalg.norm(features, axis=1) * max(np.linalg.norm(centroid), 1e-12)
  return features @ centroid / np.maximum(norms, 1e-12)


def best_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
  """The score threshold (score >= t is positive) that reproduces `positive` with the best F1.

  Used to carry a cluster's membership over to images the clustering never saw.
  """
  scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
  if not positive.any():
    return float('inf')
  order = np.argsort(-scores, kind='stable')
  hits = np.cumsum(positive[order])
  claimed = np.arange(1, len(scores) + 1)
  f1 = 2 * hits / (claimed + positive.sum())
  # Only thresholds between distinct scores can be realised.
  distinct = np.append(scores[order][1:] < scores[order][:-1], True)
  best = int(np.argmax(np.where(distinct, f1, -1.0)))
  below = scores[order][best + 1] if best + 1 < len(scores) else scores[order][best] - 1.0
  return float((scores[order][best] + below) / 2.0)


def is_shortcut(evidence: dict, thresholds) -> bool:
  """Shortcut evidence: a small outline (at most `max_mask_area` of the image), and either
  * the attack: pasting the outlined region flips other classes' images well beyond the control
    (`min_flip_excess`), and the region carries a large share of the relevance
    (`min_relevance_in_mask`): the model's decision hangs on it; or
  * a copy: the members look at one object, the same in every image it is in to within
    `max_copy_spread` of how much its surroundings vary, and at least `min_copy_in_class` of the
    images showing it are of the cluster's class: the data offers a shortcut and the model looks
    at it, whether or not its decision hangs on it yet.
  """
  if not evidence['mask_area'] <= thresholds.max_mask_area:
    return False
  excess = evidence['flip_rate'] - evidence['control_flip_rate']
  attacked = bool(
    np.isfinite(excess)
    and excess >= thresholds.min_flip_excess
    and evidence['relevance_in_mask'] >= thresholds.min_relevance_in_mask
  )
  copied = bool(
    evidence.get('copy_spread', float('nan')) <= thresholds.max_copy_spread
    and evidence.get('copy_in_class', float('nan')) >= thresholds.min_copy_in_class
  )
  return attacked or copied


def ranking_score(evidence: dict) -> float:
  """The order of clusters within a class: those with shortcut evidence (`is_shortcut`, stored as
  'shortcut_evidence') first; then repetition (a copied object, what an artifact is, whether or
  not the model's decision hangs on it); ties broken by the attack's excess flip rate. NaN (a
  cluster of one, an attack that could not run) counts as lowest."""
  repetition = evidence.get('pattern_repetition', float('nan'))
  excess = evidence['flip_rate'] - evidence['control_flip_rate']
  return float(
    4.0 * bool(evidence.get('shortcut_evidence', False))
    + (repetition if np.isfinite(repetition) else -2.0)
    + 1e-3 * (excess if np.isfinite(excess) else -2.0)
  )
