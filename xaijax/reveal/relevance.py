"""The explanations the reveal works on: per image, the relevance at an intermediate layer's input
(one "concept relevance" per channel and place; pooled over a region or the whole image it does not
move when the artifact does) and the input heatmap (which does, and so outlines it).

One jit-compiled LRP program per batch shape; batches are padded to one size so it compiles once.
"""

from __future__ import annotations

import dataclasses

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from xaijax import lrp
from xaijax.lrp import program as program_lib
from xaijax.lrp import tracing
from xaijax.models import registry


@dataclasses.dataclass
class Relevances:
  layer: np.ndarray  # [N, h, w, C]: relevance at the layer's input
  heatmaps: np.ndarray  # [N, H, W]: input relevance summed over channels
  logits: np.ndarray  # [N, K]
  target: np.ndarray  # [N]: the class explained

  @property
  def concepts(self) -> np.ndarray:
    """[N, C]: relevance per channel at the layer's input, summed over space."""
    return self.layer.reshape(len(self.layer), -1, self.layer.shape[-1]).sum(axis=1)


def layer_inputs(module, variables, example: np.ndarray) -> dict[str, tuple]:
  """{name: input shape} of the model's Conv/Dense/BatchNorm layers, in order (what `layer` may
  name)."""
  call_kwargs = {'train': False} if registry.takes_train_flag(module) else {}
  program = program_lib.canonical(
    tracing.trace(module, variables, jnp.asarray(example), call_kwargs)
  )
  return {
    node.calls[0].name: tuple(program.shapes[node.x].shape)
    for node in program.nodes
    if isinstance(node, program_lib.Layer)
  }


def resolve_layer(layer: str, module, variables, example: np.ndarray) -> str:
  """`layer`, or when it is '' the first layer whose input is at most a quarter of the image's side
  (local enough that a small artifact has places of its own, deep enough for concepts); the last
  layer when the model never gets that coarse."""
  shapes = layer_inputs(module, variables, example)
  if layer:
    if layer not in shapes:
      raise ValueError(
        f'reveal.layer={layer!r} is not a layer of the model; its layers: {list(shapes)}'
      )
    return layer
  side = example.shape[1]
  for name, shape in shapes.items():
    if len(shape) == 4 and shape[1] * 4 <= side:
      return name
  return list(shapes)[-1]


class Explainer:
  """Concept relevances and heatmaps of one model's variables, for any images and targets."""

  def __init__(self, classifier, variables, layer: str, composite: str, epsilon: float, batch: int):
    self.variables = variables
    self.batch = int(batch)
    module, preprocess = classifier.module, classifier.preprocess

    @jax.jit
    def explain(variables, images, target):
      explanation = lrp.explain_with_details(
        module,
        variables,
        preprocess(images),
        target=target,
        composite=composite,
        epsilon=epsilon,
        layers=(layer,),
      )
      return (
        explanation.layer_relevance[layer],
        explanation.relevance.sum(axis=-1),
        explanation.logits,
      )

    self._explain = explain

  def __call__(
    self, images: np.ndarray, targets: np.ndarray, progress: str | None = None
  ) -> Relevances:
    targets = np.asarray(targets, np.int32)
    parts = []
    starts = range(0, len(images), self.batch)
    for start in tqdm.tqdm(starts, desc=progress, disable=progress is None, leave=False):
      stop = min(start + self.batch, len(images))
      pad = self.batch - (stop - start)
      chunk = np.pad(images[start:stop], ((0, pad), (0, 0), (0, 0), (0, 0)))
      target = np.pad(targets[start:stop], (0, pad))
      outputs = self._explain(self.variables, chunk, target)
      parts.append([np.asarray(o)[: stop - start] for o in outputs])
    if not parts:
      raise ValueError('no images to explain')
    at_layer, heatmaps, logits = (np.concatenate(p) for p in zip(*parts))
    if at_layer.ndim == 2:  # a Dense layer's input: one place
      at_layer = at_layer[:, None, None, :]
    return Relevances(at_layer, heatmaps, logits, targets)


def heatmap_features(heatmaps: np.ndarray, size: int) -> np.ndarray:
  """CoRelAy's pixel SpRAy input: heatmaps area-downsampled to size x size, divided by their signed
  sum, flattened."""
  small = np.stack(
    [cv2.resize(h.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) for h in heatmaps]
  ).reshape(len(heatmaps), -1)
  total = small.sum(axis=1, keepdims=True)
  return small / np.where(np.abs(total) > 1e-12, total, 1.0)
