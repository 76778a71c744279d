"""explain(): LRP relevance for a Linen classifier, jit-compiled, batched and vmappable.

The model is traced into a program (`program.py`), its BatchNorms are folded into the layers
before them, and the program runs forward once. Relevance starts at the target logit
(R = logit * one_hot(target), so a conservative explanation sums to the logit) and walks the
program backwards: every layer applies its composite rule, every other operation passes,
routes or shares relevance as `canonize.py` says. Nothing is differentiated through the model.

Under `jax.vmap` over stacked variables (one leading seed axis) it explains all seeds at once:

    jax.vmap(lambda v: explain(model, v, images))(stacked_variables)    # [seeds, N, H, W, C]
"""

from __future__ import annotations

from collections.abc import Mapping
import functools
import inspect
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from xaijax.lrp import composites as composites_lib
from xaijax.lrp import program as program_lib
from xaijax.lrp.rules import safe_divide, stabilize


@flax.struct.dataclass
class Explanation:
  """relevance (shape of x), logits [N, K], target [N], and per layer the relevance [N] that
  stayed in it (bias and stabiliser share: sum of relevance out minus sum of relevance in)."""

  relevance: jax.Array
  logits: jax.Array
  target: jax.Array
  absorbed: dict


def explain(
  model,
  variables,
  x,
  target=None,
  composite='epsilon',
  epsilon: float = 1e-6,
  stabilizer: float = 1e-6,
  call_kwargs: Mapping[str, Any] | None = None,
):
  """LRP relevance of `target` (class per example; None: the predicted class), shaped like x.

  Args:
    model: a Linen module returning logits [N, K] (Conv, Dense, BatchNorm, pooling, pointwise
      activations; others raise `UnsupportedModelError` naming the layer).
    variables: its variables ({'params': ..., 'batch_stats': ...}).
    x: model input [N, ...] (already preprocessed, e.g. `mobilenet.preprocess`).
    target: int class or int array [N]; None explains each example's argmax.
    composite: a name in `composites.COMPOSITES` or a `composites.Composite`.
    epsilon: the epsilon rule's epsilon (named composites only).
    stabilizer: added to other rules' denominators, and to those of pooling and sums.
    call_kwargs: extra arguments of `model.apply`; default {'train': False} when `__call__` takes
      `train`, so BatchNorm uses its running statistics and dropout is off.
  """
  return _run(
    model, variables, x, target, composite, epsilon, stabilizer, call_kwargs, details=False
  )


def explain_with_details(
  model,
  variables,
  x,
  target=None,
  composite='epsilon',
  epsilon: float = 1e-6,
  stabilizer: float = 1e-6,
  call_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
  """`explain`, returning an `Explanation` with logits, targets and absorbed relevance."""
  return _run(
    model, variables, x, target, composite, epsilon, stabilizer, call_kwargs, details=True
  )


def _run(model, variables, x, target, composite, epsilon, stabilizer, call_kwargs, details):
  if isinstance(composite, str):
    composite = composites_lib.get(composite, epsilon=epsilon, stabilizer=stabilizer)
  if call_kwargs is None:
    call_kwargs = {'train': False} if _takes_train(model) else {}
  explainer = _cached_explainer(model, composite, tuple(sorted(call_kwargs.items())), details)
  if target is not None:
    target = jnp.asarray(target)
    if not jnp.issubdtype(target.dtype, jnp.integer) or target.ndim > 1:
      raise ValueError(
        f'target must be an int class or int array [N], got {target.dtype} {target.shape}.'
      )
  return explainer(variables, x, target)


def _takes_train(model) -> bool:
  return 'train' in inspect.signature(type(model).__call__).parameters


def _cached_explainer(model, composite, call_kwargs, details):
  try:
    return _explainer(model, composite, call_kwargs, details)
  except TypeError:  # an unhashable model: build (and compile) afresh
    return _explainer.__wrapped__(model, composite, call_kwargs, details)


@functools.lru_cache(maxsize=32)
def _explainer(model, composite, call_kwargs, details):
  kwargs = dict(call_kwargs)

  @jax.jit
  def run(variables, x, target):
    program = program_lib.canonical(program_lib.trace(model, variables, x, kwargs))
    explanation = propagate(program, composite, variables, x, target)
    # Without details only the relevance leaves the jit, so XLA drops the bookkeeping.
    return explanation if details else explanation.relevance

  return run


def propagate(program, composite, variables, x, target) -> Explanation:
  """Forward through `program`, then relevance from the target logit back to x."""
  values, layers = program_lib.evaluate(program, variables, x)
  read = functools.partial(program_lib.read_value, values)
  if not isinstance(program.output, int) or program.output not in program.activations:
    raise program_lib.UnsupportedModelError('The model output does not depend on its input.')
  logits = read(program.output)
  batch, classes = logits.shape
  if target is None:
    target = jnp.argmax(logits, axis=-1)
  target = jnp.broadcast_to(jnp.asarray(target, jnp.int32), (batch,))
  relevance = {program.output: jax.nn.one_hot(target, classes, dtype=logits.dtype) * logits}
  absorbed = {}

  def give(atom, value):
    if isinstance(atom, int) and atom in program.activations:
      value = value.astype(program.shapes[atom].dtype)
      relevance[atom] = relevance[atom] + value if atom in relevance else value

  for index in reversed(range(len(program.nodes))):
    node = program.nodes[index]
    upper = [relevance.pop(o, None) for o in node.outputs]
    if all(r is None for r in upper):
      continue
    upper = [
      jnp.zeros(program.shapes[o].shape, program.shapes[o].dtype) if r is None else r
      for o, r in zip(node.outputs, upper)
    ]
    if isinstance(node, program_lib.Layer):
      lower = [(node.x, composite.rule_for(node)(layers[index], read(node.x), upper[0]))]
    else:
      lower = _operation_relevance(node, read, upper, composite.stabilizer)
    if isinstance(node, program_lib.Layer) or node.category == 'sum':
      _record_absorbed(absorbed, node.name, upper, [value for _, value in lower], batch)
    for atom, value in lower:
      give(atom, value)

  relevance_x = relevance.get(program.x, jnp.zeros_like(x))
  return Explanation(
    relevance=relevance_x.astype(x.dtype), logits=logits, target=target, absorbed=absorbed
  )


def _operation_relevance(node, read, upper, stabilizer):
  """[(input atom, relevance)] of an operation's activation inputs, by its category."""
  active = node.activation_inputs
  if node.category == 'pass':
    return [(node.inputs[active[0]], upper[0])]
  inputs = [read(a) for a in node.inputs]

  def on_activations(*activations):
    values = list(inputs)
    for position, value in zip(active, activations):
      values[position] = value
    return node.bind(*values)

  activations = [inputs[p] for p in active]
  outputs, vjp = jax.vjp(on_activations, *activations)
  if node.category == 'route':
    grads = vjp(tuple(upper))
    return [(node.inputs[p], g) for p, g in zip(active, grads)]
  if node.category == 'sum':
    scale = node.output_scale
    scaled = safe_divide(upper[0], stabilize(outputs[0] * scale, stabilizer) / scale)
    grads = vjp((scaled,))
    return [(node.inputs[p], a * g) for p, a, g in zip(active, activations, grads)]
  raise AssertionError(f'no relevance rule for category {node.category!r} ({node.name})')


def _record_absorbed(absorbed, name, upper, lower, batch):
  """Per example: relevance into the node minus relevance out of it (needs a batch axis 0)."""
  arrays = list(upper) + list(lower)
  if any(a.ndim == 0 or a.shape[0] != batch for a in arrays):
    return

  def per_example(a):
    return jnp.sum(a.reshape(batch, -1), axis=1)

  kept = sum(per_example(a) for a in upper) - sum(per_example(a) for a in lower)
  absorbed[name] = absorbed.get(name, 0) + kept
