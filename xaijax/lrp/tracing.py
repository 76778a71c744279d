"""A Linen model traced into a flat `Program` (xaijax/lrp/program.py) that LRP can walk backwards,
without rewriting it.

`trace` runs `model.apply` under `jax.make_jaxpr` with `flax.linen.intercept_methods`: every
`nn.Conv`, `nn.Dense` and `nn.BatchNorm` call is wrapped in a `jax.jit` with a unique name, so it
appears in the jaxpr as one equation whose inputs are the module's variables and its input. The
rest of the model (activations written as plain functions, pooling, reshapes, dropout) stays as
the primitives it compiles to. The jaxpr is inlined into the program's list of nodes: a `Layer` for
every Conv/Dense/BatchNorm call, an `Operation` for every other primitive, classified by how
relevance crosses it (see `canonize.py`). A layer or operation no rule covers is an
`UnsupportedModelError`, raised while tracing.

Working at the level of the traced program is what lets a ReLU6 written as `jnp.clip` pass
relevance through even where it saturates: the walk never uses the model's gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
from flax.linen.module import merge_param
import jax
from jax.extend import core as jax_core
from jax.extend import source_info_util
import jax.numpy as jnp
import numpy as np

from xaijax.lrp import canonize
from xaijax.lrp.program import (
  Const,
  Layer,
  ModuleCall,
  Operation,
  Program,
  UnsupportedModelError,
)

_MARKER_PREFIX = 'xaijax_lrp_layer_'
_CALL_PRIMITIVES = {
  'jit': 'jaxpr',
  'pjit': 'jaxpr',
  'closed_call': 'call_jaxpr',
  'core_call': 'call_jaxpr',
  'custom_jvp_call': 'call_jaxpr',
  'custom_vjp_call': 'call_jaxpr',
  'remat': 'jaxpr',
  'checkpoint': 'jaxpr',
}


def _layer_kind(module):
  if isinstance(module, nn.Conv):
    return 'conv'
  if isinstance(module, nn.Dense):
    return 'dense'
  if isinstance(module, nn.BatchNorm):
    return 'batchnorm'
  return None


def _module_name(module):
  return '/'.join(module.path) or type(module).__name__


class _Interceptor:
  """Wraps Conv/Dense/BatchNorm calls in named jits and rejects layers without a rule."""

  def __init__(self):
    self.calls = {}
    self._inside_layer = False

  def __call__(self, next_fun, args, kwargs, context):
    if self._inside_layer or context.method_name == 'setup':
      return next_fun(*args, **kwargs)
    module = context.module
    kind = _layer_kind(module)
    if kind is None:
      self._check_unsupported(module, kwargs)
      return next_fun(*args, **kwargs)
    name = _module_name(module)
    if context.method_name != '__call__' or len(args) != 1 or set(kwargs) - {'use_running_average'}:
      raise UnsupportedModelError(
        f'LRP supports {type(module).__name__} layers called as layer(x); {name!r} is '
        f'called as {context.method_name} with {len(args)} positional and keyword '
        f'arguments {sorted(kwargs)}.'
      )
    if kind == 'batchnorm':
      self._check_batchnorm(module, name, kwargs, args[0])
    marker = f'{_MARKER_PREFIX}{len(self.calls)}'
    unbound = module.clone(parent=None)
    variables = {c: v for c, v in module.variables.items() if c in ('params', 'batch_stats')}

    def call_layer(layer_variables, x):
      self._inside_layer = True
      try:
        return unbound.apply(layer_variables, x, **kwargs)
      finally:
        self._inside_layer = False

    call_layer.__name__ = marker
    self.calls[marker] = (name, kind, unbound, jax.tree.structure(variables))
    return jax.jit(call_layer)(variables, args[0])

  @staticmethod
  def _check_unsupported(module, kwargs):
    params = module.variables.get('params', {}) if module.scope is not None else {}
    own = sorted(k for k, v in params.items() if not isinstance(v, Mapping))
    if own:
      raise UnsupportedModelError(
        f'LRP has no rule for layer {_module_name(module)!r} ({type(module).__name__}, '
        f'parameters {own}). Supported layers with weights: nn.Conv (any stride, padding, '
        'grouping), nn.Dense and nn.BatchNorm; write the layer with those or add a rule.'
      )
    if isinstance(module, nn.Dropout) and module.rate > 0:
      deterministic = merge_param(
        'deterministic', module.deterministic, kwargs.get('deterministic')
      )
      if not deterministic:
        raise UnsupportedModelError(
          f'Dropout {_module_name(module)!r} is active; LRP explains the model in inference '
          'mode: pass call_kwargs that make it deterministic (e.g. train=False).'
        )

  @staticmethod
  def _check_batchnorm(module, name, kwargs, x):
    running = merge_param(
      'use_running_average', module.use_running_average, kwargs.get('use_running_average')
    )
    if not running:
      raise UnsupportedModelError(
        f'BatchNorm {name!r} normalises with batch statistics; LRP folds inference '
        'statistics: pass call_kwargs that select running averages (e.g. train=False).'
      )
    axis = module.axis if isinstance(module.axis, int) else tuple(module.axis)
    if axis not in (-1, x.ndim - 1, (-1,), (x.ndim - 1,)) or module.axis_name is not None:
      raise UnsupportedModelError(
        f'BatchNorm {name!r} normalises axis {module.axis}; LRP folds BatchNorm over the '
        'last (feature) axis only.'
      )


def _source(eqn):
  stack = str(eqn.source_info.name_stack)
  line = source_info_util.summarize(eqn.source_info)
  return f'{stack} ({line})' if stack else line


def _sub_jaxpr(eqn):
  key = _CALL_PRIMITIVES.get(eqn.primitive.name)
  if key is None or key not in eqn.params:
    return None
  sub = eqn.params[key]
  return sub if isinstance(sub, jax_core.ClosedJaxpr) else jax_core.ClosedJaxpr(sub, ())


def _is_float(aval):
  return jnp.issubdtype(aval.dtype, jnp.inexact)


def _is_elementwise(closed, shape) -> bool:
  """Whether a sub-program only computes elementwise on arrays of `shape` (or scalars)."""
  for eqn in closed.jaxpr.eqns:
    if any(v.aval.shape not in ((), shape) for v in eqn.outvars):
      return False
    sub = _sub_jaxpr(eqn)
    if sub is not None:
      if not _is_elementwise(sub, shape):
        return False
    elif eqn.primitive.name == 'broadcast_in_dim':
      if eqn.invars[0].aval.shape != ():
        return False
    elif eqn.primitive.name not in canonize.ELEMENTWISE:
      return False
  return True


def _value_is_nonnegative(value) -> bool:
  value = np.asarray(value)
  return not np.issubdtype(value.dtype, np.inexact) or bool(np.all(value >= 0))


def _outputs_nonnegative(closed, inputs_nonnegative) -> list:
  """Per output of a sub-program: provably >= 0, given which of its inputs are."""
  flags = {}
  for var, const in zip(closed.jaxpr.constvars, closed.consts):
    flags[var] = _value_is_nonnegative(const)
  for var, flag in zip(closed.jaxpr.invars, inputs_nonnegative):
    flags[var] = flag or not _is_float(var.aval)

  def read(v):
    return _value_is_nonnegative(v.val) if isinstance(v, jax_core.Literal) else flags[v]

  for eqn in closed.jaxpr.eqns:
    inputs = [read(v) for v in eqn.invars]
    sub = _sub_jaxpr(eqn)
    if sub is not None:
      outputs = _outputs_nonnegative(sub, inputs)
    else:
      outputs = [canonize.output_is_nonnegative(eqn.primitive.name, eqn.params, inputs)] * len(
        eqn.outvars
      )
    for var, flag in zip(eqn.outvars, outputs):
      flags[var] = flag or not _is_float(var.aval)
  return [read(v) for v in closed.jaxpr.outvars]


class _Builder:
  """Inlines a jaxpr into Program nodes, tracking which variables carry activations and which
  are provably non-negative."""

  def __init__(self, layer_calls):
    self.layer_calls = layer_calls
    self.nodes = []
    self.shapes = {}
    self.activations = set()
    self.after_layer = set()  # ids computed from some layer's output
    self.nonnegative = set()

  def new_id(self, aval, activation, after_layer):
    var_id = len(self.shapes)
    self.shapes[var_id] = aval
    if activation and _is_float(aval):
      self.activations.add(var_id)
    if after_layer:
      self.after_layer.add(var_id)
    return var_id

  def is_activation(self, atom):
    return isinstance(atom, int) and atom in self.activations

  def is_nonnegative(self, atom):
    if isinstance(atom, Const):
      return _value_is_nonnegative(atom.value)
    return atom in self.nonnegative or not _is_float(self.shapes[atom])

  def inline(self, closed, in_atoms):
    env = {}
    for var, const in zip(closed.jaxpr.constvars, closed.consts):
      env[var] = Const(const)
    for var, atom in zip(closed.jaxpr.invars, in_atoms):
      env[var] = atom

    def read(v):
      return Const(v.val) if isinstance(v, jax_core.Literal) else env[v]

    for eqn in closed.jaxpr.eqns:
      inputs = tuple(read(v) for v in eqn.invars)
      outputs = self.add_equation(eqn, inputs)
      for var, atom in zip(eqn.outvars, outputs):
        env[var] = atom
    return [read(v) for v in closed.jaxpr.outvars]

  def add_equation(self, eqn, inputs):
    active = tuple(i for i, a in enumerate(inputs) if self.is_activation(a))
    after = any(isinstance(a, int) and a in self.after_layer for a in inputs)
    sub = _sub_jaxpr(eqn)

    if sub is not None and eqn.params.get('name') in self.layer_calls:
      return self.add_layer(eqn, inputs, after)
    if active and sub is not None and not self.is_pointwise_block(eqn, inputs, active, sub):
      return self.inline(sub, inputs)
    if not active or not any(_is_float(v.aval) for v in eqn.outvars):
      category = 'constant'  # comparisons and index computations carry no relevance
    elif sub is not None:
      category = 'pass'
    else:
      category = self.classify(eqn, inputs, active)
    outputs = tuple(self.new_id(v.aval, bool(active), after) for v in eqn.outvars)
    flags = [self.is_nonnegative(a) for a in inputs]
    if sub is not None:
      nonnegative = _outputs_nonnegative(sub, flags)
    else:
      nonnegative = [canonize.output_is_nonnegative(eqn.primitive.name, eqn.params, flags)] * len(
        outputs
      )
    self.nonnegative.update(o for o, flag in zip(outputs, nonnegative) if flag)
    self.nodes.append(
      Operation(eqn.primitive, dict(eqn.params), inputs, outputs, category, active, _source(eqn))
    )
    return outputs

  def add_layer(self, eqn, inputs, after):
    layer_name, kind, module, treedef = self.layer_calls[eqn.params['name']]
    *variable_inputs, x = inputs
    call = ModuleCall(layer_name, kind, module, treedef, tuple(variable_inputs))
    output = self.new_id(eqn.outvars[0].aval, self.is_activation(x), True)
    self.nodes.append(
      Layer(
        layer_name,
        kind,
        (call,),
        x,
        output,
        is_first=not after,
        input_nonnegative=self.is_nonnegative(x),
      )
    )
    return (output,)

  def is_pointwise_block(self, eqn, inputs, active, sub):
    if len(active) != 1 or len(eqn.outvars) != 1:
      return False
    shape = self.shapes[inputs[active[0]]].shape
    return eqn.outvars[0].aval.shape == shape and _is_elementwise(sub, shape)

  def classify(self, eqn, inputs, active):
    name = eqn.primitive.name
    out_shape = eqn.outvars[0].aval.shape
    single = len(active) == 1
    if (
      name in canonize.PASS_THROUGH
      and single
      and (
        self.shapes[inputs[active[0]]].shape == out_shape
        and not (name == 'div' and active[0] != 0)
        and not (name == 'clamp' and active[0] != 1)
      )
    ):
      return 'pass'
    if name in ('max', 'min') or name in canonize.ROUTE:
      return 'route'
    if name in canonize.SUM_LIKE and (
      single or name not in ('dot_general', 'conv_general_dilated')
    ):
      return 'sum'
    what = 'of two activations' if not single else 'on an activation'
    raise UnsupportedModelError(
      f'LRP cannot pass relevance through `{name}` {what} in {_source(eqn)}. Supported '
      'between layers: pointwise activations, pooling, sums, reshapes (see '
      'xaijax/lrp/canonize.py).'
    )


def trace(model: nn.Module, variables, x, call_kwargs: Mapping[str, Any]) -> Program:
  """The program of `model.apply(variables, x, **call_kwargs)`; arrays or shape structs."""
  interceptor = _Interceptor()

  def apply(variables, x):
    with nn.intercept_methods(interceptor):
      return model.apply(variables, x, **call_kwargs)

  def struct(a):
    return jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))

  variables = jax.tree.map(struct, variables)
  closed, out_shape = jax.make_jaxpr(apply, return_shape=True)(variables, struct(x))
  if not isinstance(out_shape, jax.ShapeDtypeStruct) or len(out_shape.shape) != 2:
    raise UnsupportedModelError(
      f'LRP explains a model that returns logits [batch, classes]; '
      f'{type(model).__name__} returned {out_shape}.'
    )

  builder = _Builder(interceptor.calls)
  leaves, treedef = jax.tree.flatten(variables)
  variable_ids = tuple(builder.new_id(v.aval, False, False) for v in closed.jaxpr.invars[:-1])
  x_id = builder.new_id(closed.jaxpr.invars[-1].aval, True, False)
  assert len(leaves) == len(variable_ids)
  (output,) = builder.inline(closed, variable_ids + (x_id,))
  return Program(
    builder.nodes, treedef, variable_ids, x_id, output, builder.shapes, builder.activations
  )
