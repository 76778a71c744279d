import logging
import os
import re
import shutil

import cv2
import numpy as np
import pytest

from xaijax import case_config, data
from xaijax.data import gc10, image_files

VOC = """<annotation><filename>{name}</filename><size><width>96</width><height>48</height></size>
{objects}</annotation>"""
OBJECT = (
  '<object><name>{label}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>'
  '</bndbox></object>'
)
LABELS = [
  '1_chongkong',
  '2_hanfeng',
  '3_yueyawan',
  '4_shuiban',
  '5_youban',
  '6_siban',
  '7_yiwu',
  '8_yahen',
  '9_zhehen',
  '10_yaozhe',
]


def write_voc(folder, name, objects):
  body = ''.join(
    OBJECT.format(label=label, x0=b[0], y0=b[1], x1=b[2], y1=b[3]) for label, b in objects
  )
  with open(os.path.join(folder, os.path.splitext(name)[0] + '.xml'), 'w') as f:
    f.write(VOC.format(name=name, objects=body))


@pytest.fixture
def fake_gc10(tmp_path):
  """The public layout in miniature: 4 JPEGs per class folder, VOC files in 'lable/'."""
  root = tmp_path / 'GC10-DET'
  annotations = root / 'lable'
  annotations.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for label in range(10):
    folder = root / str(label + 1)
    folder.mkdir()
    for k in range(4):
      name = f'img_{label + 1:02d}_{k}.jpg'
      image = np.full((48, 96), 30 + 20 * label, np.uint8) + rng.integers(
        0, 10, (48, 96), dtype=np.uint8
      )
      cv2.imwrite(str(folder / name), image)
      label_name = (
        '10_yaozhed' if (label == 9 and k == 0) else LABELS[label]
      )  # the release's misspelling
      write_voc(annotations, name, [(label_name, (10, 5, 40, 30))])
  # A filename that occurs in two class folders, with one VOC file holding boxes of both classes.
  for label in (0, 1):
    cv2.imwrite(
      str(root / str(label + 1) / 'shared.jpg'), np.full((48, 96), 200 - 100 * label, np.uint8)
    )
  write_voc(annotations, 'shared.jpg', [(LABELS[0], (0, 0, 48, 24)), (LABELS[1], (48, 24, 96, 48))])
  return root


def gc10_config(tmp_path, manual_dir, **overrides):
  config = case_config.get_config(f'data=gc10_det,manual_dir={manual_dir},resolution=32').data
  config.data_dir = str(tmp_path / 'tfds')
  config.update(overrides)
  return config


def test_imports_the_release_layout(tmp_path, fake_gc10):
  splits = data.load_splits(gc10_config(tmp_path, fake_gc10))
  labels = np.concatenate([splits[s]['label'] for s in ('train', 'validation', 'test')])
  np.testing.assert_array_equal(np.bincount(labels), [5, 5] + [4] * 8)
  image = splits['train']['image']
  assert image.shape[1:] == (32, 32, 1) and image.dtype == np.uint8
  outside = splits['train']['mask'] == 0
  np.testing.assert_array_equal(image[outside], splits['train']['clean'][outside])
  # Class k's gray level survives resizing: the folder decided the label.
  train = splits['train']
  regular = train['clean'][:, 12:20, 12:20].mean(axis=(1, 2, 3))
  for k in range(2, 10):
    assert np.all(np.abs(regular[train['label'] == k] - (34.5 + 20 * k)) < 6)


def test_a_built_dataset_loads_after_its_download_folder_is_deleted(tmp_path, fake_gc10):
  config = gc10_config(tmp_path, fake_gc10)
  built = data.load_splits(config)
  shutil.rmtree(fake_gc10)
  reloaded = data.load_splits(config)
  assert reloaded.keys() == built.keys()
  for split in built:
    assert reloaded[split].keys() == built[split].keys()
    for key in built[split]:
      np.testing.assert_array_equal(reloaded[split][key], built[split][key])
  # A config that was never built still needs the folder, and says so.
  with pytest.raises(gc10.Gc10LayoutError, match='does not exist'):
    data.load_splits(gc10_config(tmp_path, fake_gc10, on_corrupt='skip'))


def test_boxes_of_the_folder_class_only_and_the_misspelt_label(fake_gc10):
  records = {(r.label, os.path.basename(r.path)): r for r in gc10.scan(str(fake_gc10))}
  assert records[(9, 'img_10_0.jpg')].boxes == (
    (10, 5, 40, 30),
  )  # '10_yaozhed' read as waist_folding
  assert records[(0, 'shared.jpg')].boxes == ((0, 0, 48, 24),)
  assert records[(1, 'shared.jpg')].boxes == ((48, 24, 96, 48),)
  mask = gc10.box_mask(((48, 24, 96, 48),), (48, 96), 32)
  assert mask[16:, 16:].all() and not mask[:16].any() and not mask[:, :16].any()


def test_corrupt_image_is_an_error_naming_it_or_skipped_when_asked(tmp_path, fake_gc10, caplog):
  bad = fake_gc10 / '3' / 'broken.jpg'
  bad.write_bytes(b'\xff\xd8 this is not a jpeg')
  with pytest.raises(gc10.Gc10LayoutError, match=r'broken\.jpg'):
    data.load_splits(gc10_config(tmp_path, fake_gc10))
  with caplog.at_level(logging.WARNING):
    splits = data.load_splits(gc10_config(tmp_path, fake_gc10, on_corrupt='skip'))
  assert sum(len(splits[s]['label']) for s in ('train', 'validation', 'test')) == 42
  assert 'skipped 1 unreadable image(s) of 43' in caplog.text


def encoded(suffix: str) -> bytes:
  image = np.random.default_rng(1).integers(0, 256, (48, 96), dtype=np.uint8)
  return cv2.imencode(suffix, image)[1].tobytes()


@pytest.mark.parametrize('suffix', ['.jpg', '.png'])
def test_truncated_image_is_an_error_naming_it_or_skipped_and_counted(
  tmp_path, fake_gc10, caplog, suffix
):
  # Cut mid-scan: OpenCV's imread decodes such a JPEG without an error, filling the missing rows.
  whole = encoded(suffix)
  cut = fake_gc10 / '3' / f'cut{suffix}'
  cut.write_bytes(whole[: int(0.6 * len(whole))])
  with pytest.raises(gc10.Gc10LayoutError, match=re.escape(str(cut)) + '.*truncated'):
    data.load_splits(gc10_config(tmp_path, fake_gc10))
  with caplog.at_level(logging.WARNING):
    splits = data.load_splits(gc10_config(tmp_path, fake_gc10, on_corrupt='skip'))
  assert sum(len(splits[s]['label']) for s in ('train', 'validation', 'test')) == 42
  assert 'skipped 1 unreadable image(s) of 43' in caplog.text


def test_padding_after_the_end_marker_is_whole_and_garbage_between_markers_is_corrupt(tmp_path):
  for suffix in ('.jpg', '.png'):
    whole = encoded(suffix)
    padded = tmp_path / f'padded{suffix}'
    padded.write_bytes(whole + b'\x00' * 32 + b' \r\n')
    expected = cv2.imdecode(np.frombuffer(whole, np.uint8), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(gc10.read_image(str(padded)), expected)
  garbage = tmp_path / 'garbage.jpg'
  garbage.write_bytes(image_files.JPEG_START + b' this is not a jpeg ' + image_files.JPEG_END)
  with pytest.raises(gc10.Gc10LayoutError, match=r'garbage\.jpg.*corrupt or not an image'):
    gc10.read_image(str(garbage))
  with pytest.raises(gc10.Gc10LayoutError, match=r'missing\.jpg.*No such file'):
    gc10.read_image(str(tmp_path / 'missing.jpg'))


def test_unknown_label_name_is_an_error(fake_gc10):
  write_voc(fake_gc10 / 'lable', 'img_01_0.jpg', [('11_rust', (0, 0, 5, 5))])
  with pytest.raises(gc10.Gc10LayoutError, match='11_rust'):
    gc10.scan(str(fake_gc10))


def test_wrong_folder_missing_class_and_empty_class_are_clear_errors(tmp_path, fake_gc10):
  with pytest.raises(gc10.Gc10LayoutError, match=r"does not exist.*class folders '1' \.\.\. '10'"):
    data.load_splits(gc10_config(tmp_path, tmp_path / 'nowhere'))
  no_folder = gc10_config(tmp_path, fake_gc10)
  no_folder.manual_dir = ''
  with pytest.raises(ValueError, match=r'needs data\.manual_dir'):
    data.load_splits(no_folder)
  for image in (fake_gc10 / '8').iterdir():
    image.unlink()
  with pytest.raises(gc10.Gc10LayoutError, match='holds no images'):
    gc10.scan(str(fake_gc10))
  shutil.rmtree(fake_gc10 / '8')
  with pytest.raises(gc10.Gc10LayoutError, match=r'missing class folder .*8.*rolled_pit'):
    gc10.scan(str(fake_gc10))
