"""`gc10_det`: the real GC10-DET, imported from the folder the user downloaded (nothing is fetched).

Expected layout of the manual directory (the public release):

    <manual_dir>/1/*.jpg ... <manual_dir>/10/*.jpg    grayscale JPEGs, one folder per class
    <manual_dir>/lable/*.xml                          Pascal-VOC boxes

The folder name `lable` is misspelt upstream. The folder is the label (some images carry boxes of
several classes). Filenames repeat across folders, so an example is keyed by folder and name, and an
XML file is used only for the boxes of its folder's class. Images are resized to the configured
resolution and get the same overlays as the synthetic set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import ClassVar
import xml.etree.ElementTree as ElementTree

import numpy as np
import tensorflow_datasets as tfds

from xaijax.data import builder, image_files
from xaijax.data.defects import CLASS_NAMES, NUM_CLASSES

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
# VOC label names of the release, plus the misspelling that occurs in some of its XML files.
VOC_LABELS = {
  f'{k + 1}_{name}': k
  for k, name in enumerate(
    (
      'chongkong',
      'hanfeng',
      'yueyawan',
      'shuiban',
      'youban',
      'siban',
      'yiwu',
      'yahen',
      'zhehen',
      'yaozhe',
    )
  )
}
VOC_LABELS['10_yaozhed'] = 9
EXPECTED_LAYOUT = (
  "expected the GC10-DET release layout: class folders '1' ... '10' with the JPEG images "
  "(1 punching_hole ... 10 waist_folding) and optionally 'lable/' with Pascal-VOC XML files"
)


class Gc10LayoutError(image_files.LayoutError):
  """The manual directory does not look like GC10-DET, or an image in it cannot be read."""


@dataclasses.dataclass(frozen=True)
class Gc10Record:
  path: str
  label: int
  boxes: tuple  # ((xmin, ymin, xmax, ymax), ...) of the folder's class, in original pixels


def parse_voc_boxes(xml_path: str) -> list[tuple[int, tuple[int, int, int, int]]]:
  """(class index, box) for every object of a Pascal-VOC file; unknown label names are an error."""
  try:
    root = ElementTree.parse(xml_path).getroot()
  except (ElementTree.ParseError, OSError) as error:
    raise Gc10LayoutError(f'cannot parse annotation {xml_path}: {error}') from error
  objects = []
  for obj in root.iter('object'):
    name = (obj.findtext('name') or '').strip()
    if name not in VOC_LABELS:
      raise Gc10LayoutError(f'unknown label {name!r} in {xml_path}; known: {sorted(VOC_LABELS)}')
    box = obj.find('bndbox')
    coords = tuple(int(float(box.findtext(k))) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
    objects.append((VOC_LABELS[name], coords))
  return objects


def scan(manual_dir: str) -> list[Gc10Record]:
  """Every image of the release with its folder label and boxes; a wrong folder is a clear error."""
  if not os.path.isdir(manual_dir):
    raise Gc10LayoutError(f'GC10-DET folder {manual_dir!r} does not exist; {EXPECTED_LAYOUT}')
  annotations = os.path.join(manual_dir, 'lable')
  records = []
  for label in range(NUM_CLASSES):
    folder = os.path.join(manual_dir, str(label + 1))
    if not os.path.isdir(folder):
      raise Gc10LayoutError(
        f'missing class folder {folder!r} ({CLASS_NAMES[label]}); {EXPECTED_LAYOUT}'
      )
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
      raise Gc10LayoutError(
        f'class folder {folder!r} ({CLASS_NAMES[label]}) holds no images '
        f'({"/".join(IMAGE_SUFFIXES)}); {EXPECTED_LAYOUT}'
      )
    for name in names:
      xml_path = os.path.join(annotations, os.path.splitext(name)[0] + '.xml')
      boxes = ()
      if os.path.isfile(xml_path):
        boxes = tuple(box for k, box in parse_voc_boxes(xml_path) if k == label)
      records.append(Gc10Record(os.path.join(folder, name), label, boxes))
  return records


def read_image(path: str) -> np.ndarray:
  """The grayscale uint8 image at `path`.

  An unreadable, corrupt or truncated file raises Gc10LayoutError naming it.
  """
  return image_files.read_image(path, Gc10LayoutError)


def box_mask(boxes, original_shape, resolution: int) -> np.ndarray:
  """uint8 [R, R] mask of the defect boxes, scaled from the original image size."""
  mask = np.zeros((resolution, resolution), np.uint8)
  height, width = original_shape
  for xmin, ymin, xmax, ymax in boxes:
    x0, x1 = int(xmin * resolution / width), int(np.ceil(xmax * resolution / width))
    y0, y1 = int(ymin * resolution / height), int(np.ceil(ymax * resolution / height))
    mask[max(0, y0) : min(resolution, y1), max(0, x0) : min(resolution, x1)] = 1
  return mask


def load_images(records: list[Gc10Record], resolution: int, on_corrupt: str):
  """Decode and resize every record; returns (images, defect masks, labels, kept records)."""
  originals, positions = image_files.read_all(
    [r.path for r in records], on_corrupt, 'gc10_det', Gc10LayoutError
  )
  kept = [records[p] for p in positions]
  images = [image_files.resize(original, resolution) for original in originals]
  defect_masks = [
    box_mask(record.boxes, original.shape, resolution) for record, original in zip(kept, originals)
  ]
  labels = np.array([r.label for r in kept], np.int64)
  for label in range(NUM_CLASSES):
    if not np.any(labels == label):
      raise Gc10LayoutError(f'no readable image left for class {label + 1} ({CLASS_NAMES[label]})')
  return np.stack(images), np.stack(defect_masks), labels, kept


@dataclasses.dataclass(eq=False)
class Gc10DetConfig(builder.OverlaidImagesConfig):
  on_corrupt: str = 'error'
  # Hash of the manual directory's path (not its contents), so two downloads never share a cache
  # and a built dataset is found again without the folder.
  source: str = ''


def make_config(
  manual_dir: str,
  resolution=224,
  overlay_mode='spurious',
  logo_class_probability=0.9,
  overlay_seed=0,
  split_seed=0,
  split_fractions=(0.7, 0.2, 0.1),
  on_corrupt='error',
  overlay_placement='strips',
  poison_classes=(1, 5),
  poison_fraction=0.3,
) -> Gc10DetConfig:
  source = hashlib.sha1(os.path.abspath(manual_dir).encode()).hexdigest()[:8]
  config = Gc10DetConfig(
    name='pending',
    resolution=int(resolution),
    overlay_mode=overlay_mode,
    logo_class_probability=float(logo_class_probability),
    overlay_seed=int(overlay_seed),
    split_seed=int(split_seed),
    split_fractions=tuple(float(f) for f in split_fractions),
    on_corrupt=on_corrupt,
    source=source,
    overlay_placement=overlay_placement,
    poison_classes=tuple(int(c) for c in poison_classes),
    poison_fraction=float(poison_fraction),
  )
  builder.validate_overlay_settings(config)
  config.name = f'{config.settings_name()}_{on_corrupt}_{source}'
  return config


class Gc10Det(tfds.core.GeneratorBasedBuilder):
  """GC10-DET metal surface defects (Lv et al. 2020) with burnt-in overlays.

  Built from a manual download.
  """

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES: ClassVar[dict[str, str]] = {
    '1.0.0': 'First release.',
    '1.1.0': 'A logo placed anywhere is the same pixels as in the strips (was 1 px off where its '
    'place had the other parity); the strip overlays are unchanged.',
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Download GC10-DET (e.g. from Kaggle or the authors' release) and point "
    "data.manual_dir at the folder that holds '1' ... '10' and 'lable'."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=builder.features(self.builder_config.resolution),
      supervised_keys=('image', 'label'),
      description=__doc__,
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    records = scan(os.fspath(dl_manager.manual_dir))
    self._images, self._defects, labels, _ = load_images(
      records, config.resolution, config.on_corrupt
    )
    self._labels = labels
    return builder.split_generators(labels, config, self._generate_examples)

  def _generate_examples(self, indices: np.ndarray, split_kind: str):
    for index in indices:
      yield (
        int(index),
        builder.overlaid_example(
          self._images[index],
          self._defects[index],
          int(self._labels[index]),
          int(index),
          split_kind,
          self.builder_config,
        ),
      )
