"""End to end: main.py on a tiny config, as a user runs it."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
  '--config.data.resolution=32',
  '--config.data.class_scale=0.03',
  '--config.data.min_per_class=6',
  '--config.model.alpha=0.25',
  '--config.train.epochs=2',
  '--config.train.seeds=2',
  '--config.train.batch_size=8',
  '--config.train.progress_bar=False',
  "--config.quality.explainers=('gradient', 'random', 'lrp_epsilon')",
  '--config.quality.images=4',
  '--config.quality.mprt_cuts=2',
  '--config.quality.regions=4',
  '--config.quality.faithfulness_runs=8',
]


def run_main(workdir, data_dir, *overrides, case='original', arg=''):
  command = [
    sys.executable,
    'main.py',
    f'--config=configs/{case}.py' + (f':{arg}' if arg else ''),
    f'--workdir={workdir}',
    f'--config.data.data_dir={data_dir}',
    *TINY,
    *overrides,
  ]
  return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('main')
  result = run_main(tmp / 'run', tmp / 'tfds', case='black_stripe')
  assert result.returncode == 0, result.stderr[-3000:]
  return tmp


def test_results_json_has_every_split_seed_and_the_relevance_share(finished_run):
  results = json.loads((finished_run / 'run' / 'results.json').read_text())
  assert results['case'] == 'black_stripe' and results['seeds'] == [0, 1]
  for split in ('test', 'test_clean', 'test_attacked'):
    for metric in ('f1', 'precision', 'recall'):
      row = results['splits'][split][metric]
      assert len(row['per_seed']) == 2 and all(0.0 <= v <= 1.0 for v in row['per_seed'])
      assert abs(row['mean'] - sum(row['per_seed']) / 2) < 1e-9
  for region in ('overlay', 'strips', 'defect'):
    share = results[f'relevance_mass_in_{region}']
    assert 0.0 <= share['mean'] <= 1.0 and len(share['per_seed']) == 2
  validation = results['validation_relevance_mass_in_overlay']
  assert 0.0 <= validation['mean'] <= 1.0 and len(validation['per_seed']) == 2
  assert results['wall_time_seconds']['total'] > 0
  for name in (
    'report.md',
    'validation_f1.png',
    'lrp_examples.png',
    'lrp_class_means.png',
    'dataset_classes.png',
    'dataset_remedies.png',
  ):
    assert (finished_run / 'run' / name).stat().st_size > 500, name
  report = (finished_run / 'run' / 'report.md').read_text()
  assert '| test (as distributed) |' in report
  assert f'validation images, what a sweep may choose by: {validation["mean"]:.3f}' in report


def test_explanation_quality_table_lands_in_results_and_report(finished_run):
  quality = json.loads((finished_run / 'run' / 'results.json').read_text())['explanation_quality']
  assert quality['explainers'] == ['gradient', 'random', 'lrp_epsilon']
  random_mprt = quality['table']['random']['MPRT']
  # It ignores the model: its maps are the same after randomisation (Spearman 1 in float32).
  assert abs(random_mprt['mean'] - 1.0) < 1e-4 and len(random_mprt['per_seed']) == 2
  assert quality['supported_explainer'] != 'random' and 'random fails' in quality['verdict']
  report = (finished_run / 'run' / 'report.md').read_text()
  assert '## Can the heatmaps be trusted?' in report and quality['verdict'] in report
  assert '| lrp_epsilon | ' in report
  assert (finished_run / 'run' / 'explanation_quality.png').stat().st_size > 10_000


def test_a_rerun_skips_finished_stages_and_gives_the_same_results(finished_run):
  before = json.loads((finished_run / 'run' / 'results.json').read_text())
  again = run_main(finished_run / 'run', finished_run / 'tfds', case='black_stripe')
  assert again.returncode == 0, again.stderr[-3000:]
  after = json.loads((finished_run / 'run' / 'results.json').read_text())
  assert after['splits'] == before['splits']
  assert after['relevance_mass_in_overlay'] == before['relevance_mass_in_overlay']
  assert after['explanation_quality'] == before['explanation_quality']


def test_bad_config_fails_at_start_saying_what_to_change(tmp_path):
  typo = run_main(tmp_path / 'run', tmp_path / 'tfds', '--config.data.resolutoin=64')
  assert typo.returncode != 0 and 'resolutoin' in typo.stderr
  negative = run_main(tmp_path / 'run', tmp_path / 'tfds', '--config.train.epochs=-3')
  assert negative.returncode != 0 and 'train.epochs=-3: must be at least 1' in negative.stderr
  tiny = run_main(tmp_path / 'run', tmp_path / 'tfds', '--config.data.resolution=16')
  assert tiny.returncode != 0 and 'at least 32' in tiny.stderr
  missing = run_main(
    tmp_path / 'run',
    tmp_path / 'tfds',
    '--config.data.name=gc10_det',
    f'--config.data.manual_dir={tmp_path}/no_such_folder',
  )
  assert (
    missing.returncode != 0
    and 'no_such_folder' in missing.stderr
    and "'1' ... '10'" in missing.stderr
  )
