"""The reveal of one trained model, start to end, without being told where a shortcut is.

    LRP of the training images, each for its class (true or predicted)
      -> SpRAy per class on concept relevances: clusters, eigenvalues, eigengap
      -> per cluster: outlines from relevance, evidence (concentration, consistency, paste-and-flip)
      -> clusters with shortcut evidence are carried to every split: an image shows the shortcut
         when its concept relevance for that class is close to the cluster's (a threshold fitted on
         the clustered split), and then its outline becomes its found mask
      -> where the data has ground truth: cluster precision/recall, mask IoU/precision/recall

Writes into `out_dir`: reveal.json, found_masks.npz (uint8 [N, H, W, 1] per split, what
`remedy.region='found'` acts on), reveal_clusters.npz (cluster of every clustered image) and the
figures. A rerun with both files present reads them back.
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import numpy as np

from xaijax import config_checks, evaluation
from xaijax.models import registry
from xaijax.reveal import appearance, evidence, figures, localisation, relevance, spray, truth
from xaijax.reveal import items as items_lib
from xaijax.workdir import read_json, write_json

REVEAL_FILE = 'reveal.json'
FOUND_MASKS_FILE = 'found_masks.npz'
CLUSTERS_FILE = 'reveal_clusters.npz'


def load_found_masks(out_dir: str) -> dict[str, np.ndarray]:
  with np.load(os.path.join(out_dir, FOUND_MASKS_FILE)) as stored:
    return {name: stored[name] for name in stored.files}


def is_done(out_dir: str) -> bool:
  return all(os.path.exists(os.path.join(out_dir, f)) for f in (REVEAL_FILE, FOUND_MASKS_FILE))


class _Model:
  """Predictions and explanations of one seed's variables."""

  def __init__(self, config, variables, example: np.ndarray):
    self.classifier = registry.build(config.model)
    self.variables = variables
    self.stacked = jax.tree.map(lambda a: np.asarray(a)[None], variables)
    module, preprocess = self.classifier.module, self.classifier.preprocess
    self.layer = relevance.resolve_layer(
      config.reveal.layer, module, variables, preprocess(example[:1])
    )
    self.batch = int(config.reveal.batch_size)
    self.explain = relevance.Explainer(
      self.classifier,
      variables,
      self.layer,
      config.reveal.composite,
      float(config.lrp.epsilon),
      self.batch,
    )

  def predict(self, images: np.ndarray) -> np.ndarray:
    logits = evaluation.predict(
      self.classifier.module,
      self.stacked,
      images,
      preprocess=self.classifier.preprocess,
      batch_size=self.batch,
    )
    return logits[0].argmax(axis=-1)


def reveal(
  config,
  splits: dict,
  variables,
  out_dir: str,
  class_names,
  has_ground_truth: bool,
  model_note: str = '',
) -> dict:
  """Reveal the model `variables` (one seed) on `splits`; see the module docstring."""
  reveal_path = os.path.join(out_dir, REVEAL_FILE)
  if is_done(out_dir):
    return read_json(reveal_path)
  os.makedirs(out_dir, exist_ok=True)
  settings = config.reveal
  seconds, clock = {}, time.time()
  source = splits[settings.split]
  model = _Model(config, variables, source['image'])
  progress = 'reveal: LRP of the {} images' if settings.progress_bar else None

  def tick(stage):
    nonlocal clock
    seconds[stage] = round(time.time() - clock, 2)
    clock = time.time()

  predictions = model.predict(source['image'])
  groups = source['label'] if settings.group_by == 'true' else predictions
  explained = model.explain(source['image'], groups, _label(progress, settings.split))
  tick('heatmaps')
  sigma = float(settings.blur_sigma) * source['image'].shape[1]
  found_items = items_lib.extract(explained, settings, sigma)
  receivers = splits['validation']
  receiver_predictions = model.predict(receivers['image'])
  rng = np.random.default_rng(int(settings.seed))
  item_cluster = np.full(len(found_items.image), -1, np.int32)
  eigenmap = np.zeros((len(found_items.image), 2))
  classes, kept = [], {}
  for label in np.unique(groups):
    images = np.flatnonzero(groups == label)
    members = np.flatnonzero(groups[found_items.image] == label)
    if len(members) == 0:  # no positive relevance anywhere in the class: nothing to cluster
      classes.append(_empty_class(int(label), class_names, len(images)))
      continue
    clustering = spray.spray(
      found_items.features[members],
      int(settings.neighbours),
      int(settings.eigenvectors),
      int(settings.max_clusters),
      int(settings.seed),
      int(settings.num_clusters),
      int(settings.min_clusters),
    )
    item_cluster[members] = clustering.labels
    eigenmap[members] = clustering.eigenmap
    clusters = []
    for number in range(clustering.num_clusters):
      chosen = members[clustering.labels == number]
      evidence_of, region, copy = _cluster_evidence(
        model,
        settings,
        int(label),
        found_items,
        chosen,
        explained.heatmaps,
        (source['image'], groups),
        (receivers, receiver_predictions),
        rng,
      )
      evidence_of.update(cluster=number, images=int(len(np.unique(found_items.image[chosen]))))
      evidence_of['share_of_class'] = evidence_of['images'] / len(images)
      evidence_of['shortcut_evidence'] = evidence.is_shortcut(evidence_of, settings)
      clusters.append(evidence_of)
      kept[(int(label), number)] = (chosen, region, copy)
    clusters.sort(key=lambda c: -evidence.ranking_score(c))
    classes.append(
      {
        'class': int(label),
        'name': class_names[int(label)],
        'images': len(images),
        'items': len(members),
        'num_clusters': clustering.num_clusters,
        'eigengap': clustering.eigengap,
        'eigenvalues': [float(v) for v in clustering.eigenvalues],
        'clusters': clusters,
      }
    )
  tick('clustering_and_evidence')
  flagged = _chosen_clusters(settings, classes)
  found_masks, shortcuts, per_class = _carry_to_splits(
    model, splits, settings, flagged, kept, found_items, sigma, progress
  )
  tick('localisation')
  summary = {
    'model': {
      'note': model_note,
      'layer': model.layer,
      'composite': settings.composite,
      'features': settings.features,
      'group_by': settings.group_by,
      'split': settings.split,
    },
    'classes': classes,
    'shortcuts': shortcuts,
    'shortcuts_chosen_by': 'a person (reveal.shortcut_clusters)'
    if settings.shortcut_clusters
    else 'evidence',
    'seconds': seconds,
  }
  if has_ground_truth:
    summary['ground_truth'] = truth.scores(
      splits, settings.split, classes, kept, found_items, found_masks
    )
    summary['ground_truth']['planted_attack'] = truth.planted_attack(
      model.predict,
      splits,
      settings.split,
      (receivers, receiver_predictions),
      np.random.default_rng(int(settings.seed)),
      int(settings.attack_images),
    )
  else:
    summary['ground_truth'] = None
    summary['ground_truth_note'] = (
      'the data has no ground truth (no overlay masks or artifact labels): clusters and evidence '
      'only'
    )
  partial = os.path.join(out_dir, CLUSTERS_FILE + '.partial.npz')
  np.savez(partial, groups=groups, item_image=found_items.image, item_cluster=item_cluster)
  os.replace(partial, os.path.join(out_dir, CLUSTERS_FILE))
  summary['figures'] = figures.write_all(
    out_dir,
    summary,
    source,
    groups,
    found_items,
    item_cluster,
    eigenmap,
    explained.heatmaps,
    splits,
    found_masks,
    per_class,
    has_ground_truth,
  )
  tick('figures')
  summary['seconds']['total'] = round(sum(summary['seconds'].values()), 2)
  partial = os.path.join(out_dir, FOUND_MASKS_FILE + '.partial.npz')
  np.savez_compressed(partial, **found_masks)
  os.replace(partial, os.path.join(out_dir, FOUND_MASKS_FILE))
  write_json(reveal_path, summary)  # last: its presence (with the masks) marks a finished reveal
  logging.info('reveal: %d cluster(s) with shortcut evidence, %s s', len(flagged), seconds)
  return summary


def _chosen_clusters(settings, classes) -> list[tuple[int, int]]:
  """The (class, cluster) pairs treated as shortcuts: a person's choice when
  `reveal.shortcut_clusters` names one, else every cluster with shortcut evidence."""
  choice = config_checks.parse_cluster_choice(settings.shortcut_clusters)
  if not choice:
    return [
      (entry['class'], cluster['cluster'])
      for entry in classes
      for cluster in entry['clusters']
      if cluster['shortcut_evidence']
    ]
  known = {
    (entry['class'], cluster['cluster']) for entry in classes for cluster in entry['clusters']
  }
  unknown = [pair for pair in choice if pair not in known]
  if unknown:
    raise ValueError(
      f'reveal.shortcut_clusters names {unknown}, which the reveal did not find; '
      f'its (class, cluster) pairs: {sorted(known)}'
    )
  return choice


def _empty_class(label: int, class_names, images: int) -> dict:
  return {
    'class': label,
    'name': class_names[label],
    'images': images,
    'items': 0,
    'num_clusters': 0,
    'eigengap': 0.0,
    'eigenvalues': [],
    'clusters': [],
  }


def _cluster_evidence(
  model, settings, label, found_items, chosen, heatmaps, clustered, receiving, rng
):
  """(evidence of one cluster, its consistent region or None, the object its members look at as
  an `appearance.Copy`); `clustered` holds the clustered split's images and their groups."""
  images, groups = clustered
  receivers, receiver_predictions = receiving
  member_images = np.unique(found_items.image[chosen])
  outlines = found_items.outlines(chosen, len(images))[member_images]
  region = localisation.consistent_region(outlines)
  outlines = localisation.restrict(outlines, region)
  features = found_items.features[chosen]
  peaks = [appearance.peak_of(heatmaps[found_items.image[k]], found_items.masks[k]) for k in chosen]
  # Seeded on their own, so the attack's draws stay as they were.
  alike, window = appearance.members_look(
    images[found_items.image[chosen]], peaks, np.random.default_rng(int(settings.seed))
  )
  copy = appearance.fit_to_object(
    images, window, members=np.isin(np.arange(len(images)), member_images)
  )
  found = {
    'items': len(chosen),
    'relevance_in_mask': _nanmean(localisation.relevance_share(heatmaps[member_images], outlines)),
    'mask_area': float(outlines.mean()),
    'place_agreement': float(localisation.consistency(outlines).max()),
    'fixed_place': region is not None,
    'concept_tightness': float(
      np.mean(evidence.cosine_to_centroid(features, features.mean(axis=0)))
    ),
    'pattern_repetition': alike,
    **_copy_evidence(copy, groups, label),
    **evidence.flip_rates(
      model.predict,
      label,
      images[member_images],
      outlines,
      receivers['image'],
      receiver_predictions,
      receivers['label'],
      rng,
      int(settings.attack_images),
    ),
  }
  return found, region, copy


def _copy_evidence(copy: appearance.Copy, groups: np.ndarray, label: int) -> dict:
  """How exact a copy the cluster's object is, in how many images, and how many of them are of
  the cluster's class (a copied object tied to one class is a shortcut the data offers). Without
  an enclosed object (spread NaN) there is no copy to count."""
  shown = int(copy.shown.sum()) if np.isfinite(copy.spread) else 0
  return {
    'copy_spread': copy.spread,
    'copy_images': shown,
    'copy_in_class': float(np.mean(groups[copy.shown] == label)) if shown else float('nan'),
  }


def _label(progress, split):
  return None if progress is None else progress.format(split)


def _nanmean(values) -> float:
  values = np.asarray(values, np.float64)
  return float(np.nanmean(values)) if np.isfinite(values).any() else float('nan')


def _carry_to_splits(model, splits, settings, flagged, kept, found_items, sigma, progress):
  """Found masks of every split for the flagged clusters; and per class its split explanations.

  `reveal.localise='relevance'` (and `'auto'` for a cluster whose object is no copy): every
  image is explained for the shortcut's class; its items whose descriptor is at least as close to
  the cluster's centroid as the threshold fitted on the clustered split (members against every
  other item there) are the shortcut, and their outlines its found mask. `'appearance'` (and
  `'auto'` for a copy, its spread at most `reveal.max_copy_spread`): the object the cluster's
  members look at (`appearance.fit_to_object`) is looked for in every image
  (`appearance.locate`); where it matches above Otsu's threshold on the clustered split's scores,
  the matched box is the found mask, whether or not the model looked there.
  """
  found = {name: np.zeros(split['image'].shape, np.uint8) for name, split in splits.items()}
  shortcuts, per_class = [], {}
  for label in sorted({label for label, _ in flagged}):
    per_class[label] = {}
    for name, split in splits.items():
      explained = model.explain(
        split['image'], np.full(len(split['image']), label), _label(progress, name)
      )
      per_class[label][name] = (explained, items_lib.extract(explained, settings, sigma))
  for label, number in flagged:
    chosen, region, copy = kept[(label, number)]
    shown = {}
    by_look = settings.localise == 'appearance' or (
      settings.localise == 'auto' and copy.spread <= float(settings.max_copy_spread)
    )
    if by_look:
      pattern, threshold = copy.pattern, copy.threshold
      margin = int(round(float(settings.appearance_margin) * pattern.shape[0]))
      for name, split in splits.items():
        located = appearance.locate(split['image'], pattern, threshold, margin)
        found[name] |= located[..., None].astype(np.uint8)
        shown[name] = int(located.any(axis=(1, 2)).sum())
    else:
      centroid = found_items.features[chosen].mean(axis=0)
      _, source_items = per_class[label][settings.split]
      member = _same_items(source_items, found_items, chosen)
      threshold = evidence.best_threshold(
        evidence.cosine_to_centroid(source_items.features, centroid), member
      )
      for name, (_, split_items) in per_class[label].items():
        matches = evidence.cosine_to_centroid(split_items.features, centroid) >= threshold
        outlines = localisation.restrict(split_items.outlines(matches, len(found[name])), region)
        found[name] |= outlines[..., None].astype(np.uint8)
        shown[name] = int(outlines.any(axis=(1, 2)).sum())
    shortcuts.append(
      {
        'class': label,
        'cluster': number,
        'localised_by': 'appearance' if by_look else 'relevance',
        'threshold': threshold,
        'fixed_place': region is not None,
        'images_shown': shown,
      }
    )
  return found, shortcuts, per_class


def _same_items(items: items_lib.Items, clustered: items_lib.Items, chosen) -> np.ndarray:
  """bool [len(items)]: which of `items` are the clustered items `chosen`: the same image and an
  outline overlapping one of them by IoU 0.5 (an image of the shortcut's class is explained for
  that class in both passes, so they coincide up to rounding)."""
  member = np.zeros(len(items.image), bool)
  for k in chosen:
    candidates = np.flatnonzero(items.image == clustered.image[k])
    if len(candidates):
      iou = localisation.mask_scores(
        items.masks[candidates], np.broadcast_to(clustered.masks[k], items.masks[candidates].shape)
      )['iou']
      member[candidates[np.nan_to_num(iou) >= 0.5]] = True
  return member
