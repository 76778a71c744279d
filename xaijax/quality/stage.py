"""The quality stage of a case's workflow: the explanation-quality table of its trained model.

Every explainer of `config.quality` is scored by every measure (`table.evaluate`) on a seeded
random choice of test images, all seeds at once; `summary` turns the scores into the verdict and
the figure. Writes explanation_quality.json and explanation_quality.png into the workdir; a rerun
with the JSON file present reads it back.
"""

from __future__ import annotations

import os
import time

from absl import logging
import numpy as np

from xaijax.models import registry
from xaijax.quality import summary, table
from xaijax.workdir import QUALITY_FIGURE, QUALITY_FILE, read_json, write_json


def quality_stage(config, splits: dict, result, workdir: str) -> dict:
  """Can the heatmaps be trusted? Every explainer of config.quality scored by every measure on
  test images, all seeds at once (explanation_quality.json and .png; xaijax.quality)."""
  path = os.path.join(workdir, QUALITY_FILE)
  if os.path.exists(path):
    return read_json(path)
  quality_config = config.quality
  classifier = registry.build(config.model)
  test = splits['test']
  count = min(int(quality_config.images), len(test['label']))
  rng = np.random.default_rng(int(quality_config.seed))
  chosen = np.sort(rng.choice(len(test['label']), count, replace=False))
  settings = table.Settings.from_config(quality_config, float(config.lrp.epsilon))
  start = time.time()
  scores = table.evaluate(
    classifier.module,
    result.variables,
    classifier.preprocess(test['image'][chosen]),
    test[quality_config.mask][chosen],
    settings,
    show_progress=bool(config.train.progress_bar),
  )
  about = {
    'split': 'test',
    'images': count,
    'seeds': [int(s) for s in result.seeds],
    'target': 'predicted class',
    'mask_name': "overlay's pixels" if quality_config.mask == 'mask' else 'defect',
    'settings': quality_config.to_dict(),
    'seconds': round(time.time() - start, 1),
  }
  quality = summary.summarise(scores, settings, float(quality_config.sanity_threshold), about)
  summary.write_figure(os.path.join(workdir, QUALITY_FIGURE), quality)
  quality['figure'] = QUALITY_FIGURE
  write_json(path, quality)
  logging.info('explanation quality: %s', quality['verdict'])
  return quality
