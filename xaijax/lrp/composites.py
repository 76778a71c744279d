"""Composites: which rule explains which layer (Zennit's named composites, same defaults).

  epsilon               epsilon on every Conv and Dense
  epsilon_plus          z+ on convolutions, epsilon on dense layers
  epsilon_gamma_box     z^B on the first layer (inputs in [low, high]), gamma on convolutions,
                        epsilon on dense layers
  epsilon_plus_flat     flat on the first layer, z+ on convolutions, epsilon on dense layers
  epsilon_alpha2_beta1  alpha=2, beta=1 on convolutions, epsilon on dense layers

A "first" layer is one that reads the model input directly (no other layer upstream). A BatchNorm
folded into its layer goes with that layer's rule; a lone BatchNorm gets epsilon. Sums without
weights (pooling, residual additions) use LRP-epsilon with `stabilizer`, like Zennit's Norm rule.
Build your own with `Composite(...)` and `Rule(rules.some_rule, (('name', value), ...))`.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses

from xaijax.lrp import rules


@dataclasses.dataclass(frozen=True)
class Rule:
  """A rule function with its hyperparameters bound (hashable, so explainers can be cached)."""

  function: Callable
  params: tuple = ()

  def __call__(self, layer, x, relevance):
    return self.function(layer, x, relevance, **dict(self.params))

  def __str__(self):
    args = ', '.join(f'{k}={v}' for k, v in self.params)
    return f'{self.function.__name__}({args})'


def rule(function: Callable, **params) -> Rule:
  return Rule(function, tuple(sorted(params.items())))


@dataclasses.dataclass(frozen=True)
class Composite:
  name: str
  conv: Rule
  dense: Rule
  batchnorm: Rule
  first: Rule | None = None
  stabilizer: float = 1e-6

  def rule_for(self, layer) -> Rule:
    """The rule for a program `Layer` (its `kind` and `is_first`)."""
    if layer.is_first and self.first is not None:
      return self.first
    return {'conv': self.conv, 'dense': self.dense, 'batchnorm': self.batchnorm}[layer.kind]


def epsilon(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
  eps = rule(rules.epsilon, epsilon=epsilon)
  return Composite('epsilon', conv=eps, dense=eps, batchnorm=eps, stabilizer=stabilizer)


def epsilon_plus(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
  eps = rule(rules.epsilon, epsilon=epsilon)
  return Composite(
    'epsilon_plus',
    conv=rule(rules.zplus, stabilizer=stabilizer),
    dense=eps,
    batchnorm=eps,
    stabilizer=stabilizer,
  )


def epsilon_gamma_box(
  epsilon: float = 1e-6,
  stabilizer: float = 1e-6,
  gamma: float = 0.25,
  low: float = -1.0,
  high: float = 1.0,
) -> Composite:
  eps = rule(rules.epsilon, epsilon=epsilon)
  return Composite(
    'epsilon_gamma_box',
    conv=rule(rules.gamma, gamma=gamma, stabilizer=stabilizer),
    dense=eps,
    batchnorm=eps,
    first=rule(rules.zbox, low=low, high=high, stabilizer=stabilizer),
    stabilizer=stabilizer,
  )


def epsilon_plus_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
  composite = epsilon_plus(epsilon, stabilizer)
  return dataclasses.replace(
    composite, name='epsilon_plus_flat', first=rule(rules.flat, stabilizer=stabilizer)
  )


def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
  composite = epsilon_plus(epsilon, stabilizer)
  return dataclasses.replace(
    composite,
    name='epsilon_alpha2_beta1',
    conv=rule(rules.alpha_beta, alpha=2.0, beta=1.0, stabilizer=stabilizer),
  )


COMPOSITES = {
  'epsilon': epsilon,
  'epsilon_plus': epsilon_plus,
  'epsilon_gamma_box': epsilon_gamma_box,
  'epsilon_plus_flat': epsilon_plus_flat,
  'epsilon_alpha2_beta1': epsilon_alpha2_beta1,
}


def get(name: str, **kwargs) -> Composite:
  """A named composite, e.g. get('epsilon_gamma_box', epsilon=1e-6, low=-1., high=1.)."""
  if name not in COMPOSITES:
    raise ValueError(
      f'Unknown composite {name!r}; choose one of {sorted(COMPOSITES)} or pass a Composite.'
    )
  return COMPOSITES[name](**kwargs)
