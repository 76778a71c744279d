"""Pure functions of one seed's train state; vmap them over a leading seed axis (purejaxrl style).

The paper's recipe (Adam, lr 1e-3, beta1 0.9, batch 16, early stopping on the validation macro-F1,
best weights restored) as functions of one seed, with an optional learning-rate schedule over the
epochs (`learning_rate_scale`; the paper's is constant):

    run_epoch(state, train_data, validation_data, epoch, settings) -> (state, metrics)

`run_epoch` shuffles the training set with the seed's own key, runs `train_step` over the batches
in a `lax.scan`, scores the validation set (macro-F1, in the program), and updates the seed's
early-stopping state; a seed that has stopped keeps its state unchanged (a mask), so its best
variables stay what they were.

Every epoch drops the last `len(train) % batch_size` images of that epoch's permutation, so all
steps have one static shape (a different remainder is dropped each epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from xaijax import evaluation
from xaijax.training.early_stopping import init_early_stopping, update_early_stopping

_STEP_KEYS = ('params', 'batch_stats', 'opt_state', 'rng')  # the part of a state train_step uses


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the pure training functions need besides arrays; bind it with functools.partial."""

  model: nn.Module
  optimizer: optax.GradientTransformation
  preprocess: Callable[[jax.Array], jax.Array]  # uint8 images -> model input
  num_classes: int
  batch_size: int
  patience: int
  min_delta: float
  learning_rate_schedule: str = 'constant'  # one of LEARNING_RATE_SCHEDULES
  warmup_epochs: int = 0
  # The epochs a schedule's decay spans (config.train.schedule_epochs, else config.train.epochs);
  # later epochs keep the rate of its last one.
  schedule_epochs: int = 1
  # How one seed's batch lies over devices: PartitionSpec(<data axis>) of a seeds x data mesh
  # (seed_runners). None leaves it to the compiler (each seed's batch on one device).
  batch_sharding: jax.sharding.NamedSharding | None = None
  # A model correction's term of the loss (xaijax/corrections); None is plain training. Called as
  # penalty(forward, variables, inputs, batch) -> (logits, batch_stats, value): `forward(variables,
  # inputs, **model_kwargs) -> (logits, batch_stats)` is the model in training mode with this step's
  # dropout key, `variables` = {'params': the parameters being differentiated, 'batch_stats'}, and
  # `value` is added to the cross-entropy of `logits`. Hashable (a frozen dataclass), so programs
  # are cached per penalty; the arrays it reads from `batch` besides image and label are named in
  # its `batch_keys`.
  penalty: Callable | None = None


LEARNING_RATE_SCHEDULES = ('constant', 'cosine')


@functools.cache
def make_optimizer(b1: float) -> optax.GradientTransformation:
  """Adam whose learning rate lives in the optimiser state, so every seed can have its own.

  The rate a step uses is that seed's rate times `learning_rate_scale(epoch)`: Adam's update is
  linear in the rate, so `train_step` scales the update. Cached, so equal settings compare equal
  and reuse their compiled programs.
  """
  return optax.inject_hyperparams(optax.adam)(learning_rate=0.0, b1=b1)


def learning_rate_scale(epoch, settings: Settings):
  """The factor on every seed's learning rate during epoch `epoch` (1-based).

  'constant': 1. 'cosine': a linear warm-up over `warmup_epochs` (1/W, 2/W, ..., 1), then half a
  cosine from 1 down towards 0, reaching 1/2 (1 + cos(pi (S - W - 1) / (S - W))) in epoch S
  (`schedule_epochs`), so every epoch still learns and the last ones barely move the weights.
  Epochs after S keep that last, small factor: with S a patience before the epoch limit, early
  stopping has room to see the plateau the decay ends on.
  """
  if settings.learning_rate_schedule == 'constant':
    return jnp.float32(1.0)
  epoch = jnp.asarray(epoch, jnp.float32)
  warmup = float(settings.warmup_epochs)
  decay_epochs = max(1.0, settings.schedule_epochs - warmup)
  last_progress = (decay_epochs - 1.0) / decay_epochs
  progress = jnp.clip((epoch - warmup - 1.0) / decay_epochs, 0.0, last_progress)
  cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
  if warmup > 0:
    cosine = jnp.where(epoch <= warmup, epoch / warmup, cosine)
  return cosine.astype(jnp.float32)


def make_settings(train_config, classifier, num_classes: int) -> Settings:
  """Settings from `config.train` and a `registry.Classifier` (module and preprocessing)."""
  return Settings(
    model=classifier.module,
    optimizer=make_optimizer(float(train_config.b1)),
    preprocess=classifier.preprocess,
    num_classes=num_classes,
    batch_size=int(train_config.batch_size),
    patience=int(train_config.patience),
    min_delta=float(train_config.min_delta),
    learning_rate_schedule=str(train_config.learning_rate_schedule),
    warmup_epochs=int(train_config.warmup_epochs),
    schedule_epochs=min(
      int(train_config.schedule_epochs or train_config.epochs), int(train_config.epochs)
    ),
  )


# ----------------------------------------------------------------------------------------------
# Pure functions of one seed (vmap them over a leading seed axis).


def init_seed_state(
  key, learning_rate, sample_images, *, settings: Settings, max_epochs: int, active=True
) -> dict:
  """A fresh train state for one seed: its own initialisation, data-order and dropout keys."""
  init_key, train_key = jax.random.split(key)
  params_key, dropout_key = jax.random.split(init_key)
  variables = settings.model.init(
    {'params': params_key, 'dropout': dropout_key}, settings.preprocess(sample_images), train=False
  )
  params = variables['params']
  batch_stats = variables.get('batch_stats', {})
  opt_state = settings.optimizer.init(params)
  opt_state = opt_state._replace(
    hyperparams={**opt_state.hyperparams, 'learning_rate': jnp.asarray(learning_rate, jnp.float32)}
  )
  no_history = jnp.full((max_epochs,), jnp.nan, jnp.float32)
  return {
    'params': params,
    'batch_stats': batch_stats,
    'opt_state': opt_state,
    'rng': train_key,
    'best': {'params': params, 'batch_stats': batch_stats},
    'early_stopping': init_early_stopping(active),
    'history': {'train_loss': no_history, 'validation_f1': no_history},
  }


def lay_out_batch(inputs, settings: Settings):
  """`inputs` split over `settings.batch_sharding` when it divides their batch, else as they are.

  Only the layout changes; the numbers are the same up to the order of float sums (the batch
  statistics and gradients are then summed across devices).
  """
  sharding = settings.batch_sharding
  if sharding is None or inputs.shape[0] % sharding.mesh.shape[sharding.spec[0]]:
    return inputs
  return jax.lax.with_sharding_constraint(inputs, sharding)


def train_step(state: dict, batch: dict, learning_rate_scale=None, *, settings: Settings):
  """One Adam step of one seed on `batch = {'image': uint8 [B,H,W,1], 'label': int [B], ...}`,
  at the seed's learning rate times `learning_rate_scale` (None: 1).

  Uses and advances `state['rng']` (dropout); returns `(state, {'loss', 'accuracy'})`.
  """
  rng, dropout_rng = jax.random.split(state['rng'])
  inputs = lay_out_batch(settings.preprocess(batch['image']), settings)

  def forward(variables, model_inputs, **model_kwargs):
    logits, updates = settings.model.apply(
      variables,
      model_inputs,
      **{'train': True, **model_kwargs},
      rngs={'dropout': dropout_rng},
      mutable=['batch_stats'],
    )
    return logits, updates.get('batch_stats', {})

  def loss_fn(params):
    variables = {'params': params, 'batch_stats': state['batch_stats']}
    if settings.penalty is None:
      logits, batch_stats = forward(variables, inputs)
      penalty = None
    else:
      logits, batch_stats, penalty = settings.penalty(forward, variables, inputs, batch)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    if penalty is not None:
      loss = loss + penalty
    return loss, (logits, batch_stats)

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
  updates, opt_state = settings.optimizer.update(grads, state['opt_state'], state['params'])
  if learning_rate_scale is not None:
    updates = jax.tree.map(lambda update: update * learning_rate_scale, updates)
  params = optax.apply_updates(state['params'], updates)
  accuracy = (logits.argmax(-1) == batch['label']).mean()
  new_state = {
    **state,
    'params': params,
    'batch_stats': batch_stats,
    'opt_state': opt_state,
    'rng': rng,
  }
  return new_state, {'loss': loss, 'accuracy': accuracy}


def train_epoch(state: dict, train_data: dict, learning_rate_scale=None, *, settings: Settings):
  """One pass over a fresh permutation of `train_data`; returns `(state, losses [steps])`."""
  num_images = train_data['label'].shape[0]
  num_steps = num_images // settings.batch_size
  rng, permutation_rng = jax.random.split(state['rng'])
  order = jax.random.permutation(permutation_rng, num_images)
  batches = order[: num_steps * settings.batch_size].reshape(num_steps, settings.batch_size)

  def step(carry, indices):
    # Every per-image array travels with its images (a correction's masks, say).
    batch = {key: values[indices] for key, values in train_data.items()}
    return train_step(carry, batch, learning_rate_scale, settings=settings)

  # Only what a step changes goes through the scan; best variables and history stay outside.
  carry = {key: state[key] for key in _STEP_KEYS}
  carry['rng'] = rng
  carry, step_metrics = jax.lax.scan(step, carry, batches)
  return {**state, **carry}, step_metrics['loss']


def validation_macro_f1(variables: dict, eval_data: dict, *, settings: Settings):
  """Macro-F1 on `eval_data = {'image': [B, b, H, W, 1], 'label': [B, b], 'valid': [B, b]}`."""

  def predict_batch(images):
    inputs = lay_out_batch(settings.preprocess(images), settings)
    logits = settings.model.apply(variables, inputs, train=False)
    return logits.argmax(-1)

  predictions = jax.lax.map(predict_batch, eval_data['image'])
  confusion = evaluation.confusion_matrix(
    eval_data['label'], predictions, settings.num_classes, weights=eval_data['valid']
  )
  return evaluation.macro_scores(confusion)['f1']


def run_epoch(state: dict, train_data: dict, validation_data: dict, epoch, *, settings: Settings):
  """Epoch `epoch` (1-based) of one seed: train, score, early-stopping bookkeeping.

  A seed that is no longer active comes back unchanged and reports NaN.
  """
  was_active = state['early_stopping']['active']
  scale = None
  if settings.learning_rate_schedule != 'constant':
    scale = learning_rate_scale(epoch, settings)
  trained, losses = train_epoch(state, train_data, scale, settings=settings)
  variables = {'params': trained['params'], 'batch_stats': trained['batch_stats']}
  f1 = validation_macro_f1(variables, validation_data, settings=settings)
  early_stopping, improved = update_early_stopping(
    state['early_stopping'], f1, epoch, patience=settings.patience, min_delta=settings.min_delta
  )
  trained['best'] = jax.tree.map(
    lambda new, old: jnp.where(improved, new, old), variables, state['best']
  )
  trained['early_stopping'] = early_stopping
  mean_loss = jnp.where(was_active, losses.mean(), jnp.nan)
  reported_f1 = jnp.where(was_active, f1, jnp.nan)
  trained['history'] = {
    'train_loss': state['history']['train_loss'].at[epoch - 1].set(mean_loss),
    'validation_f1': state['history']['validation_f1'].at[epoch - 1].set(reported_f1),
  }
  new_state = jax.tree.map(lambda new, old: jnp.where(was_active, new, old), trained, state)
  metrics = {
    'train_loss': jnp.where(was_active, losses, jnp.nan),
    'validation_f1': reported_f1,
    'trained': was_active,
  }
  return new_state, metrics


def prepare_eval_data(split: Mapping[str, np.ndarray], eval_batch_size: int) -> dict:
  """Images and labels padded to whole batches `[B, b, ...]`, with a 0/1 `valid` mask."""
  images, labels = np.asarray(split['image']), np.asarray(split['label'], np.int32)
  count = labels.shape[0]
  batch = max(1, min(eval_batch_size, count))
  num_batches = math.ceil(count / batch)
  padding = num_batches * batch - count
  valid = np.concatenate([np.ones(count, np.int32), np.zeros(padding, np.int32)])
  images = np.concatenate([images, np.zeros((padding,) + images.shape[1:], images.dtype)])
  labels = np.concatenate([labels, np.zeros(padding, np.int32)])
  return {
    'image': images.reshape((num_batches, batch) + images.shape[1:]),
    'label': labels.reshape(num_batches, batch),
    'valid': valid.reshape(num_batches, batch),
  }
