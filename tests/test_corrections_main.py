"""Model corrections end to end through main.py, on the TINY config of test_main.py."""

import json
import textwrap

from flax import traverse_util
import numpy as np
import pytest

from tests.test_main import run_main
from xaijax import case_config
from xaijax.corrections import masks
from xaijax.training import train_result

# A small classifier of the user's, so that the test compiles in seconds (MobileNet runs in
# test_main.py); its head 'head' is a Dense layer, so every ClArC applies there.
MODEL_SOURCE = textwrap.dedent(
  """
  import flax.linen as nn


  class SmallNet(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
      x = nn.Conv(8, (3, 3), strides=(2, 2), use_bias=False)(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
      return nn.Dense(self.num_classes, name='head')(x.mean(axis=(1, 2)))
  """
)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('corrections')
  (tmp / 'small_net.py').write_text(MODEL_SOURCE)
  model = [
    f'--config.model.name={tmp / "small_net.py"}:SmallNet',
    '--config.correction.layer=head',
    '--config.correction.head=head',
    '--config.quality.enabled=False',  # test_main covers it
  ]
  tuned = run_main(
    tmp / 'rrclarc', tmp / 'tfds', *model, '--config.correction.epochs=2', case='rrclarc'
  )
  assert tuned.returncode == 0, tuned.stderr[-3000:]
  projected = run_main(
    tmp / 'pclarc',
    tmp / 'tfds',
    *model,
    f'--config.correction.base_classifier={tmp / "rrclarc" / "classifier"}',
    case='pclarc',
  )
  assert projected.returncode == 0, projected.stderr[-3000:]
  return tmp


def results_of(path):
  return json.loads((path / 'results.json').read_text())


def test_a_fine_tuned_correction_reports_its_measures(runs):
  results = results_of(runs / 'rrclarc')
  assert results['case'] == 'rrclarc' and results['seeds'] == [0, 1]
  correction = results['correction']
  assert correction['settings']['name'] == 'rrclarc' and correction['settings']['weight'] > 0
  assert len(correction['concept_sensitivity']['per_seed']) == 2
  assert correction['concept_directions'] >= 1
  for name in ('validation', 'validation_overlays_swapped'):
    assert all(0 <= f1 <= 1 for f1 in correction['validation_f1'][name]['per_seed'])
  seconds = correction['seconds_per_epoch']
  assert seconds['plain'] is None or seconds['plain'] > 0  # two epochs: one left after the first
  assert (runs / 'rrclarc' / 'correction' / 'train_result.json').exists()
  report = (runs / 'rrclarc' / 'report.md').read_text()
  assert '## Model correction' in report and 'overlays swapped' in report


def test_pclarc_reuses_the_original_and_leaves_no_sensitivity_to_its_concept(runs):
  results = results_of(runs / 'pclarc')
  assert not (runs / 'pclarc' / 'classifier').exists()  # nothing trained: the base was reused
  sensitivity = results['correction']['concept_sensitivity']['per_seed']
  assert max(sensitivity) < 1e-4, sensitivity


def found_split(shows):
  """Images 8x8 whose value is their index; the found mask covers a 2x2 corner where `shows`."""
  count = len(shows)
  found = np.zeros((count, 8, 8, 1), np.uint8)
  found[np.asarray(shows, bool), :2, :2] = 1
  return {
    'image': np.arange(count, dtype=np.uint8)[:, None, None, None]
    * np.ones((1, 8, 8, 1), np.uint8),
    'label': np.arange(count) % 2,
    'mask': np.zeros((count, 8, 8, 1), np.uint8),  # ground truth that must not be read
    masks.FOUND_MASK_KEY: found,
  }


def test_found_masks_are_what_an_rrr_penalty_reads():
  config = case_config.get_config('', correction='rrr')
  config.correction.masks = 'found'
  split = found_split([1, 0, 1, 0])
  np.testing.assert_array_equal(masks.artifact_masks(config, split), split[masks.FOUND_MASK_KEY])
  swapped = masks.swap_overlays(split, key=masks.mask_key(config))
  # Image 0's found corner now shows its donor's pixels (another class, so an odd index).
  assert swapped['image'][0, 0, 0, 0] % 2 == 1 and swapped['image'][0, 5, 5, 0] == 0
  without = {k: v for k, v in split.items() if k != masks.FOUND_MASK_KEY}
  with pytest.raises(ValueError, match='reveal stage has not run'):
    masks.artifact_masks(config, without)


def test_a_concept_from_found_masks_stands_outlined_images_against_others():
  config = case_config.get_config('', correction='pclarc')
  config.correction.masks = 'found'
  shows = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
  examples = masks.concept_examples(config, found_split(shows))
  assert len(examples['with_artifact']) == len(examples['without_artifact']) == 5
  assert set(examples['with_artifact'][:, 0, 0, 0]) == {0, 1, 2, 3, 4}
  assert set(examples['without_artifact'][:, 0, 0, 0]) <= set(range(5, 12))
  assert not examples['group'].any()
  with pytest.raises(ValueError, match='outlined an artifact in 2 of 12 images'):
    masks.concept_examples(config, found_split([1, 1] + [0] * 10))


def test_an_artifact_in_every_image_stands_against_itself_inpainted():
  config = case_config.get_config('', correction='pclarc')
  config.correction.masks = 'found'
  split = found_split([1] * 10 + [0] * 2)
  split['image'][:, :2, :2] = 255  # the artifact: a white corner on each image's own gray
  examples = masks.concept_examples(config, split)
  with_artifact, without = examples['with_artifact'], examples['without_artifact']
  assert len(with_artifact) == len(without) == 10 and not examples['group'].any()
  np.testing.assert_array_equal(with_artifact, split['image'][:10])
  # Outside the outline nothing changes; inside, the corner takes the image's own gray again.
  np.testing.assert_array_equal(without[:, 2:], with_artifact[:, 2:])
  np.testing.assert_array_equal(without[:, :2, 2:], with_artifact[:, :2, 2:])
  # (OpenCV's Telea is a few gray levels off even on a flat image.)
  corner = without[:, :2, :2, 0].astype(int) - np.arange(10)[:, None, None]
  assert np.abs(corner).max() <= 3, corner


def test_a_penalised_correction_fine_tunes_each_seed_from_its_base_model(runs):
  base_dir = runs / 'rrclarc' / 'classifier'
  tuned = run_main(
    runs / 'counterexamples_tuned',
    runs / 'tfds',
    f'--config.model.name={runs / "small_net.py"}:SmallNet',
    '--config.correction.layer=head',
    '--config.quality.enabled=False',
    f'--config.correction.base_classifier={base_dir}',
    '--config.correction.epochs=1',
    '--config.correction.learning_rate=1e-9',  # a step this small leaves the start in place
    case='counterexamples',
  )
  assert tuned.returncode == 0, tuned.stderr[-3000:]
  base = train_result.load_train_result(str(base_dir)).variables['params']
  result = train_result.load_train_result(str(runs / 'counterexamples_tuned' / 'classifier'))
  assert result.epochs_run == 1  # correction.epochs, not train.epochs
  tuned = traverse_util.flatten_dict(result.variables['params'], sep='/')
  for path, start in traverse_util.flatten_dict(base, sep='/').items():
    after = tuned[path]
    assert np.ptp(start, axis=0).max() > 1e-3, 'the seeds start from different models'
    np.testing.assert_allclose(after, start, atol=1e-6, err_msg=path)
