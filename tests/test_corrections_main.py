"""Model corrections end to end through main.py, on the TINY config of test_main.py."""

import json
import textwrap

import numpy as np
import pytest

from tests.test_main import run_main
from xaijax import case_config
from xaijax.corrections import masks

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


def test_found_masks_are_refused_until_the_reveal_is_wired():
  config = case_config.get_config('', correction='rrr')
  config.correction.masks = 'found'
  split = {'image': np.zeros((2, 8, 8, 1), np.uint8), 'mask': np.zeros((2, 8, 8, 1), np.uint8)}
  with pytest.raises(
    ValueError, match=r"correction.masks='found'.*reveal.*correction.masks='mask'"
  ):
    masks.artifact_masks(config, split)
  with pytest.raises(ValueError, match=r"correction.masks='found'"):
    masks.concept_examples(config, split)
