"""How a reveal compares with the truth the synthetic data keeps (never used by the reveal itself):
which images carry a class's artifact, and the exact overlay masks."""

from __future__ import annotations

import numpy as np

from xaijax.data import overlays
from xaijax.reveal import evidence, localisation


def _nanmean(values) -> float:
  values = np.asarray(values, np.float64)
  return float(np.nanmean(values)) if np.isfinite(values).any() else float('nan')


def carries_own_artifact(split) -> np.ndarray:
  """bool [N]: which images carry their own class's logo (the artifact tied to the class)."""
  own = np.asarray([overlays.logo_of_class(label) for label in split['label']])
  return (split['logo'] >= 0) & (split['logo'] == own)


def planted_attack(predict, splits, split_name, receiving, rng, count: int) -> list[dict]:
  """Did the model learn the planted shortcut at all? Per class with artifact images: the
  paste-and-flip attack with the true artifact (its exact mask) instead of a cluster's outline.

  A cluster that outlines the artifact flips about this many; a class whose true artifact flips
  nothing has a shortcut in the data, not in the model, and only the clustering can find it there.
  """
  source = splits[split_name]
  receivers, receiver_predictions = receiving
  carrying = carries_own_artifact(source)
  rows = []
  for label in np.unique(source['label'][carrying]):
    donors = np.flatnonzero(carrying & (source['label'] == label))
    rates = evidence.flip_rates(
      predict,
      int(label),
      source['image'][donors],
      source['mask'][donors][..., 0] > 0,
      receivers['image'],
      receiver_predictions,
      receivers['label'],
      rng,
      count,
    )
    rows.append({'class': int(label), 'artifact_images': len(donors), **rates})
  return rows


def scores(splits, split_name, classes, kept, found_items, found_masks) -> dict:
  """How the reveal compares with the truth the synthetic data keeps.

  Per class, its top-ranked cluster against the class's images that carry the class's own logo
  (the artifact tied to it), as clustered and as its object found by look in every image; per
  split, the found masks against the true overlay masks: which images show an overlay (detection
  precision and recall) and, on those, IoU, pixel precision and pixel recall (an image whose
  overlay was missed counts as IoU 0 in `iou_all`).
  """
  source = splits[split_name]
  carries = carries_own_artifact(source)
  per_class = []
  for entry in classes:
    if not entry['clusters']:
      continue
    top = entry['clusters'][0]
    chosen, _, copy = kept[(entry['class'], top['cluster'])]
    in_cluster = np.unique(found_items.image[chosen])
    images = np.unique(found_items.image[_all_of(kept, entry)])
    artifact = images[carries[images]]
    if len(artifact) == 0:
      continue
    hits = np.isin(in_cluster, artifact).sum()
    # The cluster's object found by its look (appearance.fit_to_object) in every image of the
    # split, whether or not the model looked at it there.
    own = carries & (source['label'] == entry['class'])
    looked_up = (copy.shown & own).sum()
    per_class.append(
      {
        'class': entry['class'],
        'artifact_images': len(artifact),
        'top_cluster': top['cluster'],
        'top_cluster_images': len(in_cluster),
        'precision': float(hits / len(in_cluster)),
        'recall': float(hits / len(artifact)),
        'by_look_images': int(copy.shown.sum()),
        'by_look_precision': _ratio(looked_up, copy.shown.sum()),
        'by_look_recall': _ratio(looked_up, own.sum()),
        'top_cluster_has_shortcut_evidence': top['shortcut_evidence'],
      }
    )
  per_split = {}
  for name, split in splits.items():
    true = split['mask'][..., 0] > 0
    found = found_masks[name][..., 0] > 0
    has_true, has_found = true.any(axis=(1, 2)), found.any(axis=(1, 2))
    scores = localisation.mask_scores(found[has_true], true[has_true])
    iou = scores['iou']
    detected = has_found[has_true]
    per_split[name] = {
      'images': len(true),
      'with_overlay': int(has_true.sum()),
      'with_found_mask': int(has_found.sum()),
      'detection_precision': _ratio((has_true & has_found).sum(), has_found.sum()),
      'detection_recall': _ratio((has_true & has_found).sum(), has_true.sum()),
      'iou_all': float(np.mean(np.nan_to_num(iou, nan=0.0))) if len(iou) else None,
      'iou_detected': _nanmean(iou[detected]) if detected.any() else None,
      'pixel_precision': _nanmean(scores['precision'][detected]) if detected.any() else None,
      'pixel_recall': _nanmean(scores['recall'][detected]) if detected.any() else None,
    }
  return {'clusters': per_class, 'splits': per_split}


def _all_of(kept, entry):
  """Every clustered image of the class of `entry`."""
  return np.concatenate([kept[(entry['class'], c['cluster'])][0] for c in entry['clusters']])


def _ratio(numerator, denominator):
  return float(numerator / denominator) if denominator else None
