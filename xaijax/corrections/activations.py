"""Reading and editing the activations that enter one layer of a Linen classifier, unmodified.

A layer is named by its module path (`'conv_preds'`, MobileNet's head; `'Dense_0'` in a user's
model; `'block/conv'` for a nested one). Its activations are the input of that module's
`__call__`, read or replaced through `flax.linen.intercept_methods`, so the model is used as it is
written. ClArC's "full feature" convention (Reveal2Revise) flattens everything but the batch axis
into one vector per image: a concept direction has as many entries as one image's activations.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp


def layer_path(layer: str) -> tuple[str, ...]:
  return tuple(part for part in layer.split('/') if part)


@contextlib.contextmanager
def edit_layer_input(layer: str, edit: Callable[[jax.Array], jax.Array]):
  """Within the context, every call of module `layer` gets `edit(x)` instead of its input x.

  Raises a ValueError on leaving the context when no module of that path was called, naming the
  modules that were (a misspelt `correction.layer`, say).
  """
  path = layer_path(layer)
  seen = []

  def interceptor(next_fun, args, kwargs, context):
    module_path = tuple(context.module.path)
    if context.method_name != '__call__' or not module_path:
      return next_fun(*args, **kwargs)
    seen.append('/'.join(module_path))
    if module_path != path:
      return next_fun(*args, **kwargs)
    return next_fun(edit(args[0]), *args[1:], **kwargs)

  with nn.intercept_methods(interceptor):
    yield
  if '/'.join(path) not in seen:
    known = sorted(set(seen))
    raise ValueError(
      f'correction.layer={layer!r} is not a module the model calls; its modules are: '
      f'{", ".join(known[:40])}{" ..." if len(known) > 40 else ""}.'
    )


def layer_input(model: nn.Module, variables, x, layer: str, **call_kwargs) -> jax.Array:
  """The activations entering `layer` when `model` runs on `x` (default: `train=False`)."""
  captured = []

  def keep(a):
    captured.append(a)
    return a

  with edit_layer_input(layer, keep):
    model.apply(variables, x, **{'train': False, **call_kwargs})
  if len(captured) != 1:
    raise ValueError(
      f'correction.layer={layer!r} is called {len(captured)} times in one forward pass; choose a '
      'module called once.'
    )
  return captured[0]


def feature_shape(model: nn.Module, variables, x, layer: str) -> tuple[int, ...]:
  """Shape of one image's activations entering `layer` (no computation, shapes only)."""
  shape = jax.eval_shape(lambda v, inputs: layer_input(model, v, inputs, layer), variables, x)
  return tuple(shape.shape[1:])


def flat(a: jax.Array) -> jax.Array:
  """[B, ...] -> [B, D]: one vector per image (ClArC's full-feature convention)."""
  return jnp.reshape(a, (a.shape[0], -1))
