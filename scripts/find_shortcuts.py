"""Reveal the shortcuts of a finished case: SpRAy clusters, their evidence, outlines, figures.

    python scripts/find_shortcuts.py --workdir=runs/original
    python scripts/find_shortcuts.py --workdir=runs/my_images --set=reveal.group_by=predicted
    python scripts/find_shortcuts.py --workdir=runs/original --model_seed=1 --out=runs/reveal_seed1

Works on any finished case (`main.py` left config.json and classifier/ in its workdir), your own
image folder included; without ground truth it reports clusters and evidence only, and says so.
The data and model are the case's; the reveal's settings are the defaults and your --set.
Writes reveal.json, reveal.md, found_masks.npz and reveal_*.png into <workdir>/reveal (or --out).
A rerun with those files present prints the stored result; delete the folder to reveal afresh.
"""

from __future__ import annotations

import ast
import logging
import os

from absl import app, flags
import jax

from xaijax import cpu_memory
from xaijax.reveal import case, report_section

_WORKDIR = flags.DEFINE_string('workdir', None, 'Workdir of a finished case (main.py --workdir).')
_OUT = flags.DEFINE_string('out', '', "Where the reveal goes; '' = <workdir>/reveal.")
_MODEL_SEED = flags.DEFINE_integer(
  'model_seed', None, 'Which trained seed to reveal; default: the best on validation.'
)
_SET = flags.DEFINE_multi_string(
  'set', [], "Change a setting of the case's config, e.g. reveal.layer=conv_pw_11 (repeatable)."
)
flags.mark_flag_as_required('workdir')


def _parse(assignment: str) -> tuple[str, object]:
  key, has_value, text = assignment.partition('=')
  if not has_value or key.count('.') != 1:
    raise app.UsageError(f'--set wants section.key=value, got {assignment!r}')
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text  # a bare word is a string
  return key, value


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.getLogger('absl').setLevel(logging.WARNING)
  if jax.default_backend() == 'cpu':
    cpu_memory.keep_freed_memory()  # see xaijax/cpu_memory.py
  out = _OUT.value or os.path.join(_WORKDIR.value, case.REVEAL_DIR)
  summary = case.find_shortcuts(
    _WORKDIR.value, out, dict(_parse(s) for s in _SET.value), _MODEL_SEED.value
  )
  lines = report_section.markdown({'summary': summary}, figure_dir='.')
  path = os.path.join(out, report_section.REVEAL_REPORT_FILE)
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  print('\n'.join(lines))
  print(f'written: {path}')


if __name__ == '__main__':
  app.run(main)
