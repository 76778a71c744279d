"""Class Artifact Compensation (ClArC): the artifact as a direction in a layer's activations.

A concept activation vector (CAV) v points from activations without the artifact to activations
with it, at the input of one layer (`activations.py`; one vector per image, everything but the
batch axis flattened, as Reveal2Revise's "full feature" ClArC does). Two kinds:

* `signal_cav`: the signal pattern w = cov(a, y) / var(y) (Haufe et al. 2014), RR-ClArC's default;
* `logistic_cav`: the weights of an L2-regularised logistic regression separating the two sets
  (a linear-classifier CAV; scikit-learn's `LogisticRegression(C=1)` objective, fitted by L-BFGS).

With `correction.concept='logo'` there is one CAV per logo; their span, orthonormalised into the
rows of `basis` [K, D], is the artifact subspace (K = 1 for `'overlay'`). Every ClArC edit moves
the component of an activation a inside that subspace onto a reference point z:

    a' = a + Q^T Q (z - a)            (= a - v v^T (a - z) for one unit vector v)

* P-ClArC, z = mean activation without the artifact, at inference, no training. On a Dense layer
  the edit folds into its weights exactly (`fold_projection_into_dense`), so evaluation and LRP run
  on an ordinary model.
* A-ClArC, z = mean activation with the artifact, during fine-tuning (every image then "shows" the
  artifact, so the model learns not to use it); inference runs the plain model.
* RR-ClArC: fine-tuning with weight * mean over images of |Q grad_a y_hat|^2 (= (grad_a y_hat . v)^2
  for one direction), y_hat the predicted class's logit (Reveal2Revise's default target).

The trained model carries its concept as parameters (`ConceptModel`: `clarc_basis`,
`clarc_clean_mean`, `clarc_artifact_mean`), held constant by `stop_gradient`, so every seed
fine-tunes with its own CAV inside the one vmapped program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from xaijax.corrections import activations

CONCEPT_PARAMS = ('clarc_basis', 'clarc_clean_mean', 'clarc_artifact_mean')
FINE_TUNE_SCOPES = ('all', 'head')


# ----------------------------------------------------------------------------- CAVs


def _unit(vector):
  return vector / jnp.maximum(jnp.linalg.norm(vector), 1e-12)


def signal_cav(features, labels, weights=None):
  """Unit signal pattern cov(a, y) / var(y) of features [N, D] and 0/1 labels [N].

  `weights` (0/1 per row, default all 1) picks the rows that count, keeping one static shape.
  """
  features = jnp.asarray(features)
  labels = jnp.asarray(labels, features.dtype)
  weights = jnp.ones_like(labels) if weights is None else jnp.asarray(weights, features.dtype)
  count = jnp.maximum(weights.sum(), 1.0)
  centred_a = features - (weights @ features) / count
  centred_y = (labels - (weights @ labels) / count) * weights
  # The 1/(n - 1) of covariance and variance cancel.
  return _unit((centred_a.T @ centred_y) / jnp.maximum(jnp.sum(centred_y**2), 1e-12))


@functools.partial(jax.jit, static_argnames=('regularization', 'steps'))
def logistic_regression(features, labels, weights=None, regularization: float = 1.0, steps=200):
  """(w, b) minimising sum_i weight_i log(1 + exp(-s_i (w.a_i + b))) + |w|^2 / (2 C), with
  s_i = 2 y_i - 1 and C = `regularization`.

  scikit-learn's `LogisticRegression(C=regularization)` objective (`sample_weight` = weights,
  intercept not penalised), minimised by optax's L-BFGS for a fixed number of steps, so it jits
  and vmaps over seeds.
  """
  features = jnp.asarray(features)
  signs = 2.0 * jnp.asarray(labels, features.dtype) - 1.0
  weights = jnp.ones_like(signs) if weights is None else jnp.asarray(weights, features.dtype)
  # Divided by the weight in total, so that the step sizes do not grow with the data.
  scale = jnp.maximum(weights.sum(), 1.0)

  def objective(params):
    w, b = params
    losses = weights * jax.nn.softplus(-signs * (features @ w + b))
    return (jnp.sum(losses) + jnp.sum(w**2) / (2 * regularization)) / scale

  optimizer = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)
  start = (jnp.zeros(features.shape[1], features.dtype), jnp.zeros((), features.dtype))

  def step(carry, _):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = optimizer.update(
      grad, state, params, value=value, grad=grad, value_fn=objective
    )
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(step, (start, optimizer.init(start)), None, length=steps)
  return params


def logistic_cav(features, labels, weights=None):
  """Unit weight vector of a logistic regression separating the two sets (a linear-classifier
  CAV)."""
  coefficients, _ = logistic_regression(features, labels, weights)
  return _unit(coefficients)


CAV_KINDS = {'signal': signal_cav, 'logistic': logistic_cav}


def concept(features_with, features_without, group, kind: str = 'signal', num_groups: int = 1):
  """The artifact subspace and the two reference points, from paired features [N, D].

  One CAV per group (images of group g with the artifact against the same images without it),
  orthonormalised: returns (basis [K, D], clean_mean [D], artifact_mean [D]). A group with fewer
  than two images gives no direction (its row is zero).
  """
  if kind not in CAV_KINDS:
    raise ValueError(f'correction.cav={kind!r}: choose one of {sorted(CAV_KINDS)}.')
  features = jnp.concatenate([features_with, features_without])
  labels = jnp.concatenate([jnp.ones(len(features_with)), jnp.zeros(len(features_without))])
  groups = jnp.concatenate([group, group])
  # One row of 0/1 weights per group: the CAVs of all groups in one vmapped (one compiled) fit.
  members = (groups[None, :] == jnp.arange(num_groups)[:, None]).astype(features.dtype)
  directions = jax.vmap(lambda member: CAV_KINDS[kind](features, labels, member))(members)
  directions = jnp.where(members.sum(axis=1, keepdims=True) >= 4, directions, 0.0)
  return (
    orthonormal_rows(directions),
    jnp.mean(features_without, axis=0),
    jnp.mean(features_with, axis=0),
  )


def orthonormal_rows(directions):
  """[K, D] -> [K, D] orthonormal rows spanning the same space (Gram-Schmidt via QR; a zero or
  dependent row stays zero)."""
  q, r = jnp.linalg.qr(directions.T)
  keep = jnp.abs(jnp.diagonal(r)) > 1e-6 * jnp.maximum(jnp.abs(r).max(), 1e-30)
  return (q * keep[None, :]).T


# ----------------------------------------------------------------------------- edits


def move_onto(features_flat, basis, reference):
  """a + Q^T Q (z - a): the artifact-subspace component of each row set to the reference's."""
  return features_flat + ((reference - features_flat) @ basis.T) @ basis


def fold_projection_into_dense(dense_params: dict, basis, clean_mean) -> dict:
  """A Dense layer's {'kernel' [D, O], 'bias' [O]} after P-ClArC on its input, exactly:
  W' = (I - Q^T Q) W, b' = b + (Q^T Q z)^T W."""
  if 'bias' not in dense_params:
    raise ValueError('P-ClArC folds into a Dense layer with a bias; this one has none.')
  kernel, bias = dense_params['kernel'], dense_params['bias']
  in_subspace = (clean_mean @ basis.T) @ basis
  return {
    **dense_params,
    'kernel': kernel - basis.T @ (basis @ kernel),
    'bias': bias + in_subspace @ kernel,
  }


class ConceptModel(nn.Module):
  """The classifier with its concept as (constant) parameters and ClArC's edits at `layer`.

  Shares the base's variable scope, so its variables are the base's plus `CONCEPT_PARAMS`.
  `edit='augment'` moves the activations entering `layer` onto the artifact mean along the concept
  (A-ClArC), `'project'` onto the clean mean (P-ClArC); `shift` [B, D] is added to them (for
  gradients with respect to the activations).
  """

  base: nn.Module
  layer: str
  feature_size: int
  num_directions: int

  def setup(self):
    nn.share_scope(self, self.base)
    zeros = nn.initializers.zeros
    self.basis = self.param(
      'clarc_basis', zeros, (self.num_directions, self.feature_size), jnp.float32
    )
    self.clean_mean = self.param('clarc_clean_mean', zeros, (self.feature_size,), jnp.float32)
    self.artifact_mean = self.param('clarc_artifact_mean', zeros, (self.feature_size,), jnp.float32)

  def __call__(self, x, train: bool = False, edit: str = 'none', shift=None):
    basis = jax.lax.stop_gradient(self.basis)
    references = {
      'augment': jax.lax.stop_gradient(self.artifact_mean),
      'project': jax.lax.stop_gradient(self.clean_mean),
    }
    if edit != 'none' and edit not in references:
      raise ValueError(f"edit must be 'none', 'augment' or 'project', got {edit!r}.")

    def change(a):
      flat = activations.flat(a)
      if edit != 'none':
        flat = move_onto(flat, basis.astype(flat.dtype), references[edit].astype(flat.dtype))
      if shift is not None:
        flat = flat + shift.astype(flat.dtype)
      return flat.reshape(a.shape)

    with activations.edit_layer_input(self.layer, change):
      return self.base(x, train=train)


def with_concept(variables: dict, basis, clean_mean, artifact_mean) -> dict:
  """The base's variables plus the concept, for a `ConceptModel` (any leading axes kept)."""
  return {
    **variables,
    'params': {
      **variables['params'],
      'clarc_basis': basis,
      'clarc_clean_mean': clean_mean,
      'clarc_artifact_mean': artifact_mean,
    },
  }


def without_concept(variables: dict) -> dict:
  """A `ConceptModel`'s variables as the base classifier's."""
  params = {k: v for k, v in variables['params'].items() if k not in CONCEPT_PARAMS}
  return {**variables, 'params': params}


# ----------------------------------------------------------------------------- fine-tuning


def _training_forward(forward, variables, fine_tune: str, head: str):
  """`forward` for A-/RR-ClArC: everything trains ('all'), or only `head`, on a frozen backbone in
  inference mode (its BatchNorm statistics do not move)."""
  if fine_tune == 'all':
    return forward, variables['batch_stats']
  if fine_tune != 'head':
    raise ValueError(f'correction.fine_tune={fine_tune!r}: choose one of {FINE_TUNE_SCOPES}.')
  if head not in variables['params']:
    raise ValueError(
      f'correction.head={head!r} is not a top-level module of the model with parameters; it has '
      f'{sorted(k for k in variables["params"] if k not in CONCEPT_PARAMS)}.'
    )
  params = {
    name: value if name == head else jax.lax.stop_gradient(value)
    for name, value in variables['params'].items()
  }
  frozen = {**variables, 'params': params}

  def frozen_forward(_, inputs, **kwargs):
    logits, _ = forward(frozen, inputs, **{**kwargs, 'train': False})
    return logits, variables['batch_stats']

  return frozen_forward, None


@dataclasses.dataclass(frozen=True)
class AugmentPenalty:
  """A-ClArC: the cross-entropy of the model with the artifact added along the concept (the term
  itself is 0; the correction is in the forward pass)."""

  fine_tune: str = 'all'
  head: str = 'conv_preds'
  batch_keys: ClassVar[tuple[str, ...]] = ()

  def __call__(self, forward, variables, inputs, batch):
    forward, _ = _training_forward(forward, variables, self.fine_tune, self.head)
    logits, batch_stats = forward(variables, inputs, edit='augment')
    return logits, batch_stats, jnp.zeros((), logits.dtype)


def predicted_logit_gradient(forward, variables, inputs, feature_size: int):
  """(logits, batch_stats, grad_a y_hat [B, D]) with y_hat each image's predicted-class logit and a
  the activations entering the concept's layer (the `ConceptModel`'s `shift`)."""
  shift = jnp.zeros((inputs.shape[0], feature_size), inputs.dtype)
  logits, vjp, batch_stats = jax.vjp(
    lambda s: forward(variables, inputs, shift=s), shift, has_aux=True
  )
  target = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=logits.dtype)
  (gradient,) = vjp(jax.lax.stop_gradient(target))
  return logits, batch_stats, gradient


@dataclasses.dataclass(frozen=True)
class ConceptGradientPenalty:
  """RR-ClArC: weight * mean over images of |Q grad_a y_hat|^2."""

  weight: float
  feature_size: int
  fine_tune: str = 'all'
  head: str = 'conv_preds'
  batch_keys: ClassVar[tuple[str, ...]] = ()

  def __call__(self, forward, variables, inputs, batch):
    forward, _ = _training_forward(forward, variables, self.fine_tune, self.head)
    logits, batch_stats, gradient = predicted_logit_gradient(
      forward, variables, inputs, self.feature_size
    )
    basis = jax.lax.stop_gradient(variables['params']['clarc_basis']).astype(gradient.dtype)
    along = gradient @ basis.T  # [B, K]
    return logits, batch_stats, self.weight * jnp.mean(jnp.sum(along**2, axis=-1))


# ----------------------------------------------------------------------------- measures


@functools.partial(jax.jit, static_argnames=('model', 'feature_size'))
def concept_sensitivity(model: ConceptModel, variables, inputs, feature_size: int):
  """TCAV sensitivity per image: |Q grad_a y_hat| (= |grad_a y_hat . v| for one direction), with
  the model in inference mode and `variables` holding the concept."""

  def forward(v, x, **kwargs):
    return model.apply(v, x, **{'train': False, **kwargs}), {}

  _, _, gradient = predicted_logit_gradient(forward, variables, inputs, feature_size)
  return jnp.linalg.norm(gradient @ variables['params']['clarc_basis'].T, axis=-1)


def as_numpy(tree):
  return jax.tree.map(np.asarray, tree)
