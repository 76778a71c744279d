"""ClArC: CAVs recover planted directions, P-ClArC leaves nothing along them (also folded into the
head), A-ClArC moves onto the artifact mean, RR-ClArC's penalty against finite differences."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.corrections import activations, clarc


class SmallNet(nn.Module):
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    x = nn.relu(nn.Dense(6, name='features')(x))
    return nn.Dense(self.num_classes, name='head')(x)


def planted(rng, count, direction, strength=3.0):
  labels = rng.integers(0, 2, count)
  features = rng.normal(size=(count, direction.size)) + strength * labels[:, None] * direction
  return features, labels


def unit(vector):
  return vector / np.linalg.norm(vector)


def test_cavs_recover_a_planted_direction():
  rng = np.random.default_rng(0)
  direction = unit(rng.normal(size=16))
  features, labels = planted(rng, 600, direction)
  for kind, cosine in (('signal', 0.98), ('logistic', 0.9)):
    cav = np.asarray(clarc.CAV_KINDS[kind](features, labels))
    assert np.isclose(np.linalg.norm(cav), 1.0)
    assert cav @ direction > cosine, kind


def test_logistic_regression_matches_scikit_learn():
  linear_model = pytest.importorskip('sklearn.linear_model')
  rng = np.random.default_rng(1)
  features, labels = planted(rng, 300, unit(rng.normal(size=8)), strength=1.0)
  weights = (rng.uniform(size=300) > 0.3).astype(np.float64)
  reference = linear_model.LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000)
  reference.fit(features, labels, sample_weight=weights)
  coefficients, intercept = clarc.logistic_regression(
    jnp.asarray(features, jnp.float32), labels, weights
  )
  np.testing.assert_allclose(coefficients, reference.coef_[0], atol=2e-5)
  np.testing.assert_allclose(intercept, reference.intercept_[0], atol=2e-5)


def test_concept_of_two_groups_spans_both_planted_directions():
  rng = np.random.default_rng(2)
  directions = [unit(rng.normal(size=12)) for _ in range(2)]
  group = np.repeat([0, 1], 200)
  without = rng.normal(size=(400, 12))
  with_artifact = without + 2.0 * np.stack([directions[g] for g in group])
  basis, clean_mean, artifact_mean = clarc.concept(
    jnp.asarray(with_artifact), jnp.asarray(without), jnp.asarray(group), 'signal', num_groups=3
  )
  basis = np.asarray(basis)
  np.testing.assert_allclose(basis[:2] @ basis[:2].T, np.eye(2), atol=1e-5)
  assert not basis[2].any()  # the empty third group gives no direction
  for direction in directions:
    assert np.linalg.norm(basis @ direction) > 0.98
  np.testing.assert_allclose(clean_mean, without.mean(axis=0), rtol=1e-5)
  np.testing.assert_allclose(artifact_mean, with_artifact.mean(axis=0), rtol=1e-5)


@pytest.fixture(scope='module')
def model_and_concept():
  rng = np.random.default_rng(3)
  model = SmallNet()
  inputs = jnp.asarray(rng.uniform(-1, 1, (5, 8, 8, 1)), jnp.float32)
  variables = model.init(jax.random.key(0), inputs)
  basis = clarc.orthonormal_rows(jnp.asarray(rng.normal(size=(2, 6)), jnp.float32))
  clean_mean = jnp.asarray(rng.uniform(0, 1, 6), jnp.float32)
  artifact_mean = jnp.asarray(rng.uniform(1, 2, 6), jnp.float32)
  concept_model = clarc.ConceptModel(model, 'head', feature_size=6, num_directions=2)
  concept_variables = clarc.with_concept(variables, basis, clean_mean, artifact_mean)
  return model, variables, inputs, concept_model, concept_variables


def test_pclarc_leaves_no_component_along_the_concept(model_and_concept):
  model, variables, inputs, concept_model, concept_variables = model_and_concept
  params = concept_variables['params']
  basis, clean_mean = params['clarc_basis'], params['clarc_clean_mean']
  features = activations.layer_input(model, variables, inputs, 'head')
  projected = clarc.move_onto(features, basis, clean_mean)
  np.testing.assert_allclose((projected - clean_mean) @ basis.T, 0.0, atol=1e-6)
  # Orthogonal to the concept nothing moves.
  outside = lambda a: a - (a @ basis.T) @ basis
  np.testing.assert_allclose(outside(projected), outside(features), atol=1e-6)

  # The same edit inside the model, and folded into the head's weights, give the same logits.
  edited = concept_model.apply(concept_variables, inputs, edit='project')
  head = variables['params']['head']
  expected = projected @ head['kernel'] + head['bias']
  np.testing.assert_allclose(edited, expected, atol=1e-5)
  folded = {
    **variables,
    'params': {
      **variables['params'],
      'head': clarc.fold_projection_into_dense(head, basis, clean_mean),
    },
  }
  np.testing.assert_allclose(model.apply(folded, inputs), expected, atol=1e-5)

  # The folded model's output no longer changes along the concept: TCAV sensitivity 0.
  folded_concept = clarc.with_concept(
    folded, basis, clean_mean, concept_variables['params']['clarc_artifact_mean']
  )
  sensitivity = clarc.concept_sensitivity(concept_model, folded_concept, inputs, 6)
  np.testing.assert_allclose(sensitivity, 0.0, atol=1e-5)
  assert float(clarc.concept_sensitivity(concept_model, concept_variables, inputs, 6).min()) > 0


def test_aclarc_moves_the_activations_onto_the_artifact_mean(model_and_concept):
  model, variables, inputs, concept_model, concept_variables = model_and_concept
  params = concept_variables['params']
  basis, artifact_mean = params['clarc_basis'], params['clarc_artifact_mean']
  augmented = clarc.move_onto(
    activations.layer_input(model, variables, inputs, 'head'), basis, artifact_mean
  )
  np.testing.assert_allclose((augmented - artifact_mean) @ basis.T, 0.0, atol=1e-5)
  head = variables['params']['head']
  np.testing.assert_allclose(
    concept_model.apply(concept_variables, inputs, edit='augment'),
    augmented @ head['kernel'] + head['bias'],
    atol=1e-5,
  )
  # Without an edit the concept model is the classifier.
  np.testing.assert_array_equal(
    concept_model.apply(concept_variables, inputs), model.apply(variables, inputs)
  )


def test_an_unknown_layer_is_named_with_the_modules_there_are(model_and_concept):
  model, variables, inputs, *_ = model_and_concept
  with pytest.raises(ValueError, match=r"correction.layer='haed'.*features, head"):
    activations.layer_input(model, variables, inputs, 'haed')


def training_forward(model, batch_stats):
  def forward(variables, inputs, **kwargs):
    logits, updates = model.apply(
      variables, inputs, **{'train': True, **kwargs}, mutable=['batch_stats']
    )
    return logits, updates.get('batch_stats', batch_stats)

  return forward


@pytest.mark.parametrize('fine_tune', ['all', 'head'])
def test_rrclarc_penalty_gradient_matches_finite_differences(model_and_concept, fine_tune):
  _, _, inputs, concept_model, concept_variables = model_and_concept
  with jax.enable_x64(True):
    variables = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), concept_variables)
    inputs = jnp.asarray(inputs, jnp.float64)
    penalty = clarc.ConceptGradientPenalty(1.0, 6, fine_tune, 'head')
    forward = training_forward(concept_model, variables['batch_stats'])

    @jax.jit
    def value(params):
      return penalty(forward, {**variables, 'params': params}, inputs, {})[2]

    gradient = jax.jit(jax.grad(value))(variables['params'])
    for name in clarc.CONCEPT_PARAMS:  # the concept stays where it is
      assert not np.any(gradient[name])
    if fine_tune == 'head':
      assert not np.any(gradient['features']['kernel']) and np.any(gradient['head']['kernel'])
    direction = jax.tree.map(
      lambda g: g / jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(gradient))), gradient
    )
    step = 1e-6
    shifted = lambda sign: jax.tree.map(
      lambda p, d: p + sign * step * d, variables['params'], direction
    )
    numeric = (value(shifted(1.0)) - value(shifted(-1.0))) / (2 * step)
    analytic = sum(
      jnp.sum(g * d) for g, d in zip(jax.tree.leaves(gradient), jax.tree.leaves(direction))
    )
    assert float(value(variables['params'])) > 0
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-6)


def test_fine_tuning_starts_every_seed_from_its_own_model():
  from xaijax.training import seed_runners

  state = {'params': {'w': jnp.zeros((4, 2))}, 'batch_stats': {}}  # 3 seeds + 1 padding slot
  own = {'params': {'w': jnp.asarray([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])}}
  started = seed_runners.start_from(state, own)
  np.testing.assert_array_equal(started['params']['w'], [[1, 1], [2, 2], [3, 3], [3, 3]])
  np.testing.assert_array_equal(started['best']['params']['w'], started['params']['w'])
  shared = seed_runners.start_from(state, {'params': {'w': jnp.asarray([5.0, 6.0])}})
  np.testing.assert_array_equal(shared['params']['w'], [[5, 6]] * 4)
