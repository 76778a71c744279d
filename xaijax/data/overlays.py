"""Burnt-in overlays: text and company logos, in the top and bottom strips or anywhere.

Each overlay comes with its exact pixel mask. As in the paper, each strip is 35/224 of the image
height. The top strip carries a timestamp on the left and a logo on the right; the bottom strip a
camera id and a random string. Drawing uses no anti-aliasing, so every overlay pixel has the
overlay's value and the mask says exactly which pixels were drawn.

Modes (`overlay_mode`):
- `random`: text and a logo chosen at random, unrelated to the class (the paper's words);
- `spurious`: in train and validation the logo is the class's own logo with probability p, else
  another; the test split draws it uniformly (decorrelated), and `test_attacked` always shows a
  wrong class's logo;
- `poisoned` (Reveal2Revise's setting): a fraction of the training and validation images of some
  classes carry their class's logo, alone, and every other image carries nothing; in `test` any
  image carries a poisoned class's logo with that fraction (decorrelated), and `test_attacked`
  pastes a poisoned class's logo onto every image of the other classes;
- `none`: no overlay.

Placement (`overlay_placement`): `strips` (the paper) or `anywhere`: every element (logo box, text
lines) at a random place in the image, kept off the defect where it fits, so that no fixed region
-- the strips the paper's blur, crop and bars act on -- contains it.
"""

from __future__ import annotations

import string

import cv2
import numpy as np

STRIP_FRACTION = 35.0 / 224.0
OVERLAY_MODES = ('spurious', 'random', 'poisoned', 'none')
OVERLAY_PLACEMENTS = ('strips', 'anywhere')
NUM_LOGOS = 10
_FONTS = (
  cv2.FONT_HERSHEY_SIMPLEX,
  cv2.FONT_HERSHEY_DUPLEX,
  cv2.FONT_HERSHEY_PLAIN,
  cv2.FONT_HERSHEY_COMPLEX,
)


def strip_height(resolution: int) -> int:
  """Height in pixels of each overlay strip (35 px at 224 px)."""
  return max(1, int(round(STRIP_FRACTION * resolution)))


def strip_mask(height: int, width: int | None = None, strip: int | None = None) -> np.ndarray:
  """uint8 [H, W, 1] mask of the top and bottom strips: the region the paper's remedies act on."""
  width = height if width is None else width
  strip = strip_height(height) if strip is None else strip
  mask = np.zeros((height, width, 1), np.uint8)
  mask[:strip] = 1
  mask[height - strip :] = 1
  return mask


class _Painter:
  """Draws every OpenCV primitive twice.

  Once the gray values, once 1 into the mask (black ink included).
  """

  def __init__(self, height: int, width: int | None = None):
    width = height if width is None else width
    self.values = np.zeros((height, width), np.uint8)
    self.mask = np.zeros((height, width), np.uint8)

  def paste(self, other: _Painter, x0: int, y0: int) -> None:
    """Copy what `other` drew into this canvas with its top-left corner at (x0, y0)."""
    height, width = other.mask.shape
    drawn = other.mask.astype(bool)
    self.values[y0 : y0 + height, x0 : x0 + width][drawn] = other.values[drawn]
    self.mask[y0 : y0 + height, x0 : x0 + width][drawn] = 1

  def __getattr__(self, primitive: str):
    draw = getattr(cv2, primitive)

    def both(*args, **kwargs):
      # OpenCV's drawing signatures put the colour right after the geometry:
      # (img, *geometry, color, ...)
      colour_at = {'circle': 3, 'rectangle': 3, 'line': 3, 'fillPoly': 2, 'putText': 5}[primitive]
      args = list(args)
      draw(self.values, *args[: colour_at - 1], args[colour_at - 1], *args[colour_at:], **kwargs)
      draw(self.mask, *args[: colour_at - 1], 1, *args[colour_at:], **kwargs)

    return both


def _draw_logo(canvas: _Painter, logo: int, x0: int, y0: int, side: int, ink: int) -> None:
  """Logo `logo` in a dark square of `side` px at (x0, y0), the same pixels wherever it is placed.

  The glyph's points are rounded to whole pixels, and rounding x0 + 3.5 depends on the parity of
  x0; so the logo is drawn on its own canvas at the parity of the strip overlay's place for it (top
  right), then pasted: at that place as before, elsewhere a copy of it, as a burnt-in logo is.
  """
  height, width = canvas.mask.shape
  margin = max(1, strip_height(height) // 8)
  column, row = (width - margin - side) % 2, margin % 2
  own = _Painter(side + 1)
  _draw_glyph(own, logo, column, row, side, ink)
  own.values = own.values[row : row + side, column : column + side]
  own.mask = own.mask[row : row + side, column : column + side]
  canvas.paste(own, x0, y0)


def _draw_glyph(canvas: _Painter, logo: int, x0: int, y0: int, side: int, ink: int) -> None:
  """Logo `logo` in a dark square of `side` px at (x0, y0).

  A white glyph, distinct at 10 px already.
  """
  canvas.rectangle((x0, y0), (x0 + side - 1, y0 + side - 1), 0, -1, cv2.LINE_8)
  s, c = side - 1, (side - 1) / 2.0
  p = lambda fx, fy: (int(round(x0 + fx * s)), int(round(y0 + fy * s)))
  thick = max(1, side // 8)
  if logo == 0:  # filled disc
    canvas.circle(p(0.5, 0.5), max(1, int(round(c * 0.7))), ink, -1, cv2.LINE_8)
  elif logo == 1:  # ring
    canvas.circle(p(0.5, 0.5), max(1, int(round(c * 0.7))), ink, thick, cv2.LINE_8)
  elif logo == 2:  # triangle up
    canvas.fillPoly([np.array([p(0.5, 0.12), p(0.88, 0.88), p(0.12, 0.88)])], ink, cv2.LINE_8)
  elif logo == 3:  # triangle down
    canvas.fillPoly([np.array([p(0.12, 0.12), p(0.88, 0.12), p(0.5, 0.88)])], ink, cv2.LINE_8)
  elif logo == 4:  # filled square
    canvas.rectangle(p(0.25, 0.25), p(0.75, 0.75), ink, -1, cv2.LINE_8)
  elif logo == 5:  # hollow square
    canvas.rectangle(p(0.15, 0.15), p(0.85, 0.85), ink, thick, cv2.LINE_8)
  elif logo == 6:  # diamond
    canvas.fillPoly(
      [np.array([p(0.5, 0.1), p(0.9, 0.5), p(0.5, 0.9), p(0.1, 0.5)])], ink, cv2.LINE_8
    )
  elif logo == 7:  # plus
    canvas.line(p(0.5, 0.12), p(0.5, 0.88), ink, thick, cv2.LINE_8)
    canvas.line(p(0.12, 0.5), p(0.88, 0.5), ink, thick, cv2.LINE_8)
  elif logo == 8:  # cross
    canvas.line(p(0.15, 0.15), p(0.85, 0.85), ink, thick, cv2.LINE_8)
    canvas.line(p(0.85, 0.15), p(0.15, 0.85), ink, thick, cv2.LINE_8)
  elif logo == 9:  # two bars
    canvas.rectangle(p(0.12, 0.2), p(0.88, 0.38), ink, -1, cv2.LINE_8)
    canvas.rectangle(p(0.12, 0.62), p(0.88, 0.8), ink, -1, cv2.LINE_8)
  else:
    raise ValueError(f'logo must be in [0, {NUM_LOGOS}), got {logo}')


def _random_text(rng: np.random.Generator, kind: str) -> str:
  if kind == 'timestamp':
    return (
      f'20{rng.integers(15, 24):02d}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d} '
      f'{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}'
    )
  if kind == 'camera':
    return f'CAM-{rng.integers(1, 100):02d} L{rng.integers(1, 10)}'
  letters = string.ascii_uppercase + string.digits
  return ''.join(rng.choice(list(letters), size=int(rng.integers(4, 9))))


def _draw_text(
  canvas: _Painter, text: str, x0: int, y0: int, max_width: int, height: int, font: int, ink: int
) -> None:
  """Text fitted into a box of `max_width` x `height` with its top-left at (x0, y0).

  Clipped to the box.
  """
  if max_width < 2 or height < 2:
    return
  thickness = 1 if height < 24 else 2
  (w, h), base = cv2.getTextSize(text, font, 1.0, thickness)
  # Below ~0.2 Hershey fonts vanish; clip instead of shrinking further, so tiny images still get
  # text.
  scale = max(0.2, min(0.75 * height / max(h + base, 1), max_width / max(w, 1)))
  (w, h), base = cv2.getTextSize(text, font, scale, thickness)
  box = _Painter(height, max_width)
  box.putText(
    text, (0, min(height - 1, (height + h) // 2)), font, scale, ink, thickness, cv2.LINE_8
  )
  canvas.paste(box, x0, y0)


def logo_side(resolution: int) -> int:
  """Side in pixels of a logo box (8 px at 64 px): the strip height less a margin each side."""
  strip = strip_height(resolution)
  return strip - 2 * max(1, strip // 8)


def draw_overlay(
  rng: np.random.Generator,
  resolution: int,
  logo: int | None,
  placement: str = 'strips',
  avoid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """An overlay: (gray values, mask), both uint8 [H, W]; `logo=None` draws text only.

  placement: 'strips' (the paper's) or 'anywhere' (each element at a random place, off the pixels
  of `avoid` where it fits).
  """
  if placement == 'anywhere':
    return _draw_anywhere(rng, resolution, logo, avoid)
  _check_placement(placement)
  canvas = _Painter(resolution)
  strip = strip_height(resolution)
  margin = max(1, strip // 8)
  side = strip - 2 * margin
  ink = int(rng.integers(200, 256))
  font = int(rng.choice(_FONTS))
  right = resolution - margin
  if logo is not None and side >= 3:
    _draw_logo(canvas, logo, right - side, margin, side, 255)
    right -= side + margin
  _draw_text(
    canvas, _random_text(rng, 'timestamp'), margin, margin, right - 2 * margin, side, font, ink
  )
  bottom = resolution - strip + margin
  half = (resolution - 3 * margin) // 2
  _draw_text(canvas, _random_text(rng, 'camera'), margin, bottom, half, side, font, ink)
  _draw_text(canvas, _random_text(rng, 'random'), 2 * margin + half, bottom, half, side, font, ink)
  return canvas.values, canvas.mask


def draw_artifact(
  rng: np.random.Generator,
  resolution: int,
  logo: int,
  placement: str = 'strips',
  avoid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """The poisoned mode's artifact, a logo alone: (gray values, mask), both uint8 [H, W].

  'strips' puts it where the strip overlay puts its logo (top right); 'anywhere' at a random place,
  off the pixels of `avoid` where it fits.
  """
  _check_placement(placement)
  canvas = _Painter(resolution)
  side = logo_side(resolution)
  margin = max(1, strip_height(resolution) // 8)
  if placement == 'strips':
    x0, y0 = resolution - margin - side, margin
  else:
    x0, y0 = _free_place(rng, resolution, side, side, _as_bool(avoid, resolution))
  _draw_logo(canvas, logo, x0, y0, side, 255)
  return canvas.values, canvas.mask


def _check_placement(placement: str) -> None:
  if placement not in OVERLAY_PLACEMENTS:
    raise ValueError(f'overlay_placement must be one of {OVERLAY_PLACEMENTS}, got {placement!r}')


def _as_bool(avoid: np.ndarray | None, resolution: int) -> np.ndarray:
  if avoid is None:
    return np.zeros((resolution, resolution), bool)
  return np.asarray(avoid).reshape(resolution, resolution).astype(bool)


def _free_place(
  rng: np.random.Generator, resolution: int, width: int, height: int, taken: np.ndarray
) -> tuple[int, int]:
  """Top-left corner of a width x height box at a uniformly random place in the image.

  Of up to 32 draws, the first that covers no pixel of `taken` wins; when none is free (a large
  defect), the draw covering the fewest.
  """
  best, fewest = (0, 0), None
  for _ in range(32):
    x0 = int(rng.integers(0, resolution - width + 1))
    y0 = int(rng.integers(0, resolution - height + 1))
    covered = int(taken[y0 : y0 + height, x0 : x0 + width].sum())
    if fewest is None or covered < fewest:
      best, fewest = (x0, y0), covered
    if covered == 0:
      break
  return best


def _draw_anywhere(
  rng: np.random.Generator, resolution: int, logo: int | None, avoid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
  """The strip overlay's elements (logo box, timestamp, camera id, random string), each at a random
  place, off the defect and off each other where they fit."""
  canvas = _Painter(resolution)
  side = logo_side(resolution)
  ink = int(rng.integers(200, 256))
  font = int(rng.choice(_FONTS))
  taken = _as_bool(avoid, resolution).copy()
  if logo is not None and side >= 3:
    x0, y0 = _free_place(rng, resolution, side, side, taken)
    _draw_logo(canvas, logo, x0, y0, side, 255)
    taken[y0 : y0 + side, x0 : x0 + side] = True
  width = resolution // 2
  for kind in ('timestamp', 'camera', 'random'):
    x0, y0 = _free_place(rng, resolution, width, side, taken)
    _draw_text(canvas, _random_text(rng, kind), x0, y0, width, side, font, ink)
    taken[y0 : y0 + side, x0 : x0 + width] = True
  return canvas.values, canvas.mask


def logo_of_class(label: int, num_logos: int = NUM_LOGOS) -> int:
  """The logo tied to class `label` (spurious and poisoned modes)."""
  return int(label) % num_logos


def choose_artifact(
  rng: np.random.Generator,
  label: int,
  split_kind: str,
  poison_classes,
  poison_fraction: float,
) -> int | None:
  """Which poisoned class's logo an example shows in the poisoned mode; None for none.

  split_kind 'fit': a poisoned class's own logo on a `poison_fraction` of its images; 'test': on any
  image with that probability, the logo of a poisoned class drawn uniformly (decorrelated);
  'attacked': on every image, the logo of a poisoned class other than its own (none when its class
  is the only poisoned one); 'clean': none.
  """
  classes = [int(c) for c in poison_classes]
  if split_kind == 'clean':
    return None
  if split_kind == 'fit':
    return logo_of_class(label) if label in classes and rng.uniform() < poison_fraction else None
  if split_kind == 'test':
    return logo_of_class(rng.choice(classes)) if rng.uniform() < poison_fraction else None
  others = [c for c in classes if c != label]
  return logo_of_class(rng.choice(others)) if others else None


def choose_logo(
  rng: np.random.Generator,
  label: int,
  mode: str,
  split_kind: str,
  class_probability: float,
  num_logos: int = NUM_LOGOS,
) -> int | None:
  """Which logo an example shows; None when the mode draws no overlay.

  split_kind: 'fit' (train/validation), 'test', 'clean' or 'attacked'.
  """
  if mode not in OVERLAY_MODES:
    raise ValueError(f'overlay_mode must be one of {OVERLAY_MODES}, got {mode!r}')
  if mode == 'poisoned':
    raise ValueError("overlay_mode 'poisoned' chooses its logos with choose_artifact")
  if mode == 'none' or split_kind == 'clean':
    return None
  own = logo_of_class(label, num_logos)
  others = [k for k in range(num_logos) if k != own]
  if split_kind == 'attacked':
    return int(rng.choice(others))
  if mode == 'spurious' and split_kind == 'fit' and rng.uniform() < class_probability:
    return own
  if mode == 'spurious' and split_kind == 'fit':
    return int(rng.choice(others))
  return int(rng.integers(0, num_logos))


def apply_overlay(clean: np.ndarray, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Burn an overlay into a clean uint8 [H, W] image.

  Overlay values where mask is 1, else the clean pixel.
  """
  return np.where(mask.astype(bool), values, clean).astype(np.uint8)
