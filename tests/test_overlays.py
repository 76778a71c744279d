import numpy as np
import pytest

from xaijax.data import overlays


@pytest.mark.parametrize('resolution', [32, 64, 224])
@pytest.mark.parametrize('logo', [None, *range(overlays.NUM_LOGOS)])
def test_mask_is_exactly_the_drawn_pixels(resolution, logo):
  values, mask = overlays.draw_overlay(np.random.default_rng(resolution), resolution, logo)
  # Independent of the mask: burn the overlay into an all-black and an all-white image; a pixel was
  # drawn exactly where one of them changed (white ink shows on black, black logo boxes on white).
  on_black = overlays.apply_overlay(np.zeros_like(values), values, mask)
  on_white = overlays.apply_overlay(np.full_like(values, 255), values, mask)
  drawn = (on_black != 0) | (on_white != 255)
  np.testing.assert_array_equal(drawn, mask.astype(bool))
  assert mask.any()


def test_overlay_stays_in_the_strips():
  for seed in range(20):
    for logo in (None, seed % overlays.NUM_LOGOS):
      _, mask = overlays.draw_overlay(np.random.default_rng(seed), 64, logo)
      np.testing.assert_array_equal(mask * (1 - overlays.strip_mask(64)[..., 0]), 0)


def test_strip_height_is_the_papers_35_of_224():
  assert overlays.strip_height(224) == 35
  assert overlays.strip_height(64) == 10
  mask = overlays.strip_mask(224)
  assert mask[:35].all() and mask[-35:].all() and not mask[35:-35].any()


def test_logos_are_distinct_at_the_smallest_size():
  strip = overlays.strip_height(64)
  glyphs = set()
  for logo in range(overlays.NUM_LOGOS):
    painter = overlays._Painter(strip)
    overlays._draw_logo(painter, logo, 0, 0, strip, 255)
    glyphs.add(painter.values.tobytes())
  assert len(glyphs) == overlays.NUM_LOGOS


def test_choose_logo_modes():
  rng = np.random.default_rng(0)
  fit = [overlays.choose_logo(rng, 3, 'spurious', 'fit', 0.8) for _ in range(4000)]
  assert abs(np.mean(np.array(fit) == 3) - 0.8) < 0.03
  attacked = [overlays.choose_logo(rng, 3, 'spurious', 'attacked', 0.8) for _ in range(500)]
  assert 3 not in attacked and len(set(attacked)) == overlays.NUM_LOGOS - 1
  test = [overlays.choose_logo(rng, 3, 'spurious', 'test', 0.8) for _ in range(4000)]
  assert abs(np.mean(np.array(test) == 3) - 1 / overlays.NUM_LOGOS) < 0.03
  assert overlays.choose_logo(rng, 3, 'spurious', 'clean', 0.8) is None
  assert overlays.choose_logo(rng, 3, 'none', 'fit', 0.8) is None
  with pytest.raises(ValueError, match='overlay_mode'):
    overlays.choose_logo(rng, 3, 'sometimes', 'fit', 0.8)


@pytest.mark.parametrize('logo', [None, 3])
def test_anywhere_masks_are_exactly_the_drawn_pixels_off_the_defect_and_not_in_the_strips(logo):
  defect = np.zeros((64, 64), np.uint8)
  defect[20:44, 28:36] = 1
  outside_strips = 0
  for seed in range(12):
    values, mask = overlays.draw_overlay(np.random.default_rng(seed), 64, logo, 'anywhere', defect)
    on_black = overlays.apply_overlay(np.zeros_like(values), values, mask)
    on_white = overlays.apply_overlay(np.full_like(values, 255), values, mask)
    np.testing.assert_array_equal((on_black != 0) | (on_white != 255), mask.astype(bool))
    assert not (mask & defect).any(), 'the overlay leaves the defect visible where it fits'
    outside_strips += int((mask * (1 - overlays.strip_mask(64)[..., 0])).any())
  assert outside_strips == 12, 'anywhere: no fixed strip holds the overlay'


def test_the_poisoned_artifact_is_the_class_logo_alone_at_a_random_place_or_top_right():
  side = overlays.logo_side(64)
  corners = set()
  for seed in range(10):
    _, mask = overlays.draw_artifact(np.random.default_rng(seed), 64, 5, 'anywhere')
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert len(rows) == side and len(columns) == side  # one logo box, nothing else
    corners.add((rows[0], columns[0]))
  assert len(corners) == 10
  _, fixed = overlays.draw_artifact(np.random.default_rng(0), 64, 5, 'strips')
  assert fixed[1 : 1 + side, 64 - 1 - side : 63].all() and fixed.sum() == side * side


@pytest.mark.parametrize('resolution', [32, 64, 224])
def test_a_logo_is_the_same_pixels_wherever_it_is_placed(resolution):
  # A burnt-in logo is one picture, stamped: every copy, and the strips' one, pixel for pixel.
  side = overlays.logo_side(resolution)

  def cut(values, mask):
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return values[rows[0] : rows[0] + side, columns[0] : columns[0] + side]

  for logo in range(overlays.NUM_LOGOS):
    strips = cut(*overlays.draw_artifact(np.random.default_rng(0), resolution, logo, 'strips'))
    places = set()
    for seed in range(12):
      values, mask = overlays.draw_artifact(
        np.random.default_rng(seed), resolution, logo, 'anywhere'
      )
      rows, columns = np.nonzero(mask)
      places.add((rows.min() % 2, columns.min() % 2))
      np.testing.assert_array_equal(cut(values, mask), strips)
    assert len(places) > 1  # both parities of place were drawn


def test_choose_artifact_poisons_a_fraction_of_the_poisoned_classes_only():
  rng = np.random.default_rng(0)
  choose = lambda label, kind: overlays.choose_artifact(rng, label, kind, (1, 5), 0.3)
  fit = np.array([choose(1, 'fit') is not None for _ in range(4000)])
  assert abs(fit.mean() - 0.3) < 0.03 and {choose(1, 'fit') for _ in range(50)} <= {None, 1}
  assert all(choose(2, 'fit') is None for _ in range(200))
  test = [choose(2, 'test') for _ in range(4000)]
  assert abs(np.mean([t is not None for t in test]) - 0.3) < 0.03
  assert {t for t in test if t is not None} == {1, 5}  # decorrelated from the label
  assert {choose(1, 'attacked') for _ in range(100)} == {5}  # another poisoned class's logo
  assert {choose(3, 'attacked') for _ in range(100)} == {1, 5}
  assert choose(1, 'clean') is None
  assert overlays.choose_artifact(rng, 1, 'attacked', (1,), 0.3) is None
