"""The paper's whole study: every case in both overlay settings (the paper's random overlays and the
class-tied shortcut), then one report with Tables 1-3 and Figures 5-9 beside the paper's numbers,
significance tests and convergence (made by xaijax/study.py and xaijax/study_report.py).

    python scripts/reproduce_paper.py --workdir=runs/study    # CPU-sized, embedded data, 5 seeds
    python scripts/reproduce_paper.py --workdir=runs/study --settings=random   # one setting alone
    python scripts/reproduce_paper.py --workdir=runs/study_paper --arg=paper
    python scripts/reproduce_paper.py --workdir=runs/study \\
        --cases=original,telea,rrr,rrr_lrp,counterexamples,pclarc,aclarc,rrclarc   # corrections too
    python scripts/reproduce_paper.py --workdir=runs/gc10 \\
        --arg=paper,data=gc10_det,manual_dir=/data/GC10-DET

Finished cases (and finished stages of a killed case) are reused, so rerunning continues the study.
"""

from __future__ import annotations

import logging
import os

from absl import app, flags
import jax

from xaijax import case_config, cpu_memory, study

_WORKDIR = flags.DEFINE_string(
  'workdir', 'runs/study', 'Root folder: one subfolder per case, report.md on top.'
)
_ARG = flags.DEFINE_string(
  'arg',
  '',
  "Config argument for every case, e.g. 'paper' or 'seeds=8' (CPU default: "
  f'{case_config.CPU_STUDY_SEEDS} seeds); the overlay mode comes from --settings.',
)
_SETTINGS = flags.DEFINE_list(
  'settings',
  list(study.SETTINGS),
  "Overlay settings to run: 'random' (the paper's) and/or 'spurious' (logo tied to the class).",
)
_CASES = flags.DEFINE_list(
  'cases',
  list(study.CASES),
  'Cases to run (original and generative are needed for Table 2); the model corrections '
  f'{", ".join(study.CORRECTION_CASES)} when named.',
)


CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def config_of_case(case: str, arg: str):
  return case_config.load_config_file(os.path.join(CONFIGS_DIR, f'{case}.py'), arg)


def main(argv):
  del argv
  logging.getLogger('absl').setLevel(logging.WARNING)
  if jax.default_backend() == 'cpu':
    cpu_memory.keep_freed_memory()  # see xaijax/cpu_memory.py
  unknown = sorted(set(_CASES.value) - set(study.ALL_CASES))
  if unknown:
    raise app.UsageError(f'unknown case(s) {unknown}; choose from {study.ALL_CASES}')
  unknown = sorted(set(_SETTINGS.value) - set(study.SETTINGS))
  if unknown or not _SETTINGS.value:
    raise app.UsageError(f'unknown setting(s) {unknown}; choose from {study.SETTINGS}')
  try:
    for setting in _SETTINGS.value:
      study.setting_arg(_ARG.value, setting)
  except ValueError as error:
    raise app.UsageError(str(error)) from error
  print(
    study.run_study(
      _WORKDIR.value, _CASES.value, _ARG.value, config_of_case, settings=_SETTINGS.value
    )
  )


if __name__ == '__main__':
  app.run(main)
