"""Explainers to compare, all through one signature:

    explain(method, model, variables, x, target, key, settings) -> relevance shaped like x

  gradient              d logit_target / dx (Simonyan et al. 2014), signed
  gradient_x_input      x * gradient (Shrikumar et al. 2016)
  integrated_gradients  (x - x0) * mean over steps of the gradient on the straight path from the
                        baseline x0 = 0 (mid-grey in [-1, 1]) to x (Sundararajan et al. 2017),
                        midpoint rule
  smoothgrad            mean gradient at x + N(0, (noise * (max x - min x))^2) (Smilkov et al.
                        2017)
  random                uniform noise from `key`: ignores the model (a control)
  edges                 Sobel edge magnitude of the input: ignores the model, yet looks like a
                        heatmap (Adebayo et al. 2018's control)
  lrp_<composite>       LRP with a composite of `xaijax.lrp.COMPOSITES` (epsilon: settings.epsilon)

`x` is the model input (preprocessed), `target` the class per example [N]. Every method is pure and
jit-able, and vmaps over stacked variables (a leading seed axis) like `xaijax.lrp.explain`.
"""

from __future__ import annotations

import dataclasses
import inspect

import jax
import jax.numpy as jnp

from xaijax import lrp

LRP_PREFIX = 'lrp_'
CONTROLS = ('random', 'edges')  # explainers that ignore the model
GRADIENT_METHODS = ('gradient', 'gradient_x_input', 'integrated_gradients', 'smoothgrad')
EXPLAINERS = GRADIENT_METHODS + CONTROLS + tuple(LRP_PREFIX + name for name in lrp.COMPOSITES)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How the explainers that have settings run (the workflow fills this from config.quality)."""

  epsilon: float = 0.1  # LRP epsilon rule
  integrated_gradients_steps: int = 16
  smoothgrad_samples: int = 16
  smoothgrad_noise: float = 0.1  # noise std as a fraction of each image's value range


def check_method(method: str) -> None:
  if method not in EXPLAINERS:
    raise ValueError(f'Unknown explainer {method!r}; choose from {list(EXPLAINERS)}.')


def call_kwargs_of(model) -> dict:
  """{'train': False} where __call__ takes `train` (BatchNorm statistics, no dropout), else {}."""
  return {'train': False} if 'train' in inspect.signature(type(model).__call__).parameters else {}


def logits_fn(model):
  """(variables, x) -> logits, in inference mode."""
  kwargs = call_kwargs_of(model)
  return lambda variables, x: model.apply(variables, x, **kwargs)


def explain(method: str, model, variables, x, target, key, settings: Settings | None = None):
  """Relevance of `target` [N] for the inputs x [N, H, W, C], shaped like x."""
  check_method(method)
  settings = settings or Settings()
  target = jnp.broadcast_to(jnp.asarray(target, jnp.int32), (x.shape[0],))
  if method in CONTROLS:
    return control(method, x, key)
  if method.startswith(LRP_PREFIX):
    return lrp.explain(
      model,
      variables,
      x,
      target,
      composite=method[len(LRP_PREFIX) :],
      epsilon=settings.epsilon,
      call_kwargs=call_kwargs_of(model),
    )
  gradient = _input_gradient(model, variables, target)
  return from_gradient(method, lambda points: _per_point(gradient, points), x, key, settings)


def control(method: str, x, key):
  """The explainers that ignore the model: 'random' (uniform noise) and 'edges' (Sobel)."""
  if method == 'random':
    return jax.random.uniform(key, x.shape, x.dtype)
  return sobel_magnitude(x)


def from_gradient(method: str, gradient, x, key, settings: Settings):
  """A gradient method, given `gradient(points [k, N, H, W, C]) -> [..., k, N, H, W, C]` (any
  leading axes, e.g. one per model of a stack)."""
  if method == 'gradient':
    return gradient(x[None])[..., 0, :, :, :, :]
  if method == 'gradient_x_input':
    return x * gradient(x[None])[..., 0, :, :, :, :]
  if method == 'integrated_gradients':
    return integrated_gradients(gradient, x, settings.integrated_gradients_steps)
  if method == 'smoothgrad':
    return smoothgrad(gradient, x, key, settings.smoothgrad_samples, settings.smoothgrad_noise)
  raise ValueError(f'{method!r} is not a gradient method; those are {GRADIENT_METHODS}.')


def _per_point(gradient, points):
  return gradient(points.reshape((-1,) + points.shape[2:])).reshape(points.shape)


def _input_gradient(model, variables, target):
  """x -> d logit_target / dx for a batch x whose examples are [N] or [k * N] (target tiled)."""
  logits = logits_fn(model)

  def summed_target_logit(x):
    repeats = x.shape[0] // target.shape[0]
    scores = logits(variables, x)
    return jnp.take_along_axis(scores, jnp.tile(target, repeats)[:, None], axis=1).sum()

  # Examples do not interact in inference mode, so the gradient of the sum is per example.
  return jax.grad(summed_target_logit)


def integrated_gradients(gradient, x, steps: int, baseline=0.0):
  """(x - x0) times the mean gradient at the midpoints of `steps` equal pieces of the path."""
  alphas = (jnp.arange(steps, dtype=x.dtype) + 0.5) / steps
  path = baseline + alphas[:, None, None, None, None] * (x - baseline)[None]
  return (x - baseline) * gradient(path).mean(axis=-x.ndim - 1)


def smoothgrad(gradient, x, key, samples: int, noise: float):
  """Mean gradient over `samples` noisy copies of x (noise relative to each image's range)."""
  axes = tuple(range(1, x.ndim))
  scale = noise * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))
  noisy = x[None] + scale[None] * jax.random.normal(key, (samples,) + x.shape, x.dtype)
  return gradient(noisy).mean(axis=-x.ndim - 1)


class StackExplainer:
  """`explain` for a stack of M models at once (variables with a leading model axis, e.g. seeds
  times randomised copies), returning [M, N, H, W, C].

  Compiles one program per LRP composite and one gradient program that every gradient method
  shares; integrated gradients and SmoothGrad call it once per step (so adding steps costs run
  time, not compile time). Programs are kept for the next call with the same shapes. A stack of
  more than `models_per_call` models goes through them in equal parts (memory).
  """

  def __init__(self, model, settings: Settings, models_per_call: int = 64):
    self.model, self.settings = model, settings
    self.models_per_call = models_per_call
    self._programs = {}

  def __call__(self, method: str, variables, x, targets, key):
    check_method(method)
    models = jax.tree.leaves(variables)[0].shape[0]
    if method in CONTROLS:
      return jnp.broadcast_to(control(method, x, key), (models,) + x.shape)
    compiled = self._program(method if method.startswith(LRP_PREFIX) else 'gradient')
    parts = _equal_parts(models, self.models_per_call)

    def program(point):
      return jnp.concatenate(
        [
          compiled(jax.tree.map(lambda leaf, p=part: leaf[p], variables), point, targets[part])
          for part in parts
        ]
      )

    if method.startswith(LRP_PREFIX):
      return program(x)
    return from_gradient(
      method, lambda points: jnp.stack([program(p) for p in points], axis=1), x, key, self.settings
    )

  def _program(self, name):
    if name not in self._programs:
      model, settings = self.model, self.settings
      if name == 'gradient':

        def one(variables, x, target):
          return _input_gradient(model, variables, target)(x)
      else:

        def one(variables, x, target):
          return explain(name, model, variables, x, target, None, settings)

      self._programs[name] = jax.jit(jax.vmap(one, in_axes=(0, None, 0)))
    return self._programs[name]


def _equal_parts(total: int, most: int) -> list[slice]:
  """Slices of equal size (the largest divisor of `total` up to `most`): one compiled shape."""
  size = max(d for d in range(1, min(total, most) + 1) if total % d == 0)
  return [slice(start, start + size) for start in range(0, total, size)]


def sobel_magnitude(x):
  """|Sobel gradient| of every channel of x [N, H, W, C] (edge padding), shaped like x."""
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  height, width = x.shape[1:3]

  def shifted(dy, dx):
    return padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]

  horizontal = (
    shifted(-1, 1) + 2 * shifted(0, 1) + shifted(1, 1)
    - shifted(-1, -1) - 2 * shifted(0, -1) - shifted(1, -1)
  )  # fmt: skip
  vertical = (
    shifted(1, -1) + 2 * shifted(1, 0) + shifted(1, 1)
    - shifted(-1, -1) - 2 * shifted(-1, 0) - shifted(-1, 1)
  )  # fmt: skip
  return jnp.sqrt(horizontal**2 + vertical**2)
