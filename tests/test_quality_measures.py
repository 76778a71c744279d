"""Each explanation-quality measure on cases with known answers (a perfect, an inverted and a
constant explainer of a model whose true contributions are known) and against slow references
(SciPy, scikit-learn, scikit-image, plain NumPy loops)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import skimage.metrics
import sklearn.metrics

from xaijax.quality import complexity, faithfulness, localisation, maps, randomisation

RNG = np.random.default_rng(0)
N, H, W = 3, 8, 8


def linear_model(weights):
  """Logits [M, 2]: class 0 = sum(w * x), class 1 = -sum(w * x). The exact contribution of pixel
  i to class 0 against a zero baseline is w_i * x_i."""

  def predict(images):
    score = jnp.sum(images * weights, axis=(1, 2, 3))
    return jnp.stack([score, -score], axis=1)

  return predict


@pytest.fixture(scope='module')
def linear_case():
  images = RNG.uniform(0.1, 1.0, (N, H, W, 1)).astype(np.float32)
  weights = RNG.normal(size=(H, W, 1)).astype(np.float32)
  return linear_model(weights), images, (images * weights)[..., 0]


# ------------------------------------------------------------------------------ shared pieces


def test_average_ranks_and_spearman_match_scipy_with_ties():
  a = RNG.integers(0, 6, (4, 9, 7)).astype(np.float32)  # many ties
  a[0, 0, :3] = -0.0
  b = RNG.normal(size=(4, 9, 7)).astype(np.float32)
  np.testing.assert_array_equal(
    maps.average_ranks(a.reshape(4, -1)), scipy.stats.rankdata(a.reshape(4, -1), axis=1)
  )
  ours = maps.spearman(a, b)
  for n in range(4):
    expected = scipy.stats.spearmanr(a[n].ravel(), b[n].ravel())[0]
    np.testing.assert_allclose(ours[n], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(maps.sort_values(b.reshape(4, -1)), np.sort(b.reshape(4, -1)))


def test_ssim_matches_scikit_image_with_the_pair_data_range():
  a = RNG.normal(size=(3, 12, 10)).astype(np.float32)
  b = a + RNG.normal(scale=0.7, size=a.shape).astype(np.float32)
  pairs = [(a, b), (a, -a), (a, a)]
  for x, y in pairs:
    ours = np.asarray(maps.ssim(x, y))
    for n in range(3):
      both = np.concatenate([x[n].ravel(), y[n].ravel()])
      expected = skimage.metrics.structural_similarity(
        x[n], y[n], data_range=float(both.max() - both.min())
      )
      np.testing.assert_allclose(ours[n], expected, rtol=1e-4, atol=1e-5)
  constant = np.ones((1, 8, 8), np.float32)
  np.testing.assert_allclose(maps.ssim(constant, constant), [1.0])


def test_pearson_and_spearman_of_a_constant_side_are_undefined():
  assert np.all(np.isnan(maps.pearson(jnp.ones((2, 5)), jnp.arange(10.0).reshape(2, 5))))
  assert np.all(np.isnan(maps.spearman(jnp.zeros((2, 8, 8)), jnp.ones((2, 8, 8)).cumsum(1))))


# ------------------------------------------------------------------------------ faithfulness


def region_curve_by_loop(predict, images, relevance, target, patch, regions, order, baseline):
  """Quantus' RegionPerturbation, one image and one step at a time (softmax of the target)."""
  curves = []
  for n in range(len(images)):
    x = images[n].copy()
    sums = relevance[n].reshape(H // patch, patch, W // patch, patch).sum(axis=(1, 3)).ravel()
    ranking = np.argsort(-sums if order == 'morf' else sums, kind='stable')
    value = {'black': x.min(), 'zero': 0.0}[baseline]
    start = jax.nn.softmax(predict(x[None]))[0, target[n]]
    curve = []
    for p in ranking[:regions]:
      row, col = divmod(int(p), W // patch)
      x[row * patch : (row + 1) * patch, col * patch : (col + 1) * patch] = value
      curve.append(float(start - jax.nn.softmax(predict(x[None]))[0, target[n]]))
    curves.append(curve)
  return np.array(curves)


@pytest.mark.parametrize('order', ['morf', 'lerf'])
def test_region_perturbation_matches_a_per_image_loop(linear_case, order):
  predict, images, contributions = linear_case
  relevance = contributions + RNG.normal(scale=0.3, size=contributions.shape)
  target = np.array([0, 1, 0])
  ours = faithfulness.region_perturbation(
    predict, images, relevance, target, patch=2, regions=10, order=order, chunk=3
  )
  expected = region_curve_by_loop(predict, images, relevance, target, 2, 10, order, 'black')
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)


def test_region_perturbation_of_perfect_inverted_and_constant_maps(linear_case):
  predict, images, contributions = linear_case
  target = np.zeros(N, np.int32)

  def aopc_of(relevance, order='morf'):
    curve = faithfulness.region_perturbation(
      predict,
      images,
      relevance,
      target,
      patch=2,
      regions=16,
      order=order,
      baseline='zero',
      softmax=False,
    )
    return curve, np.asarray(faithfulness.aopc(curve))

  patch_contributions = contributions.reshape(N, 4, 2, 4, 2).sum(axis=(2, 4)).reshape(N, -1)
  perfect, perfect_aopc = aopc_of(contributions)
  # Replacing patch p by 0 removes exactly its contribution: the curve is the running sum of the
  # patches' contributions from the largest down.
  np.testing.assert_allclose(
    perfect, np.cumsum(-np.sort(-patch_contributions, axis=1), axis=1), rtol=1e-5, atol=1e-5
  )
  inverted, inverted_aopc = aopc_of(-contributions)
  np.testing.assert_allclose(
    inverted, np.cumsum(np.sort(patch_contributions, axis=1), axis=1), rtol=1e-5, atol=1e-5
  )
  constant, constant_aopc = aopc_of(np.ones_like(contributions))
  np.testing.assert_allclose(constant, np.cumsum(patch_contributions, axis=1), rtol=1e-5, atol=1e-5)
  assert np.all(perfect_aopc > constant_aopc) and np.all(constant_aopc > inverted_aopc)
  # LeRF of the perfect map is MoRF of the inverted one.
  np.testing.assert_allclose(aopc_of(contributions, 'lerf')[0], inverted, rtol=1e-5, atol=1e-5)


def test_region_perturbation_checks_its_arguments(linear_case):
  predict, images, contributions = linear_case
  with pytest.raises(ValueError, match='patch size 3 must divide'):
    faithfulness.region_perturbation(predict, images, contributions, 0, patch=3)
  with pytest.raises(ValueError, match='needs a PRNG key'):
    faithfulness.region_perturbation(predict, images, contributions, 0, order='random')
  with pytest.raises(ValueError, match='Unknown baseline'):
    faithfulness.region_perturbation(predict, images, contributions, 0, baseline='grey')


def test_random_order_ends_where_the_ranked_orders_end(linear_case):
  predict, images, contributions = linear_case
  kwargs = dict(patch=2, regions=16, baseline='zero', softmax=False)
  ranked = faithfulness.region_perturbation(predict, images, contributions, 0, **kwargs)
  random = faithfulness.region_perturbation(
    predict, images, contributions, 0, order='random', key=jax.random.key(0), **kwargs
  )
  np.testing.assert_allclose(random[:, -1], ranked[:, -1], rtol=1e-5, atol=1e-5)
  assert np.all(faithfulness.aopc(ranked) > faithfulness.aopc(random))


def test_faithfulness_correlation_of_perfect_inverted_and_constant_maps(linear_case):
  predict, images, contributions = linear_case
  kwargs = dict(runs=12, subset=5, baseline='zero')
  key = jax.random.key(3)
  target = np.zeros(N, np.int32)
  perfect = faithfulness.faithfulness_correlation(
    predict, images, contributions, target, key, **kwargs
  )
  inverted = faithfulness.faithfulness_correlation(
    predict, images, -contributions, target, key, **kwargs
  )
  constant = faithfulness.faithfulness_correlation(
    predict, images, np.ones_like(contributions), target, key, **kwargs
  )
  np.testing.assert_allclose(perfect, 1.0, atol=1e-4)
  np.testing.assert_allclose(inverted, -1.0, atol=1e-4)
  assert np.all(np.isnan(constant))  # no variation in the relevance sums: undefined
  with pytest.raises(ValueError, match='subset size'):
    faithfulness.faithfulness_correlation(predict, images, contributions, 0, key, subset=64)


def test_baselines():
  x = jnp.asarray(RNG.normal(size=(2, 3, 3, 1)), jnp.float32)
  np.testing.assert_allclose(faithfulness.baseline_values(x, 'black')[:, 0, 0, 0], x.min((1, 2, 3)))
  np.testing.assert_allclose(faithfulness.baseline_values(x, 'white')[:, 0, 0, 0], x.max((1, 2, 3)))
  np.testing.assert_allclose(
    faithfulness.baseline_values(x, 'mean')[:, 0, 0, 0], x.mean((1, 2, 3)), rtol=1e-6
  )


# ------------------------------------------------------------------------------ localisation


def test_localisation_of_perfect_inverted_and_constant_maps():
  mask = np.zeros((N, H, W), np.uint8)
  mask[:, 2:5, 1:4] = 1
  perfect = mask * RNG.uniform(0.5, 1.0, mask.shape)  # relevance only inside the mask
  inverted = (1 - mask) * RNG.uniform(0.5, 1.0, mask.shape)
  constant = np.ones(mask.shape)
  for measure in (
    localisation.relevance_mass_accuracy,
    localisation.relevance_rank_accuracy,
    localisation.pointing_game,
    localisation.auc,
  ):
    np.testing.assert_allclose(measure(perfect, mask), 1.0, rtol=1e-6)
    np.testing.assert_allclose(measure(inverted, mask), 0.0, atol=1e-6)
  np.testing.assert_allclose(localisation.relevance_mass_accuracy(constant, mask), 9 / 64)
  np.testing.assert_allclose(localisation.auc(constant, mask), 0.5)


def test_auc_matches_scikit_learn_with_ties_and_is_nan_for_an_empty_mask():
  relevance = RNG.integers(0, 4, (4, 6, 6)).astype(np.float32)
  mask = (RNG.uniform(size=(4, 6, 6)) < 0.3).astype(np.uint8)
  mask[3] = 0
  ours = np.asarray(localisation.auc(relevance, mask))
  for n in range(3):
    expected = sklearn.metrics.roc_auc_score(mask[n].ravel(), relevance[n].ravel())
    np.testing.assert_allclose(ours[n], expected, rtol=1e-6)
  assert np.isnan(ours[3])


# ------------------------------------------------------------------------------ complexity


def test_sparseness_and_complexity_of_one_hot_and_constant_maps():
  one_hot = np.zeros((1, H, W))
  one_hot[0, 3, 4] = 2.0
  constant = np.full((1, H, W), 0.5)
  np.testing.assert_allclose(complexity.sparseness(one_hot), (H * W - 1) / (H * W), rtol=1e-5)
  np.testing.assert_allclose(complexity.sparseness(constant), 0.0, atol=1e-6)
  np.testing.assert_allclose(complexity.complexity(one_hot), 0.0, atol=1e-6)
  np.testing.assert_allclose(complexity.complexity(constant), np.log(H * W), rtol=1e-6)


def test_sparseness_and_complexity_match_quantus_formulas_in_numpy():
  relevance = RNG.normal(size=(4, H, W)).astype(np.float32)
  for n in range(4):
    a = np.abs(relevance[n]).ravel() / np.abs(relevance[n]).max()
    gini_input = np.sort(a + 1e-7)
    k = np.arange(1, a.size + 1)
    gini = ((2 * k - a.size - 1) * gini_input).sum() / (a.size * gini_input.sum())
    shares = a / a.sum()
    entropy = -(shares * np.log(shares + 1e-12)).sum()
    np.testing.assert_allclose(complexity.sparseness(relevance)[n], gini, rtol=1e-5)
    np.testing.assert_allclose(complexity.complexity(relevance)[n], entropy, rtol=1e-5)


def test_discrete_entropy_matches_numpy_histogram_and_scipy():
  relevance = RNG.normal(size=(3, 16, 16)).astype(np.float32)
  relevance[2] = 1.5  # constant: one bin
  ours = np.asarray(complexity.discrete_entropy(relevance, bins=20))
  for n in range(3):
    counts, _ = np.histogram(relevance[n], bins=20)
    np.testing.assert_allclose(ours[n], scipy.stats.entropy(counts), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------ randomisation


def test_efficient_mprt_and_random_logit_on_known_maps():
  smooth = np.tile(np.linspace(0, 1, W), (2, H, 1)).astype(np.float32)
  noisy = RNG.normal(size=smooth.shape).astype(np.float32)
  binary = (smooth > 0.5).astype(np.float32)
  rise = randomisation.efficient_mprt(binary, complexity.discrete_entropy(noisy))
  assert np.all(np.asarray(rise) > 1)  # two values -> a spread histogram: entropy rises
  same = randomisation.efficient_mprt(noisy, complexity.discrete_entropy(noisy))
  np.testing.assert_allclose(same, 0.0, atol=1e-6)
  np.testing.assert_allclose(randomisation.random_logit(noisy, 3 * noisy), 1.0, rtol=1e-5)
  independent = RNG.normal(size=(2, 32, 32)).astype(np.float32)
  other = RNG.normal(size=(2, 32, 32)).astype(np.float32)
  assert np.all(np.abs(np.asarray(randomisation.random_logit(independent, other))) < 0.2)


def test_cascade_cuts_end_with_the_whole_model():
  assert randomisation.cascade_cuts(55, 5) == [11, 22, 33, 44, 55]
  assert randomisation.cascade_cuts(3, 10) == [1, 2, 3]
  assert randomisation.cascade_cuts(7, 1) == [7]


def test_sobel_reference_for_the_edges_control():
  from xaijax.quality import explainers

  x = RNG.normal(size=(2, 9, 7, 2)).astype(np.float32)
  ours = np.asarray(explainers.sobel_magnitude(jnp.asarray(x)))
  for n in range(2):
    for c in range(2):
      image = x[n, :, :, c]
      expected = np.hypot(
        scipy.ndimage.sobel(image, axis=0, mode='nearest'),
        scipy.ndimage.sobel(image, axis=1, mode='nearest'),
      )
      np.testing.assert_allclose(ours[n, :, :, c], expected, rtol=1e-4, atol=1e-5)
