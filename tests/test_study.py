"""The study on a tiny config: both overlay settings, the report's tables, tests and verdicts."""

import json
import os
from pathlib import Path
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from xaijax import case_config, convergence, study
from xaijax.training import train_result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ('original', 'crop')  # the cheapest pair; generative's GAN would dominate the time
TINY = dict(resolution=32, class_scale=0.03, min_per_class=6, epochs=2, patience=1, batch=8)
# The study does not care which classifier it trains; a tiny one compiles in seconds.
TINY_MODEL = os.path.join(ROOT, 'tests', 'tiny_models.py') + ':TinyCnn'


def tiny_config_maker(data_dir):
  def make_config(case, arg):
    config = case_config.load_config_file(os.path.join(ROOT, 'configs', f'{case}.py'), arg)
    config.data.update(
      resolution=TINY['resolution'],
      class_scale=TINY['class_scale'],
      min_per_class=TINY['min_per_class'],
      data_dir=str(data_dir),
    )
    config.model.name = TINY_MODEL
    config.train.update(
      epochs=TINY['epochs'],
      patience=TINY['patience'],
      warmup_epochs=1,
      batch_size=TINY['batch'],
      progress_bar=False,
      tensorboard=False,
    )
    config.lrp.batch_size = 64
    config.quality.enabled = False  # the Original's table: test_main covers the stage
    return config

  return make_config


@pytest.fixture(scope='module')
def finished_study(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('study')
  make_config = tiny_config_maker(tmp / 'tfds')
  report = study.run_study(str(tmp / 'study'), CASES, 'seeds=2', make_config)
  return tmp / 'study', report, make_config


def test_each_setting_runs_every_case_with_its_own_overlays(finished_study):
  root, _, _ = finished_study
  for setting in study.SETTINGS:
    for case in CASES:
      results = json.loads((root / setting / case / 'results.json').read_text())
      assert results['settings']['data']['overlay_mode'] == setting
      assert results['seeds'] == [0, 1]
    assert (root / setting / 'fig9_validation_f1.png').stat().st_size > 1000
    assert (root / setting / 'fig5_remedies.png').stat().st_size > 1000


def test_report_shows_both_table3s_beside_the_papers_numbers(finished_study):
  root, report, _ = finished_study
  text = Path(report).read_text()
  assert '| case | paper (random overlays, GC10-DET) | ours, random | ours, spurious |' in text
  assert "## Setting: random overlays (the paper's setting)" in text
  assert '## Setting: spurious logos (the shortcut setting)' in text
  assert text.count('### Table 3: every case') == 2
  assert text.count('**The ordering these numbers support**') == 2
  for setting in study.SETTINGS:
    crop = json.loads((root / setting / 'crop' / 'results.json').read_text())
    row = crop['splits']['test']['f1']
    assert f'{row["mean"]:.2f} ± {row["std"]:.2f}' in text
  assert '| Crop | 0.51 ± 0.04 |' in text  # the paper's F1 beside ours


def test_report_p_values_are_welchs_on_the_per_seed_scores(finished_study):
  root, report, _ = finished_study
  text = Path(report).read_text()
  section = text.split('## Setting: spurious')[1].split('### Which differences are real')[1]
  per_seed = {
    case: json.loads((root / 'spurious' / case / 'results.json').read_text())['splits']['test'][
      'f1'
    ]['per_seed']
    for case in CASES
  }
  reference = stats.ttest_ind(per_seed['crop'], per_seed['original'], equal_var=False)
  interval = reference.confidence_interval(0.95)
  difference = np.mean(per_seed['crop']) - np.mean(per_seed['original'])
  row = re.search(r'\| Crop \| ([^|]+) \| ([^|]+) \|', section)
  assert row, section[:2000]
  expected = f'{difference:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]'
  if np.isfinite(reference.pvalue):
    assert row.group(1).strip() == expected
    p_text = row.group(2).strip()
    assert p_text == ('p < 0.001' if reference.pvalue < 0.001 else f'p = {reference.pvalue:.3f}')


def test_convergence_column_follows_the_rule_on_the_training_curves(finished_study):
  root, report, _ = finished_study
  text = Path(report).read_text().split('## Setting: spurious')[1]
  trained = train_result.load_train_result(str(root / 'spurious' / 'crop' / 'classifier'))
  verdict = convergence.verdict(trained.validation_f1, trained.stopped_epoch)
  assert f'| Crop | {verdict.epochs_run} |' in text
  assert verdict.describe() in text
  # 2 epochs are fewer than a plateau needs: converged exactly when every seed stopped early.
  assert verdict.converged == bool((trained.stopped_epoch > 0).all())


def test_a_case_on_the_same_bytes_in_both_settings_is_trained_once(finished_study):
  root, _, _ = finished_study

  def run_files(setting, case):
    run = root / setting / case / 'classifier'
    return run / train_result.RESULT_FILE, (run / train_result.DATA_DIGEST_FILE).read_text()

  # Crop cuts the strips, where the two settings' overlays differ: the same bytes remain.
  (random_crop, random_digest), (spurious_crop, spurious_digest) = (
    run_files(s, 'crop') for s in ('random', 'spurious')
  )
  assert random_digest == spurious_digest
  assert spurious_crop.read_text() == random_crop.read_text()
  # copied (shutil.copy2 keeps the modification time), not trained again to the same numbers
  assert spurious_crop.stat().st_mtime_ns == random_crop.stat().st_mtime_ns
  # The Original sees each setting's own overlays, so it trains in both.
  assert run_files('random', 'original')[1] != run_files('spurious', 'original')[1]


def test_one_setting_alone_reuses_finished_cases(finished_study):
  root, _, make_config = finished_study
  trained = root / 'random' / 'crop' / 'classifier' / 'train_result.json'
  before = trained.stat().st_mtime_ns
  report = study.run_study(str(root), CASES, 'seeds=2', make_config, settings=['random'])
  text = Path(report).read_text()
  assert '## Setting: random' in text and '## Setting: spurious' not in text
  assert '| case | paper (random overlays, GC10-DET) | ours, random |' in text
  assert trained.stat().st_mtime_ns == before  # not trained again


def test_setting_arg_adds_the_overlay_mode_and_the_studys_seeds():
  assert (
    study.setting_arg('', 'random') == f'overlay_mode=random,seeds={case_config.CPU_STUDY_SEEDS}'
  )
  assert study.setting_arg('seeds=8', 'spurious') == 'seeds=8,overlay_mode=spurious'
  assert study.setting_arg('paper', 'random') == 'paper,overlay_mode=random'
  with pytest.raises(ValueError, match='--settings'):
    study.setting_arg('overlay_mode=none', 'random')
  with pytest.raises(ValueError, match='unknown overlay setting'):
    study.setting_arg('', 'none')


def test_reproduce_paper_names_a_bad_setting(tmp_path):
  result = subprocess.run(
    [sys.executable, 'scripts/reproduce_paper.py', f'--workdir={tmp_path}', '--settings=sometimes'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode != 0 and "unknown setting(s) ['sometimes']" in result.stderr
