"""Agreement with Quantus 0.6.0 (the library whose measures we follow) on the same model, maps and
masks. Skipped where quantus or torch is not installed (pip install -r requirements-reference.txt).

Compared where the same inputs give Quantus and us the same work: RegionPerturbation curves,
FaithfulnessCorrelation of a perfect explainer, RandomLogit with two classes (the other class is
then fixed; Quantus' SSIM runs on the flattened maps, a 1-D window along the rows, so its own
SSIM is handed the 2-D maps that ours compares), the localisation and complexity measures, and
EfficientMPRT's discrete entropy.
Not compared: MPRT and EfficientMPRT themselves (their randomised weights come from PyTorch's
initialisers there and from the Flax model's here) and FaithfulnessCorrelation's random subsets.
"""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.quality import complexity, explainers, faithfulness, localisation, randomisation
from xaijax.testing import torch_reference

try:
  torch, _ = torch_reference.import_zennit()  # Quantus imports Zennit, which needs the stub
  import quantus
  from quantus.functions import complexity_func, similarity_func
except ImportError:
  pytest.skip('quantus and torch are not installed', allow_module_level=True)

N, H, W = 4, 8, 8
RNG = np.random.default_rng(0)


class Linear(nn.Module):
  @nn.compact
  def __call__(self, x):
    score = nn.Dense(1, use_bias=False)(x.reshape(x.shape[0], -1))
    return jnp.concatenate([score, -score], axis=1)


@pytest.fixture(scope='module')
def models():
  """The same two-class linear model in Flax (NHWC) and PyTorch (NCHW)."""
  weights = RNG.normal(size=(H, W)).astype(np.float32)
  variables = {'params': {'Dense_0': {'kernel': jnp.asarray(weights.reshape(-1, 1))}}}
  torch_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(H * W, 2, bias=False))
  with torch.no_grad():
    torch_model[1].weight.copy_(torch.tensor(np.stack([weights.ravel(), -weights.ravel()])))
  images = RNG.uniform(-1, 1, (N, H, W, 1)).astype(np.float32)
  return Linear(), variables, torch_model.eval(), images, weights


def nchw(array):
  return np.transpose(array, (0, 3, 1, 2))


def quietly(metric, **call):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return np.asarray(metric(**call, device='cpu'), np.float64)


@pytest.mark.parametrize('order', ['morf', 'lerf'])
def test_region_perturbation_curves_agree(models, order):
  model, variables, torch_model, images, _ = models
  relevance = RNG.normal(size=(N, H, W)).astype(np.float32)
  target = np.array([0, 1, 1, 0])
  theirs = quietly(
    quantus.RegionPerturbation(
      patch_size=2, order=order, regions_evaluation=10, disable_warnings=True
    ),
    model=torch_model,
    x_batch=nchw(images),
    y_batch=target,
    a_batch=relevance[:, None],
  )
  ours = faithfulness.region_perturbation(
    lambda x: model.apply(variables, x), images, relevance, target, patch=2, regions=10, order=order
  )
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_faithfulness_correlation_of_a_perfect_explainer_is_one_in_both(models):
  model, variables, torch_model, images, weights = models
  # The exact contribution of each pixel against the 'black' baseline (the image minimum).
  minimum = images.min(axis=(1, 2, 3), keepdims=True)
  contributions = ((images - minimum) * weights[..., None])[..., 0]
  target = np.zeros(N, np.int64)
  theirs = quietly(
    quantus.FaithfulnessCorrelation(
      nr_runs=20, subset_size=6, return_aggregate=False, disable_warnings=True
    ),
    model=torch_model,
    x_batch=nchw(images),
    y_batch=target,
    a_batch=contributions[:, None],
  )
  ours = faithfulness.faithfulness_correlation(
    lambda x: model.apply(variables, x), images, contributions, target, jax.random.key(0),
    runs=20, subset=6,
  )  # fmt: skip
  np.testing.assert_allclose(theirs, 1.0, atol=1e-4)
  np.testing.assert_allclose(ours, 1.0, atol=1e-4)


def test_random_logit_agrees_with_two_classes(models):
  model, variables, torch_model, images, _ = models
  target = np.array([0, 1, 0, 1])

  def torch_gradient(model, inputs, targets, **kwargs):
    x = torch.tensor(np.asarray(inputs), requires_grad=True)
    logits = model(x)
    logits[torch.arange(len(x)), torch.as_tensor(np.asarray(targets))].sum().backward()
    return x.grad.numpy()

  def ssim_of_images(a, b, batched=True, **kwargs):
    # Quantus passes flattened maps, so its SSIM slides a 1-D window along the rows; we compare
    # images, so the 2-D maps go into Quantus' own SSIM here.
    return similarity_func.ssim(a.reshape(-1, H, W), b.reshape(-1, H, W), batched=batched)

  ours_maps = explainers.explain('gradient', model, variables, images, target, None)[..., 0]
  theirs = quietly(
    quantus.RandomLogit(num_classes=2, similarity_func=ssim_of_images, disable_warnings=True),
    model=torch_model,
    x_batch=nchw(images),
    y_batch=target,
    a_batch=np.asarray(ours_maps)[:, None],
    explain_func=torch_gradient,
  )
  other = explainers.explain('gradient', model, variables, images, 1 - target, None)[..., 0]
  ours = randomisation.random_logit(ours_maps, other)
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_localisation_and_complexity_agree():
  relevance = np.abs(RNG.normal(size=(N, 1, H, W))).astype(np.float32)  # >= 0: RMA agrees
  relevance[0, 0, 2, 3] = 9.0
  masks = (RNG.uniform(size=(N, 1, H, W)) < 0.3).astype(np.float32)
  x = RNG.uniform(size=(N, 1, H, W)).astype(np.float32)
  pairs = [
    (quantus.RelevanceMassAccuracy, localisation.relevance_mass_accuracy),
    (quantus.RelevanceRankAccuracy, localisation.relevance_rank_accuracy),
    (quantus.PointingGame, localisation.pointing_game),
    (quantus.AUC, localisation.auc),
  ]
  for metric, ours in pairs:
    theirs = quietly(
      metric(disable_warnings=True), model=None, x_batch=x, y_batch=np.zeros(N, int),
      a_batch=relevance, s_batch=masks,
    )  # fmt: skip
    np.testing.assert_allclose(
      ours(relevance[:, 0], masks[:, 0]), theirs, rtol=1e-5, err_msg=metric
    )
  for metric, ours in (
    (quantus.Sparseness, complexity.sparseness),
    (quantus.Complexity, complexity.complexity),
  ):
    theirs = quietly(
      metric(disable_warnings=True),
      model=None,
      x_batch=x,
      y_batch=np.zeros(N, int),
      a_batch=relevance,
    )
    np.testing.assert_allclose(ours(relevance[:, 0]), theirs, rtol=1e-4, err_msg=metric)


def test_discrete_entropy_agrees():
  relevance = RNG.normal(size=(N, H, W)).astype(np.float32)
  theirs = [complexity_func.discrete_entropy(a, a, n_bins=100) for a in relevance]
  np.testing.assert_allclose(complexity.discrete_entropy(relevance, 100), theirs, rtol=1e-5)
