"""Procedural GC10-DET-like defects on a brushed-metal texture.

Every function draws with a numpy Generator handed in, so one (seed, index) pair always gives the
same bytes. Sizes are fractions of the resolution so that a 64 px CPU dataset and the paper's 224 px
one show the same defects.

Where a defect sits (`placement`):
- `anywhere`: its centre row is uniform over the whole height, and welds and creases run from edge
  to edge, as on GC10-DET's photos, so the overlay strips hide part or all of some defects;
- `between_strips`: its centre lies in the band between the overlay strips (shapes may still run
  into them), so an overlay never hides the whole defect and cropping the strips loses nothing.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

CLASS_NAMES = (
  'punching_hole',
  'welding_line',
  'crescent_gap',
  'water_spot',
  'oil_spot',
  'silk_spot',
  'inclusion',
  'rolled_pit',
  'crease',
  'waist_folding',
)
NUM_CLASSES = len(CLASS_NAMES)
# Images per class in the public GC10-DET release (DESIGN.md); the synthetic set follows this
# imbalance.
GC10_CLASS_COUNTS = (329, 512, 264, 310, 250, 734, 201, 46, 53, 140)
DEFECT_PLACEMENTS = ('anywhere', 'between_strips')


@dataclasses.dataclass(frozen=True)
class Frame:
  """The image a defect is drawn into: its side, the overlay strips' height and the placement."""

  size: int
  strip: int
  placement: str = 'anywhere'

  def __post_init__(self):
    if self.placement not in DEFECT_PLACEMENTS:
      raise ValueError(
        f'data.defect_placement must be one of {DEFECT_PLACEMENTS}, got {self.placement!r}'
      )

  def centre_rows(self, margin: float) -> tuple[float, float]:
    """The rows a defect's centre may take; `margin` (a fraction of the size) keeps a
    between-strips defect off the strips."""
    if self.placement == 'anywhere':
      return 0.0, float(self.size)
    low = self.strip + margin * self.size
    high = self.size - self.strip - margin * self.size
    if high <= low:  # a tiny image: the band is a line
      low = high = self.size / 2
    return low, high

  def span_rows(self) -> tuple[float, float]:
    """First and last row of a defect that runs across the sheet (a crease)."""
    if self.placement == 'anywhere':
      return -2.0, self.size + 2.0
    return self.strip * 0.5, self.size - self.strip * 0.5


def brushed_metal(rng: np.random.Generator, size: int) -> np.ndarray:
  """Grayscale steel texture (float32, about 0..255): rolling streaks, grain and uneven lighting."""
  base = rng.uniform(105.0, 165.0)
  noise = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
  streak_length = max(3, size // 3) | 1
  streaks = cv2.blur(noise, (streak_length, 1))
  streaks *= rng.uniform(5.0, 10.0) / max(float(streaks.std()), 1e-6)
  grain = rng.normal(0.0, rng.uniform(1.0, 3.0), (size, size)).astype(np.float32)
  y, x = np.mgrid[-1.0 : 1.0 : size * 1j, -1.0 : 1.0 : size * 1j].astype(np.float32)
  plane = rng.uniform(-15, 15) * x + rng.uniform(-15, 15) * y
  cx, cy, radius = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.4, 1.2)
  glow = rng.uniform(-25, 25) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
  return base + streaks + grain + plane + glow


def _soften(alpha: np.ndarray, sigma_px: float) -> np.ndarray:
  if sigma_px <= 0.3:
    return alpha
  return cv2.GaussianBlur(alpha, (0, 0), sigma_px)


def _blank(size: int) -> np.ndarray:
  return np.zeros((size, size), np.float32)


def _center(rng: np.random.Generator, frame: Frame, margin: float = 0.12) -> tuple[float, float]:
  """A defect's centre: away from the left and right edges, at a row the placement allows."""
  size = frame.size
  return rng.uniform(margin * size, (1 - margin) * size), rng.uniform(*frame.centre_rows(margin))


def _pt(x: float, y: float, shift: int = 4) -> tuple[int, int]:
  # OpenCV draws with sub-pixel precision when coordinates carry `shift` fractional bits.
  return int(round(x * (1 << shift))), int(round(y * (1 << shift)))


def punching_hole(img, rng, frame):
  """A round punched hole: a dark disc with a thin bright rim."""
  size = frame.size
  cx, cy = _center(rng, frame)
  r = rng.uniform(0.05, 0.10) * size
  disc = _blank(size)
  cv2.circle(disc, _pt(cx, cy), int(r * 16), 1.0, -1, cv2.LINE_AA, 4)
  rim = _blank(size)
  cv2.circle(rim, _pt(cx, cy), int((r + 0.6) * 16), 1.0, max(1, int(size / 96)), cv2.LINE_AA, 4)
  img = img + rng.uniform(20, 40) * _soften(rim, 0.4)
  disc = _soften(disc, 0.5)
  return img * (1 - disc) + rng.uniform(10, 45) * disc


def welding_line(img, rng, frame):
  """A straight weld seam across the whole sheet: a wide band with two sharp bead edges."""
  size = frame.size
  cx, _ = _center(rng, frame, margin=0.2)
  tilt = rng.uniform(-0.15, 0.15) * size
  width = rng.uniform(0.03, 0.06) * size
  band, edges = _blank(size), _blank(size)
  top, bottom = _pt(cx - tilt / 2, -2), _pt(cx + tilt / 2, size + 2)
  cv2.line(band, top, bottom, 1.0, max(1, int(round(width))), cv2.LINE_AA, 4)
  for side in (-1, 1):
    offset = side * width / 2
    cv2.line(
      edges,
      _pt(cx - tilt / 2 + offset, -2),
      _pt(cx + tilt / 2 + offset, size + 2),
      1.0,
      1,
      cv2.LINE_AA,
      4,
    )
  sign = rng.choice([-1.0, 1.0])
  return img + sign * rng.uniform(20, 40) * _soften(band, 0.8) - rng.uniform(25, 45) * edges


def crescent_gap(img, rng, frame):
  """A half-moon gap: a disc minus an offset disc, dark, at a random orientation."""
  size = frame.size
  cx, cy = _center(rng, frame)
  r = rng.uniform(0.10, 0.17) * size
  angle = rng.uniform(0, 2 * np.pi)
  shift = rng.uniform(0.35, 0.55) * r
  crescent = _blank(size)
  cv2.circle(crescent, _pt(cx, cy), int(r * 16), 1.0, -1, cv2.LINE_AA, 4)
  cv2.circle(
    crescent,
    _pt(cx + shift * np.cos(angle), cy + shift * np.sin(angle)),
    int(r * 16),
    0.0,
    -1,
    cv2.LINE_AA,
    4,
  )
  crescent = _soften(crescent, 0.5)
  return img * (1 - crescent) + rng.uniform(15, 50) * crescent


def _blob(rng, size, cx, cy, radius, parts):
  blob = _blank(size)
  for _ in range(parts):
    ex, ey = cx + rng.normal(0, radius / 3), cy + rng.normal(0, radius / 3)
    axes = (
      max(1, int(rng.uniform(0.4, 0.9) * radius)),
      max(1, int(rng.uniform(0.3, 0.7) * radius)),
    )
    cv2.ellipse(blob, (int(ex), int(ey)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
  return blob


def water_spot(img, rng, frame):
  """A dried water stain: a faint bright patch with a darker tide line around it."""
  size = frame.size
  cx, cy = _center(rng, frame)
  blob = _blob(rng, size, cx, cy, rng.uniform(0.08, 0.14) * size, int(rng.integers(2, 5)))
  kernel = np.ones((3, 3), np.uint8)
  rim = cv2.dilate(blob, kernel, iterations=max(1, size // 64)) - blob
  return (
    img + rng.uniform(12, 25) * _soften(blob, 0.02 * size) - rng.uniform(30, 50) * _soften(rim, 0.5)
  )


def oil_spot(img, rng, frame):
  """An oil stain: a large, soft, dark blotch without a rim."""
  size = frame.size
  cx, cy = _center(rng, frame)
  blob = _blob(rng, size, cx, cy, rng.uniform(0.13, 0.2) * size, int(rng.integers(3, 6)))
  return img - rng.uniform(35, 60) * _soften(blob, 0.05 * size)


def silk_spot(img, rng, frame):
  """Silk spots: a patch of stacked thin wavy streaks, like a moire on the surface."""
  size = frame.size
  cx, cy = _center(rng, frame, margin=0.2)
  width, height = rng.uniform(0.3, 0.45) * size, rng.uniform(0.15, 0.25) * size
  lines = _blank(size)
  count = int(rng.integers(4, 7))
  period, phase = rng.uniform(0.15, 0.3) * size, rng.uniform(0, 2 * np.pi)
  xs = np.linspace(cx - width / 2, cx + width / 2, 24)
  for k in range(count):
    y0 = cy - height / 2 + k * height / max(count - 1, 1)
    ys = y0 + 0.05 * size * np.sin(2 * np.pi * (xs - cx) / period + phase)
    points = np.array([_pt(x, y) for x, y in zip(xs, ys)], np.int32)
    cv2.polylines(lines, [points], False, 1.0, 1, cv2.LINE_AA, 4)
  sign = rng.choice([-1.0, 1.0])
  return img + sign * rng.uniform(30, 50) * lines


def inclusion(img, rng, frame):
  """Slag inclusions: short, thin, very dark streaks along the rolling direction."""
  size = frame.size
  cx, cy = _center(rng, frame)
  streaks = _blank(size)
  for _ in range(int(rng.integers(1, 4))):
    length = rng.uniform(0.15, 0.3) * size
    x0, y0 = cx + rng.normal(0, 0.04 * size), cy + rng.normal(0, 0.04 * size)
    slope = rng.uniform(-0.08, 0.08) * length
    cv2.line(
      streaks,
      _pt(x0 - length / 2, y0 - slope / 2),
      _pt(x0 + length / 2, y0 + slope / 2),
      1.0,
      max(1, int(size / 80)),
      cv2.LINE_AA,
      4,
    )
  return img - rng.uniform(50, 80) * streaks


def rolled_pit(img, rng, frame):
  """Rolled-in pits: a tight cluster of small dark dots."""
  size = frame.size
  cx, cy = _center(rng, frame)
  pits = _blank(size)
  for _ in range(int(rng.integers(3, 8))):
    px, py = cx + rng.normal(0, 0.05 * size), cy + rng.normal(0, 0.05 * size)
    cv2.circle(
      pits, _pt(px, py), int(rng.uniform(0.012, 0.025) * size * 16 + 8), 1.0, -1, cv2.LINE_AA, 4
    )
  return img - rng.uniform(45, 75) * _soften(pits, 0.3)


def crease(img, rng, frame):
  """A crease: a long, thin, curved line with a bright companion (light catching the fold)."""
  size = frame.size
  cx, _ = _center(rng, frame, margin=0.2)
  bend = rng.uniform(-0.25, 0.25) * size
  t = np.linspace(0, 1, 32)
  xs = cx + bend * 4 * t * (1 - t) + rng.uniform(-0.1, 0.1) * size * (t - 0.5)
  top, bottom = frame.span_rows()
  ys = top + t * (bottom - top)
  dark, bright = _blank(size), _blank(size)
  cv2.polylines(
    dark, [np.array([_pt(x, y) for x, y in zip(xs, ys)], np.int32)], False, 1.0, 1, cv2.LINE_AA, 4
  )
  cv2.polylines(
    bright,
    [np.array([_pt(x + 1, y) for x, y in zip(xs, ys)], np.int32)],
    False,
    1.0,
    1,
    cv2.LINE_AA,
    4,
  )
  return img - rng.uniform(40, 70) * dark + rng.uniform(20, 40) * bright


def waist_folding(img, rng, frame):
  """Waist folding: a band of broad zig-zag folds across the full width.

  The folds alternate light and shade.
  """
  size = frame.size
  _, cy = _center(rng, frame, margin=0.18)
  height = rng.uniform(0.15, 0.25) * size
  y, x = np.mgrid[0:size, 0:size].astype(np.float32)
  period = rng.uniform(0.12, 0.25) * size
  zigzag = np.abs(((x / period + rng.uniform(0, 1)) % 1.0) - 0.5) * 2 * 0.06 * size
  inside = np.exp(-(((y - cy - zigzag) / (height / 2)) ** 4))
  shading = np.sin(2 * np.pi * (y - zigzag) / (height / 2))
  return img + rng.uniform(25, 40) * inside * shading


DEFECT_RENDERERS = (
  punching_hole,
  welding_line,
  crescent_gap,
  water_spot,
  oil_spot,
  silk_spot,
  inclusion,
  rolled_pit,
  crease,
  waist_folding,
)


# Gray levels by which the defect must change the texture for a pixel to count as defect.
DEFECT_THRESHOLD = 6.0


def render_clean_image(
  rng: np.random.Generator, label: int, frame: Frame
) -> tuple[np.ndarray, np.ndarray]:
  """The overlay-free image of one example and its defect mask, both uint8 [size, size].

  The image is the texture plus the defect of class `label`; the mask marks where the defect changed
  the texture by more than DEFECT_THRESHOLD gray levels.
  """
  if not 0 <= label < NUM_CLASSES:
    raise ValueError(f'label must be in [0, {NUM_CLASSES}), got {label}')
  texture = brushed_metal(rng, frame.size)
  image = DEFECT_RENDERERS[label](texture, rng, frame)
  defect = (np.abs(image - texture) > DEFECT_THRESHOLD).astype(np.uint8)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8), defect


def class_counts(scale: float, minimum: int) -> tuple[int, ...]:
  """Images per class: GC10-DET's counts times `scale`, never fewer than `minimum`."""
  if scale <= 0:
    raise ValueError(f'class count scale must be positive, got {scale}')
  return tuple(max(minimum, int(round(count * scale))) for count in GC10_CLASS_COUNTS)
