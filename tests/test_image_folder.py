"""`image_folder`: your own images in class subfolders, on folders the tests write."""

import logging

import cv2
import numpy as np
import pytest

from xaijax import case_config, data
from xaijax.data import image_folder

CLASSES = ('Scratch marks', 'a.b', 'ölfleck')  # a space, a dot, a non-ASCII letter; sorted
NAMES = ('img (1).JPG', 'ünï.png', 'shot.tiff', 'frame.Bmp')


@pytest.fixture
def folder(tmp_path):
  """Four images per class in several formats and odd names, plus files to be ignored."""
  root = tmp_path / 'my images'
  for label, name in enumerate(CLASSES):
    (root / name).mkdir(parents=True)
    for k, file_name in enumerate(NAMES):
      image = np.full((40, 70), 40 + 80 * label, np.uint8)
      image[k : k + 3, :] = 255
      ok, encoded = cv2.imencode(file_name[file_name.rindex('.') :].lower(), image)
      assert ok
      (root / name / file_name).write_bytes(encoded.tobytes())
    (root / name / 'notes.txt').write_text('not an image')
    (root / name / '.DS_Store').write_bytes(b'\x00\x01')
  (root / '.thumbnails').mkdir()
  return root


def folder_config(tmp_path, root, arg='', **overrides):
  config = case_config.get_config(f'data=image_folder,manual_dir={root},resolution=32{arg}').data
  config.data_dir = str(tmp_path / 'tfds')
  config.update(overrides)
  return config


def test_class_names_come_from_the_folders_and_labels_from_where_an_image_lies(tmp_path, folder):
  config = folder_config(tmp_path, folder)
  assert config.overlay_mode == 'none'  # your own data: nothing burnt in unless asked
  assert data.class_names(config) == CLASSES
  splits = data.load_splits(config)
  labels = np.concatenate([splits[s]['label'] for s in ('train', 'validation', 'test')])
  np.testing.assert_array_equal(np.bincount(labels), [4, 4, 4])
  for split in splits.values():
    assert split['image'].shape[1:] == (32, 32, 1) and split['image'].dtype == np.uint8
    # The class's gray level, away from the white line, says which folder the image came from.
    np.testing.assert_allclose(
      split['image'][:, 20:, :, 0].mean(axis=(1, 2)), 40 + 80 * split['label'], atol=2
    )
    assert not split['mask'].any() and not split['defect'].any()
  np.testing.assert_array_equal(splits['test_clean']['image'], splits['test']['image'])
  assert data.ground_truth(config) == {'overlay_masks': False, 'defects': False}


def test_overlays_are_burnt_in_when_asked(tmp_path, folder):
  splits = data.load_splits(folder_config(tmp_path, folder, ',overlay_mode=spurious'))
  assert splits['train']['mask'].any(axis=(1, 2, 3)).all()
  assert not splits['test_clean']['mask'].any()


def test_a_corrupt_image_is_an_error_naming_it_or_skipped_and_counted(tmp_path, folder, caplog):
  (folder / 'a.b' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n and then nothing')
  with pytest.raises(image_folder.ImageFolderError, match=r'broken\.png.*truncated'):
    data.load_splits(folder_config(tmp_path, folder))
  with caplog.at_level(logging.WARNING):
    splits = data.load_splits(folder_config(tmp_path, folder, on_corrupt='skip'))
  assert sum(len(splits[s]['label']) for s in ('train', 'validation', 'test')) == 12
  assert 'image_folder: skipped 1 unreadable image(s) of 13' in caplog.text


def test_layouts_that_are_not_class_folders_are_clear_errors(tmp_path, folder):
  with pytest.raises(
    image_folder.ImageFolderError, match=r'does not exist.*one subfolder per class'
  ):
    image_folder.scan(str(tmp_path / 'nowhere'))
  loose = tmp_path / 'loose'
  loose.mkdir()
  cv2.imwrite(str(loose / 'a.png'), np.zeros((8, 8), np.uint8))
  with pytest.raises(image_folder.ImageFolderError, match=r'0 class folder.*1 image.*directly'):
    image_folder.scan(str(loose))
  for path in (folder / 'a.b').iterdir():
    if path.suffix.lower() in ('.png', '.jpg', '.tiff', '.bmp'):
      path.unlink()
  with pytest.raises(image_folder.ImageFolderError, match=r"'.*a\.b' holds no images"):
    image_folder.scan(str(folder))
  for k, name in enumerate(('x.png', 'y.png')):
    cv2.imwrite(str(folder / 'a.b' / name), np.full((8, 8), k, np.uint8))
  with pytest.raises(image_folder.ImageFolderError, match=r'a\.b.*has 2 readable.*at least 3'):
    image_folder.load_images(str(folder), 32, 'error')
  with pytest.raises(ValueError, match=r'needs data\.manual_dir'):
    no_folder = folder_config(tmp_path, folder)
    no_folder.manual_dir = ''
    data.load_splits(no_folder)
