"""End to end: remedy.region='found' on a tiny config, and find_shortcuts.py on a case trained on an
image folder of the test's own (no ground truth). A small plain CNN stands in for MobileNet so that
compiling stays cheap; the reveal itself does not care which model it explains."""

import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.test_main import ROOT, run_main
from xaijax import case_config, data
from xaijax.reveal import case, stage
from xaijax.training import train_result

TINY_CNN = """
import flax.linen as nn


class TinyCnn(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2))(x))
    x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2))(x))
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))
"""
FAST = [
  '--config.train.seeds=1',
  '--config.reveal.progress_bar=False',
  '--config.reveal.attack_images=8',
  '--config.quality.enabled=False',  # test_main covers it
]


@pytest.fixture(scope='module')
def tiny_cnn(tmp_path_factory):
  path = tmp_path_factory.mktemp('model') / 'tiny_cnn.py'
  path.write_text(TINY_CNN)
  return f'--config.model.name={path}:TinyCnn'


@pytest.fixture(scope='module')
def found_case(tmp_path_factory, tiny_cnn):
  tmp = tmp_path_factory.mktemp('found')
  result = run_main(
    tmp / 'run',
    tmp / 'tfds',
    tiny_cnn,
    *FAST,
    '--config.remedy.region=found',
    # Every cluster counts as a shortcut here, so that the remedy has masks to act on.
    '--config.reveal.min_flip_excess=-1',
    '--config.reveal.min_relevance_in_mask=0',
    '--config.reveal.max_mask_area=1',
    '--config.reveal.min_copy_in_class=0',
    case='telea',
    arg='overlay_mode=poisoned,overlay_placement=anywhere',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return tmp


def test_found_masks_drive_the_remedy_and_land_in_the_report(found_case):
  run = found_case / 'run'
  results = json.loads((run / 'results.json').read_text())
  assert results['case'] == 'telea_found'
  reveal = json.loads((run / 'reveal' / 'reveal.json').read_text())
  assert reveal['classes'] and reveal['shortcuts'] and reveal['ground_truth'] is not None
  for entry in reveal['classes']:
    assert entry['num_clusters'] == len(entry['clusters'])
    assert sum(c['items'] for c in entry['clusters']) == entry['items']
  assert results['reveal']['shortcuts'] == reveal['shortcuts']
  planted = reveal['ground_truth']['planted_attack']
  assert planted
  for row in planted:  # NaN where too few receivers were left to attack
    assert 0 <= row['flip_rate'] <= 1 if row['pairs'] else math.isnan(row['flip_rate'])
  assert set(results['reveal']['original_scores']) == {'test', 'test_clean', 'test_attacked'}
  config = case_config.load_config_file(
    os.path.join(ROOT, 'configs', 'telea.py'), 'overlay_mode=poisoned,overlay_placement=anywhere'
  )
  config.data.update(resolution=32, class_scale=0.03, min_per_class=6)
  config.data.data_dir = str(found_case / 'tfds')
  splits = data.load_splits(config.data)
  found = stage.load_found_masks(str(run / 'reveal'))
  with np.load(run / 'remedied_images.npz') as remedied:
    for name, split in splits.items():
      assert found[name].shape == split['image'].shape
      outside = found[name] == 0
      np.testing.assert_array_equal(remedied[name][outside], split['image'][outside])
    assert any((remedied[n] != splits[n]['image']).any() for n in splits), 'telea changed nothing'
  report = (run / 'report.md').read_text()
  assert '## Reveal' in report and 'reveal/reveal_clusters.png' in report
  assert 'Did the model learn the planted shortcut?' in report
  for figure in reveal['figures']:
    assert (run / 'reveal' / figure).stat().st_size > 2000, figure
  assert (run / 'original' / 'classifier' / 'train_result.json').exists()


def write_folder(root):
  rng = np.random.default_rng(0)
  for label, name in enumerate(('dents', 'clean sheet')):
    (root / name).mkdir(parents=True)
    for k in range(12):
      image = rng.integers(60, 90, (48, 48)).astype(np.uint8)
      if label == 0:
        cv2.circle(image, (24, 24), 6, 20, -1)
      cv2.imwrite(str(root / name / f'{k}.png'), image)


def test_find_shortcuts_on_a_case_trained_on_your_own_images(tmp_path, tiny_cnn):
  folder = tmp_path / 'images'
  write_folder(folder)
  result = run_main(
    tmp_path / 'run',
    tmp_path / 'tfds',
    tiny_cnn,
    *FAST,
    case='original',
    arg=f'data=image_folder,manual_dir={folder}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert set(results['splits']) == {'test'} and results['relevance_mass_in_overlay'] is None
  assert 'skipped' in (tmp_path / 'run' / 'report.md').read_text()
  found = subprocess.run(
    [sys.executable, 'scripts/find_shortcuts.py', f'--workdir={tmp_path / "run"}'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert found.returncode == 0, found.stderr[-3000:]
  reveal = json.loads((tmp_path / 'run' / 'reveal' / 'reveal.json').read_text())
  assert reveal['ground_truth'] is None and 'no ground truth' in reveal['ground_truth_note']
  assert [c['name'] for c in reveal['classes']] == ['clean sheet', 'dents']
  text = (tmp_path / 'run' / 'reveal' / 'reveal.md').read_text()
  assert 'Ground truth: none' in text and '| dents |' in text
  # A chosen seed instead of the best; one the run never trained is named in the error.
  summary = case.find_shortcuts(str(tmp_path / 'run'), str(tmp_path / 'seed0'), model_seed=0)
  assert summary['model']['note'].endswith('seed 0 (chosen)')
  # One seed trained, so the best is seed 0 (as JSON: NaN, a cluster of one, equals itself).
  assert json.dumps(summary['classes']) == json.dumps(reveal['classes'])
  with pytest.raises(ValueError, match=r'trained seeds \[0\]; no seed 3'):
    case.find_shortcuts(str(tmp_path / 'run'), str(tmp_path / 'seed3'), model_seed=3)


def test_find_shortcuts_takes_the_reveal_settings_of_today_not_of_the_run(tmp_path, monkeypatch):
  # An Original saves the reveal defaults of its day; a reveal of it later uses today's (and
  # --set), the case's data and model as saved.
  seen = {}

  def fake_reveal(config, splits, *args, **kwargs):
    seen['reveal'], seen['data'] = config.reveal.to_dict(), config.data.to_dict()
    return {}

  saved = case_config.get_config('overlay_mode=poisoned')
  saved.reveal.localise, saved.reveal.min_clusters = 'relevance', 7
  (tmp_path / 'config.json').write_text(saved.to_json())

  class Trained:
    best_validation_f1, seeds = [0.5], [0]

    def variables_of(self, index):
      return {}

  monkeypatch.setattr(train_result, 'load_train_result', lambda _: Trained())
  monkeypatch.setattr(case.data_lib, 'load_splits', lambda _: {})
  monkeypatch.setattr(case.stage, 'reveal', fake_reveal)
  case.find_shortcuts(str(tmp_path), str(tmp_path / 'out'), {'reveal.max_regions': 5})
  today = case_config.get_config().reveal
  assert seen['reveal']['localise'] == today.localise != 'relevance'
  assert seen['reveal']['min_clusters'] == today.min_clusters
  assert seen['reveal']['max_regions'] == 5
  assert seen['data']['overlay_mode'] == 'poisoned'
