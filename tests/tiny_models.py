"""Small Linen classifiers for tests that exercise the whole pipeline, not MobileNet: they compile
in seconds where MobileNet's training program takes a minute on a 2-core CPU."""

import flax.linen as nn


class TinyCnn(nn.Module):
  """Conv, BatchNorm, relu, a strided conv, mean pool, dense: layers LRP knows."""

  num_classes: int
  width: int = 8

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.width, (3, 3), strides=(2, 2), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.relu(x)
    x = nn.relu(nn.Conv(2 * self.width, (3, 3), strides=(2, 2))(x))
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))
