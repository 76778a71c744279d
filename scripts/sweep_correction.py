"""Choose a correction's λ on validation: run the case once per weight, pick by validation alone.

    python scripts/sweep_correction.py --case=rrr --weights=10,100,1000 --arg=seeds=1,epochs=15 \\
        --workdir=runs/sweep

Each weight is a whole case (main.py's workflow) in `<workdir>/<case>_<weight>`; finished ones are
reused. The rule: the weight with the highest mean macro-F1 on the validation images with every
overlay swapped for another class's (`correction.json`: images the model never trained on, whose
overlay says nothing about the class); within 0.01 of the best, the smaller weight. Test scores
are printed beside it for the record only: they play no part in the choice. Other settings:
`--set=correction.base_classifier=runs/study/original/classifier` (repeatable). Another weight
than the case's own: `--weight_key=correction.lrp_weight` (runs in `<case>_lrp_weight_<weight>`).

F1 alone cannot see where the model looks: every weight may score alike and the rule then takes
the smallest, whose heatmaps may still sit on the overlay. `--max_validation_relevance=0.1` lets
the rule choose only among the weights whose share of LRP relevance on the overlay of the
validation images is at most that much (a fifth of the Original's share asks for 5x less).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags
import jax
import ml_collections

from xaijax import case_config, cpu_memory, workflow
from xaijax.corrections import weight_choice

_CASE = flags.DEFINE_string('case', 'rrr', 'The correction: a config in configs/.')
_WEIGHTS = flags.DEFINE_list('weights', ['10', '100', '1000'], 'The weights (λ) to try.')
_ARG = flags.DEFINE_string('arg', '', "Config argument for every run, e.g. 'seeds=1,epochs=15'.")
_WORKDIR = flags.DEFINE_string('workdir', 'runs/sweep', 'One subfolder per weight.')
_WEIGHT_KEY = flags.DEFINE_string(
  'weight_key', 'correction.weight', 'The config key swept, e.g. correction.lrp_weight.'
)
_SET = flags.DEFINE_multi_string('set', [], 'key=value config overrides, e.g. train.patience=5.')
_MAX_VALIDATION_RELEVANCE = flags.DEFINE_float(
  'max_validation_relevance',
  None,
  'Choose only among weights whose share of relevance on the validation overlays is at most this.',
)

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def _override(config, assignment: str) -> None:
  key, _, value = assignment.partition('=')
  section, _, field = key.partition('.')
  if not isinstance(config.get(section), ml_collections.ConfigDict) or field not in config[section]:
    raise ValueError(f'no config key {key!r} (from {assignment!r}); keys look like train.patience.')
  current = config[section][field]
  if isinstance(current, bool):
    config[section][field] = value.lower() in ('1', 'true', 'yes')
  else:
    config[section][field] = type(current)(value) if value else value


def _run_name(weight: float) -> str:
  """`<case>_<weight>` for the case's own weight, `<case>_<key field>_<weight>` for another key."""
  if _WEIGHT_KEY.value == 'correction.weight':
    return f'{_CASE.value}_{weight:g}'
  return f'{_CASE.value}_{_WEIGHT_KEY.value.split(".")[-1]}_{weight:g}'


def main(argv):
  del argv
  if jax.default_backend() == 'cpu':
    cpu_memory.keep_freed_memory()
  rows = []
  for weight in [float(w) for w in _WEIGHTS.value]:
    config = case_config.load_config_file(
      os.path.join(CONFIGS_DIR, f'{_CASE.value}.py'), _ARG.value
    )
    for assignment in [*_SET.value, f'{_WEIGHT_KEY.value}={weight}']:
      _override(config, assignment)
    results = workflow.run(config, os.path.join(_WORKDIR.value, _run_name(weight)))
    validation = results['correction']['validation_f1']
    rows.append(
      {
        'weight': weight,
        'validation_f1': validation['validation']['mean'],
        'validation_swapped_f1': validation['validation_overlays_swapped']['mean'],
        'test_f1_for_the_record': results['splits']['test']['f1']['mean'],
        'validation_relevance_in_overlay': weight_choice.validation_relevance(results),
        'relevance_in_overlay_for_the_record': results['relevance_mass_in_overlay']['mean'],
      }
    )
  summary = {
    'case': _CASE.value,
    'arg': _ARG.value,
    'weight_key': _WEIGHT_KEY.value,
    'rows': rows,
    'max_validation_relevance': _MAX_VALIDATION_RELEVANCE.value,
    'chosen_weight': weight_choice.choose_weight(rows, _MAX_VALIDATION_RELEVANCE.value),
  }
  with open(os.path.join(_WORKDIR.value, f'{_CASE.value}_sweep.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  print(json.dumps(summary, indent=2), file=sys.stdout)


if __name__ == '__main__':
  app.run(main)
