"""Choose a correction's λ on validation: run the case once per weight, pick by validation alone.

    python scripts/sweep_correction.py --case=rrr --weights=10,100,1000 --arg=seeds=1,epochs=15 \\
        --workdir=runs/sweep

Each weight is a whole case (main.py's workflow) in `<workdir>/<case>_<weight>`; finished ones are
reused. The rule: the weight with the highest mean macro-F1 on the validation images with every
overlay swapped for another class's (`correction.json`: images the model never trained on, whose
overlay says nothing about the class); within 0.01 of the best, the smaller weight. Test scores
are printed beside it for the record only: they play no part in the choice. Other settings:
`--set=correction.base_classifier=runs/study/original/classifier` (repeatable).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags
import jax

from xaijax import case_config, cpu_memory, workflow

_CASE = flags.DEFINE_string('case', 'rrr', 'The correction: a config in configs/.')
_WEIGHTS = flags.DEFINE_list('weights', ['10', '100', '1000'], 'The weights (λ) to try.')
_ARG = flags.DEFINE_string('arg', '', "Config argument for every run, e.g. 'seeds=1,epochs=15'.")
_WORKDIR = flags.DEFINE_string('workdir', 'runs/sweep', 'One subfolder per weight.')
_SET = flags.DEFINE_multi_string('set', [], 'key=value config overrides, e.g. train.patience=5.')

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
TIE = 0.01


def _override(config, assignment: str) -> None:
  key, _, value = assignment.partition('=')
  section, field = key.split('.')
  current = config[section][field]
  if isinstance(current, bool):
    config[section][field] = value.lower() in ('1', 'true', 'yes')
  else:
    config[section][field] = type(current)(value) if value else value


def main(argv):
  del argv
  if jax.default_backend() == 'cpu':
    cpu_memory.keep_freed_memory()
  rows = []
  for weight in [float(w) for w in _WEIGHTS.value]:
    arg = ','.join(filter(None, [_ARG.value, f'weight={weight:g}']))
    config = case_config.load_config_file(os.path.join(CONFIGS_DIR, f'{_CASE.value}.py'), arg)
    for assignment in _SET.value:
      _override(config, assignment)
    results = workflow.run(config, os.path.join(_WORKDIR.value, f'{_CASE.value}_{weight:g}'))
    validation = results['correction']['validation_f1']
    rows.append(
      {
        'weight': weight,
        'validation_f1': validation['validation']['mean'],
        'validation_swapped_f1': validation['validation_overlays_swapped']['mean'],
        'test_f1_for_the_record': results['splits']['test']['f1']['mean'],
        'relevance_in_overlay_for_the_record': results['relevance_mass_in_overlay']['mean'],
      }
    )
  best = max(row['validation_swapped_f1'] for row in rows)
  chosen = min(row['weight'] for row in rows if row['validation_swapped_f1'] >= best - TIE)
  summary = {'case': _CASE.value, 'arg': _ARG.value, 'rows': rows, 'chosen_weight': chosen}
  with open(os.path.join(_WORKDIR.value, f'{_CASE.value}_sweep.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  print(json.dumps(summary, indent=2), file=sys.stdout)


if __name__ == '__main__':
  app.run(main)
