"""The study's "model corrections" table: every correction beside the Original model and the best
image remedy, from the cases' results.json."""

from __future__ import annotations

from xaijax import case_config, report

CORRECTION_CASES = ('rrr', 'rrr_lrp', 'counterexamples', 'pclarc', 'aclarc', 'rrclarc')
CORRECTION_TITLES = {
  'rrr': 'RRR, input gradient',
  'rrr_lrp': 'RRR, LRP (new)',
  'counterexamples': 'Counterexamples (overlays swapped while training)',
  'pclarc': 'P-ClArC',
  'aclarc': 'A-ClArC',
  'rrclarc': 'RR-ClArC',
}
IMAGE_REMEDIES = ('blur', 'black_stripe', 'crop', 'generative', 'telea')


def best_image_remedy(results: dict) -> str | None:
  """The image remedy with the highest mean test macro-F1 among those run."""
  remedies = [case for case in IMAGE_REMEDIES if case in results]
  if not remedies:
    return None
  return max(remedies, key=lambda case: results[case]['splits']['test']['f1']['mean'])


def _seconds_per_epoch(result: dict) -> float | None:
  """Seconds per epoch of the training that makes the case's model (the correction's own where it
  trains; the plain training otherwise)."""
  seconds = result.get('correction', {}).get('seconds_per_epoch', {})
  return seconds.get('corrected') or seconds.get('plain')


def table_lines(results: dict, titles: dict) -> list[str]:
  """Markdown lines of the table, or none when no correction was run."""
  corrections = [case for case in CORRECTION_CASES if case in results]
  if not corrections:
    return []
  pm = report.pm
  original = results.get('original')
  reference_share = original['relevance_mass_in_overlay']['mean'] if original else None
  reference_seconds = _seconds_per_epoch(original) if original else None
  best = best_image_remedy(results)
  rows = (['original'] if original else []) + ([best] if best else []) + corrections
  lines = [
    '### Model corrections beside the image remedies',
    '',
    'The corrections leave every image as it is (overlays in train, validation and test) and '
    'change the model; the image remedies edit the images. Relevance: share of positive LRP '
    "relevance on the overlay's pixels (test), and how many times less than the Original's. "
    "TCAV: mean |∇ŷ·v| at the concept layer, v the model's own logo concept. Validation swapped: "
    "macro-F1 on the validation images with every overlay swapped for another class's (what the "
    'corrections early-stop on and λ was chosen by). Seconds per epoch: median wall time of the '
    "training that makes the model, and its ratio to the Original's.",
    '',
    '| case | F1 test | F1 test_clean | F1 test_attacked | relevance in overlay | × less | '
    'TCAV | F1 validation swapped | s/epoch | × Original |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for case in rows:
    result = results[case]
    share = result['relevance_mass_in_overlay']
    factor = reference_share / share['mean'] if reference_share and share['mean'] else None
    correction = result.get('correction')
    tcav = pm(correction['concept_sensitivity'], 3) if correction else '-'
    swapped = pm(correction['validation_f1']['validation_overlays_swapped']) if correction else '-'
    seconds = _seconds_per_epoch(result) if correction else None
    ratio = seconds / reference_seconds if seconds and reference_seconds else None
    title = titles.get(case, CORRECTION_TITLES.get(case, case))
    if case == best:
      title += ' (best image remedy)'
    splits = result['splits']
    lines.append(
      f'| {title} | {pm(splits["test"]["f1"])} | {pm(splits["test_clean"]["f1"])} | '
      f'{pm(splits["test_attacked"]["f1"])} | {pm(share, 3)} | '
      f'{f"{factor:.1f}" if factor else "-"} | {tcav} | {swapped} | '
      f'{f"{seconds:.1f}" if seconds else "-"} | {f"{ratio:.2f}" if ratio else "-"} |'
    )
  lines += [
    '',
    'Settings of the corrections (λ = weight): '
    + '; '.join(
      f'{CORRECTION_TITLES[case]}: {_settings(results[case]["settings"]["correction"])}'
      for case in corrections
    )
    + '.',
    '',
  ]
  return lines


def _settings(correction: dict) -> str:
  name = correction['name']
  schedule = f'{correction.get("epochs")} epochs at lr {correction.get("learning_rate", 0):g}'
  if name in case_config.PENALISED_CORRECTIONS:
    if correction.get('base_classifier'):
      return f'{_penalty_settings(correction)}, fine-tuned {schedule} from a finished run'
    return _penalty_settings(correction)
  concept = f'{correction["concept"]} concept ({correction["cav"]} CAV) at {correction["layer"]}'
  if name == 'pclarc':
    return concept
  tuned = f'{schedule}, {correction["fine_tune"]} fine-tuned'
  if name == 'aclarc':
    return f'{concept}, {tuned}'
  return f'λ {correction["weight"]:g}, {concept}, {tuned}'


def _penalty_settings(correction: dict) -> str:
  name = correction['name']
  if name == 'rrr':
    return f'λ {correction["weight"]:g}'
  if name == 'rrr_lrp':
    return f'λ {correction["weight"]:g}, composite {correction["lrp_composite"]}'
  partners = int(correction.get('partners', 1))
  parts = [f'λ {correction["weight"]:g}' + (f', {partners} partners' if partners > 1 else '')]
  if inpainted_weight := correction.get('inpainted_weight', 0.0):
    parts.append(f'Telea-inpainted agreement λ {inpainted_weight:g}')
  if lrp_weight := correction.get('lrp_weight', 0.0):
    parts.append(f'RRR-LRP λ {lrp_weight:g} ({correction["lrp_composite"]})')
  return ' + '.join(parts)
