"""The CPU config's cosine learning-rate schedule; the paper's protocol keeps a constant rate."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xaijax import case_config, config_checks
from xaijax.training import per_seed


def settings_with(schedule, warmup, epochs, model=None):
  return per_seed.Settings(
    model=model,
    optimizer=per_seed.make_optimizer(0.9),
    preprocess=lambda x: x,
    num_classes=3,
    batch_size=4,
    patience=5,
    min_delta=0.001,
    learning_rate_schedule=schedule,
    warmup_epochs=warmup,
    schedule_epochs=epochs,
  )


def test_cosine_scale_follows_the_formula_and_constant_is_one():
  warmup, epochs = 2, 12
  settings = settings_with('cosine', warmup, epochs)
  scales = [float(per_seed.learning_rate_scale(e, settings)) for e in range(1, epochs + 1)]
  expected = [e / warmup for e in range(1, warmup + 1)] + [
    0.5 * (1 + math.cos(math.pi * (e - warmup - 1) / (epochs - warmup)))
    for e in range(warmup + 1, epochs + 1)
  ]
  np.testing.assert_allclose(scales, expected, atol=1e-6)
  assert scales[-1] > 0 and all(a >= b for a, b in zip(scales[warmup:], scales[warmup + 1 :]))
  # A run shorter than its warm-up only warms up (tiny test configs run 2 epochs).
  short = settings_with('cosine', 3, 2)
  assert [float(per_seed.learning_rate_scale(e, short)) for e in (1, 2)] == pytest.approx(
    [1 / 3, 2 / 3]
  )
  constant = settings_with('constant', 0, epochs)
  assert [float(per_seed.learning_rate_scale(e, constant)) for e in (1, 7, 12)] == [1.0] * 3


def test_a_schedule_shorter_than_the_run_holds_its_last_rate():
  warmup, schedule_epochs, epochs = 2, 8, 12
  settings = settings_with('cosine', warmup, schedule_epochs)
  scales = [float(per_seed.learning_rate_scale(e, settings)) for e in range(1, epochs + 1)]
  decay = [
    0.5 * (1 + math.cos(math.pi * (e - warmup - 1) / (schedule_epochs - warmup)))
    for e in range(warmup + 1, schedule_epochs + 1)
  ]
  expected = (
    [e / warmup for e in range(1, warmup + 1)] + decay + [decay[-1]] * (epochs - schedule_epochs)
  )
  np.testing.assert_allclose(scales, expected, atol=1e-6)
  assert 0 < decay[-1] < decay[-2]


@pytest.mark.parametrize(
  ('schedule_epochs', 'epochs', 'spans'), [(0, 12, 12), (8, 12, 8), (40, 2, 2), (12, 12, 12)]
)
def test_schedule_epochs_from_the_config(schedule_epochs, epochs, spans):
  config = case_config.get_config()
  config.train.epochs = epochs
  config.train.schedule_epochs = schedule_epochs
  classifier = type('Classifier', (), {'module': None, 'preprocess': None})
  assert per_seed.make_settings(config.train, classifier, 3).schedule_epochs == spans


def test_paper_config_keeps_a_constant_rate_and_cpu_config_decays():
  assert case_config.get_config('paper').train.learning_rate_schedule == 'constant'
  assert case_config.get_config().train.learning_rate_schedule == 'cosine'
  config = case_config.get_config()
  config.train.warmup_epochs = -1
  with pytest.raises(ValueError, match='warmup_epochs'):
    config_checks.validate(config)
  config = case_config.get_config()
  config.train.schedule_epochs = -1
  with pytest.raises(ValueError, match='schedule_epochs'):
    config_checks.validate(config)
  config = case_config.get_config()
  config.train.learning_rate_schedule = 'step'
  with pytest.raises(ValueError, match='learning_rate_schedule'):
    config_checks.validate(config)


class Linear:
  """A stateless model stand-in with Linen's apply signature (no batch_stats, no dropout)."""

  def apply(self, variables, x, train, rngs, mutable):
    del train, rngs, mutable
    return x.reshape(x.shape[0], -1) @ variables['params']['w'], {}


def test_a_scaled_step_is_adam_at_the_scaled_rate():
  settings = settings_with('cosine', 0, 4, model=Linear())
  rng = np.random.default_rng(0)
  params = {'w': jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)}
  batch = {
    'image': jnp.asarray(rng.normal(size=(4, 2, 2, 2)), jnp.float32),
    'label': jnp.asarray([0, 1, 2, 1]),
  }
  opt_state = settings.optimizer.init(params)
  opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, 'learning_rate': 0.01})
  state = {'params': params, 'batch_stats': {}, 'opt_state': opt_state, 'rng': jax.random.key(0)}
  step = jax.jit(functools.partial(per_seed.train_step, settings=settings))
  stepped, _ = step(state, batch, jnp.float32(0.25))
  # Reference: plain optax Adam at 0.01 * 0.25 on the same loss.
  reference = optax.adam(0.0025, b1=0.9)

  def loss(p):
    logits = batch['image'].reshape(4, -1) @ p['w']
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()

  updates, _ = reference.update(jax.grad(loss)(params), reference.init(params), params)
  np.testing.assert_allclose(
    stepped['params']['w'], optax.apply_updates(params, updates)['w'], rtol=1e-5, atol=1e-7
  )
