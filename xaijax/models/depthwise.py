"""Depthwise convolution as shifted multiply-adds, a drop-in for `lax.conv_general_dilated`.

XLA:CPU lowers a grouped convolution with `feature_group_count == in_channels` (a depthwise
convolution) to a slow generic loop: on this project's CPU a 16x32x32x256 depthwise 3x3 takes
about 100 ms forward where the same arithmetic written as nine shifted multiply-adds takes a few.
`shifted_conv_general_dilated` has the signature of `lax.conv_general_dilated`, so it is passed as
`flax.linen.Conv(..., conv_general_dilated=shifted_conv_general_dilated)` and the layer stays a
plain `nn.Conv` (LRP and the Keras importer see the usual `kernel` parameter).

Only a channels-last depthwise convolution (Flax's layout: N...C input, ...IO kernel with I = 1,
one output channel per input channel, no input dilation) takes the fast path; every other call
goes to `lax.conv_general_dilated` unchanged.

How it is computed, and why (each choice measured on XLA:CPU):

* Polyphase split. A stride-s input is split once into s^d phases (`x[r::s]` for each offset r),
  so that every kernel tap reads an unstrided window of one phase. Forward, input gradient and
  kernel gradient then all use unstrided shifted windows, and the backward pass works at the
  output's resolution instead of spreading the output gradient onto the input grid.
* Stored inputs. The phases and the output gradient are passed through an optimisation barrier:
  otherwise XLA fuses their producer (a BatchNorm + ReLU6 or its gradient) into each of the nine
  taps and recomputes it nine times, or stores nine shifted copies.
* Hand-written backward (`jax.custom_vjp`). Autodiff of the shifted sum gives a kernel gradient
  of nine reductions over the whole input, each after its own materialised copy. Here the sum
  over the batch is written as explicit adds of per-image products (one elementwise pass per
  tap, output 16x smaller), followed by one small reduction.
"""

from __future__ import annotations

from collections.abc import Sequence
import functools
import itertools

import jax
from jax import lax
import jax.numpy as jnp

Pads = tuple[tuple[int, int], ...]

# Kernel gradient: at most this many batch slices are summed as explicit adds (bounds HLO size).
_MAX_UNROLLED_TERMS = 16


def shifted_conv_general_dilated(
  lhs,
  rhs,
  window_strides: Sequence[int],
  padding,
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision=None,
  preferred_element_type=None,
):
  """`lax.conv_general_dilated`, with depthwise channels-last convolutions as shifted adds."""
  if not _takes_fast_path(
    lhs, rhs, lhs_dilation, dimension_numbers, feature_group_count, batch_group_count
  ):
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count,
      precision=precision,
      preferred_element_type=preferred_element_type,
    )

  num_spatial = lhs.ndim - 2
  strides = tuple(int(s) for s in window_strides)
  dilation = tuple(int(d) for d in (rhs_dilation or (1,) * num_spatial))
  window = tuple(rhs.shape[:num_spatial])
  if isinstance(padding, str):
    dilated_window = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
    padding = lax.padtype_to_pads(lhs.shape[1:-1], dilated_window, strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)

  dtype = (
    preferred_element_type if preferred_element_type is not None else jnp.result_type(lhs, rhs)
  )
  # Drop the kernel's input-feature axis (size 1): [*window, 1, C] -> [*window, C].
  kernel = jnp.asarray(rhs, dtype).reshape(window + rhs.shape[-1:])
  return _depthwise(jnp.asarray(lhs, dtype), kernel, strides, pads, dilation)


def is_channels_last(dimension_numbers, ndim: int) -> bool:
  """Whether `dimension_numbers` is Flax's N...C input / ...IO kernel / N...C output layout."""
  if dimension_numbers is None:
    return False  # lax's default layout is NCHW / OIHW
  spatial = tuple(range(1, ndim - 1))
  channels_last = lax.ConvDimensionNumbers(
    lhs_spec=(0, ndim - 1) + spatial,
    rhs_spec=(ndim - 1, ndim - 2) + tuple(range(ndim - 2)),
    out_spec=(0, ndim - 1) + spatial,
  )
  shape = (1,) * ndim
  return lax.conv_dimension_numbers(shape, shape, dimension_numbers) == channels_last


def _takes_fast_path(
  lhs, rhs, lhs_dilation, dimension_numbers, feature_group_count, batch_group_count
) -> bool:
  channels = lhs.shape[-1]
  return (
    lhs.ndim >= 3
    and batch_group_count == 1
    and feature_group_count == channels > 1
    and rhs.shape[-2] == 1
    and rhs.shape[-1] == channels  # depth multiplier 1
    and all(d == 1 for d in (lhs_dilation or ()))
    and is_channels_last(dimension_numbers, lhs.ndim)
  )


# ----------------------------------------------------------------------------- geometry


class _Geometry:
  """Index bookkeeping shared by forward and backward (all static Python ints)."""

  def __init__(self, input_shape, window, strides, pads, dilation):
    self.input_shape = tuple(input_shape)
    self.window, self.strides, self.pads, self.dilation = window, strides, pads, dilation
    self.padded_sizes = tuple(n + lo + hi for n, (lo, hi) in zip(input_shape[1:-1], pads))
    self.out_sizes = tuple(
      (p - (k - 1) * d - 1) // s + 1
      for p, k, s, d in zip(self.padded_sizes, window, strides, dilation)
    )
    if any(n < 1 for n in self.out_sizes):
      raise ValueError(
        f'Depthwise convolution of input {input_shape} with window {window} and '
        f'padding {pads} has an empty output.'
      )
    self.phase_sizes = tuple(-(-p // s) for p, s in zip(self.padded_sizes, strides))
    self.phases = tuple(itertools.product(*(range(s) for s in strides)))
    self.taps = tuple(itertools.product(*(range(k) for k in window)))

  def tap_phase_and_start(self, tap):
    """The phase a tap reads, and where its (unstrided) window starts in that phase."""
    offsets = [t * d for t, d in zip(tap, self.dilation)]
    phase = tuple(o % s for o, s in zip(offsets, self.strides))
    start = tuple(o // s for o, s in zip(offsets, self.strides))
    return self.phases.index(phase), start


def _pad(x, pads: Pads):
  config = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
  return lax.pad(x, jnp.zeros((), x.dtype), config)


def _window(x, start, sizes):
  """x[:, start_1 : start_1 + size_1, ..., :]"""
  limit = (x.shape[0],) + tuple(b + n for b, n in zip(start, sizes)) + (x.shape[-1],)
  return lax.slice(x, (0,) + tuple(start) + (0,), limit)


def _stored(tree):
  # Each of the nine taps reads these once more; without the barrier XLA fuses their producer
  # into every tap (recomputing it nine times) or stores nine shifted copies.
  return lax.optimization_barrier(tree)


def _split_phases(x, geometry: _Geometry):
  x_padded = _pad(x, geometry.pads)
  if all(s == 1 for s in geometry.strides):
    return (x_padded,)
  phases = []
  for phase in geometry.phases:
    part = x_padded[
      (slice(None),) + tuple(slice(r, None, s) for r, s in zip(phase, geometry.strides))
    ]
    fill = tuple((0, q - n) for q, n in zip(geometry.phase_sizes, part.shape[1:-1]))
    phases.append(_pad(part, fill))
  return tuple(phases)


def _merge_phases(phases, geometry: _Geometry):
  """Inverse of `_split_phases` up to the padding: phase arrays -> unpadded input layout."""
  if len(phases) == 1:
    merged = phases[0]
  else:
    num_spatial = len(geometry.strides)
    batch, channels = phases[0].shape[0], phases[0].shape[-1]
    stacked = jnp.stack(phases).reshape(
      geometry.strides + (batch,) + geometry.phase_sizes + (channels,)
    )
    # [*s, N, *q, C] -> [N, q_1, s_1, ..., q_d, s_d, C]: row-major order of (q_i, s_i) is q*s+r.
    order = (
      [num_spatial]
      + [a for i in range(num_spatial) for a in (num_spatial + 1 + i, i)]
      + [2 * num_spatial + 1]
    )
    merged = stacked.transpose(order).reshape(
      (batch,) + tuple(q * s for q, s in zip(geometry.phase_sizes, geometry.strides)) + (channels,)
    )
    merged = _window(merged, (0,) * num_spatial, geometry.padded_sizes)
  return _pad(merged, tuple((-lo, -hi) for lo, hi in geometry.pads))


# ----------------------------------------------------------------------------- forward/backward


def _forward(phases, kernel, geometry: _Geometry):
  total = None
  for tap in geometry.taps:
    index, start = geometry.tap_phase_and_start(tap)
    term = _window(phases[index], start, geometry.out_sizes) * kernel[tap]
    total = term if total is None else total + term
  return total


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise(x, kernel, strides, pads, dilation):
  geometry = _Geometry(x.shape, kernel.shape[:-1], strides, pads, dilation)
  return _forward(_stored(_split_phases(x, geometry)), kernel, geometry)


def _depthwise_fwd(x, kernel, strides, pads, dilation):
  geometry = _Geometry(x.shape, kernel.shape[:-1], strides, pads, dilation)
  phases = _stored(_split_phases(x, geometry))
  return _forward(phases, kernel, geometry), (phases, kernel, x.shape)


def _depthwise_bwd(strides, pads, dilation, residuals, grad_out):
  phases, kernel, x_shape = residuals
  geometry = _Geometry(x_shape, kernel.shape[:-1], strides, pads, dilation)
  grad_out = _stored(grad_out)
  return (
    _input_grad(grad_out, kernel, geometry),
    _kernel_grad(phases, grad_out, kernel.shape, geometry),
  )


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def _input_grad(grad_out, kernel, geometry: _Geometry):
  # Phase r of the padded input gets, from each tap t reading phase r at start b_t,
  # grad_out shifted by b_t: grad_phase[p] = sum_t grad_out[p - b_t] * kernel[t].
  reach = [
    max(geometry.tap_phase_and_start(t)[1][i] for t in geometry.taps)
    for i in range(len(geometry.strides))
  ]
  grad_padded = _stored(
    _pad(
      grad_out,
      tuple((b, q - n) for b, q, n in zip(reach, geometry.phase_sizes, geometry.out_sizes)),
    )
  )
  grad_phases = [None] * len(geometry.phases)
  for tap in geometry.taps:
    index, start = geometry.tap_phase_and_start(tap)
    begin = tuple(b - s for b, s in zip(reach, start))
    term = _window(grad_padded, begin, geometry.phase_sizes) * kernel[tap]
    grad_phases[index] = term if grad_phases[index] is None else grad_phases[index] + term
  zeros = jnp.zeros(
    (grad_out.shape[0],) + geometry.phase_sizes + grad_out.shape[-1:], grad_out.dtype
  )
  grad_phases = [zeros if g is None else g for g in grad_phases]
  return _merge_phases(grad_phases, geometry)


def _kernel_grad(phases, grad_out, kernel_shape, geometry: _Geometry):
  batch = grad_out.shape[0]
  # The batch is summed as explicit adds of `terms` slices (a reduce over the batch axis would
  # not fuse with the tap's window): one elementwise pass per tap whose output is `terms`
  # times smaller than the input, then one small reduction over all taps.
  terms = max(d for d in range(1, min(batch, _MAX_UNROLLED_TERMS) + 1) if batch % d == 0)
  rows_per_term = batch // terms
  per_tap = []
  for tap in geometry.taps:
    index, start = geometry.tap_phase_and_start(tap)
    tap_window = _window(phases[index], start, geometry.out_sizes)
    products = None
    for term in range(terms):
      rows = slice(term * rows_per_term, (term + 1) * rows_per_term)
      product = tap_window[rows] * grad_out[rows]
      products = product if products is None else products + product
    per_tap.append(products)
  num_spatial = len(geometry.strides)
  grads = jnp.stack(per_tap).sum(axis=tuple(range(1, num_spatial + 2)))
  return grads.reshape(kernel_shape)
