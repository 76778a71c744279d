"""explain(): LRP relevance for a Linen classifier, jit-compiled, batched and vmappable.

The model is traced (`tracing.py`) into a program (`program.py`), its BatchNorms are folded into
the layers before them, and the program runs forward once. Relevance starts at the target logit
(R = logit * one_hot(target), so a conservative explanation sums to the logit) and walks the
program backwards: every layer applies its composite rule, every other operation passes,
routes or shares relevance as `canonize.py` says. Nothing is differentiated through the model.

Under `jax.vmap` over stacked variables (one leading seed axis) it explains all seeds at once:

    jax.vmap(lambda v: explain(model, v, images))(stacked_variables)    # [seeds, N, H, W, C]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import functools
import inspect
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from xaijax.lrp import composites as composites_lib
from xaijax.lrp import program as program_lib
from xaijax.lrp import tracing
from xaijax.lrp.rules import safe_divide, stabilize


@flax.struct.dataclass
class Explanation:
  """relevance (shape of x), logits [N, K], target [N], per layer the relevance [N] that stayed in
  it (bias and stabiliser share: sum of relevance out minus sum of relevance in), and the relevance
  at the input of each layer named in `layers` (shaped like that input)."""

  relevance: jax.Array
  logits: jax.Array
  target: jax.Array
  absorbed: dict
  layer_relevance: dict


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
  layers: Sequence[str] = (),
) -> Explanation:
  """`explain`, returning an `Explanation` with logits, targets and absorbed relevance.

  layers: names of Conv/Dense/BatchNorm layers (their module paths, e.g. 'conv_pw_13') whose input
    relevance to return in `Explanation.layer_relevance`: everything that reached that input from
    above, before the layer's own rule ran. Pooled over space it is a "concept relevance" vector
    (one number per channel), as Reveal2Revise clusters.
  """
  return _run(
    model,
    variables,
    x,
    target,
    composite,
    epsilon,
    stabilizer,
    call_kwargs,
    details=True,
    layers=tuple(layers),
  )


def _run(
  model, variables, x, target, composite, epsilon, stabilizer, call_kwargs, details, layers=()
):
  if isinstance(composite, str):
    composite = composites_lib.get(composite, epsilon=epsilon, stabilizer=stabilizer)
  if call_kwargs is None:
    call_kwargs = {'train': False} if _takes_train(model) else {}
  explainer = _cached_explainer(
    model, composite, tuple(sorted(call_kwargs.items())), details, layers
  )
  if target is not None:
    target = jnp.asarray(target)
    if not jnp.issubdtype(target.dtype, jnp.integer) or target.ndim > 1:
      raise ValueError(
        f'target must be an int class or int array [N], got {target.dtype} {target.shape}.'
      )
  return explainer(variables, x, target)


def _takes_train(model) -> bool:
  return 'train' in inspect.signature(type(model).__call__).parameters


def _cached_explainer(model, composite, call_kwargs, details, layers):
  try:
    return _explainer(model, composite, call_kwargs, details, layers)
  except TypeError:  # an unhashable model: build (and compile) afresh
    return _explainer.__wrapped__(model, composite, call_kwargs, details, layers)


@functools.lru_cache(maxsize=32)
def _explainer(model, composite, call_kwargs, details, layers):
  kwargs = dict(call_kwargs)

  @jax.jit
  def run(variables, x, target):
    program = program_lib.canonical(tracing.trace(model, variables, x, kwargs))
    explanation = propagate(program, composite, variables, x, target, layers)
    # Without details only the relevance leaves the jit, so XLA drops the bookkeeping.
    return explanation if details else explanation.relevance

  return run


def _inputs_of_layers(program, names) -> dict:
  """{program atom: layer name} of the inputs of the named layers; an unknown name is an error.

  A layer is named by its module path ('conv_pw_13'); a BatchNorm folded into the layer before it
  has no input of its own.
  """
  layers = [node for node in program.nodes if isinstance(node, program_lib.Layer)]
  known = [layer.calls[0].name for layer in layers]
  found = {}
  for name in names:
    nodes = [layer for layer in layers if layer.calls[0].name == name]
    if len(nodes) != 1:
      problem = 'is called more than once' if nodes else 'is not a layer with an input of its own'
      raise ValueError(f'layer {name!r} {problem}; the layers: {known}')
    found[nodes[0].x] = name
  return found


def propagate(program, composite, variables, x, target, keep_layers=()) -> Explanation:
  """Forward through `program`, then relevance from the target logit back to x.

  keep_layers: names of layers whose input relevance is kept (`Explanation.layer_relevance`).
  """
  kept_atoms = _inputs_of_layers(program, keep_layers)
  layer_relevance = {}
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
    # Walking backwards, every consumer of an atom has given its share once its producer comes up.
    for atom, value in zip(node.outputs, upper):
      if atom in kept_atoms:
        layer_relevance[kept_atoms[atom]] = value
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
  for atom, name in kept_atoms.items():
    if atom == program.x:
      layer_relevance[name] = relevance_x
    elif layer_relevance.get(name) is None:  # no relevance reached that input
      layer_relevance[name] = jnp.zeros(program.shapes[atom].shape, program.shapes[atom].dtype)
  return Explanation(
    relevance=relevance_x.astype(x.dtype),
    logits=logits,
    target=target,
    absorbed=absorbed,
    layer_relevance=layer_relevance,
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
