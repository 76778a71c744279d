"""What a correction is told about the artifact: per-image masks, image groups, a check set.

`correction.masks` says where that knowledge comes from: `'mask'`, the ground-truth overlay masks
every split of the embedded data (and of an imported GC10-DET) carries, or `'found'`, the masks
and clusters the reveal stage finds without being told (issue 10; not wired in yet). Everything a
correction reads about the artifact goes through the functions here, so `'found'` plugs in at one
place.
"""

from __future__ import annotations

import numpy as np

MASK_SOURCES = ('mask', 'found')
CORRECTION_MASK_KEY = 'correction_mask'  # the masks a penalty reads from its batches


def _require_ground_truth(config, what: str) -> None:
  source = config.correction.masks
  if source == 'found':
    raise ValueError(
      f"correction.masks='found' asks for {what} the reveal stage finds (issue 10: reveal: "
      'found masks and clusters), which is not wired into the corrections yet. Use '
      "correction.masks='mask' (the ground-truth overlay masks)."
    )
  if source not in MASK_SOURCES:
    raise ValueError(f'correction.masks={source!r}: choose one of {MASK_SOURCES}.')


def artifact_masks(config, split: dict) -> np.ndarray:
  """uint8 [N, H, W, 1], 1 on the artifact's pixels of each image of `split`."""
  _require_ground_truth(config, 'the per-image masks')
  return np.asarray(split['mask'], np.uint8)


def concept_examples(config, split: dict) -> dict[str, np.ndarray]:
  """The images a ClArC concept is learnt from: `with_artifact` [N, H, W, C] and, image for image,
  `without_artifact`; `group` [N] says which artifact each carries (the logo with
  `correction.concept='logo'`, all 0 with `'overlay'`).

  Ground truth pairs every overlaid image with its clean original, so the two sets hold the same
  defects and differ only by the overlay.
  """
  _require_ground_truth(config, 'the artifact image groups')
  concept = config.correction.concept
  if concept == 'overlay':
    group = np.zeros(len(split['label']), np.int32)
  elif concept == 'logo':
    group = np.asarray(split['logo'], np.int32)
  else:
    raise ValueError(f"correction.concept={concept!r}: choose 'overlay' or 'logo'.")
  return {'with_artifact': split['image'], 'without_artifact': split['clean'], 'group': group}


def swap_overlays(split: dict, seed: int = 0) -> dict:
  """`split` with every image's overlay replaced by that of an image of another class.

  Image i takes image j's pixels wherever either carries an overlay (so nothing of its own overlay
  is left, and j's overlay is whole): the overlay no longer says the class. A model that reads the
  overlay loses macro-F1 here; one that reads the defect does not. Built from the masks alone, it
  checks a correction on held-out images without editing any image's defect.
  """
  images, masks = np.asarray(split['image']), np.asarray(split['mask']) > 0
  labels = np.asarray(split['label'])
  rng = np.random.default_rng(seed)
  donors = np.empty(len(labels), np.int64)
  for index, label in enumerate(labels):
    others = np.flatnonzero(labels != label)
    donors[index] = rng.choice(others) if len(others) else index
  region = masks | masks[donors]
  swapped = np.where(region, images[donors], images)
  result = {**split, 'image': swapped.astype(images.dtype), 'mask': masks[donors].astype(np.uint8)}
  if 'logo' in split:
    result['logo'] = np.asarray(split['logo'])[donors]
  return result
