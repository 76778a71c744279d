"""The multi-seed classifier trainer on tiny data (16x16 images, 3 classes, a few epochs).

The reference run (3 seeds, vmap) is trained once per module; the other runs are compared to it.
"""

import functools
import json
import os
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import case_config, checkpoints, evaluation
from xaijax.models import registry
from xaijax.training import classifier, per_seed, seed_runners, train_result
from xaijax.training.early_stopping import init_early_stopping, update_early_stopping

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 3
# Parameters of seeds run through different programs (vmap over 3 seeds, or over 1) differ by
# float reassociation in the batched convolution: at most 1.2e-7 (absolute) after 5 epochs.
PARAMETER_TOLERANCE = dict(rtol=1e-5, atol=1e-6)


class TinyCNN(nn.Module):
  """MobileNet's interface in miniature: conv, BatchNorm, relu, mean-pool, dropout, dense."""

  num_classes: int = NUM_CLASSES
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(4, (3, 3), use_bias=False)(x)  # no bias before BatchNorm, as in MobileNet
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)


class TinyMLP(nn.Module):
  """No BatchNorm, no dropout: with a learning rate of 0, nothing in it ever changes."""

  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(x)


def to_model_input(images):
  return images.astype(jnp.float32) / 127.5 - 1.0


def make_split(count, seed):
  """Class 0 bright, class 1 dark, class 2 striped, under noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, NUM_CLASSES, count).astype(np.int32)
  images = rng.normal(128, 25, (count, 16, 16, 1))
  images[labels == 0] += 40
  images[labels == 1] -= 40
  images[labels == 2, :, ::2] += 40
  images[labels == 2, :, 1::2] -= 40
  return {'image': np.clip(images, 0, 255).astype(np.uint8), 'label': labels}


def make_splits():
  return {'train': make_split(48, 0), 'validation': make_split(24, 1)}


def base_config(**train_overrides):
  config = case_config.get_config('paper')
  config.model.update(num_classes=NUM_CLASSES, channels=1)
  config.train.update(
    seeds=3,
    batch_size=8,
    epochs=6,
    learning_rate=3e-2,
    patience=2,
    checkpoint_every=2,
    eval_batch_size=16,
    progress_bar=False,
    tensorboard=False,
  )
  config.train.update(train_overrides)
  return config


def mlp_config(**train_overrides):
  """The TinyMLP tests share one setup, so they share one compiled program."""
  return base_config(**{'seeds': 2, 'epochs': 8, **train_overrides})


def tiny(model=None):
  return registry.Classifier(model or TinyCNN(), to_model_input)


def train(config, workdir, model=None, **kwargs):
  return classifier.train_classifier(config, make_splits(), str(workdir), tiny(model), **kwargs)


def assert_same_result(actual, expected, exact=True):
  assert actual.seeds == expected.seeds
  assert actual.epochs_run == expected.epochs_run
  np.testing.assert_array_equal(actual.stopped_epoch, expected.stopped_epoch)
  np.testing.assert_array_equal(actual.best_epoch, expected.best_epoch)
  if exact:
    np.testing.assert_array_equal(actual.validation_f1, expected.validation_f1)
    np.testing.assert_array_equal(actual.train_loss, expected.train_loss)
    jax.tree.map(np.testing.assert_array_equal, actual.variables, expected.variables)
  else:
    np.testing.assert_allclose(actual.validation_f1, expected.validation_f1, rtol=1e-6)
    np.testing.assert_allclose(actual.train_loss, expected.train_loss, rtol=1e-5, atol=1e-6)
    jax.tree.map(
      functools.partial(np.testing.assert_allclose, **PARAMETER_TOLERANCE),
      actual.variables,
      expected.variables,
    )


def read_metrics(workdir):
  with open(os.path.join(workdir, classifier.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('reference')
  return workdir, train(base_config(), workdir)


@pytest.fixture(scope='module')
def killed_workdir(tmp_path_factory):
  """A run of the reference config killed after epoch 3 (its last checkpoint: epoch 2)."""
  workdir = tmp_path_factory.mktemp('killed')

  def kill_after_epoch_3(epoch, records):
    if epoch == 3:
      raise KeyboardInterrupt('simulated kill')

  with pytest.raises(KeyboardInterrupt):
    train(base_config(), workdir, on_epoch_end=kill_after_epoch_3)
  return workdir


def test_result_shapes_curves_and_workdir_files(reference):
  workdir, result = reference
  assert result.seeds == [0, 1, 2]
  assert 3 < result.epochs_run <= 6  # the resume test kills after epoch 3
  assert result.validation_f1.shape == result.train_loss.shape == (3, result.epochs_run)
  assert result.variables['params']['Conv_0']['kernel'].shape == (3, 3, 3, 1, 4)
  assert result.variables['batch_stats']['BatchNorm_0']['mean'].shape == (3, 4)
  assert result.variables['params']['Dense_0']['kernel'].shape == (3, 4, NUM_CLASSES)
  # The best score is the maximum of the curve, reached at the best epoch.
  np.testing.assert_allclose(np.nanmax(result.validation_f1, axis=1), result.best_validation_f1)
  rows = np.arange(3)
  np.testing.assert_array_equal(
    result.validation_f1[rows, result.best_epoch - 1], result.best_validation_f1
  )
  assert result.best_validation_f1.max() > 0.9, 'the tiny task should be learnable'
  # One metrics line per seed and trained epoch, the same numbers as the curves.
  records = read_metrics(workdir)
  assert len(records) == np.isfinite(result.validation_f1).sum()
  for record in records:
    assert record['validation_f1'] == pytest.approx(
      result.validation_f1[record['seed_index'], record['epoch'] - 1]
    )
  assert train_result.load_train_result(str(workdir)) is not None
  saved = checkpoints.PeriodicCheckpoints(os.path.join(workdir, classifier.CHECKPOINTS_DIR))
  assert saved.epochs() == [e for e in (2, 4, 6) if e <= result.epochs_run][-3:]
  saved.close()


def test_best_variables_reproduce_the_best_validation_f1(reference):
  _, result = reference
  scores = evaluation.evaluate_splits(
    TinyCNN(),
    result.variables,
    {'validation': make_splits()['validation']},
    preprocess=to_model_input,
    num_classes=NUM_CLASSES,
    batch_size=7,
  )
  np.testing.assert_allclose(
    scores['validation']['per_seed']['f1'], result.best_validation_f1, rtol=1e-6
  )


def test_same_config_gives_identical_numbers_and_seeds_differ(reference, tmp_path):
  _, expected = reference
  assert_same_result(train(base_config(), tmp_path), expected, exact=True)
  kernels = expected.variables['params']['Conv_0']['kernel']
  for a in range(3):
    for b in range(a + 1, 3):
      assert not np.allclose(kernels[a], kernels[b])
  assert len({tuple(row) for row in np.nan_to_num(expected.validation_f1).tolist()}) == 3


def test_first_seed_replicates_the_later_seeds_of_a_run(reference, tmp_path):
  _, expected = reference
  later = train(base_config(seeds=2, first_seed=1), tmp_path)
  assert list(later.seeds) == [1, 2]
  # Two seeds vmapped instead of three may order float sums differently.
  jax.tree.map(
    lambda got, want: np.testing.assert_allclose(got, want[1:], **PARAMETER_TOLERANCE),
    later.variables['params'],
    expected.variables['params'],
  )


def test_loop_strategy_gives_the_numbers_of_vmap(reference, tmp_path):
  _, expected = reference
  looped = train(base_config(seed_strategy='loop'), tmp_path)
  assert_same_result(looped, expected, exact=False)


def test_rerun_of_a_finished_workdir_returns_the_saved_result(reference):
  workdir, expected = reference
  epochs_seen = []
  again = train(base_config(), workdir, on_epoch_end=lambda epoch, _: epochs_seen.append(epoch))
  assert epochs_seen == []
  assert_same_result(again, expected, exact=True)


def test_resume_after_a_kill_ends_with_the_uninterrupted_metrics(
  reference, killed_workdir, tmp_path
):
  reference_dir, expected = reference
  workdir = tmp_path / 'run'
  shutil.copytree(killed_workdir, workdir)
  saved = checkpoints.PeriodicCheckpoints(os.path.join(workdir, classifier.CHECKPOINTS_DIR))
  assert saved.latest_epoch() == 2
  saved.close()
  epochs_seen = []
  resumed = train(base_config(), workdir, on_epoch_end=lambda epoch, _: epochs_seen.append(epoch))
  assert epochs_seen[0] == 3, 'resumes after the checkpoint of epoch 2'
  assert_same_result(resumed, expected, exact=True)
  assert read_metrics(workdir) == read_metrics(reference_dir)


def test_resume_with_the_other_seed_strategy(reference, killed_workdir, tmp_path):
  _, expected = reference
  workdir = tmp_path / 'run'
  shutil.copytree(killed_workdir, workdir)
  resumed = train(base_config(seed_strategy='loop'), workdir)
  assert_same_result(resumed, expected, exact=False)


def test_an_identical_run_is_copied_and_one_on_other_data_trains(reference, tmp_path):
  source, expected = reference
  epochs_seen = []
  copied = train(
    base_config(reuse_identical_run=str(source)),
    tmp_path / 'copy',
    on_epoch_end=lambda epoch, _: epochs_seen.append(epoch),
  )
  assert epochs_seen == [], 'the identical run was copied, not trained'
  assert_same_result(copied, expected, exact=True)
  assert (tmp_path / 'copy' / train_result.DATA_DIGEST_FILE).read_text() == (
    source / train_result.DATA_DIGEST_FILE
  ).read_text()
  # One pixel of one training image differs: the digest does, so the run trains.
  splits = make_splits()
  splits['train']['image'][0, 0, 0, 0] += 1
  classifier.train_classifier(
    base_config(reuse_identical_run=str(source), epochs=1),
    splits,
    str(tmp_path / 'other_data'),
    tiny(),
    on_epoch_end=lambda epoch, _: epochs_seen.append(epoch),
  )
  assert epochs_seen == [1]
  # The same data under another setup (here: fewer epochs) trains too.
  train(
    base_config(reuse_identical_run=str(source), epochs=1),
    tmp_path / 'other_setup',
    on_epoch_end=lambda epoch, _: epochs_seen.append(epoch),
  )
  assert epochs_seen == [1, 1]


def test_workdir_of_another_setup_is_refused(reference):
  workdir, _ = reference
  with pytest.raises(ValueError, match=r'different setup.*train'):
    train(base_config(learning_rate=0.5), workdir)


def test_the_seeds_are_fingerprinted_by_value_not_by_first_seed():
  splits, model = make_splits(), tiny()

  def fingerprint(**overrides):
    config = base_config(**overrides)
    seeds = classifier.seed_values(config.train)
    return train_result.run_fingerprint(config, seeds, model, splits)

  today = fingerprint(first_seed=0)
  assert 'first_seed' not in today['train'] and today['seeds'] == [0, 1, 2]
  before_first_seed = base_config()
  del before_first_seed.train['first_seed']
  assert train_result.run_fingerprint(before_first_seed, [0, 1, 2], model, splits) == today
  assert fingerprint(first_seed=1)['seeds'] == [1, 2, 3] != today['seeds']


def test_non_finite_loss_names_the_seed_and_step(tmp_path):
  config = base_config(learning_rate_per_seed=[3e-2, float('inf'), 3e-2])
  with pytest.raises(
    classifier.NonFiniteLossError, match=r'seed 1 \(position 1\).*epoch 1, step 2 of 6'
  ) as error:
    train(config, tmp_path)
  assert (error.value.seed, error.value.epoch, error.value.step) == (1, 1, 2)
  assert not os.path.exists(tmp_path / classifier.METRICS_FILE) or not read_metrics(tmp_path)
  assert train_result.load_train_result(str(tmp_path)) is None


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path):
  # Epochs 1-2 train on sane inputs (checkpoint at epoch 2), then the run is killed; the
  # restarted run's images turn into NaN, so epoch 3 fails at its first step. (TinyMLP, because
  # in TinyCNN's compiled program NaN inputs do not reach the loss: XLA:CPU's fused
  # relu-and-mean-pool returns 0 for them.)
  def kill_after_epoch_2(epoch, records):
    if epoch == 2:
      raise KeyboardInterrupt('simulated kill')

  with pytest.raises(KeyboardInterrupt):
    train(
      mlp_config(learning_rate=1e-2), tmp_path, model=TinyMLP(), on_epoch_end=kill_after_epoch_2
    )

  def nan_images(images):
    return to_model_input(images) * jnp.nan

  with pytest.raises(
    classifier.NonFiniteLossError,
    match=r'seed 0 .*epoch 3, step 1 .*last good checkpoint \(epoch 2\)',
  ):
    classifier.train_classifier(
      mlp_config(learning_rate=1e-2),
      make_splits(),
      str(tmp_path),
      registry.Classifier(TinyMLP(), nan_images),
    )
  saved = checkpoints.PeriodicCheckpoints(os.path.join(tmp_path, classifier.CHECKPOINTS_DIR))
  assert saved.latest_epoch() == 2
  saved.close()
  assert max(record['epoch'] for record in read_metrics(tmp_path)) == 2
  assert train_result.load_train_result(str(tmp_path)) is None


def test_early_stopping_stops_a_stalled_seed_while_another_goes_on(tmp_path):
  # Seed 0 cannot learn (learning rate 0, nothing else in the MLP moves), so its validation F1
  # is the same every epoch: best at epoch 1, stopped at epoch 1 + patience.
  config = mlp_config(learning_rate_per_seed=[0.0, 1e-2])
  result = train(config, tmp_path, model=TinyMLP())
  assert result.best_epoch[0] == 1
  assert result.stopped_epoch[0] == 3
  assert np.isnan(result.validation_f1[0, 3:]).all()
  assert result.epochs_run > 3 and np.isfinite(result.validation_f1[1, 3])
  assert result.stopped_epoch[1] == 0 or result.stopped_epoch[1] > 3
  assert result.best_validation_f1[1] > result.best_validation_f1[0]
  settings = per_seed.make_settings(config.train, tiny(TinyMLP()), NUM_CLASSES)
  initial = seed_runners.init_seed_states(
    [0], [0.0], make_splits()['train']['image'][:1], settings=settings, max_epochs=8
  )
  jax.tree.map(
    np.testing.assert_array_equal,
    result.variables_of(0)['params'],
    jax.tree.map(lambda x: x[0], initial['params']),
  )
  active = [record['active'] for record in read_metrics(tmp_path) if record['seed'] == 0]
  assert active == [True, True, False]


def test_initial_variables_are_where_every_seed_starts(tmp_path):
  splits = make_splits()
  given = TinyMLP().init(
    jax.random.PRNGKey(99), to_model_input(splits['train']['image'][:1]), train=False
  )
  given = {'params': {'Dense_0': given['params']['Dense_0']}}  # pretrained body, no head
  config = mlp_config(learning_rate=0.0)
  result = train(config, tmp_path, model=TinyMLP(), initial_variables=given)
  for seed in range(2):
    jax.tree.map(
      np.testing.assert_array_equal,
      result.variables_of(seed)['params']['Dense_0'],
      given['params']['Dense_0'],
    )
  heads = result.variables['params']['Dense_1']['kernel']
  assert not np.allclose(heads[0], heads[1]), 'the head keeps its per-seed initialisation'
  with pytest.raises(ValueError, match='Dense_7'):
    train(
      config,
      tmp_path / 'other',
      model=TinyMLP(),
      initial_variables={'params': {'Dense_7': given['params']['Dense_0']}},
    )


def test_a_stopped_seed_does_not_change_while_the_others_train():
  settings = per_seed.make_settings(base_config().train, tiny(), NUM_CLASSES)
  splits = make_splits()
  state = seed_runners.init_seed_states(
    [0, 1],
    [3e-2, 3e-2],
    splits['train']['image'][:1],
    settings=settings,
    max_epochs=4,
    active=[True, False],
  )
  train_data = {'image': splits['train']['image'], 'label': splits['train']['label']}
  validation_data = per_seed.prepare_eval_data(splits['validation'], 16)
  new_state, metrics = jax.jit(
    functools.partial(seed_runners.run_epoch_all_seeds, settings=settings)
  )(state, train_data, validation_data, jnp.int32(1))
  stopped = lambda tree: jax.tree.map(lambda x: np.asarray(x[1]), tree)
  jax.tree.map(np.testing.assert_array_equal, stopped(new_state), stopped(state))
  assert not np.allclose(
    new_state['params']['Conv_0']['kernel'][0], state['params']['Conv_0']['kernel'][0]
  )
  assert np.isnan(metrics['validation_f1'][1]) and np.isfinite(metrics['validation_f1'][0])
  assert list(metrics['trained']) == [True, False]


def _keras_early_stopping(scores, patience, min_delta):
  """Keras' EarlyStopping(mode='max') written out: (stopped epoch or 0, best, best epoch)."""
  best, best_epoch, wait = -np.inf, 0, 0
  for epoch, score in enumerate(scores, start=1):
    wait += 1
    if score - min_delta > best:
      best, best_epoch, wait = score, epoch, 0
      continue
    if wait >= patience:
      return epoch, best, best_epoch
  return 0, best, best_epoch


@pytest.mark.parametrize('trial', range(20))
def test_early_stopping_follows_the_keras_rules(trial):
  rng = np.random.default_rng(trial)
  patience = int(rng.integers(1, 5))
  min_delta = 1 / 64  # scores on a 1/64 grid: ties at exactly min_delta occur and are exact
  scores = rng.integers(0, 20, 30) / 64
  state = init_early_stopping()
  update = jax.jit(functools.partial(update_early_stopping, patience=patience, min_delta=min_delta))
  for epoch, score in enumerate(scores, start=1):
    state, _ = update(state, jnp.float32(score), epoch)
  stopped, best, best_epoch = _keras_early_stopping(scores, patience, min_delta)
  assert int(state['stopped_epoch']) == stopped
  assert bool(state['active']) == (stopped == 0)
  assert float(state['best_score']) == best
  assert int(state['best_epoch']) == best_epoch


def test_train_step_is_pure_and_lowers_the_loss_on_a_fixed_batch():
  settings = per_seed.make_settings(base_config().train, tiny(), NUM_CLASSES)
  splits = make_splits()
  state = per_seed.init_seed_state(
    jax.random.PRNGKey(0), 3e-2, splits['train']['image'][:1], settings=settings, max_epochs=1
  )
  batch = {'image': splits['train']['image'][:16], 'label': splits['train']['label'][:16]}
  step = jax.jit(functools.partial(per_seed.train_step, settings=settings))
  first, first_metrics = step(state, batch)
  again, _ = step(state, batch)
  jax.tree.map(np.testing.assert_array_equal, first['params'], again['params'])
  losses = [float(first_metrics['loss'])]
  for _ in range(40):
    first, metrics = step(first, batch)
    losses.append(float(metrics['loss']))
  assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
  'splits_change, message',
  [
    (lambda s: s.pop('validation'), "needs a 'validation' split"),
    (lambda s: s['train'].update(image=s['train']['image'].astype(np.float32)), 'must be uint8'),
    (lambda s: s['train'].update(label=s['train']['label'] + 5), r'must lie in \[0, 3\)'),
    (lambda s: s['validation'].update(image=s['validation']['image'][:, :8]), 'differ in size'),
  ],
)
def test_bad_splits_are_explained(splits_change, message, tmp_path):
  splits = make_splits()
  splits_change(splits)
  with pytest.raises(ValueError, match=message):
    classifier.train_classifier(base_config(), splits, str(tmp_path), tiny())


def test_bad_config_is_explained(tmp_path):
  with pytest.raises(ValueError, match="'vmap' or 'loop'"):
    train(base_config(seed_strategy='pmap'), tmp_path / 'a')
  with pytest.raises(ValueError, match='one rate per seed'):
    train(base_config(learning_rate_per_seed=[1e-3, 1e-3]), tmp_path / 'b')


_SHARDED_SCRIPT = """
import json, tempfile, jax, numpy as np
from tests import test_classifier as t
assert jax.local_device_count() == 4, jax.devices()
def run(**overrides):
  workdir = tempfile.mkdtemp()
  result = t.train(t.base_config(**overrides), workdir)
  with open(workdir + '/train_result.json') as f:
    return result, json.load(f)
sharded, sharded_info = run(seeds=4)
single, single_info = run(seeds=4, devices=1)
padded, padded_info = run(seeds=3, data_parallel=1)  # 1-D: 4 slots, 1 idle
assert (sharded_info['devices'], single_info['devices'], padded_info['devices']) == (4, 1, 4)
assert padded_info['padding_seeds'] == 1
t.assert_same_result(sharded, single, exact=False)
def first(result, count, epochs_run):  # the first seeds, as a run of epochs_run epochs
  return t.train_result.TrainResult(
    seeds=result.seeds[:count], variables=jax.tree.map(lambda x: x[:count], result.variables),
    validation_f1=result.validation_f1[:count, :epochs_run],
    train_loss=result.train_loss[:count, :epochs_run],
    best_validation_f1=result.best_validation_f1[:count], best_epoch=result.best_epoch[:count],
    stopped_epoch=result.stopped_epoch[:count], epochs_run=epochs_run)
t.assert_same_result(padded, first(single, 3, padded.epochs_run), exact=False)
# A padded run killed after epoch 3 resumes from its checkpoint of epoch 2 (real seeds only).
workdir = tempfile.mkdtemp()
def kill(epoch, records):
  if epoch == 3:
    raise KeyboardInterrupt
try:
  t.train(t.base_config(seeds=3, data_parallel=1), workdir, on_epoch_end=kill)
except KeyboardInterrupt:
  pass
resumed = t.train(t.base_config(seeds=3, data_parallel=1), workdir)
t.assert_same_result(resumed, padded, exact=True)
# Fewer seeds than devices: 2 seeds on a 2 x 2 mesh, each seed's batch split over 2 devices
# ('data'); gradients and BatchNorm statistics are summed across them: only the float order
# changes (measured: parameters within 3.6e-7 after 3 epochs, also on a 1 x 4 mesh).
split, split_info = run(seeds=2)
assert split_info['mesh'] == {'seeds': 2, 'data': 2}, split_info
t.assert_same_result(split, first(single, 2, split.epochs_run), exact=False)
# The split is real: that epoch program sums across devices; the 1-D one (4 seeds) does not.
splits = t.make_splits()
for seeds, collective in ((2, True), (4, False)):
  config = t.base_config(seeds=seeds)
  settings = t.per_seed.make_settings(config.train, t.tiny(), t.NUM_CLASSES)
  runner = t.seed_runners.make_runner(config.train, settings, seeds, 6)
  state = runner.init_states(list(range(seeds)), [0.03] * seeds, splits['train']['image'][:1],
                             max_epochs=6, active=[True] * seeds)
  data = runner.place_data({'image': splits['train']['image'], 'label': splits['train']['label']})
  validation = runner.place_data(t.per_seed.prepare_eval_data(splits['validation'], 16))
  epoch = jax.device_put(np.int32(1), runner.replicated)
  hlo = runner._run.lower(state, data, validation, epoch).compile().as_text()
  assert ('all-reduce' in hlo) == collective, (seeds, collective)
print('SHARDED_OK')
"""


def test_four_sharded_seeds_equal_unsharded_in_a_four_device_subprocess():
  env = dict(
    os.environ,
    XLA_FLAGS='--xla_force_host_platform_device_count=4',
    JAX_PLATFORMS='cpu',
    PYTHONPATH=REPO_ROOT,
  )
  completed = subprocess.run(
    [sys.executable, '-c', _SHARDED_SCRIPT],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert completed.returncode == 0 and 'SHARDED_OK' in completed.stdout, completed.stderr[-4000:]


@pytest.mark.parametrize(
  'devices, seeds, batch, data_parallel, expected',
  [
    (1, 30, 16, 0, (1, 1)),
    (8, 30, 16, 0, (8, 1)),  # seeds fill the devices: no batch is split
    (8, 3, 16, 0, (1, 8)),  # 3 slots: fewer than 2 x 4 devices' 4 (one idle)
    (8, 1, 16, 0, (1, 8)),
    (6, 4, 16, 0, (6, 1)),  # 'data' 3 does not divide 16; 2 x 3 and 6 x 1 both take 6 slots
    (4, 2, 6, 0, (2, 2)),
    (4, 1, 6, 0, (2, 2)),  # 'data' 4 does not divide 6: one idle slot
    (8, 30, 16, 2, (4, 2)),  # asked for
  ],
)
def test_mesh_shape_spreads_few_seeds_over_the_batch(
  devices, seeds, batch, data_parallel, expected
):
  assert seed_runners.mesh_shape(devices, seeds, batch, data_parallel) == expected


def test_mesh_shape_refuses_a_data_axis_that_does_not_divide():
  with pytest.raises(
    ValueError, match=r'data_parallel = 3 must divide the number of devices \(8\)'
  ):
    seed_runners.mesh_shape(8, 2, 16, 3)
  with pytest.raises(ValueError, match=r'batch_size \(6\)'):
    seed_runners.mesh_shape(8, 2, 6, 4)


def test_packed_slot_counts_are_powers_of_two_per_device():
  counts = [seed_runners.packed_slot_count(n, 1, 30) for n in range(31)]
  assert sorted(set(counts)) == [1, 2, 4, 8, 16, 30], 'six programs for a 30-seed sweep at most'
  assert all(count >= max(n, 1) for n, count in enumerate(counts))
  assert [counts[n] for n in (1, 2, 3, 5, 9, 16, 17, 30)] == [1, 2, 4, 8, 16, 16, 30, 30]
  assert seed_runners.packed_slot_count(1, 4, 32) == 4, 'one slot per seed device at least'
  assert seed_runners.packed_slot_count(9, 4, 32) == 16


@pytest.fixture(scope='module')
def seeds_0_and_2_trained_two_epochs():
  """Seed 1 of 3 stopped from the start; two epochs with and without repacking (the reference
  run's shapes, so its compiled programs)."""
  settings = per_seed.make_settings(base_config().train, tiny(), NUM_CLASSES)
  splits = make_splits()
  runs = {}
  for repack in (True, False):
    runner = seed_runners.VmapSeeds(settings, jax.devices()[:1], 3, repack_stopped_seeds=repack)
    state = runner.init_states(
      [0, 1, 2], [3e-2] * 3, splits['train']['image'][:1], max_epochs=6, active=[True, False, True]
    )
    initial = jax.device_get(state)
    data = runner.place_data({'image': splits['train']['image'], 'label': splits['train']['label']})
    validation = runner.place_data(per_seed.prepare_eval_data(splits['validation'], 16))
    for epoch in (1, 2):
      state, metrics = runner.run_epoch(state, data, validation, epoch)
    runs[repack] = (initial, jax.device_get(state), jax.device_get(metrics), runner.slots_run)
  return runs


def test_repacked_seeds_train_to_the_same_parameters(seeds_0_and_2_trained_two_epochs):
  runs = seeds_0_and_2_trained_two_epochs
  (_, packed, packed_metrics, packed_slots), (_, full, full_metrics, full_slots) = (
    runs[True],
    runs[False],
  )
  assert (packed_slots, full_slots) == (2 * 2, 2 * 3), 'two slots per epoch instead of three'
  # A program over fewer seeds may order float sums differently (as vmap over 3 or 1 seeds
  # does). Measured after 2 epochs: parameters within 1.5e-8 going from 3 slots to 2 (bit for bit
  # equal going from 4 to 2), the per-step loss within 6e-8; decisions (F1, stopping) equal.
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, **PARAMETER_TOLERANCE),
    packed['params'],
    full['params'],
  )
  jax.tree.map(np.testing.assert_array_equal, packed['early_stopping'], full['early_stopping'])
  np.testing.assert_array_equal(packed_metrics['validation_f1'], full_metrics['validation_f1'])
  np.testing.assert_array_equal(packed_metrics['trained'], [True, False, True])
  np.testing.assert_allclose(packed_metrics['train_loss'], full_metrics['train_loss'], atol=1e-7)


def test_repacking_leaves_the_stopped_seeds_alone(seeds_0_and_2_trained_two_epochs):
  initial, packed, packed_metrics, _ = seeds_0_and_2_trained_two_epochs[True]
  stopped = lambda tree: jax.tree.map(lambda x: np.asarray(x)[1], tree)
  jax.tree.map(np.testing.assert_array_equal, stopped(packed), stopped(initial))
  assert np.isnan(packed_metrics['train_loss'][1]).all()
  kernels = packed['params']['Conv_0']['kernel'], initial['params']['Conv_0']['kernel']
  assert not np.allclose(kernels[0][0], kernels[1][0])


def test_a_sweep_whose_seeds_stop_apart_repacks_with_the_same_results(reference, tmp_path):
  _, expected = reference
  assert len(set(expected.stopped_epoch.tolist())) > 1, 'the seeds stop at different epochs'
  unpacked = train(base_config(repack_stopped_seeds=False), tmp_path)
  assert_same_result(expected, unpacked, exact=False)
  np.testing.assert_array_equal(expected.validation_f1, unpacked.validation_f1)
  computed = [
    json.loads((path / train_result.RESULT_FILE).read_text())['slot_epochs_computed']
    for path in (reference[0], tmp_path)
  ]
  active_seed_epochs = int(np.isfinite(expected.validation_f1).sum())
  assert computed[0] < computed[1] == 3 * expected.epochs_run
  assert computed[0] >= active_seed_epochs


def test_mobilenet_at_a_tiny_size_trains(tmp_path):
  pytest.importorskip('xaijax.models.mobilenet')
  config = base_config(seeds=1, epochs=1, checkpoint_every=1, eval_batch_size=32)
  config.model.update(alpha=0.25, dropout_rate=0.1, depthwise_impl='shifted', channels=1)
  config.model.num_classes = NUM_CLASSES
  # MobileNet needs at least 32x32 pixels.
  splits = {
    name: {'image': np.repeat(np.repeat(split['image'], 2, 1), 2, 2), 'label': split['label']}
    for name, split in make_splits().items()
  }
  result = classifier.train_classifier(config, splits, str(tmp_path))
  assert result.epochs_run == 1 and np.isfinite(result.validation_f1).all()
  assert result.variables['params']['conv_preds']['kernel'].shape[::2] == (1, NUM_CLASSES)
  assert 'conv_dw_13_bn' in result.variables['batch_stats']
  mobilenet = registry.build(config.model)
  logits = evaluation.predict(
    mobilenet.module,
    result.variables,
    splits['validation']['image'],
    preprocess=mobilenet.preprocess,
  )
  assert logits.shape == (1, 24, NUM_CLASSES)
  np.testing.assert_allclose(
    evaluation.evaluate_logits(logits, splits['validation']['label'], NUM_CLASSES)['per_seed'][
      'f1'
    ],
    result.best_validation_f1,
    rtol=1e-6,
  )
