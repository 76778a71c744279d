import numpy as np
import pytest

from xaijax import case_config, data
from xaijax.data import defects

TINY = dict(resolution=32, class_scale=0.03, min_per_class=6)


def tiny_config(tmp_path, **overrides):
  config = case_config.get_config().data
  config.update(TINY)
  config.data_dir = str(tmp_path)
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def splits(tmp_path_factory):
  return data.load_splits(tiny_config(tmp_path_factory.mktemp('tfds')))


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path, splits):
  again = data.load_splits(tiny_config(tmp_path / 'again'))
  for split in data.ALL_SPLITS:
    for key in splits[split]:
      assert splits[split][key].tobytes() == again[split][key].tobytes(), (split, key)
  other = data.load_splits(tiny_config(tmp_path / 'other', image_seed=1), splits=('train',))
  assert splits['train']['clean'].tobytes() != other['train']['clean'].tobytes()


def test_shapes_types_and_class_imbalance(splits):
  counts = np.zeros(defects.NUM_CLASSES, int)
  for split in ('train', 'validation', 'test'):
    s = splits[split]
    assert s['image'].dtype == np.uint8 and s['image'].shape[1:] == (32, 32, 1)
    assert s['label'].dtype == np.int32
    counts += np.bincount(s['label'], minlength=defects.NUM_CLASSES)
  np.testing.assert_array_equal(
    counts, defects.class_counts(TINY['class_scale'], TINY['min_per_class'])
  )
  scaled = defects.class_counts(0.5, 10)
  assert scaled[5] == max(scaled) and scaled[7] == min(scaled)  # silk_spot most, rolled_pit fewest


def test_image_is_clean_outside_the_mask_and_mask_is_in_the_strips(splits):
  for split in ('train', 'test', 'test_attacked'):
    s = splits[split]
    outside = s['mask'] == 0
    np.testing.assert_array_equal(s['image'][outside], s['clean'][outside])
    assert s['mask'].any(axis=(1, 2, 3)).all(), 'every overlaid image has overlay pixels'
    assert not s['mask'][:, 6:-6].any(), 'overlays only in the 5 px strips at 32 px (plus margin)'


def test_test_variants_share_images_and_differ_in_overlay(splits):
  test, clean, attacked = splits['test'], splits['test_clean'], splits['test_attacked']
  for variant in (clean, attacked):
    np.testing.assert_array_equal(variant['clean'], test['clean'])
    np.testing.assert_array_equal(variant['label'], test['label'])
  np.testing.assert_array_equal(clean['image'], clean['clean'])
  assert not clean['mask'].any() and (clean['logo'] == -1).all()
  assert (attacked['logo'] != attacked['label']).all()


def test_spurious_logo_follows_the_class_in_training_only(tmp_path):
  config = tiny_config(tmp_path, class_scale=0.2, logo_class_probability=0.9)
  s = data.load_splits(config, splits=('train', 'test'))
  assert 0.85 < np.mean(s['train']['logo'] == s['train']['label']) <= 0.95
  assert np.mean(s['test']['logo'] == s['test']['label']) < 0.3


def test_random_and_none_modes(tmp_path):
  random = data.load_splits(
    tiny_config(tmp_path, class_scale=0.2, overlay_mode='random'), splits=('train',)
  )
  assert np.mean(random['train']['logo'] == random['train']['label']) < 0.25
  none = data.load_splits(tiny_config(tmp_path, overlay_mode='none'), splits=('train',))
  assert not none['train']['mask'].any()
  np.testing.assert_array_equal(none['train']['image'], none['train']['clean'])


def test_defect_mask_marks_the_defect_not_the_background(splits):
  s = splits['train']
  coverage = s['defect'].mean(axis=(1, 2, 3))
  assert (coverage > 0).all() and (coverage < 0.5).all()
  inside = np.abs(s['clean'].astype(int) - np.median(s['clean'], axis=(1, 2), keepdims=True))
  assert inside[s['defect'] == 1].mean() > inside[s['defect'] == 0].mean()


def test_classes_look_different(splits):
  # Each class's mean |defect| footprint differs: a crude check that no two renderers coincide.
  s = splits['train']
  footprints = np.stack([s['defect'][s['label'] == c].mean(axis=0).ravel() for c in range(10)])
  distances = np.linalg.norm(footprints[:, None] - footprints[None], axis=-1)
  assert (distances + np.eye(10) > 0.5).all()


def test_bad_settings_are_clear_errors(tmp_path):
  with pytest.raises(ValueError, match='overlay_mode'):
    data.load_splits(tiny_config(tmp_path, overlay_mode='sometimes'))
  with pytest.raises(ValueError, match='at least 32'):
    data.load_splits(tiny_config(tmp_path, resolution=16))
  with pytest.raises(ValueError, match=r'data\.name'):
    data.load_splits(tiny_config(tmp_path, name='imagenet'))


def test_poisoned_anywhere_splits_carry_the_class_artifact_as_the_mode_says(tmp_path):
  poisoned = data.load_splits(
    tiny_config(
      tmp_path,
      overlay_mode='poisoned',
      overlay_placement='anywhere',
      poison_classes=(0, 5),
      poison_fraction=0.5,
      class_scale=0.1,
    )
  )
  train = poisoned['train']
  carries = train['mask'].any(axis=(1, 2, 3))
  np.testing.assert_array_equal(carries, train['logo'] >= 0)
  assert set(train['label'][carries]) == {0, 5}
  np.testing.assert_array_equal(train['logo'][carries], train['label'][carries])
  assert 0.25 < carries[np.isin(train['label'], (0, 5))].mean() < 0.75
  outside = train['mask'] == 0
  np.testing.assert_array_equal(train['image'][outside], train['clean'][outside])
  attacked = poisoned['test_attacked']
  shown = attacked['logo'] >= 0
  assert np.all(attacked['logo'][shown] != attacked['label'][shown])
  assert shown[~np.isin(attacked['label'], (0, 5))].all()
  assert not poisoned['test_clean']['mask'].any()
