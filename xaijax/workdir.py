"""What a case leaves in its workdir: the shared file names, and JSON written so a kill cannot
leave half a file behind. Stages, the report and the study all read the same names from here."""

from __future__ import annotations

import json
import os

CONFIG_FILE = 'config.json'
TIMINGS_FILE = 'timings.json'
DATASET_FILE = 'dataset.json'
REMEDIED_IMAGES_FILE = 'remedied_images.npz'
EVALUATION_FILE = 'evaluation.json'
EXPLANATION_FILE = 'explanation.json'
QUALITY_FILE = 'explanation_quality.json'
QUALITY_FIGURE = 'explanation_quality.png'
RESULTS_FILE = 'results.json'
REPORT_FILE = 'report.md'
CLASSIFIER_DIR = 'classifier'


def write_json(path: str, payload) -> None:
  """Write then rename, so a run killed mid-write never leaves a half file a rerun would trust."""
  partial = path + '.partial'
  with open(partial, 'w') as f:
    json.dump(payload, f, indent=2)
  os.replace(partial, path)


def read_json(path: str):
  with open(path) as f:
    return json.load(f)
