"""Right for the Right Reasons and its whole-change form, counterexamples: penalties against their
formulas and finite differences (float64), lambda = 0 against plain training, and a planted
shortcut that each stops the model from using."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import case_config, lrp, remedies
from xaijax.corrections import counterexamples, masks, rrr, stages, table
from xaijax.models import mobilenet, registry
from xaijax.training import classifier as classifier_training


class SmallConvNet(nn.Module):
  """Conv, BatchNorm, ReLU, mean pool, Dense: the pieces of MobileNet that the penalties cross."""

  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


class PixelMlp(nn.Module):
  """Sees every pixel on its own, so it can learn (or be kept from) a corner shortcut."""

  num_classes: int = 2

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Dense(16)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(x)


def training_forward(model, batch_stats):
  """`forward` as `per_seed.train_step` hands it to a penalty (no dropout in these models)."""

  def forward(variables, inputs, **kwargs):
    logits, updates = model.apply(
      variables, inputs, **{'train': True, **kwargs}, mutable=['batch_stats']
    )
    return logits, updates.get('batch_stats', batch_stats)

  return forward


def directional_check(function, params, seed=0, step=1e-6):
  """(grad . d, central difference along d) for a random unit direction d in parameter space."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  direction = [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
  norm = jnp.sqrt(sum(jnp.sum(d**2) for d in direction))
  direction = jax.tree.unflatten(treedef, [d / norm for d in direction])
  analytic = sum(
    jnp.sum(g * d)
    for g, d in zip(
      jax.tree.leaves(jax.jit(jax.grad(function))(params)), jax.tree.leaves(direction)
    )
  )
  shifted = lambda sign: jax.tree.map(lambda p, d: p + sign * step * d, params, direction)
  numeric = (function(shifted(1.0)) - function(shifted(-1.0))) / (2 * step)
  return float(analytic), float(numeric)


def float64(variables):
  """Flax keeps parameters in float32 by default; finite differences want them in float64."""
  return jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), variables)


def images_and_mask(rng, count, size, channels=1):
  images = jnp.asarray(rng.uniform(-1, 1, (count, size, size, channels)))
  mask = np.zeros((count, size, size, 1), np.uint8)
  mask[:, : size // 4] = 1  # a strip, as the overlays sit in strips
  return images, mask


@pytest.mark.parametrize('which', ['input_gradient', 'lrp'])
def test_penalty_gradients_match_finite_differences_in_float64(which):
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    model = SmallConvNet()
    inputs, mask = images_and_mask(rng, 4, 8)
    variables = float64(model.init(jax.random.key(1), inputs))
    # Running statistics away from the initial 0/1, as after some training (LRP reads them).
    variables['batch_stats'] = jax.tree.map(
      lambda v: v + 0.3 * jnp.asarray(rng.uniform(size=v.shape)), variables['batch_stats']
    )
    penalty = (
      rrr.InputGradientPenalty(weight=1.0)
      if which == 'input_gradient'
      else rrr.LrpPenalty(weight=1.0, model=model, composite='epsilon', epsilon=0.1)
    )
    forward = training_forward(model, variables['batch_stats'])
    batch = {masks.CORRECTION_MASK_KEY: mask}

    @jax.jit
    def value(params):
      return penalty(forward, {**variables, 'params': params}, inputs, batch)[2]

    assert float(value(variables['params'])) > 0
    analytic, numeric = directional_check(value, variables['params'])
    assert abs(analytic - numeric) <= 1e-6 * max(abs(numeric), 1e-3), (analytic, numeric)


def test_lrp_penalty_explains_the_network_the_step_trains():
  """The LRP penalty folds BatchNorm with the batch's own mean and variance (computed by hand
  here from the convolution's output), not with the running statistics: its value is the share
  of `lrp.explain` on those variables, and differs from the share with the running ones."""
  rng = np.random.default_rng(4)
  model = SmallConvNet()
  inputs, mask = images_and_mask(rng, 6, 8)
  inputs = inputs.astype(jnp.float32)
  variables = model.init(jax.random.key(2), inputs)
  variables['batch_stats'] = jax.tree.map(
    lambda v: v + jnp.asarray(rng.uniform(0.5, 1.0, v.shape), v.dtype), variables['batch_stats']
  )
  penalty = rrr.LrpPenalty(weight=1.0, model=model, composite='epsilon', epsilon=0.1)
  _, _, value = penalty(
    training_forward(model, variables['batch_stats']),
    variables,
    inputs,
    {masks.CORRECTION_MASK_KEY: mask},
  )

  conv = nn.Conv(4, (3, 3), use_bias=False)
  features = np.asarray(
    conv.apply({'params': variables['params']['Conv_0']}, inputs), np.float64
  ).reshape(-1, 4)
  batch_stats = {'BatchNorm_0': {'mean': features.mean(axis=0), 'var': features.var(axis=0)}}

  def share_with(stats):
    relevance = lrp.explain(
      model, {**variables, 'batch_stats': stats}, inputs, target=None, epsilon=0.1
    )
    return float(jnp.mean(rrr.relevance_share_in_mask(relevance, mask)))

  np.testing.assert_allclose(float(value), share_with(batch_stats), rtol=1e-4)
  assert abs(float(value) - share_with(variables['batch_stats'])) > 1e-3


class SeparableBlocks(nn.Module):
  """MobileNet's depthwise (stride 1 and 2) and pointwise convolutions, implementation chosen."""

  depthwise: str
  pointwise: str

  @nn.compact
  def __call__(self, x, train: bool = False):
    depthwise = mobilenet.DEPTHWISE_IMPLS[self.depthwise]
    pointwise = mobilenet.POINTWISE_IMPLS[self.pointwise]
    x = nn.Conv(4, (3, 3), use_bias=False)(x)
    for stride in (1, 2):
      padding = 'SAME' if stride == 1 else ((0, 1), (0, 1))
      x = nn.Conv(
        4, (3, 3), (stride, stride), padding, feature_group_count=4, conv_general_dilated=depthwise
      )(x)
      x = nn.Conv(4, (1, 1), use_bias=False, conv_general_dilated=pointwise)(mobilenet.relu6(x))
    return nn.Dense(3)(mobilenet.relu6(x).mean(axis=(1, 2)))


def test_input_gradient_penalty_through_the_fast_convolutions_equals_xla():
  """The penalty differentiates MobileNet's hand-written depthwise and pointwise backward passes
  (jax.custom_vjp) once more; XLA's own convolutions, differentiated by JAX, are the reference."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    inputs, mask = images_and_mask(rng, 3, 8)
    fast, reference = SeparableBlocks('shifted', 'dot'), SeparableBlocks('xla', 'xla')
    variables = float64(reference.init(jax.random.key(0), inputs))
    batch = {masks.CORRECTION_MASK_KEY: mask}
    penalty = rrr.InputGradientPenalty(weight=1.0)

    def gradient(model):
      value = lambda p: penalty(training_forward(model, {}), {'params': p}, inputs, batch)[2]
      return jax.jit(jax.grad(value))(variables['params'])

    jax.tree.map(
      functools.partial(np.testing.assert_allclose, rtol=1e-10, atol=1e-12),
      gradient(fast),
      gradient(reference),
    )


def test_input_gradient_penalty_value_against_a_per_image_loop():
  """Without BatchNorm each image's input gradient is its own: compare with one grad per image."""
  rng = np.random.default_rng(1)
  model = PixelMlp(num_classes=3)
  inputs, mask = images_and_mask(rng, 3, 6)
  inputs = inputs.astype(jnp.float32)
  variables = model.init(jax.random.key(0), inputs)
  _, _, value = rrr.InputGradientPenalty(weight=2.0)(
    training_forward(model, {}), variables, inputs, {masks.CORRECTION_MASK_KEY: mask}
  )

  def log_probability_sum(image):
    return jnp.sum(jax.nn.log_softmax(model.apply(variables, image[None])[0]))

  expected = np.mean(
    [
      np.sum((np.asarray(jax.grad(log_probability_sum)(image)) * mask[i]) ** 2)
      for i, image in enumerate(inputs)
    ]
  )
  np.testing.assert_allclose(float(value), 2.0 * expected, rtol=1e-5)


@pytest.mark.parametrize('scale', [1.0, 1e-21])
def test_relevance_share_gradient_is_finite_and_scale_free(scale):
  """The LRP penalty's share, differentiated in float32, on maps as tiny as LRP-epsilon gives an
  untrained model (totals near 1e-21 made the gradient NaN): the same gradient, rescaled, as on
  maps of ordinary size, checked against a float64 reference of the plain quotient."""
  rng = np.random.default_rng(3)
  relevance = rng.normal(size=(4, 6, 6, 1))
  mask = (rng.random((4, 6, 6, 1)) < 0.3).astype(np.uint8)

  def mean_share(maps):
    return jnp.mean(rrr.relevance_share_in_mask(maps, mask))

  gradient = jax.grad(mean_share)(jnp.asarray(relevance * scale, jnp.float32))
  assert np.all(np.isfinite(np.asarray(gradient)))

  def plain_share_float64(maps):
    positive = np.maximum(maps, 0).reshape(4, -1)
    return np.mean((positive * mask.reshape(4, -1)).sum(1) / positive.sum(1))

  step = 1e-6
  for index in [(0, 1, 2, 0), (2, 3, 3, 0), (3, 0, 5, 0)]:
    shifted = np.array(relevance)
    shifted[index] += step
    expected = (plain_share_float64(shifted) - plain_share_float64(relevance)) / step
    np.testing.assert_allclose(float(gradient[index]) * scale, expected, rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------- training


def shortcut_split(count, seed, shortcut_follows_label):
  """Class = brightness of the centre, weakly; a bright corner says the class outright (train)
  or nothing (test)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, count).astype(np.int32)
  images = rng.normal(128, 40, (count, 8, 8, 1))
  images[:, 3:5, 3:5] += np.where(labels == 1, 30, -30)[:, None, None, None]
  corner = labels if shortcut_follows_label else rng.integers(0, 2, count)
  images[:, :2, :2] = np.where(corner == 1, 255, 0)[:, None, None, None]
  mask = np.zeros((count, 8, 8, 1), np.uint8)
  mask[:, :2, :2] = 1
  images = np.clip(images, 0, 255).astype(np.uint8)
  return {'image': images, 'label': labels, 'mask': mask, masks.CORRECTION_MASK_KEY: mask}


def to_input(images):
  return images.astype(jnp.float32) / 127.5 - 1.0


def tiny_config(**correction):
  config = case_config.get_config('paper')
  config.model.update(num_classes=2, channels=1)
  config.train.update(
    seeds=2,
    batch_size=16,
    epochs=12,
    learning_rate=1e-2,
    patience=12,
    checkpoint_every=100,
    eval_batch_size=64,
    progress_bar=False,
    tensorboard=False,
  )
  config.correction.update(correction)
  return config


@pytest.fixture(scope='module')
def shortcut_data():
  return {
    'train': shortcut_split(160, 0, True),
    'validation': shortcut_split(64, 1, True),
    'test': shortcut_split(128, 2, False),
  }


def train(config, data, workdir, penalty=None):
  return classifier_training.train_classifier(
    config,
    {'train': data['train'], 'validation': data['validation']},
    str(workdir),
    registry.Classifier(PixelMlp(), to_input),
    penalty=penalty,
  )


@pytest.fixture(scope='module')
def plain_run(shortcut_data, tmp_path_factory):
  return train(tiny_config(), shortcut_data, tmp_path_factory.mktemp('plain'))


def test_weight_zero_is_plain_training_bit_for_bit(shortcut_data, plain_run, tmp_path):
  config = tiny_config(name='rrr', weight=0.0)
  classifier = registry.Classifier(PixelMlp(), to_input)
  assert stages.training_penalty(config, classifier) is None
  again = train(config, shortcut_data, tmp_path / 'zero')
  jax.tree.map(np.testing.assert_array_equal, again.variables, plain_run.variables)
  np.testing.assert_array_equal(again.train_loss, plain_run.train_loss)
  # The penalty's own path at weight 0 (its forward inside a vjp) trains the same numbers.
  zero = train(config, shortcut_data, tmp_path / 'zero_penalty', rrr.InputGradientPenalty(0.0))
  np.testing.assert_allclose(zero.train_loss, plain_run.train_loss, rtol=1e-6)
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
    zero.variables,
    plain_run.variables,
  )


def relevance_share_on_corner(result, test):
  shares = []
  for index in range(len(result.seeds)):
    relevance = lrp.explain(
      PixelMlp(), result.variables_of(index), to_input(test['image']), epsilon=0.1
    )
    shares.append(float(np.nanmean(lrp.metrics.relevance_mass_in_mask(relevance, test['mask']))))
  return np.asarray(shares)


def test_rrr_moves_relevance_off_a_planted_shortcut(shortcut_data, plain_run, tmp_path):
  # A correction early-stops on validation images whose shortcut says nothing (as
  # `correction.validation='overlays_swapped'` does).
  data = {**shortcut_data, 'validation': shortcut_split(64, 1, False)}
  config = tiny_config(name='rrr', weight=1000.0)
  config.train.update(epochs=30, patience=30)
  corrected = train(config, data, tmp_path / 'rrr', rrr.InputGradientPenalty(1000.0))
  plain_share = relevance_share_on_corner(plain_run, shortcut_data['test'])
  corrected_share = relevance_share_on_corner(corrected, shortcut_data['test'])
  # The corner is 4 of 64 pixels; the plain model puts far more than that share on it.
  assert plain_share.min() > 0.3, plain_share
  assert corrected_share.max() < plain_share.min() / 4, (corrected_share, plain_share)


# ----------------------------------------------------------------------------- counterexamples


def test_each_image_takes_its_partners_pixels_wherever_either_has_the_artifact():
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (5, 6, 6, 2)).astype(np.float32)
  artifact = (rng.uniform(size=(5, 6, 6, 1)) < 0.3).astype(np.uint8)
  swapped = np.asarray(counterexamples.counterexamples(jnp.asarray(images), artifact))
  for index in range(5):
    partner = (index + 1) % 5
    for row in range(6):
      for column in range(6):
        inside = artifact[index, row, column, 0] or artifact[partner, row, column, 0]
        source = images[partner] if inside else images[index]
        np.testing.assert_array_equal(swapped[index, row, column], source[row, column])


def test_symmetric_kl_against_its_definition():
  rng = np.random.default_rng(1)
  logits, other = rng.normal(size=(2, 4, 5))
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  q = np.exp(other) / np.exp(other).sum(-1, keepdims=True)
  expected = 0.5 * ((p * np.log(p / q)).sum(-1) + (q * np.log(q / p)).sum(-1))
  np.testing.assert_allclose(counterexamples.symmetric_kl(logits, other), expected, rtol=1e-5)
  np.testing.assert_allclose(counterexamples.symmetric_kl(logits, logits), 0.0, atol=1e-7)


def small_net_and_images(seed):
  """An untrained SmallConvNet, 4 images with a strip mask, and its training-mode `forward`."""
  rng = np.random.default_rng(seed)
  model = SmallConvNet()
  inputs, mask = images_and_mask(rng, 4, 8)
  variables = model.init(jax.random.key(0), inputs)
  return rng, model, variables, inputs, mask, training_forward(model, variables['batch_stats'])


def agreement_by_hand(logits, other_logits, labels):
  """mean over images of [cross-entropy(other, labels) + symmetric KL(logits, other)]."""
  log_q = np.asarray(jax.nn.log_softmax(other_logits))
  cross_entropy = -np.take_along_axis(log_q, labels[:, None], axis=1)[:, 0]
  kl = np.asarray(counterexamples.symmetric_kl(logits, other_logits))
  return np.mean(cross_entropy + kl)


def test_penalty_value_is_the_counterexamples_cross_entropy_plus_their_disagreement():
  _, model, variables, inputs, mask, forward = small_net_and_images(2)
  labels = np.array([0, 1, 2, 1], np.int32)
  penalty = counterexamples.CounterexamplePenalty(weight=3.0)
  batch = {masks.CORRECTION_MASK_KEY: mask, 'label': labels}
  logits, _, value = penalty(forward, variables, inputs, batch)
  # The same numbers by hand: both halves through one training-mode pass (shared batch statistics).
  swapped = counterexamples.counterexamples(inputs, mask)
  both, _ = forward(variables, jnp.concatenate([inputs, swapped]))
  kl = counterexamples.symmetric_kl(both[:4], both[4:])
  np.testing.assert_allclose(logits, both[:4], rtol=1e-6)
  np.testing.assert_allclose(value, 3.0 * agreement_by_hand(both[:4], both[4:], labels), rtol=1e-5)
  assert float(jnp.mean(kl)) > 0  # the strip differs, so the untrained net answers differently
  # With RRR-LRP's term beside it, the two values add.
  relevance = rrr.LrpPenalty(weight=2.0, model=model, composite='epsilon', epsilon=0.1)
  both_terms = counterexamples.CounterexamplePenalty(3.0, relevance)(
    forward, variables, inputs, batch
  )
  alone = relevance(forward, variables, inputs, batch)[2]
  assert float(alone) > 0
  np.testing.assert_allclose(both_terms[2], value + alone, rtol=1e-5)


def test_penalty_with_several_partners_and_the_inpainted_image_against_the_same_by_hand():
  rng, _, variables, inputs, mask, forward = small_net_and_images(3)
  labels = np.array([2, 0, 1, 1], np.int32)
  inpainted = rng.integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
  scale = lambda images: jnp.asarray(images, jnp.float32) / 127.5 - 1
  penalty = counterexamples.CounterexamplePenalty(
    weight=2.0, partners=2, inpainted_weight=0.5, preprocess=scale
  )
  assert penalty.batch_keys == (masks.CORRECTION_MASK_KEY, masks.INPAINTED_KEY)
  batch = {masks.CORRECTION_MASK_KEY: mask, masks.INPAINTED_KEY: inpainted, 'label': labels}
  logits, _, value = penalty(forward, variables, inputs, batch)
  # By hand: every view through one training-mode pass; the partners are 1 and 2 places on.
  views = [counterexamples.counterexamples(inputs, mask, shift) for shift in (1, 2)]
  every, _ = forward(variables, jnp.concatenate([inputs, *views, scale(inpainted)]))
  first, second, third, fourth = np.split(np.asarray(every), 4)
  agreement = lambda other: agreement_by_hand(first, other, labels)
  expected = 2.0 * (agreement(second) + agreement(third)) / 2 + 0.5 * agreement(fourth)
  np.testing.assert_allclose(logits, first, rtol=1e-6)
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  # The second partner is a different image: its term is not the first one's again.
  assert abs(agreement(second) - agreement(third)) > 1e-3
  # With weight 0 no counterexample is made: the pass holds the images and the inpainted ones.
  alone = counterexamples.CounterexamplePenalty(0.0, inpainted_weight=0.5, preprocess=scale)
  every, _ = forward(variables, jnp.concatenate([inputs, scale(inpainted)]))
  first, fourth = np.split(np.asarray(every), 2)
  np.testing.assert_allclose(
    alone(forward, variables, inputs, batch)[2],
    0.5 * agreement_by_hand(first, fourth, labels),
    rtol=1e-5,
  )


def test_correction_splits_carry_the_telea_inpainted_training_images_only_when_asked():
  rng = np.random.default_rng(4)
  images = rng.integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
  overlay = np.zeros((3, 16, 16, 1), np.uint8)
  overlay[:, 2:6, 3:12] = 1
  split = {'image': images, 'label': np.zeros(3, np.int32), 'mask': overlay}
  splits = {'train': split, 'validation': split}
  config = tiny_config(name='counterexamples', weight=1.0)
  assert masks.INPAINTED_KEY not in stages.correction_splits(config, splits)['train']
  config.correction.inpainted_weight = 1.0
  train_split = stages.correction_splits(config, splits)['train']
  inpainted = train_split[masks.INPAINTED_KEY]
  np.testing.assert_array_equal(inpainted, remedies.telea(images, overlay))
  outside = overlay[..., 0] == 0
  np.testing.assert_array_equal(inpainted[..., 0][outside], images[..., 0][outside])
  assert np.any(inpainted[..., 0][~outside] != images[..., 0][~outside])


def test_penalty_gradient_matches_finite_differences_in_float64():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    model = SmallConvNet()
    inputs, mask = images_and_mask(rng, 4, 8)
    variables = float64(model.init(jax.random.key(1), inputs))
    penalty = counterexamples.CounterexamplePenalty(weight=1.0)
    forward = training_forward(model, variables['batch_stats'])
    batch = {masks.CORRECTION_MASK_KEY: mask, 'label': np.array([0, 1, 2, 0], np.int32)}

    @jax.jit
    def value(params):
      return penalty(forward, {**variables, 'params': params}, inputs, batch)[2]

    analytic, numeric = directional_check(value, variables['params'])
    assert abs(analytic - numeric) <= 1e-6 * max(abs(numeric), 1e-3), (analytic, numeric)


def test_weight_zero_is_plain_training():
  config = tiny_config(name='counterexamples', weight=0.0)
  assert stages.training_penalty(config, registry.Classifier(PixelMlp(), to_input)) is None
  config.correction.weight = 0.5
  penalty = stages.training_penalty(config, registry.Classifier(PixelMlp(), to_input))
  assert penalty == counterexamples.CounterexamplePenalty(0.5)
  config.correction.lrp_weight = 2.0
  penalty = stages.training_penalty(config, registry.Classifier(PixelMlp(), to_input))
  assert penalty.relevance.weight == 2.0
  assert penalty.relevance.composite == config.correction.lrp_composite
  config.correction.weight = 0.0  # the LRP term alone is RRR-LRP, not plain training
  penalty = stages.training_penalty(config, registry.Classifier(PixelMlp(), to_input))
  assert isinstance(penalty, rrr.LrpPenalty) and penalty.weight == 2.0
  config.correction.update(lrp_weight=0.0, inpainted_weight=1.5)  # the inpainted term alone
  penalty = stages.training_penalty(config, registry.Classifier(PixelMlp(), to_input))
  assert penalty == counterexamples.CounterexamplePenalty(
    0.0, inpainted_weight=1.5, preprocess=to_input
  )


def test_the_corrections_table_names_every_term_of_a_counterexamples_run():
  settings = {'name': 'counterexamples', 'weight': 1.0, 'lrp_composite': 'epsilon_plus'}
  assert table._settings(settings) == 'λ 1'  # a results.json from before the options
  settings.update(partners=3, inpainted_weight=0.5, lrp_weight=2.0)
  assert table._settings(settings) == (
    'λ 1, 3 partners + Telea-inpainted agreement λ 0.5 + RRR-LRP λ 2 (epsilon_plus)'
  )
  settings.update(base_classifier='runs/x/classifier', epochs=10, learning_rate=1e-3)
  assert table._settings(settings) == (
    'λ 1, 3 partners + Telea-inpainted agreement λ 0.5 + RRR-LRP λ 2 (epsilon_plus), '
    'fine-tuned 10 epochs at lr 0.001 from a finished run'
  )


def accuracy_and_sensitivity_to_the_corner(result, test):
  """Per seed: accuracy on `test`, and the mean L1 change of the class probabilities when the
  corner (the shortcut) is inverted."""
  inverted = test['image'].copy()
  inverted[:, :2, :2] = 255 - inverted[:, :2, :2]
  accuracy, sensitivity = [], []
  for index in range(len(result.seeds)):
    variables = result.variables_of(index)
    logits = PixelMlp().apply(variables, to_input(test['image']))
    other = PixelMlp().apply(variables, to_input(inverted))
    accuracy.append(float(jnp.mean(logits.argmax(-1) == test['label'])))
    change = jnp.abs(jax.nn.softmax(logits) - jax.nn.softmax(other)).sum(-1)
    sensitivity.append(float(jnp.mean(change)))
  return np.asarray(accuracy), np.asarray(sensitivity)


def test_counterexamples_unlearn_a_planted_shortcut(shortcut_data, plain_run, tmp_path):
  # Early-stopped on validation images whose shortcut says nothing, as a correction is.
  data = {**shortcut_data, 'validation': shortcut_split(64, 1, False)}
  config = tiny_config(name='counterexamples', weight=1.0)
  config.train.update(epochs=30, patience=30)
  corrected = train(
    config, data, tmp_path / 'counterexamples', stages.training_penalty(config, None)
  )
  test = shortcut_data['test']  # the corner says nothing here
  plain_accuracy, plain_sensitivity = accuracy_and_sensitivity_to_the_corner(plain_run, test)
  accuracy, sensitivity = accuracy_and_sensitivity_to_the_corner(corrected, test)
  assert sensitivity.max() < plain_sensitivity.min() / 4, (sensitivity, plain_sensitivity)
  assert accuracy.min() > plain_accuracy.max() + 0.1, (accuracy, plain_accuracy)
  plain_share = relevance_share_on_corner(plain_run, test)
  corrected_share = relevance_share_on_corner(corrected, test)
  assert corrected_share.max() < plain_share.min(), (corrected_share, plain_share)
