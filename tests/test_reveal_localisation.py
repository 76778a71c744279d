"""Outlines from relevance, their scores, and a cluster's evidence (the paste-and-flip attack)."""

import cv2
import numpy as np
import pytest

from xaijax.data import overlays
from xaijax.reveal import appearance, evidence, localisation, truth


def blob_maps(count=6, size=32, side=6, seed=0):
  """Heatmaps with a strong square of relevance at a random place, a weaker blob elsewhere and
  noise: (maps [N, H, W], the squares' masks)."""
  rng = np.random.default_rng(seed)
  maps = rng.normal(0.0, 0.02, (count, size, size))
  truth = np.zeros(maps.shape, bool)
  for i in range(count):
    y, x = rng.integers(0, size - side, 2)
    truth[i, y : y + side, x : x + side] = True
    maps[i][truth[i]] += 1.0
    yy, xx = (y + size // 2) % (size - 4), (x + size // 2) % (size - 4)
    maps[i, yy : yy + 3, xx : xx + 3] += 0.5  # a second, weaker object (a defect, say)
  return maps, truth


def test_the_outline_of_a_planted_relevance_square_is_that_square():
  maps, truth = blob_maps()
  found = localisation.relevance_masks(maps, low=0.1, sigma=1.0, high=0.3)
  scores = localisation.mask_scores(found, truth)
  assert np.all(scores['iou'] > 0.6), scores['iou']
  assert np.all(scores['recall'] > 0.9)
  # Only the blob holding the maximum is kept: the weaker object is never part of the outline.
  assert np.all(scores['precision'] > 0.6)
  for regions, square in zip(
    localisation.relevance_regions(maps, sigma=1.0, high=0.15, max_regions=3), truth
  ):
    assert len(regions) == 2, 'the square and the weaker object, strongest first'
    assert (regions[0] & square).sum() > 0.6 * square.sum() and not (regions[1] & square).any()


def test_a_map_without_positive_relevance_has_an_empty_outline():
  maps = -np.abs(np.random.default_rng(1).normal(size=(2, 16, 16)))
  assert not localisation.relevance_masks(maps).any()


def test_mask_scores_match_a_plain_loop():
  rng = np.random.default_rng(2)
  found, true = rng.uniform(size=(2, 5, 12, 12)) > 0.6
  found[0] = False
  scores = localisation.mask_scores(found, true)
  for i in range(5):
    both = sum(found[i, y, x] and true[i, y, x] for y in range(12) for x in range(12))
    union = sum(found[i, y, x] or true[i, y, x] for y in range(12) for x in range(12))
    assert scores['iou'][i] == pytest.approx(both / union)
    assert scores['recall'][i] == pytest.approx(both / true[i].sum())
    if found[i].any():
      assert scores['precision'][i] == pytest.approx(both / found[i].sum())
  assert np.isnan(scores['precision'][0])


def test_a_fixed_artifact_gets_a_consistent_region_and_a_moving_one_none():
  fixed = np.zeros((10, 20, 20), bool)
  fixed[:, 2:6, 14:18] = True
  fixed[3, 10:12, 10:12] = True  # one stray outline
  region = localisation.consistent_region(fixed)
  assert region is not None and region[2:6, 14:18].all() and not region[10:12, 10:12].any()
  restricted = localisation.restrict(fixed, region)
  assert not restricted[3, 10:12, 10:12].any() and restricted[3, 2:6, 14:18].all()
  moving = np.zeros((10, 20, 20), bool)
  for i in range(10):
    moving[i, i : i + 3, 2 * i % 17 : 2 * i % 17 + 3] = True
  assert localisation.consistent_region(moving) is None


def test_relevance_share_counts_positive_relevance_inside_the_mask():
  maps = np.array([[[1.0, -2.0], [3.0, 0.0]]])
  mask = np.array([[[True, True], [False, False]]])
  np.testing.assert_allclose(localisation.relevance_share(maps, mask), [1.0 / 4.0])


def patch_reader(images):
  """A classifier that reads a patch: class 7 wherever a white (255) pixel shows, else its class
  from the brightness (0, 1 or 2)."""
  images = np.asarray(images)
  white = (images == 255).any(axis=(1, 2, 3))
  return np.where(white, 7, (images.mean(axis=(1, 2, 3)) // 60).astype(int) % 3)


def test_pasting_the_patch_a_model_reads_flips_it_and_the_control_does_not():
  rng = np.random.default_rng(0)
  size, count = 24, 40
  donors = rng.integers(20, 200, (count, size, size, 1)).astype(np.uint8)
  patches = np.zeros((count, size, size), bool)
  for i in range(count):
    y, x = rng.integers(0, size - 4, 2)
    donors[i, y : y + 4, x : x + 4] = 255
    patches[i, y : y + 4, x : x + 4] = True
  receivers = np.concatenate(
    [np.full((20, size, size, 1), level, np.uint8) for level in (30, 90, 150)]
  )
  labels = np.repeat([0, 1, 2], 20)
  predictions = patch_reader(receivers)
  assert not np.any(predictions == 7)
  found = evidence.flip_rates(
    patch_reader, 7, donors, patches, receivers, predictions, labels, rng, count=50
  )
  assert found == {'flip_rate': 1.0, 'control_flip_rate': 0.0, 'pairs': 50}
  # An outline that misses the patch pastes nothing the model reads.
  missed = np.roll(patches, 6, axis=2) & ~patches
  missing = evidence.flip_rates(
    patch_reader, 7, donors, missed, receivers, predictions, labels, rng, count=50
  )
  assert missing['flip_rate'] == 0.0
  share = {'relevance_in_mask': 0.5}
  assert evidence.ranking_score({**found, **share}) > evidence.ranking_score({**missing, **share})


def textured(rng, count, side=64):
  return np.clip(rng.normal(128, 20, (count, side, side, 1)), 0, 255).astype(np.uint8)


def test_repetition_is_high_for_a_copied_object_and_low_for_varied_ones():
  rng = np.random.default_rng(2)
  glyph = np.zeros((8, 8), np.uint8)
  glyph[1:7, 3:5] = glyph[3:5, 1:7] = 255  # a white plus on a black square, like a logo
  copies, varied = textured(rng, 24), textured(rng, 24)
  copy_peaks, varied_peaks = [], []
  for i in range(24):
    y, x = rng.integers(4, 52, 2)
    copies[i, y : y + 8, x : x + 8, 0] = glyph
    # Relevance may peak anywhere on the object, not at one fixed point of it.
    copy_peaks.append((int(y + rng.integers(0, 8)), int(x + rng.integers(0, 8))))
    # A defect-like blob: of its own size, darkness and shape each time.
    blob = np.zeros((64, 64), np.uint8)
    axes = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    cv2.ellipse(blob, (int(x + 4), int(y + 4)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    varied[i, blob > 0, 0] = rng.integers(0, 90)
    varied_peaks.append((int(y + 4), int(x + 4)))
  copied = appearance.repetition(copies, copy_peaks, np.random.default_rng(0))
  other = appearance.repetition(varied, varied_peaks, np.random.default_rng(0))
  assert copied > 0.9 and other < 0.6, (copied, other)
  assert np.isnan(appearance.repetition(copies[:1], copy_peaks[:1], rng))
  # Repetition ranks first; the attack's excess breaks ties.
  flips = {'flip_rate': 0.9, 'control_flip_rate': 0.1}
  no_flips = {'flip_rate': 0.1, 'control_flip_rate': 0.1}
  rank = evidence.ranking_score
  assert rank({'pattern_repetition': copied, **no_flips}) > rank(
    {'pattern_repetition': other, **flips}
  )
  assert rank({'pattern_repetition': 0.5, **flips}) > rank({'pattern_repetition': 0.5, **no_flips})
  # Shortcut evidence outranks everything else.
  flagged = {'pattern_repetition': float('nan'), 'shortcut_evidence': True, **no_flips}
  assert rank(flagged) > rank({'pattern_repetition': 1.0, **flips})


def test_the_threshold_reproducing_membership_is_the_best_f1_of_all_thresholds():
  rng = np.random.default_rng(4)
  member = rng.uniform(size=200) < 0.2
  scores = rng.normal(member * 1.5, 1.0)
  threshold = evidence.best_threshold(scores, member)

  def f1(t):
    claimed = scores >= t
    hits = np.sum(claimed & member)
    return 2 * hits / (claimed.sum() + member.sum())

  best = max(f1(t) for t in np.concatenate([scores, [np.inf]]))
  assert f1(threshold) == pytest.approx(best)


def test_a_shortcut_needs_a_small_outline_and_a_flip_or_a_copy_tied_to_the_class():
  class Thresholds:
    min_flip_excess, max_mask_area, min_relevance_in_mask = 0.5, 0.1, 0.2
    max_copy_spread, min_copy_in_class = 0.25, 0.5

  no_copy = {'copy_spread': 0.9, 'copy_in_class': 1.0}
  strong = {
    'flip_rate': 0.9,
    'control_flip_rate': 0.1,
    'mask_area': 0.02,
    'relevance_in_mask': 0.5,
    **no_copy,
  }
  assert evidence.is_shortcut(strong, Thresholds)
  assert not evidence.is_shortcut({**strong, 'control_flip_rate': 0.6}, Thresholds)
  assert not evidence.is_shortcut({**strong, 'mask_area': 0.3}, Thresholds)
  assert not evidence.is_shortcut({**strong, 'relevance_in_mask': 0.1}, Thresholds)
  assert not evidence.is_shortcut({**strong, 'flip_rate': float('nan')}, Thresholds)
  # No flip, but an exact copy mostly in the cluster's class: the data offers a shortcut.
  copied = {**strong, 'flip_rate': 0.1, 'relevance_in_mask': 0.1, 'copy_spread': 0.0}
  assert evidence.is_shortcut(copied, Thresholds)
  assert not evidence.is_shortcut({**copied, 'copy_in_class': 0.2}, Thresholds)
  assert not evidence.is_shortcut({**copied, 'copy_spread': 0.5}, Thresholds)
  assert not evidence.is_shortcut({**copied, 'copy_spread': float('nan')}, Thresholds)
  assert not evidence.is_shortcut({**copied, 'mask_area': 0.3}, Thresholds)


def test_the_planted_attack_pastes_each_class_own_artifact_under_its_true_mask():
  rng = np.random.default_rng(1)
  size = 24
  images = rng.integers(20, 200, (30, size, size, 1)).astype(np.uint8)
  labels = np.repeat([0, 1, 2], 10)
  masks = np.zeros((30, size, size, 1), np.uint8)
  logos = np.full(30, -1)
  # Class 1's own logo is a white square the patch reader answers 7 to; class 2's images carry
  # class 0's logo (not their own), which the attack must ignore.
  for i in range(10, 15):
    images[i, 2:6, 3:7] = 255
    masks[i, 2:6, 3:7] = 1
    logos[i] = overlays.logo_of_class(1)
  logos[20:25] = overlays.logo_of_class(0)
  masks[20:25, 10:14, 10:14] = 1
  splits = {'train': {'image': images, 'label': labels, 'mask': masks, 'logo': logos}}
  receivers = np.concatenate([np.full((20, size, size, 1), v, np.uint8) for v in (30, 90, 150)])
  receiving = (
    {'image': receivers, 'label': np.repeat([0, 3, 2], 20)},
    patch_reader(receivers),
  )
  rows = truth.planted_attack(patch_reader, splits, 'train', receiving, rng, count=40)
  assert [(r['class'], r['artifact_images']) for r in rows] == [(1, 5)]
  # Pasted under its own class's label 1 the square turns receivers into 7, not 1: no flip.
  assert rows[0]['flip_rate'] == 0.0 and rows[0]['pairs'] == 40
  relabelled = np.where(labels == 1, 7, labels)
  seven_logos = np.where(logos == overlays.logo_of_class(1), overlays.logo_of_class(7), logos)
  seven = {'train': {**splits['train'], 'label': relabelled, 'logo': seven_logos}}
  rows = truth.planted_attack(patch_reader, seven, 'train', receiving, rng, count=40)
  assert rows == [
    {'class': 7, 'artifact_images': 5, 'flip_rate': 1.0, 'control_flip_rate': 0.0, 'pairs': 40}
  ]


def test_appearance_finds_the_copied_object_in_every_image_and_nowhere_else():
  rng = np.random.default_rng(3)
  glyph = np.zeros((8, 8), np.uint8)
  glyph[1:7, 3:5] = glyph[3:5, 1:7] = 255

  def with_glyphs(count, carrying):
    images, boxes = textured(rng, count), np.zeros((count, 64, 64), bool)
    for i in np.flatnonzero(carrying):
      y, x = rng.integers(0, 56, 2)
      images[i, y : y + 8, x : x + 8, 0] = glyph
      boxes[i, y : y + 8, x : x + 8] = True
    return images, boxes

  members, member_boxes = with_glyphs(12, np.ones(12, bool))
  # The members' relevance peaks: the middle of their glyph.
  peaks = [tuple(int(v) for v in np.argwhere(box).mean(axis=0).round()) for box in member_boxes]
  pattern = appearance.template(members, peaks, np.random.default_rng(0))
  carrying = rng.uniform(size=40) < 0.4
  images, boxes = with_glyphs(40, carrying)
  scores, _ = appearance.match_scores(images, pattern)
  threshold = appearance.split_threshold(scores)
  found = appearance.locate(images, pattern, threshold)
  np.testing.assert_array_equal(found.any(axis=(1, 2)), carrying)
  scored = localisation.mask_scores(found[carrying], boxes[carrying])
  assert np.min(scored['iou']) >= 0.75, scored['iou']
  # A margin grows each box on every side, clipped at the image's edge.
  grown = appearance.locate(images, pattern, threshold, margin=2)
  np.testing.assert_array_equal(grown.any(axis=(1, 2)), carrying)
  assert np.all(grown[found]) and np.all(grown.sum(axis=(1, 2)) <= (8 + 4) ** 2)
  assert np.mean(grown.sum(axis=(1, 2))[carrying]) > np.mean(found.sum(axis=(1, 2))[carrying])


def test_a_window_holding_part_of_the_object_is_fitted_to_the_whole_object():
  rng = np.random.default_rng(5)
  glyph = np.zeros((8, 8), np.uint8)
  glyph[1:7, 3:5] = glyph[3:5, 1:7] = 255
  images, boxes = textured(rng, 60), np.zeros((60, 64, 64), bool)
  carrying = np.arange(60) < 25
  for i in np.flatnonzero(carrying):
    y, x = rng.integers(0, 56, 2)
    images[i, y : y + 8, x : x + 8, 0] = glyph
    boxes[i, y : y + 8, x : x + 8] = True
  # A window around a peak on the glyph's corner: a quarter of it, the rest texture.
  y, x = np.argwhere(boxes[0])[0]
  window = images[0, y - 4 : y + 4, x - 4 : x + 4, 0].astype(np.float32)
  if window.shape != (8, 8):  # the glyph at the image's edge; take another member
    y, x = np.argwhere(boxes[1])[0]
    window = images[1, y - 4 : y + 4, x - 4 : x + 4, 0].astype(np.float32)
  before = appearance.locate(
    images, window, appearance.split_threshold(appearance.match_scores(images, window)[0])
  )
  copy = appearance.fit_to_object(images, window)
  np.testing.assert_array_equal(copy.pattern, glyph)
  np.testing.assert_array_equal(copy.shown, carrying)
  assert copy.spread == 0.0  # burnt in: every copy the same to the pixel
  found = appearance.locate(images, copy.pattern, copy.threshold)
  np.testing.assert_array_equal(found.any(axis=(1, 2)), carrying)
  np.testing.assert_array_equal(found, boxes)
  assert localisation.mask_scores(before[carrying], boxes[carrying])['iou'].max() < 0.5
  # Too few matches to tell the object from its surroundings: the window is kept.
  kept = appearance.fit_to_object(images[carrying][:2], window)
  np.testing.assert_array_equal(kept.pattern, window)
  assert np.isnan(kept.spread)


def test_defects_of_their_own_size_and_darkness_are_no_copy():
  rng = np.random.default_rng(6)
  images = textured(rng, 40)
  centres = []
  for i in range(40):
    y, x = (int(v) for v in rng.integers(12, 52, 2))
    axes = (int(rng.integers(2, 6)), int(rng.integers(2, 6)))
    blob = np.zeros((64, 64), np.uint8)
    cv2.ellipse(blob, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    images[i, blob > 0, 0] = rng.integers(0, 90)
    centres.append((y, x))
  y, x = centres[0]
  window = images[0, y - 4 : y + 4, x - 4 : x + 4, 0].astype(np.float32)
  copy = appearance.fit_to_object(images, window)
  assert not copy.spread <= 0.25, copy.spread  # NaN (nothing enclosed) or far from a copy


def two_logos(rng, own, other, count, stamped):
  """`count` textured images, the first 20 (the members) carrying `own` and the next up to
  `stamped` carrying `other`, each at a random place; and the window around the first member's
  logo's top-left corner, the part of the dark box the two logos share."""
  images = textured(rng, count)
  members = np.arange(count) < 20
  corners = []
  for i in range(stamped):
    y, x = (int(v) for v in rng.integers(4, 52, 2))
    images[i, y : y + 8, x : x + 8, 0] = own if members[i] else other
    corners.append((y, x))
  y, x = corners[0]
  return images, members, images[0, y - 4 : y + 4, x - 4 : x + 4, 0].astype(np.float32)


def test_the_first_cut_takes_the_clusters_own_images_when_other_objects_share_the_window():
  own, other = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
  own[5:7, 5:7] = 255  # two logos in the same dark box, apart only in their bottom half
  other[5:7, 1:3] = 255
  images, members, window = two_logos(np.random.default_rng(8), own, other, 60, 40)
  fitted = appearance.fit_to_object(images, window, members=members)
  np.testing.assert_array_equal(fitted.pattern, own)
  np.testing.assert_array_equal(fitted.shown, members)
  assert fitted.spread == 0.0
  # Cut on every match, the two logos blend into one that is a copy of neither.
  everyone = appearance.fit_to_object(images, window)
  assert not np.array_equal(everyone.pattern, own) and not everyone.spread <= 0.25


def test_copy_evidence_counts_the_copies_in_the_class_and_nothing_without_an_object():
  from xaijax.reveal import stage

  shown = np.array([True, True, True, False, True])
  groups = np.array([2, 2, 2, 2, 5])
  copy = appearance.Copy(np.zeros((4, 4), np.float32), 0.8, shown, 0.0)
  found = stage._copy_evidence(copy, groups, 2)
  assert found == {'copy_spread': 0.0, 'copy_images': 4, 'copy_in_class': 0.75}
  none = stage._copy_evidence(appearance.Copy(copy.pattern, 0.8, shown, float('nan')), groups, 2)
  assert none['copy_images'] == 0 and np.isnan(none['copy_in_class'])


def test_a_copy_is_told_from_look_alikes_in_the_same_box():
  own = np.zeros((8, 8), np.uint8)
  own[4:7, 4:7] = 255
  look_alike = own.copy()
  look_alike[1:3, 1:3] = 255  # the same logo with a mark in its corner
  images, members, window = two_logos(np.random.default_rng(9), own, look_alike, 300, 80)
  copy = appearance.fit_to_object(images, window, members=members)
  np.testing.assert_array_equal(copy.pattern, own)
  np.testing.assert_array_equal(copy.shown, members)
  # Otsu's split over every image would have counted the look-alikes as copies.
  scores, _ = appearance.match_scores(images, copy.pattern)
  assert appearance.split_threshold(scores) < scores[20:80].min() < copy.threshold
