"""What a correction is told about the artifact: per-image masks, image groups, a check set.

`correction.masks` says where that knowledge comes from: `'mask'`, the ground-truth overlay masks
every split of the embedded data (and of an imported GC10-DET) carries, or `'found'`, the masks
the reveal stage outlines without being told (xaijax/reveal; the workflow puts them into every
split as `found_mask`, as for `remedy.region='found'`). Everything a correction reads about the
artifact goes through the functions here.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from xaijax import remedies

MASK_SOURCES = ('mask', 'found')
CORRECTION_MASK_KEY = 'correction_mask'  # the masks a penalty reads from its batches
INPAINTED_KEY = 'correction_inpainted'  # training images Telea-inpainted on those masks
FOUND_MASK_KEY = 'found_mask'  # the reveal's masks in a split
MIN_CONCEPT_IMAGES = 4  # per side: a CAV from fewer images is noise


def mask_key(config) -> str:
  """The key of a split's masks the correction reads: 'mask' (ground truth) or 'found_mask'."""
  source = config.correction.masks
  if source not in MASK_SOURCES:
    raise ValueError(f'correction.masks={source!r}: choose one of {MASK_SOURCES}.')
  return 'mask' if source == 'mask' else FOUND_MASK_KEY


def _masks_of(config, split: dict) -> np.ndarray:
  key = mask_key(config)
  if key not in split:
    raise ValueError(
      f'correction.masks={config.correction.masks!r}, but the split has no {key!r}: '
      + (
        'the reveal stage has not run (the workflow runs it for this setting)'
        if key == FOUND_MASK_KEY
        else "the data keeps no overlay masks; use correction.masks='found'"
      )
    )
  return np.asarray(split[key])


def artifact_masks(config, split: dict) -> np.ndarray:
  """uint8 [N, H, W, 1], 1 on the artifact's pixels of each image of `split`."""
  return (_masks_of(config, split) > 0).astype(np.uint8)


def concept_examples(config, split: dict) -> dict[str, np.ndarray]:
  """The images a ClArC concept is learnt from: `with_artifact` [N, H, W, C] and, image for image,
  `without_artifact`; `group` [N] says which artifact each carries (the logo with
  `correction.concept='logo'`, all 0 with `'overlay'`).

  Ground truth pairs every overlaid image with its clean original, so the two sets hold the same
  defects and differ only by the overlay. Found masks cannot: as Reveal2Revise does, the images
  the reveal outlined an artifact in stand against as many drawn (seeded) from those it did not,
  one group whatever `correction.concept` says (the outlines do not say which logo). Where
  fewer than MIN_CONCEPT_IMAGES images lack an outline, each outlined image stands against
  itself with the outlined region inpainted.
  """
  if mask_key(config) == FOUND_MASK_KEY:
    return _found_concept_examples(split, _masks_of(config, split))
  concept = config.correction.concept
  if concept == 'overlay':
    group = np.zeros(len(split['label']), np.int32)
  elif concept == 'logo':
    group = np.asarray(split['logo'], np.int32)
  else:
    raise ValueError(f"correction.concept={concept!r}: choose 'overlay' or 'logo'.")
  return {'with_artifact': split['image'], 'without_artifact': split['clean'], 'group': group}


def _found_concept_examples(split: dict, found: np.ndarray, seed: int = 0) -> dict:
  shows = found.reshape(len(found), -1).any(axis=1)
  with_artifact, without = np.flatnonzero(shows), np.flatnonzero(~shows)
  count = min(len(with_artifact), len(without))
  if len(without) < MIN_CONCEPT_IMAGES <= len(with_artifact):
    return _inpainted_pairs(split, found, with_artifact)
  if count < MIN_CONCEPT_IMAGES:
    raise ValueError(
      f"correction.masks='found': the reveal outlined an artifact in {len(with_artifact)} of "
      f'{len(shows)} images; a concept needs at least {MIN_CONCEPT_IMAGES} with and as many '
      "without. Look at reveal_clusters.png and name the shortcut's clusters "
      '(reveal.shortcut_clusters), or use ground-truth masks.'
    )
  rng = np.random.default_rng(seed)
  with_artifact = np.sort(rng.choice(with_artifact, count, replace=False))
  without = np.sort(rng.choice(without, count, replace=False))
  images = np.asarray(split['image'])
  return {
    'with_artifact': images[with_artifact],
    'without_artifact': images[without],
    'group': np.zeros(count, np.int32),
  }


def _inpainted_pairs(split: dict, found: np.ndarray, outlined: np.ndarray) -> dict:
  """The artifact in (nearly) every image, as with the paper's overlays: no image stands without
  it, so each outlined image stands against itself with its found region inpainted (Telea), the
  nearest the found masks come to ground truth's clean twin. Only the concept sees these pixels."""
  images = np.asarray(split['image'])[outlined]
  return {
    'with_artifact': images,
    'without_artifact': remedies.telea(images, np.asarray(found)[outlined]),
    'group': np.zeros(len(outlined), np.int32),
  }


def with_partner_artifact(images, artifact, partner_images, partner_artifact):
  """Each image with its partner's pixels wherever either carries the artifact: nothing of its own
  artifact is left, and the partner's is whole. images [N, H, W, C], artifact [N, H, W, 1] (> 0 on
  the artifact), NumPy or JAX (a JAX array back): the swapped-overlay validation images and the
  counterexamples' training images are made alike."""
  region = (jnp.asarray(artifact) > 0) | (jnp.asarray(partner_artifact) > 0)
  return jnp.where(region, partner_images, images)


def swap_overlays(split: dict, seed: int = 0, key: str = 'mask') -> dict:
  """`split` with every image's overlay replaced by that of an image of another class.

  Image i takes image j's pixels wherever either carries an overlay (so nothing of its own overlay
  is left, and j's overlay is whole): the overlay no longer says the class. A model that reads the
  overlay loses macro-F1 here; one that reads the defect does not. Built from the masks alone, it
  checks a correction on held-out images without editing any image's defect. `key` names the
  masks ('mask': ground truth, 'found_mask': the reveal's).
  """
  images, masks = np.asarray(split['image']), np.asarray(split[key]) > 0
  labels = np.asarray(split['label'])
  rng = np.random.default_rng(seed)
  donors = np.empty(len(labels), np.int64)
  for index, label in enumerate(labels):
    others = np.flatnonzero(labels != label)
    donors[index] = rng.choice(others) if len(others) else index
  swapped = np.asarray(with_partner_artifact(images, masks, images[donors], masks[donors]))
  result = {**split, 'image': swapped.astype(images.dtype), key: masks[donors].astype(np.uint8)}
  if 'logo' in split:
    result['logo'] = np.asarray(split['logo'])[donors]
  return result
