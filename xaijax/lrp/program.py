"""A Linen model traced into a flat program that LRP can walk backwards, without rewriting it.

`trace` runs `model.apply` under `jax.make_jaxpr` with `flax.linen.intercept_methods`: every
`nn.Conv`, `nn.Dense` and `nn.BatchNorm` call is wrapped in a `jax.jit` with a unique name, so it
appears in the jaxpr as one equation whose inputs are the module's variables and its input. The
rest of the model (activations written as plain functions, pooling, reshapes, dropout) stays as
the primitives it compiles to. The jaxpr is inlined into a list of nodes:

* `Layer`: a Conv/Dense (with the BatchNorm after it folded in by `fold_batchnorms`) or a lone
  BatchNorm; it knows its `AffineLayer` and whether it is a first layer (sees the input directly).
* `Operation`: one primitive, classified by how relevance crosses it (see `canonize.py`):
  'pass' (pointwise, including whole activation functions), 'route' (moves values), 'sum'
  (linear mixing without weights) or 'constant' (touches no activation).

Working at the level of the traced program is what lets a ReLU6 written as `jnp.clip` pass
relevance through even where it saturates: the walk never uses the model's gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from typing import Any

import flax.linen as nn
from flax.linen.module import merge_param
import jax
from jax.extend import core as jax_core
from jax.extend import source_info_util
import jax.numpy as jnp
import numpy as np

from xaijax.lrp import canonize
from xaijax.lrp.rules import AffineLayer


class UnsupportedModelError(ValueError):
  """The model holds a layer or an operation that no LRP rule covers."""


@dataclasses.dataclass(frozen=True)
class Const:
  value: Any


Atom = Any  # an int (a variable of the program) or a Const

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


# ----------------------------------------------------------------------------- nodes


@dataclasses.dataclass
class ModuleCall:
  """One call of a Conv, Dense or BatchNorm module, with its variables as program atoms."""

  name: str
  kind: str  # 'conv' | 'dense' | 'batchnorm'
  module: nn.Module  # unbound copy
  treedef: Any
  variable_inputs: tuple
  _linear_module: nn.Module | None = None

  def variables(self, read):
    return jax.tree.unflatten(self.treedef, [read(a) for a in self.variable_inputs])

  def linear(self, kernel, x):
    """The module's map without its bias, as a function of (kernel, x)."""
    if self._linear_module is None:
      self._linear_module = self.module.clone(parent=None, use_bias=False)
    return self._linear_module.apply({'params': {'kernel': kernel}}, x)

  def affine(self, read) -> AffineLayer:
    if self.kind == 'batchnorm':
      return canonize.batchnorm_as_layer(*self.batchnorm_statistics(read))
    params = self.variables(read)['params']
    return AffineLayer(linear=self.linear, kernel=params['kernel'], bias=params.get('bias'))

  def batchnorm_statistics(self, read):
    """(mean, var, scale, offset, epsilon) of a BatchNorm call."""
    variables = self.variables(read)
    stats, params = variables['batch_stats'], variables.get('params', {})
    mean, var = stats['mean'], stats['var']
    scale = params.get('scale', jnp.ones_like(mean))
    offset = params.get('bias', jnp.zeros_like(mean))
    return mean, var, scale, offset, self.module.epsilon


@dataclasses.dataclass
class Layer:
  name: str
  kind: str  # of the first call: 'conv' | 'dense' | 'batchnorm'
  calls: tuple  # ModuleCall, then BatchNorms folded into it
  x: Atom
  output: int
  is_first: bool
  input_nonnegative: bool = False  # x >= 0 by construction (a ReLU's output)

  @property
  def inputs(self):
    return (self.x,) + tuple(a for call in self.calls for a in call.variable_inputs)

  @property
  def outputs(self):
    return (self.output,)

  def affine(self, read) -> AffineLayer:
    layer = self.calls[0].affine(read)
    for batchnorm in self.calls[1:]:
      layer = canonize.fold_batchnorm(layer, *batchnorm.batchnorm_statistics(read))
    return dataclasses.replace(layer, nonnegative_inputs=self.input_nonnegative)


@dataclasses.dataclass
class Operation:
  primitive: Any
  params: dict
  inputs: tuple
  outputs: tuple
  category: str  # 'pass' | 'route' | 'sum' | 'constant'
  activation_inputs: tuple  # positions in `inputs` that carry relevance
  where: str
  # A sum whose result is only ever scaled by a constant (a mean: reduce_sum, then div) is
  # stabilised on the scaled value, as one average-pooling layer would be.
  output_scale: float = 1.0

  @property
  def name(self):
    return f'{self.primitive.name} at {self.where}'

  def bind(self, *values):
    out = self.primitive.bind(*values, **self.primitive.get_bind_params(self.params))
    return tuple(out) if self.primitive.multiple_results else (out,)


@dataclasses.dataclass
class Program:
  nodes: list
  variables_treedef: Any
  variable_ids: tuple
  x: int
  output: Atom
  shapes: dict  # variable id -> ShapedArray
  activations: set  # ids of the variables relevance flows through

  def consumers(self):
    uses = {}
    for node in self.nodes:
      for atom in node.inputs:
        if isinstance(atom, int):
          uses[atom] = uses.get(atom, 0) + 1
    if isinstance(self.output, int):
      uses[self.output] = uses.get(self.output, 0) + 1
    return uses


# ----------------------------------------------------------------------------- tracing


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


def canonical(program: Program) -> Program:
  """The program LRP walks: BatchNorms folded, means recognised as one pooling layer."""
  return _mark_means(fold_batchnorms(program))


def _mark_means(program: Program) -> Program:
  readers = {}
  for node in program.nodes:
    for atom in node.inputs:
      if isinstance(atom, int):
        readers.setdefault(atom, []).append(node)
  nodes = []
  for node in program.nodes:
    if isinstance(node, Operation) and node.category == 'sum' and len(node.outputs) == 1:
      only_reader = readers.get(node.outputs[0], [])
      if len(only_reader) == 1 and program.output != node.outputs[0]:
        scale = _constant_scale(only_reader[0], node.outputs[0])
        if scale is not None:
          node = dataclasses.replace(node, output_scale=scale)
    nodes.append(node)
  return dataclasses.replace(program, nodes=nodes)


def _constant_scale(node, atom):
  """c when `node` computes atom * c or atom / (1/c) with a scalar constant, else None."""
  if not isinstance(node, Operation) or node.primitive.name not in ('mul', 'div'):
    return None
  if len(node.inputs) != 2 or node.inputs[0] != atom or not isinstance(node.inputs[1], Const):
    return None
  constant = node.inputs[1].value
  if jnp.ndim(constant) != 0:
    return None
  constant = float(constant)
  if node.primitive.name == 'mul':
    return constant
  return 1.0 / constant if constant != 0 else None


def fold_batchnorms(program: Program) -> Program:
  """Merge every BatchNorm into the Conv/Dense whose output only it reads."""
  producers = {node.output: node for node in program.nodes if isinstance(node, Layer)}
  uses = program.consumers()
  merged, nodes = set(), []
  for node in program.nodes:
    source = producers.get(node.x) if isinstance(node, Layer) else None
    if (
      isinstance(node, Layer)
      and node.kind == 'batchnorm'
      and len(node.calls) == 1
      and source is not None
      and source.kind != 'batchnorm'
      and uses.get(node.x) == 1
    ):
      merged.add(id(source))
      node = Layer(
        f'{source.name}+{node.name}',
        source.kind,
        source.calls + node.calls,
        source.x,
        node.output,
        source.is_first,
        source.input_nonnegative,
      )
    nodes.append(node)
  nodes = [n for n in nodes if id(n) not in merged]
  return dataclasses.replace(program, nodes=nodes)


def evaluate(program: Program, variables, x):
  """Run the program forward: (values by variable id, AffineLayer by layer node index)."""
  leaves, treedef = jax.tree.flatten(variables)
  if treedef != program.variables_treedef:
    raise ValueError('variables do not have the structure the program was traced with.')
  values = dict(zip(program.variable_ids, leaves))
  values[program.x] = x

  def read(atom):
    return atom.value if isinstance(atom, Const) else values[atom]

  layers = {}
  for index, node in enumerate(program.nodes):
    if isinstance(node, Layer):
      layers[index] = node.affine(read)
      values[node.output] = layers[index](read(node.x))
    else:
      for var_id, value in zip(node.outputs, node.bind(*map(read, node.inputs))):
        values[var_id] = value
  return values, layers


def read_value(values, atom):
  return atom.value if isinstance(atom, Const) else values[atom]
