"""An artifact by its look: the pixels around a cluster's relevance peaks.

An artifact is a copy of one object (a logo, a watermark, a tag) wherever it sits, while a defect
differs from image to image. So the members of an artifact's cluster look alike around their
relevance peaks (`repetition`, which ranks the clusters). The window of its most typical member
(`template`), cut to the object that the images matching it share pixel for pixel
(`fit_to_object`), is a `Copy`: how exact its copies are flags a shortcut the data offers
(`evidence.is_shortcut`), and its pattern finds the object in any image by normalised
cross-correlation, also where the model did not look at it (`locate`, `reveal.localise`).
"""

from __future__ import annotations

import dataclasses

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


def members_look(images: np.ndarray, peaks, rng: np.random.Generator):
  """(repetition, template) of a cluster's members from one pass over their pairs.

  repetition: how alike the members look around their relevance peaks, in [-1, 1]. For pairs of
  members (images [M, H, W, C] uint8 with their (row, column) peaks; at most MEMBERS of them,
  sampled): the window around one's peak is matched (normalised cross-correlation) anywhere
  within a window's width of the other's peak, both ways, and the better of the two counts; the
  median over pairs. NaN with fewer than two members.
  template: float32 [w, w], the window of the member that matches the others best (median score).
  """
  chosen, scores, around, half = _pair_scores(images, peaks, rng)
  if len(chosen) < 2:
    return float('nan'), np.array(around(chosen[0], half), np.float32)
  alike = float(np.median(scores[np.triu_indices(len(scores), 1)]))
  typical = np.nanmedian(np.where(np.eye(len(chosen), dtype=bool), np.nan, scores), axis=1)
  return alike, np.array(around(chosen[int(np.nanargmax(typical))], half), np.float32)


def repetition(images: np.ndarray, peaks, rng: np.random.Generator) -> float:
  """How alike a cluster's members look around their relevance peaks (`members_look`)."""
  if len(images) < 2:
    return float('nan')
  return members_look(images, peaks, rng)[0]


def template(images: np.ndarray, peaks, rng: np.random.Generator) -> np.ndarray:
  """The window of the member that matches the others best (`members_look`)."""
  return members_look(images, peaks, rng)[1]


def match_scores(images: np.ndarray, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(best normalised cross-correlation [N] of `pattern` in each image, its top-left [N, 2])."""
  gray = np.asarray(images, np.float32).mean(axis=-1)
  scores, corners = np.zeros(len(gray)), np.zeros((len(gray), 2), np.int64)
  for i, image in enumerate(gray):
    found = np.nan_to_num(cv2.matchTemplate(image, pattern, cv2.TM_CCOEFF_NORMED), nan=0.0)
    corners[i] = np.unravel_index(np.argmax(found), found.shape)
    scores[i] = found[tuple(corners[i])]
  return scores, corners


@dataclasses.dataclass(frozen=True)
class Copy:
  """An object found by its look in a set of images.

  pattern: float32 [h, w], the object as its copies' median look.
  threshold: the normalised cross-correlation above which an image shows it (`split_threshold`).
  shown: bool [N], which of the images it was fitted on show it.
  spread: how much its pixels vary across those copies, over how much its surroundings vary there
    (medians of the per-pixel standard deviation): 0 for a burnt-in copy of one object, near 1 for
    things no more alike than the background. NaN with fewer than three copies.
  """

  pattern: np.ndarray
  threshold: float
  shown: np.ndarray
  spread: float


def fit_to_object(
  images: np.ndarray, pattern: np.ndarray, rounds: int = 3, members: np.ndarray | None = None
) -> Copy:
  """`pattern` (a window around a relevance peak) cut to the object its matches in `images` share.

  Aligned on their best matches, the images agree pixel for pixel where the object is and differ
  around it. The pixels whose spread across the matches falls below Otsu's split (on a log scale),
  connected to the window, are the object; its bounding box is the new pattern. Repeated up to
  `rounds` times, until the pattern no longer changes: the first window's matches can sit a pixel
  off, which blurs the object's edge, and the cut pattern aligns them exactly.

  `members` (bool [N]): the images the window came from (a cluster's). The object is cut from
  their matches only: a window on part of a logo also matches the other logos that share that
  part (their common dark box), and all of them together agree on that part alone. For the same
  reason the final threshold is raised above look-alikes where the members' matches allow it.
  """
  scores, corners = match_scores(images, pattern)
  threshold, spread = split_threshold(scores), float('nan')
  for _ in range(rounds):
    shown = scores > threshold
    if members is not None:
      shown &= np.asarray(members, bool)
    fitted, spread = _object_of_matches(images, pattern, shown, corners)
    if fitted.shape == pattern.shape and np.array_equal(fitted, pattern):
      break
    pattern = fitted
    scores, corners = match_scores(images, pattern)
    threshold = split_threshold(scores)
  if members is not None:
    threshold = _apart_from_look_alikes(scores, threshold, np.asarray(members, bool))
  return Copy(pattern, threshold, scores > threshold, spread)


def _apart_from_look_alikes(scores, threshold, members) -> float:
  """A higher split among the images above `threshold`, where objects like this one match too
  (other logos in the same dark box score about 0.7 against a copy's 1.0): Otsu's split of those
  scores alone, taken when at least 90% of the members' images above `threshold` stay above it."""
  above = scores > threshold
  own = above & members
  if above.sum() < 3 or not own.any():
    return threshold
  higher = split_threshold(scores[above])
  if higher > threshold and np.mean(scores[own] > higher) >= 0.9:
    return higher
  return threshold


def _object_of_matches(images, pattern, shown, corners):
  """(the object that the `shown` images share at their best matches' top-left `corners`, as a
  pattern; its spread, see `Copy`), or
  (`pattern`, NaN) with fewer than three matches or no object apart from its surroundings (the
  agreeing pixels reach the edge of the area searched, a window's side around the window)."""
  matched = np.flatnonzero(shown)
  if len(matched) < 3:
    return pattern, float('nan')
  height, width = pattern.shape
  reach = max(height, width)  # the object may extend a window's side beyond the window
  gray = np.asarray(images, np.float32).mean(axis=-1)
  padded = np.pad(gray, ((0, 0), (reach, reach), (reach, reach)), constant_values=np.nan)
  windows = np.stack(
    [
      padded[i, row : row + height + 2 * reach, column : column + width + 2 * reach]
      for i, (row, column) in zip(matched, corners[matched])
    ]
  )
  seen = np.sum(np.isfinite(windows), axis=0) >= 3
  if not seen.any():
    return pattern, float('nan')
  spread = np.zeros(seen.shape, np.float32)
  spread[seen] = np.nanstd(windows[:, seen], axis=0)
  if spread.max() <= 0:  # identical images: no surroundings to tell the object from
    return pattern, float('nan')
  # On a log scale: a copied object's spread is near 0 (exactly 0 for a burnt-in one), its
  # surroundings' spread is that of the texture, and a few edges spread far more.
  logs = np.log1p(spread)
  levels = np.round(255 * logs / logs[seen].max()).astype(np.uint8)
  split, _ = cv2.threshold(levels[seen].reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
  _, labels = cv2.connectedComponents(((levels <= split) & seen).astype(np.uint8), connectivity=8)
  inside = labels[reach : reach + height, reach : reach + width]
  touching = np.unique(inside[inside > 0])
  if not len(touching):
    return pattern, float('nan')
  rows, columns = np.nonzero(np.isin(labels, touching))
  last_row, last_column = seen.shape[0] - 1, seen.shape[1] - 1
  if (
    rows.min() == 0 or columns.min() == 0 or rows.max() == last_row or columns.max() == last_column
  ):
    return pattern, float('nan')  # agreement runs out of the search area: no enclosed object
  box = np.zeros(seen.shape, bool)
  box[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1] = True
  surroundings = float(np.median(spread[seen & ~box])) if np.any(seen & ~box) else float('nan')
  ratio = float(np.median(spread[box & seen])) / surroundings if surroundings > 0 else float('nan')
  fitted = np.nanmedian(
    windows[:, rows.min() : rows.max() + 1, columns.min() : columns.max() + 1], 0
  )
  return fitted.astype(np.float32), ratio


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
