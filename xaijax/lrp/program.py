"""The program LRP walks: a Linen model as a flat list of nodes (traced by `tracing.trace`).

* `Layer`: a Conv/Dense (with the BatchNorm after it folded in by `fold_batchnorms`) or a lone
  BatchNorm; it knows its `AffineLayer` and whether it is a first layer (sees the input directly).
* `Operation`: one primitive, classified by how relevance crosses it (see `canonize.py`):
  'pass' (pointwise, including whole activation functions), 'route' (moves values), 'sum'
  (linear mixing without weights) or 'constant' (touches no activation).

`canonical` is the form LRP walks (BatchNorms folded, means recognised as one pooling layer);
`evaluate` runs a program forward and returns every value and the affine map of every layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xaijax.lrp import canonize
from xaijax.lrp.rules import AffineLayer


class UnsupportedModelError(ValueError):
  """The model holds a layer or an operation that no LRP rule covers."""


@dataclasses.dataclass(frozen=True)
class Const:
  value: Any


Atom = Any  # an int (a variable of the program) or a Const

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


# ----------------------------------------------------------------------------- canonical form


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
