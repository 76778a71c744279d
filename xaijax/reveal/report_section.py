"""The reveal in a case's results.json and report.md, and reveal.md of `find_shortcuts.py`."""

from __future__ import annotations

import math

REVEAL_REPORT_FILE = 'reveal.md'


def results_entry(stage_output: dict) -> dict:
  """What results.json keeps of a found-mask case's reveal (the eigenvalues stay in reveal.json)."""
  summary = stage_output['summary']
  classes = [{k: v for k, v in entry.items() if k != 'eigenvalues'} for entry in summary['classes']]
  return {
    **{k: v for k, v in summary.items() if k not in ('classes', 'figures')},
    'classes': classes,
    'original_scores': stage_output['original_scores'],
  }


def _number(value, digits: int = 2) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return '–'
  return f'{value:.{digits}f}'


def markdown(
  stage_output: dict, case_splits: dict | None = None, figure_dir: str = 'reveal'
) -> list:
  """Lines of the reveal section; `case_splits` (results.json's splits) adds the comparison of the
  Original model with this case."""
  summary = stage_output['summary']
  model = summary['model']
  lines = [
    '## Reveal: shortcuts found without being told where they are',
    '',
    f'Revealed: {model["note"]}. SpRAy on {model["features"]} (layer `{model["layer"]}`) of '
    f'the {model["split"]} images, grouped by {model["group_by"]} class; the number of clusters '
    f'from the eigengap; reveal wall time {summary["seconds"].get("total", 0):.0f} s.',
    '',
    'Every class, its top-ranked cluster and its evidence (repetition, what ranks the clusters: '
    "how alike the members' pixels are around their relevance peaks, the median normalised "
    "cross-correlation over pairs; flip: share of other classes' images whose prediction turns "
    "to the class when the cluster's outlined pixels are pasted in; control: the same region "
    'cut from other images; copy: the object the members look at, found by its look in every '
    "image, its pixel spread across those images over its surroundings' (0: identical copies) "
    'and the share of them in the class):',
    '',
    '| class | images | clusters (gap) | top cluster images | repetition | flip | control | '
    'copy spread | copy in class | relevance in outline | outline area | place | '
    'shortcut evidence |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for entry in summary['classes']:
    if not entry['clusters']:
      lines.append(
        f'| {entry["name"]} | {entry["images"]} | 0 | no positive relevance | | | | | | | | | |'
      )
      continue
    top = entry['clusters'][0]
    flagged = sum(c['shortcut_evidence'] for c in entry['clusters'])
    lines.append(
      f'| {entry["name"]} | {entry["images"]} | {entry["num_clusters"]} '
      f'({entry["eigengap"]:.3f}) | {top["images"]} | '
      f'{_number(top.get("pattern_repetition"))} | {_number(top["flip_rate"])} | '
      f'{_number(top["control_flip_rate"])} | {_number(top.get("copy_spread"))} | '
      f'{_number(top.get("copy_in_class"))} | {_number(top["relevance_in_mask"])} | '
      f'{_number(top["mask_area"], 3)} | {"fixed" if top["fixed_place"] else "moving"} | '
      f'{"**yes**" if flagged else "no"} |'
    )
  lines.append('')
  if summary['shortcuts']:
    lines += [f'Clusters taken as shortcuts (chosen by {summary["shortcuts_chosen_by"]}):', '']
    for shortcut in summary['shortcuts']:
      name = summary['classes'][[c['class'] for c in summary['classes']].index(shortcut['class'])]
      shown = ', '.join(f'{split} {n}' for split, n in shortcut['images_shown'].items())
      lines.append(
        f'- shortcut of **{name["name"]}** (cluster {shortcut["cluster"]}): outlined in {shown} '
        'images'
      )
  else:
    lines.append('No cluster was chosen as a shortcut: the found masks are empty.')
  lines.append('')
  truth = summary.get('ground_truth')
  if truth is None:
    lines += [f'Ground truth: none ({summary.get("ground_truth_note", "")}).', '']
  else:
    lines += _truth_lines(truth, summary['classes'])
  if case_splits is not None and 'original_scores' in stage_output:
    lines += [
      'Test macro-F1 of the Original model (revealed) and of this case (mean ± std over seeds):',
      '',
      '| test set | Original | this case |',
      '|---|---|---|',
    ]
    for split, scores in stage_output['original_scores'].items():
      ours = case_splits.get(split, {}).get('f1')
      ours_text = f'{ours["mean"]:.2f} ± {ours["std"]:.2f}' if ours else '–'
      lines.append(
        f'| {split} | {scores["mean"]["f1"]:.2f} ± {scores["std"]["f1"]:.2f} | {ours_text} |'
      )
    lines.append('')
  for figure in summary.get('figures', []):
    lines += [f'![{figure}]({figure_dir}/{figure})', '']
  return lines


def _truth_lines(truth: dict, classes: list) -> list:
  names = {c['class']: c['name'] for c in classes}
  lines = [
    'Against the ground truth the synthetic data keeps (never used above): the top-ranked cluster '
    "of each class that has artifact images (those with the class's own logo), as clustered "
    '(the images whose relevance put them there) and by look (its object found in every image):',
    '',
    '| class | artifact images | top cluster images | precision | recall | by look: images | '
    'precision | recall | shortcut evidence |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for row in truth['clusters']:
    lines.append(
      f'| {names[row["class"]]} | {row["artifact_images"]} | {row["top_cluster_images"]} | '
      f'{row["precision"]:.2f} | {row["recall"]:.2f} | {row.get("by_look_images", "–")} | '
      f'{_number(row.get("by_look_precision"))} | {_number(row.get("by_look_recall"))} | '
      f'{"yes" if row["top_cluster_has_shortcut_evidence"] else "no"} |'
    )
  attack = truth.get('planted_attack') or []
  if attack:
    lines += [
      '',
      'Did the model learn the planted shortcut? The same paste-and-flip attack with the true '
      "artifact (the class's own logo under its exact mask) instead of a cluster's outline, so "
      'about what a cluster that outlines the artifact can flip:',
      '',
      '| class | artifact images | flip rate | control | pairs |',
      '|---|---|---|---|---|',
    ]
    for row in attack:
      lines.append(
        f'| {names[row["class"]]} | {row["artifact_images"]} | {_number(row["flip_rate"])} | '
        f'{_number(row["control_flip_rate"])} | {row["pairs"]} |'
      )
  lines += [
    '',
    'Found masks against the true overlay masks, per split (detection: which images show one; IoU '
    'over all images with an overlay, a missed one counting 0, and over the detected ones):',
    '',
    '| split | with overlay | with found mask | detection precision | detection recall | IoU all '
    '| IoU detected | pixel precision | pixel recall |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for split, row in truth['splits'].items():
    lines.append(
      f'| {split} | {row["with_overlay"]} | {row["with_found_mask"]} | '
      f'{_number(row["detection_precision"])} | {_number(row["detection_recall"])} | '
      f'{_number(row["iou_all"])} | {_number(row["iou_detected"])} | '
      f'{_number(row["pixel_precision"])} | {_number(row["pixel_recall"])} |'
    )
  lines.append('')
  return lines
