"""Slow, plain references for the explanation-quality measures: one image (and one perturbation,
one layer) at a time, NumPy, SciPy, scikit-image and scikit-learn for the arithmetic, and a
single-image model call for the model. Written from the papers and Quantus 0.6.0's conventions,
not from `xaijax.quality`; the tests check our batched measures against them and
`scripts/benchmark.py quality` times them when Quantus is not installed. Never used by the
library itself.

`predict(image [H, W, C]) -> logits [K]` and `explain(variables, image, target) -> map [H, W]`.
"""

from __future__ import annotations

import numpy as np
import scipy.special
import scipy.stats


def _baseline(image, baseline: str) -> float:
  return {
    'black': image.min(),
    'white': image.max(),
    'mean': image.mean(),
    'zero': 0.0,
  }[baseline]


def _score(predict, image, target, softmax: bool) -> float:
  logits = np.asarray(predict(image), np.float64)
  return float(scipy.special.softmax(logits)[target] if softmax else logits[target])


def region_perturbation(predict, images, maps, targets, patch, regions, order, baseline, softmax):
  """[N, regions]: f(x) - f(x with the first k patches replaced), one patch per step."""
  curves = []
  for image, relevance, target in zip(images, maps, targets):
    height, width = relevance.shape
    sums = relevance.reshape(height // patch, patch, width // patch, patch).sum(axis=(1, 3))
    ranking = np.argsort(-sums.ravel() if order == 'morf' else sums.ravel(), kind='stable')
    value = _baseline(image, baseline)
    perturbed = np.array(image, copy=True)
    start = _score(predict, image, target, softmax)
    curve = []
    for index in ranking[:regions]:
      row, col = divmod(int(index), width // patch)
      perturbed[row * patch : (row + 1) * patch, col * patch : (col + 1) * patch] = value
      curve.append(start - _score(predict, perturbed, target, softmax))
    curves.append(curve)
  return np.array(curves)


def faithfulness_correlation(predict, images, maps, targets, runs, subset, baseline, rng):
  """[N]: Pearson r over `runs` random pixel subsets between their relevance and the drop of the
  target logit when they are replaced."""
  scores = []
  for image, relevance, target in zip(images, maps, targets):
    flat = relevance.ravel()
    start = _score(predict, image, target, softmax=False)
    value = _baseline(image, baseline)
    sums, drops = [], []
    for _ in range(runs):
      chosen = rng.choice(flat.size, subset, replace=False)
      perturbed = np.array(image, copy=True).reshape(flat.size, -1)
      perturbed[chosen] = value
      drops.append(start - _score(predict, perturbed.reshape(image.shape), target, False))
      sums.append(flat[chosen].sum())
    scores.append(np.corrcoef(sums, drops)[0, 1] if np.std(sums) * np.std(drops) > 0 else np.nan)
  return np.array(scores)


def normalised_abs(relevance):
  magnitude = np.abs(relevance)
  peak = magnitude.max()
  return magnitude / peak if peak > 0 else magnitude


def ssim(a, b) -> float:
  import skimage.metrics  # pylint: disable=import-outside-toplevel

  both = np.concatenate([a.ravel(), b.ravel()])
  data_range = float(both.max() - both.min())
  if data_range == 0:
    return 1.0
  return float(skimage.metrics.structural_similarity(a, b, data_range=data_range))


def discrete_entropy(relevance, bins: int = 100) -> float:
  counts, _ = np.histogram(relevance, bins=bins)
  return float(scipy.stats.entropy(counts))


def mprt(explain, variables, random_variables, layers, cuts, images, targets, randomise):
  """{'spearman', 'ssim', 'entropy'}: [cuts, N]. `randomise(variables, random_variables, layers)`
  replaces the variables of the named layers; `layers` runs top-down."""
  originals = [np.asarray(explain(variables, image, t)) for image, t in zip(images, targets)]
  out = {'spearman': [], 'ssim': [], 'entropy': []}
  for cut in cuts:
    randomised = randomise(variables, random_variables, layers[:cut])
    rows = {name: [] for name in out}
    for image, target, original in zip(images, targets, originals):
      changed = np.asarray(explain(randomised, image, target))
      a, b = normalised_abs(original), normalised_abs(changed)
      rows['spearman'].append(scipy.stats.spearmanr(a.ravel(), b.ravel())[0])
      rows['ssim'].append(ssim(a, b))
      rows['entropy'].append(discrete_entropy(changed))
    for name in out:
      out[name].append(rows[name])
  return {name: np.array(values) for name, values in out.items()}


def random_logit(explain, variables, images, targets, others):
  """[N]: SSIM between the maps of the target and of another class, each / max |map|."""
  scores = []
  for image, target, other in zip(images, targets, others):
    a = np.asarray(explain(variables, image, target))
    b = np.asarray(explain(variables, image, other))
    scores.append(ssim(a / np.abs(a).max(), b / np.abs(b).max()))
  return np.array(scores)


def localisation(maps, masks) -> dict:
  """Per image: relevance mass (positive relevance), rank accuracy, pointing game, ROC AUC."""
  import sklearn.metrics  # pylint: disable=import-outside-toplevel

  out = {'RelevanceMassAccuracy': [], 'RelevanceRankAccuracy': [], 'PointingGame': [], 'AUC': []}
  for relevance, mask in zip(maps, masks):
    flat, inside = relevance.ravel(), mask.ravel() > 0
    positive = np.maximum(flat, 0)
    out['RelevanceMassAccuracy'].append(positive[inside].sum() / positive.sum())
    top = np.argsort(-flat, kind='stable')[: inside.sum()]
    out['RelevanceRankAccuracy'].append(inside[top].mean())
    out['PointingGame'].append(float(inside[np.argmax(flat)]))
    out['AUC'].append(sklearn.metrics.roc_auc_score(inside, flat))
  return {name: np.array(values) for name, values in out.items()}


def complexity(maps) -> dict:
  """Per image: Gini index of |map| + 1e-7 and entropy of |map| / sum |map| (normalised)."""
  out = {'Sparseness': [], 'Complexity': []}
  for relevance in maps:
    a = normalised_abs(relevance).ravel()
    ordered = np.sort(a + 1e-7)
    k = np.arange(1, a.size + 1)
    out['Sparseness'].append(((2 * k - a.size - 1) * ordered).sum() / (a.size * ordered.sum()))
    shares = a / a.sum()
    out['Complexity'].append(-(shares * np.log(shares + 1e-12)).sum())
  return {name: np.array(values) for name, values in out.items()}
