"""Cross-check against Zennit (PyTorch): the same MobileNet weights give the same relevance.

Skipped where torch or zennit is not installed (both are optional, benchmark-only packages).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import lrp
from xaijax.models.mobilenet import MobileNet
from xaijax.testing import torch_reference

try:
  torch, zennit = torch_reference.import_zennit()
except ImportError:
  pytest.skip('torch and zennit are not installed', allow_module_level=True)

CLASSES = 4


@pytest.fixture(scope='module')
def networks():
  """Tiny float64 MobileNet in Flax and in PyTorch with identical, randomised variables."""
  with jax.enable_x64(True):
    model = MobileNet(num_classes=CLASSES, alpha=0.25, dtype=jnp.float64, depthwise_impl='xla')
    # 33 pixels: the first layer pads symmetrically, so Zennit's z-box and flat see the same
    # inputs as ours (see torch_reference.torch_mobilenet).
    x = jax.random.uniform(jax.random.key(0), (2, 33, 33, 1), jnp.float64, -1.0, 1.0)
    variables = jax.jit(model.init, static_argnames='train')(jax.random.key(1), x, train=False)
    keys = iter(jax.random.split(jax.random.key(2), 200))

    def draw(path, leaf):
      leaf = leaf.astype(jnp.float64)
      name = jax.tree_util.keystr(path)
      if '_bn' not in name and 'bias' not in name:
        return leaf
      low, high = {
        'mean': (-0.3, 0.3),
        'var': (0.5, 2.0),
        'scale': (1.5, 3.0),
        'bias': (-0.3, 0.3),
      }[path[-1].key]
      return jax.random.uniform(next(keys), leaf.shape, leaf.dtype, low, high)

    variables = jax.tree_util.tree_map_with_path(draw, variables)
  torch_model = torch_reference.torch_mobilenet(torch, CLASSES, 0.25, 1, 33).double().eval()
  torch_reference.load_flax_weights(torch, torch_model, variables)
  return model, variables, x, torch_model


def test_torch_copy_computes_the_same_logits(networks):
  model, variables, x, torch_model = networks
  with jax.enable_x64(True):
    ours = model.apply(variables, x, train=False)
  theirs = torch_model(torch.tensor(np.transpose(np.asarray(x), (0, 3, 1, 2)))).detach().numpy()
  np.testing.assert_allclose(theirs, ours, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
  'composite', ['epsilon', 'epsilon_plus', 'epsilon_gamma_box', 'epsilon_plus_flat']
)
def test_relevance_matches_zennit(networks, composite):
  model, variables, x, torch_model = networks
  target = np.array([1, 3])
  with jax.enable_x64(True):
    ours = np.asarray(lrp.explain(model, variables, x, target=target, composite=composite))
  theirs = torch_reference.zennit_relevance(
    torch, zennit, torch_model, torch_reference.zennit_composite(zennit, composite), x, target
  )
  np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9 * np.abs(theirs).max())
