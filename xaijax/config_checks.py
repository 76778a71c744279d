"""Is a config one that can run? `validate` fails at start, naming every setting to change, rather
than an hour into a run.

The names a setting may take come from where they are defined: the config's own lists from
`case_config`, the defect placements, learning-rate schedules and quality measures from the modules
that implement them (imported inside `validate`). `parse_cluster_choice` reads
`reveal.shortcut_clusters`, for the check and for the reveal.
"""

from __future__ import annotations

import os

from xaijax.case_config import (
  CORRECTION_NAMES,
  FOUND_REGION_REMEDIES,
  LRP_COMPOSITES,
  PENALISED_CORRECTIONS,
  REMEDY_NAMES,
  REMEDY_REGIONS,
  SEED_STRATEGIES,
)


def parse_cluster_choice(text: str) -> list[tuple[int, int]]:
  """'1:3,5:0' -> [(1, 3), (5, 0)]: (class, cluster) pairs a person chose as shortcuts."""
  pairs = []
  for item in filter(None, (part.strip() for part in (text or '').split(','))):
    label, _, cluster = item.partition(':')
    if not (label.strip().isdigit() and cluster.strip().isdigit()):
      raise ValueError(
        f'reveal.shortcut_clusters={text!r}: write class:cluster pairs, e.g. 1:3,5:0'
      )
    pairs.append((int(label), int(cluster)))
  return pairs


def _reveal_problems(config) -> list[str]:
  problems = []
  reveal = config.reveal
  if config.remedy.region == 'found' and config.remedy.name not in FOUND_REGION_REMEDIES:
    problems.append(
      f"remedy.region='found' with remedy {config.remedy.name!r}: found masks drive "
      f'{FOUND_REGION_REMEDIES} only'
    )
  if reveal.model_workdir and not os.path.isdir(os.path.expanduser(reveal.model_workdir)):
    problems.append(f'reveal.model_workdir={reveal.model_workdir!r}: no such folder')
  if float(reveal.appearance_margin) < 0:
    problems.append(f'reveal.appearance_margin={reveal.appearance_margin}: must be at least 0')
  if reveal.localise not in ('auto', 'relevance', 'appearance'):
    problems.append(
      f"reveal.localise={reveal.localise!r}: choose 'auto', 'relevance' or 'appearance'"
    )
  if reveal.group_by not in ('true', 'predicted'):
    problems.append(f"reveal.group_by={reveal.group_by!r}: choose 'true' or 'predicted'")
  if reveal.features not in ('regions', 'concepts', 'heatmaps'):
    problems.append(
      f"reveal.features={reveal.features!r}: choose 'regions', 'concepts' or 'heatmaps'"
    )
  if reveal.split not in ('train', 'validation', 'test'):
    problems.append(f"reveal.split={reveal.split!r}: choose 'train', 'validation' or 'test'")
  try:
    parse_cluster_choice(reveal.shortcut_clusters)
  except ValueError as error:
    problems.append(str(error))
  if float(reveal.max_copy_spread) < 0:
    problems.append(f'reveal.max_copy_spread={reveal.max_copy_spread}: must be at least 0')
  if not 0 <= float(reveal.min_copy_in_class) <= 1:
    problems.append(f'reveal.min_copy_in_class={reveal.min_copy_in_class}: must be in [0, 1]')
  if not 0 <= reveal.low < reveal.high <= 1:
    problems.append(
      f'reveal.low={reveal.low}, reveal.high={reveal.high}: need 0 <= low < high <= 1'
    )
  for key in (
    'neighbours',
    'eigenvectors',
    'max_clusters',
    'min_clusters',
    'max_regions',
    'attack_images',
    'batch_size',
  ):
    if int(reveal[key]) < 1:
      problems.append(f'reveal.{key}={reveal[key]}: must be at least 1')
  return problems


def validate(config) -> None:
  """Fail at start, saying what to change, rather than an hour into a run."""
  from xaijax.data.defects import DEFECT_PLACEMENTS

  problems = []
  if config.data.defect_placement not in DEFECT_PLACEMENTS:
    problems.append(
      f'data.defect_placement={config.data.defect_placement!r}: choose one of {DEFECT_PLACEMENTS}'
    )
  if config.data.resolution < 32 and config.model.name == 'mobilenet':
    problems.append(f'data.resolution={config.data.resolution}: MobileNet needs at least 32 px')
  if config.remedy.name not in REMEDY_NAMES:
    problems.append(f'remedy.name={config.remedy.name!r}: choose one of {REMEDY_NAMES}')
  correction = config.correction
  if correction.name not in CORRECTION_NAMES:
    problems.append(f'correction.name={correction.name!r}: choose one of {CORRECTION_NAMES}')
  if correction.name != 'none' and config.remedy.name != 'none':
    problems.append(
      f'correction.name={correction.name!r} with remedy.name={config.remedy.name!r}: a correction '
      "edits the model, not the images; set remedy.name='none'"
    )
  for key in ('weight', 'lrp_weight', 'inpainted_weight'):
    if not correction[key] >= 0:
      problems.append(f'correction.{key}={correction[key]}: must be at least 0')
  choices = {
    'masks': ('mask', 'found'),
    'validation': ('as_distributed', 'overlays_swapped'),
    'concept': ('logo', 'overlay'),
    'cav': ('signal', 'logistic'),
    'fine_tune': ('all', 'head'),
    'lrp_composite': LRP_COMPOSITES,
  }
  for key, allowed in choices.items():
    if correction[key] not in allowed:
      problems.append(f'correction.{key}={correction[key]!r}: choose one of {allowed}')
  if int(correction.partners) < 1:
    problems.append(f'correction.partners={correction.partners}: must be at least 1')
  if int(correction.epochs) < 1:
    problems.append(f'correction.epochs={correction.epochs}: must be at least 1')
  if correction.fine_tune == 'head' and correction.name in PENALISED_CORRECTIONS:
    problems.append(
      f"correction.fine_tune='head': {correction.name} trains or fine-tunes every parameter; "
      "'head' is for A-ClArC and RR-ClArC"
    )
  if not float(correction.learning_rate) > 0:
    problems.append(f'correction.learning_rate={correction.learning_rate}: must be positive')
  if correction.base_classifier and not os.path.isdir(correction.base_classifier):
    problems.append(f'correction.base_classifier={correction.base_classifier!r}: no such folder')
  if config.remedy.region not in REMEDY_REGIONS:
    problems.append(f'remedy.region={config.remedy.region!r}: choose one of {REMEDY_REGIONS}')
  problems += _reveal_problems(config)
  train = config.train
  for key in ('epochs', 'batch_size', 'patience', 'checkpoint_every'):
    if int(train[key]) < 1:
      problems.append(f'train.{key}={train[key]}: must be at least 1')
  if int(train.get('first_seed', 0)) < 0:
    problems.append(f'train.first_seed={train.first_seed}: must be at least 0')
  if isinstance(train.seeds, int) and train.seeds < 1:
    problems.append(f'train.seeds={train.seeds}: must be at least 1')
  if not train.learning_rate > 0:
    problems.append(f'train.learning_rate={train.learning_rate}: must be positive')
  from xaijax.training.per_seed import LEARNING_RATE_SCHEDULES

  if train.learning_rate_schedule not in LEARNING_RATE_SCHEDULES:
    problems.append(
      f'train.learning_rate_schedule={train.learning_rate_schedule!r}: choose one of '
      f'{LEARNING_RATE_SCHEDULES}'
    )
  if int(train.warmup_epochs) < 0:
    problems.append(f'train.warmup_epochs={train.warmup_epochs}: must be at least 0')
  if int(train.schedule_epochs) < 0:
    problems.append(
      f'train.schedule_epochs={train.schedule_epochs}: must be at least 0 (0: all of train.epochs)'
    )
  if train.seed_strategy not in SEED_STRATEGIES:
    problems.append(f'train.seed_strategy={train.seed_strategy!r}: choose one of {SEED_STRATEGIES}')
  if int(train.devices) < 0 or int(train.data_parallel) < 0:
    problems.append(
      f'train.devices={train.devices}, train.data_parallel={train.data_parallel}: must be 0 '
      '(automatic) or positive'
    )
  elif int(train.data_parallel) and int(train.batch_size) % int(train.data_parallel):
    problems.append(
      f'train.data_parallel={train.data_parallel}: must divide train.batch_size='
      f'{train.batch_size} (each device takes an equal share of a batch)'
    )
  distributed = config.distributed
  if distributed.coordinator_address and ':' not in distributed.coordinator_address:
    problems.append(
      f'distributed.coordinator_address={distributed.coordinator_address!r}: give host:port'
    )
  if int(distributed.num_processes) and not (
    -1 <= int(distributed.process_id) < int(distributed.num_processes)
  ):
    problems.append(
      f'distributed.process_id={distributed.process_id}: must lie in [0, num_processes='
      f'{distributed.num_processes})'
    )
  if config.model.init_from:
    if config.model.name != 'mobilenet':
      problems.append(
        f'model.init_from={config.model.init_from!r}: Keras weights fit model.name=mobilenet only'
      )
    elif not os.path.isfile(os.path.expanduser(config.model.init_from)):
      problems.append(f'model.init_from={config.model.init_from!r}: no such file')
  if config.quality.enabled:
    from xaijax.quality import table  # its measure and explainer names live there

    problems += table.config_problems(config.quality, int(config.data.resolution))
  if problems:
    raise ValueError('bad config:\n  ' + '\n  '.join(problems))
