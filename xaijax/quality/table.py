"""The explanation-quality table: every explainer scored by every measure, on every seed at once.

    scores = table.evaluate(model, stacked_variables, x, masks, settings)   # seed axis first
    # scores['explainers'][method][measure] -> [seeds] (mean over images)

Every model an explainer must explain (each seed's trained model for its predicted class and for
another class, and each point of the MPRT cascade) is stacked on one leading axis and explained
by one compiled program (`explainers.StackExplainer`: one per LRP composite, one gradient program
for all gradient methods). One program perturbs the images for the faithfulness measures of
every explainer (the maps are its input), one compares the cascade's maps, one scores the maps
(localisation, complexity). The target is each seed's predicted class.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.core
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from xaijax.quality import complexity, explainers, faithfulness, localisation, randomisation

# name -> (category, which direction is better, what it is)
MEASURES = {
  'MPRT': ('randomisation', 'lower', 'Spearman of |maps|, trained vs fully randomised model'),
  'MPRT_SSIM': ('randomisation', 'lower', 'SSIM of |maps|, trained vs fully randomised model'),
  'EfficientMPRT': ('randomisation', 'higher', 'relative rise of map entropy when randomised'),
  'RandomLogit': ('randomisation', 'lower', 'SSIM of the maps of the target and another class'),
  'RegionPerturbation_MoRF': ('faithfulness', 'higher', 'AOPC, most relevant regions first'),
  'RegionPerturbation_LeRF': ('faithfulness', 'lower', 'AOPC, least relevant regions first'),
  'FaithfulnessCorrelation': ('faithfulness', 'higher', 'Pearson r, subset relevance vs drop'),
  'RelevanceMassAccuracy': ('localisation', 'higher', 'positive relevance share in the mask'),
  'RelevanceRankAccuracy': ('localisation', 'higher', 'top-K pixels in the mask, K = mask size'),
  'PointingGame': ('localisation', 'higher', 'the top pixel lies in the mask'),
  'AUC': ('localisation', 'higher', 'ROC AUC of the map against the mask'),
  'Sparseness': ('complexity', 'higher', 'Gini index of |map|'),
  'Complexity': ('complexity', 'lower', 'entropy of |map| / sum |map|'),
}
_MPRT_MEASURES = ('MPRT', 'MPRT_SSIM', 'EfficientMPRT')
_REGION_MEASURES = {'morf': 'RegionPerturbation_MoRF', 'lerf': 'RegionPerturbation_LeRF'}
_LOCALISATION = {
  'RelevanceMassAccuracy': localisation.relevance_mass_accuracy,
  'RelevanceRankAccuracy': localisation.relevance_rank_accuracy,
  'PointingGame': localisation.pointing_game,
  'AUC': localisation.auc,
}
_COMPLEXITY = {'Sparseness': complexity.sparseness, 'Complexity': complexity.complexity}


@dataclasses.dataclass(frozen=True)
class Settings:
  """What to measure and how big (the workflow builds it from config.quality, `from_config`)."""

  explainers: tuple[str, ...]
  measures: tuple[str, ...]
  explainer: explainers.Settings
  mprt_cuts: int  # measured points of the top-down cascade; the last is the whole model
  entropy_bins: int  # EfficientMPRT's histogram
  region_patch: int
  regions: int  # regions replaced, one per step
  baseline: str  # faithfulness.BASELINES
  region_softmax: bool
  faithfulness_runs: int
  faithfulness_subset: int  # pixels per random subset
  images_per_call: int  # through the model per call of a program (bounds memory)
  seed: int

  @classmethod
  def from_config(cls, quality, lrp_epsilon: float) -> Settings:
    return cls(
      explainers=tuple(quality.explainers),
      measures=tuple(quality.measures),
      explainer=explainers.Settings(
        epsilon=float(lrp_epsilon),
        integrated_gradients_steps=int(quality.integrated_gradients_steps),
        smoothgrad_samples=int(quality.smoothgrad_samples),
        smoothgrad_noise=float(quality.smoothgrad_noise),
      ),
      mprt_cuts=int(quality.mprt_cuts),
      entropy_bins=int(quality.entropy_bins),
      region_patch=int(quality.region_patch),
      regions=int(quality.regions),
      baseline=quality.baseline,
      region_softmax=bool(quality.region_softmax),
      faithfulness_runs=int(quality.faithfulness_runs),
      faithfulness_subset=int(quality.faithfulness_subset),
      images_per_call=int(quality.images_per_call),
      seed=int(quality.seed),
    )

  def wants(self, *names) -> bool:
    return any(name in self.measures for name in names)


_POSITIVE_KEYS = (
  'images',
  'integrated_gradients_steps',
  'smoothgrad_samples',
  'mprt_cuts',
  'entropy_bins',
  'region_patch',
  'regions',
  'faithfulness_runs',
  'images_per_call',
)


def config_problems(quality, resolution: int) -> list[str]:
  """What is wrong with config.quality, each saying which key to change and to what."""
  problems = []
  for key, known in (('explainers', explainers.EXPLAINERS), ('measures', tuple(MEASURES))):
    unknown = [name for name in quality[key] if name not in known]
    if unknown:
      problems.append(f'quality.{key}: unknown {unknown}; choose from {list(known)}')
  if quality.baseline not in faithfulness.BASELINES:
    problems.append(
      f'quality.baseline={quality.baseline!r}: choose one of {faithfulness.BASELINES}'
    )
  if quality.mask not in ('mask', 'defect'):
    problems.append(f"quality.mask={quality.mask!r}: choose 'mask' (the overlay) or 'defect'")
  for key in _POSITIVE_KEYS:
    if int(quality[key]) < 1:
      problems.append(f'quality.{key}={quality[key]}: must be at least 1')
  if int(quality.region_patch) >= 1 and resolution % int(quality.region_patch):
    problems.append(
      f'quality.region_patch={quality.region_patch}: must divide data.resolution={resolution}'
    )
  if not 0 < int(quality.faithfulness_subset) < resolution * resolution:
    problems.append(
      f'quality.faithfulness_subset={quality.faithfulness_subset}: must lie between 1 and the '
      f'pixel count {resolution * resolution} - 1'
    )
  return problems


def evaluate(model, variables, x, masks, settings: Settings, show_progress: bool = False) -> dict:
  """Per explainer and measure the mean over images of every seed, plus the curves behind them.

  Args:
    model: a Linen classifier (logits [N, K]).
    variables: its variables with a leading seed axis (as `TrainResult.variables`).
    x: model inputs [N, H, W, C] (preprocessed); masks: [N, H, W(, 1)] for the localisation
      measures, or None to skip them.
    settings: `Settings`.

  Returns:
    {'explainers': {method: {measure: [S]}}, 'mprt_curves': {method: {'spearman'|'ssim':
    [S, cuts]}}, 'region_curves': {method: {'morf'|'lerf': [S, regions]}}, 'cascade': [the
    lowest layer randomised at each cut], 'targets': [S, N]}
  """
  return QualityTable(model, settings)(variables, x, masks, show_progress)


class QualityTable:
  """`evaluate` with its compiled programs kept, so that another call with the same shapes (other
  seeds, other images) compiles nothing; its parts are public for the benchmark."""

  def __init__(self, model, settings: Settings):
    self.model, self.settings = model, settings
    self.call_kwargs = explainers.call_kwargs_of(model)
    self.logits = explainers.logits_fn(model)
    self._init = jax.jit(functools.partial(model.init, **self.call_kwargs))
    self._all_logits = jax.jit(jax.vmap(self.logits, in_axes=(0, None)))
    bins = settings.entropy_bins
    compare = functools.partial(randomisation.compare_to_original, bins=bins)
    self._compare = jax.jit(jax.vmap(jax.vmap(compare, in_axes=(None, 0))))
    efficient = functools.partial(randomisation.efficient_mprt, bins=bins)
    self._efficient_mprt = jax.jit(jax.vmap(efficient))
    self._random_logit = jax.jit(jax.vmap(randomisation.random_logit))
    self._explainers, self._faithfulness, self._map_scores = {}, {}, {}
    self._keys = jax.random.split(jax.random.key(settings.seed), 4)

  def __call__(self, variables, x, masks, show_progress: bool = False) -> dict:
    # Training keeps an empty 'batch_stats' for models without BatchNorm, which `init` omits.
    variables = {name: tree for name, tree in flax.core.unfreeze(variables).items() if tree}
    x = jnp.asarray(x)
    logits = self._all_logits(variables, x)
    targets = jnp.argmax(logits, axis=-1)  # [S, N]
    cascade = self.cascade(variables, x, num_classes=int(logits.shape[-1]))
    result = {'explainers': {}, 'mprt_curves': {}, 'region_curves': {}, 'targets': targets}
    result['cascade'] = cascade['names']
    settings = self.settings
    methods = tqdm.tqdm(settings.explainers, desc='explanation quality', disable=not show_progress)
    for method in methods:
      methods.set_postfix_str(method)
      maps, scores = self.randomisation_scores(method, variables, x, targets, cascade)
      if 'spearman' in scores:
        result['mprt_curves'][method] = {
          name: _mean_over_images(scores.pop(name)) for name in ('spearman', 'ssim')
        }
      scores.update(self.map_scores(maps, masks))
      curves = self.faithfulness_scores(variables, x, maps, targets)
      result['region_curves'][method] = {
        order: np.asarray(curves.pop(order)).mean(axis=1)
        for order in _REGION_MEASURES
        if order in curves
      }
      scores.update(curves)
      result['explainers'][method] = {
        name: _mean_over_images(scores[name]) for name in settings.measures if name in scores
      }
    return result

  def cascade(self, variables, x, num_classes: int) -> dict:
    """What the randomisation measures need: the layers' ranks, the MPRT cuts (and the lowest
    layer each reaches), a fresh initialisation, the number of classes (RandomLogit)."""
    one_seed = jax.tree.map(lambda leaf: leaf[0], variables)
    paths = randomisation.layer_paths(self.model, one_seed, x[:1], self.call_kwargs)
    cuts = randomisation.cascade_cuts(len(paths), self.settings.mprt_cuts)
    return {
      'ranks': randomisation.layer_ranks(one_seed, paths),
      'cuts': cuts,
      'names': ['/'.join(paths[len(paths) - cut]) for cut in cuts],
      'random_variables': flax.core.unfreeze(self._init(self._keys[0], x[:1])),
      'num_classes': num_classes,
    }

  def explanations(self, method, variables, x, targets, cascade, with_original: bool = True):
    """Maps [S, V, N, H, W] of every model an explainer must explain, seed by seed: the trained
    one for the target class (unless `with_original` is False: its maps are known), for another
    class (RandomLogit), and the randomised ones of the MPRT cascade; and where in V the other
    class's and the cascade's maps start."""
    settings = self.settings
    variants = [(0, targets)] if with_original else []
    other_at = len(variants)
    if settings.wants('RandomLogit'):
      other = randomisation.other_classes(self._keys[2], targets, cascade['num_classes'])
      variants.append((0, other))
    mprt_from = len(variants)
    if settings.wants(*_MPRT_MEASURES):
      variants += [(cut, targets) for cut in cascade['cuts']]
    stacked = _stack_variants(
      [
        randomisation.randomised_top(variables, cascade['random_variables'], cascade['ranks'], cut)
        for cut, _ in variants
      ]
    )
    variant_targets = jnp.stack([t for _, t in variants], axis=1).reshape(-1, x.shape[0])
    models_per_call = max(1, settings.images_per_call // x.shape[0])
    if models_per_call not in self._explainers:
      self._explainers[models_per_call] = explainers.StackExplainer(
        self.model, settings.explainer, models_per_call
      )
    relevance = self._explainers[models_per_call](
      method, stacked, x, variant_targets, self._keys[1]
    )
    seeds = targets.shape[0]
    maps = relevance.sum(axis=-1).reshape((seeds, len(variants)) + x.shape[:3])
    return maps, other_at, mprt_from

  def randomisation_scores(self, method, variables, x, targets, cascade, original=None):
    """(maps [S, N, H, W] of the trained model, {measure: [S, N]}) for MPRT, MPRT_SSIM,
    EfficientMPRT, RandomLogit, plus the cascade curves 'spearman' and 'ssim' [S, cuts, N].

    `original`: the trained model's maps for `targets` where they are known already (as Quantus
    takes `a_batch`); None explains them here too, in the same call as the rest.
    """
    maps, other_at, mprt_from = self.explanations(
      method, variables, x, targets, cascade, with_original=original is None
    )
    if original is None:
      original = maps[:, 0]
    scores = {}
    if self.settings.wants(*_MPRT_MEASURES):
      mprt = self._compare(original, maps[:, mprt_from:])
      scores['MPRT'] = mprt['spearman'][:, -1]
      scores['MPRT_SSIM'] = mprt['ssim'][:, -1]
      scores['EfficientMPRT'] = self._efficient_mprt(original, mprt['entropy'][:, -1])
      scores['spearman'], scores['ssim'] = mprt['spearman'], mprt['ssim']
    if self.settings.wants('RandomLogit'):
      scores['RandomLogit'] = self._random_logit(original, maps[:, other_at])
    return original, scores

  def faithfulness_scores(self, variables, x, maps, targets) -> dict:
    """{measure: [S, N]} of the perturbation measures, and the curves 'morf'/'lerf'."""
    chunk = max(1, self.settings.images_per_call // (maps.shape[0] * maps.shape[1]))
    if chunk not in self._faithfulness:
      self._faithfulness[chunk] = _faithfulness_program(self.logits, self.settings, chunk)
    curves = self._faithfulness[chunk](variables, x, maps, targets, self._keys[3])
    scores = {
      name: faithfulness.aopc(curves[o]) for o, name in _REGION_MEASURES.items() if o in curves
    }
    if 'correlation' in curves:
      scores['FaithfulnessCorrelation'] = curves['correlation']
    return {**scores, **{o: curves[o] for o in _REGION_MEASURES if o in curves}}

  def map_scores(self, maps, masks) -> dict:
    """{measure: [S, N]} of the localisation (when masks are given) and complexity measures."""
    with_masks = masks is not None
    if with_masks not in self._map_scores:
      self._map_scores[with_masks] = _map_program(self.settings, with_masks)
    return dict(self._map_scores[with_masks](maps, None if masks is None else jnp.asarray(masks)))


def _stack_variants(variants):
  """[V] trees with a leading seed axis S -> one tree with a leading axis S * V (seed-major)."""
  return jax.tree.map(
    lambda *leaves: jnp.stack(leaves, axis=1).reshape((-1,) + leaves[0].shape[1:]), *variants
  )


def _mean_over_images(values) -> np.ndarray:
  """nanmean over the last axis (images), NaN where every image is NaN, without warnings."""
  values = np.asarray(values, np.float64)
  counts = np.sum(~np.isnan(values), axis=-1)
  return np.where(counts > 0, np.nansum(values, axis=-1) / np.maximum(counts, 1), np.nan)


def _faithfulness_program(logits, settings: Settings, chunk: int):
  """jit(vmap over seeds) of the perturbation measures; maps are an input, so every explainer
  shares this one compiled program."""
  region = functools.partial(
    faithfulness.region_perturbation,
    patch=settings.region_patch,
    regions=settings.regions,
    baseline=settings.baseline,
    softmax=settings.region_softmax,
    chunk=chunk,
  )

  def per_seed(variables, x, maps, target, key):
    predict = functools.partial(logits, variables)
    out = {}
    for order, name in _REGION_MEASURES.items():
      if settings.wants(name):
        out[order] = region(predict, x, maps, target, order=order)
    if settings.wants('FaithfulnessCorrelation'):
      out['correlation'] = faithfulness.faithfulness_correlation(
        predict,
        x,
        maps,
        target,
        key,
        runs=settings.faithfulness_runs,
        subset=settings.faithfulness_subset,
        baseline=settings.baseline,
        chunk=chunk,
      )
    return out

  return jax.jit(jax.vmap(per_seed, in_axes=(0, None, 0, 0, None)))


def _map_program(settings: Settings, with_masks: bool):
  """jit: the measures that read only the maps (and the masks): [S, N] each."""
  wanted = {name: f for name, f in _COMPLEXITY.items() if name in settings.measures}
  located = {name: f for name, f in _LOCALISATION.items() if name in settings.measures}

  @jax.jit
  def scores(maps, masks):
    out = {name: jax.vmap(f)(maps) for name, f in wanted.items()}
    if with_masks:
      out.update({name: jax.vmap(lambda m, f=f: f(m, masks))(maps) for name, f in located.items()})
    return out

  return scores
