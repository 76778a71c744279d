"""An artifact by its look: the pixels around a cluster's relevance peaks.

An artifact is a copy of one object (a logo, a watermark, a tag) wherever it sits, while a defect
differs from image to image. So the members of an artifact's cluster look alike around their
relevance peaks (`repetition`, which ranks the clusters), and the window of its most typical
member is a template that finds the object in any image by normalised cross-correlation, also in
images where the model did not look at it (`locate`, `reveal.localise='appearance'`).
"""

from __future__ import annotations

import cv2
import numpy as np

# The window around a relevance peak is this fraction of the image's side (8 px at 64 px, a logo's
# size); another member's window is looked for within a window's width of this one's peak, as a
# peak may sit anywhere on the object. Measured on the poisoned Original (README, "Reveal"): half
# a window's width instead, or one direction of the pair only, left the logo's clusters at
# 0.45-0.76 depending on the members sampled; this gave 0.86-0.99 for every sample.
WINDOW = 1 / 8
MEMBERS = 30  # members compared pairwise at most (a seeded sample)


def peak_of(heatmap: np.ndarray, outline: np.ndarray) -> tuple[int, int]:
  """(row, column) of the largest relevance inside an outline."""
  inside = np.where(outline, heatmap, -np.inf)
  return tuple(int(v) for v in np.unravel_index(np.argmax(inside), inside.shape))


def _half(side: int) -> int:
  return max(2, int(round(side * WINDOW / 2)))


def _pair_scores(images: np.ndarray, peaks, rng: np.random.Generator):
  """(sampled members, their [m, m] symmetric best-match scores, the windows' half side)."""
  half = _half(images.shape[1])
  reach = 3 * half  # the search area's half side: a window's width beyond the window's own half
  gray = np.asarray(images, np.float32).mean(axis=-1)
  padded = np.pad(gray, ((0, 0), (reach, reach), (reach, reach)), mode='reflect')
  chosen = rng.permutation(len(images))[:MEMBERS]

  def around(member, radius):
    row, column = (int(v) + reach for v in peaks[member])
    return padded[member, row - radius : row + radius, column - radius : column + radius]

  def match(template_member, searched_member) -> float:
    template = around(template_member, half)
    if template.std() < 1e-3:  # no contrast: matches nothing
      return 0.0
    found = cv2.matchTemplate(around(searched_member, reach), template, cv2.TM_CCOEFF_NORMED)
    return float(np.max(np.nan_to_num(found, nan=0.0, posinf=0.0, neginf=0.0)))

  scores = np.eye(len(chosen))
  for a, first in enumerate(chosen):
    for b in range(a + 1, len(chosen)):
      second = chosen[b]
      scores[a, b] = scores[b, a] = max(match(first, second), match(second, first))
  return chosen, scores, around, half


def repetition(images: np.ndarray, peaks, rng: np.random.Generator) -> float:
  """How alike a cluster's members look around their relevance peaks, in [-1, 1].

  For pairs of members (images [M, H, W, C] uint8 with their (row, column) peaks; at most MEMBERS
  of them, sampled): the window around one's peak is matched (normalised cross-correlation)
  anywhere within a window's width of the other's peak, both ways, and the better of the two
  counts. Returns the median over pairs. NaN with fewer than two members.
  """
  if len(images) < 2:
    return float('nan')
  _, scores, _, _ = _pair_scores(images, peaks, rng)
  return float(np.median(scores[np.triu_indices(len(scores), 1)]))


def template(images: np.ndarray, peaks, rng: np.random.Generator) -> np.ndarray:
  """float32 [w, w]: the window of the member that matches the others best (median score)."""
  chosen, scores, around, half = _pair_scores(images, peaks, rng)
  if len(chosen) > 1:
    typical = np.nanmedian(np.where(np.eye(len(chosen), dtype=bool), np.nan, scores), axis=1)
    best = int(np.nanargmax(typical))
  else:
    best = 0
  return np.array(around(chosen[best], half), np.float32)


def match_scores(images: np.ndarray, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(best normalised cross-correlation [N] of `pattern` in each image, its top-left [N, 2])."""
  gray = np.asarray(images, np.float32).mean(axis=-1)
  scores, corners = np.zeros(len(gray)), np.zeros((len(gray), 2), np.int64)
  for i, image in enumerate(gray):
    found = np.nan_to_num(cv2.matchTemplate(image, pattern, cv2.TM_CCOEFF_NORMED), nan=0.0)
    corners[i] = np.unravel_index(np.argmax(found), found.shape)
    scores[i] = found[tuple(corners[i])]
  return scores, corners


def split_threshold(scores: np.ndarray) -> float:
  """Otsu's split between the images that show the pattern and those that do not (scores in
  [-1, 1]; no ground truth needed when the two groups' scores are apart), placed halfway between
  the highest score below it and the lowest above."""
  scores = np.asarray(scores, np.float64)
  levels = np.clip(np.round((scores + 1.0) * 127.5), 0, 255).astype(np.uint8)
  level, _ = cv2.threshold(levels.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
  below, above = scores[levels <= level], scores[levels > level]
  if not len(below) or not len(above):
    return float(np.max(scores))  # one group only: nothing stands out
  return float((below.max() + above.min()) / 2.0)


def locate(images: np.ndarray, pattern: np.ndarray, threshold: float, margin: int = 0):
  """bool [N, H, W]: the box where `pattern` matches each image best, grown by `margin` pixels on
  every side, where it scores above `threshold` (the image shows it); empty elsewhere."""
  scores, corners = match_scores(images, pattern)
  masks = np.zeros(np.asarray(images).shape[:3], bool)
  height, width = pattern.shape
  for i in np.flatnonzero(scores > threshold):
    row, column = corners[i]
    masks[
      i,
      max(0, row - margin) : row + height + margin,
      max(0, column - margin) : column + width + margin,
    ] = True
  return masks
