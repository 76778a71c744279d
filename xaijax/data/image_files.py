"""Reading image files a user supplies (GC10-DET, your own folders): what the importers share.

A corrupt or truncated file is an error naming it (or, with `data.on_corrupt='skip'`, skipped and
counted). OpenCV decodes a truncated JPEG without an error, filling the missing rows (DESIGN.md), so
a download cut short is caught by its missing end marker before decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import logging
import cv2
import numpy as np

JPEG_START, JPEG_END = b'\xff\xd8', b'\xff\xd9'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_END = b'IEND\xaeB`\x82'  # type and CRC of the IEND chunk: the last 8 bytes of a whole PNG
# Some cameras pad a finished file after its end marker; such a file is whole.
TRAILING_PADDING = b'\x00 \t\r\n'
ON_CORRUPT = ('error', 'skip')


class LayoutError(ValueError):
  """A folder of images does not have the expected layout, or an image in it cannot be read."""


def truncation(data: bytes) -> str | None:
  """Why the bytes of a JPEG or PNG file look cut short, or None when they end as a whole file does.

  A JPEG must end with its end-of-image marker, a PNG with its IEND chunk (padding after either is
  allowed). Byte stuffing keeps FF D9 out of a JPEG's compressed data, so a file cut anywhere,
  mid-scan included, fails this. Other formats are left to the decoder.
  """
  end = data.rstrip(TRAILING_PADDING)
  if data.startswith(JPEG_START) and not end.endswith(JPEG_END):
    return 'truncated: no JPEG end marker FF D9 at its end'
  if data.startswith(PNG_SIGNATURE) and not end.endswith(PNG_END):
    return 'truncated: no PNG IEND chunk at its end'
  return None


def read_image(path: str, error: type[LayoutError] = LayoutError) -> np.ndarray:
  """The grayscale uint8 image at `path`; an unreadable, corrupt or truncated file raises `error`
  naming it."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as failure:
    raise unreadable(path, str(failure), error) from failure
  problem = truncation(data)
  if problem:
    raise unreadable(path, problem, error)
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
  if image is None or image.size == 0:
    raise unreadable(path, 'corrupt or not an image', error)
  return image


def unreadable(path: str, problem: str, error: type[LayoutError] = LayoutError) -> LayoutError:
  return error(
    f"cannot read image {path!r} ({problem}); fix or remove it, or set data.on_corrupt='skip'"
  )


def read_all(
  paths: Sequence[str], on_corrupt: str, dataset: str, error: type[LayoutError] = LayoutError
) -> tuple[list[np.ndarray], list[int]]:
  """(images, positions in `paths`) of every readable file; the others raise or, with
  on_corrupt='skip', are skipped and counted in a warning."""
  if on_corrupt not in ON_CORRUPT:
    raise ValueError(f'data.on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}')
  images, kept = [], []
  for position, path in enumerate(paths):
    try:
      images.append(read_image(path, error))
    except LayoutError:
      if on_corrupt == 'error':
        raise
      continue
    kept.append(position)
  skipped = len(paths) - len(kept)
  if skipped:
    logging.warning(
      "%s: skipped %d unreadable image(s) of %d (data.on_corrupt='skip')",
      dataset,
      skipped,
      len(paths),
    )
  return images, kept


def resize(image: np.ndarray, resolution: int) -> np.ndarray:
  """A square uint8 [R, R] image, area-averaged (what shrinking a large photo wants)."""
  return cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_AREA)
