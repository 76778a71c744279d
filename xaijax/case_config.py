"""The config of one case: every default in one place, the `file.py:arg` parser, and its checks.

Config files in `configs/` (big_vision style) call `get_config(arg, remedy=...)`. `arg` is a
comma-separated list: bare words are flags (`paper`), `key=value` pairs set options (`seeds=8`,
`data=gc10_det`, `manual_dir=/data/GC10-DET`, `resolution=96`). With no arg the config is CPU-sized
on the embedded dataset; `paper` gives the paper's settings (DESIGN.md) for accelerators. Any key
can also be overridden on the command line: `--config.train.seeds=5`.

Code that reads a config reads its keys directly (no `.get(key, default)`): defaults live here.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

# Options an arg may set, their type, and where they land in the config.
ARG_OPTIONS = {
  'paper': (bool, None),
  'seeds': (int, 'train.seeds'),
  'epochs': (int, 'train.epochs'),
  'data': (str, 'data.name'),
  'manual_dir': (str, 'data.manual_dir'),
  'resolution': (int, 'data.resolution'),
  'alpha': (float, 'model.alpha'),
  'model': (str, 'model.name'),
  'overlay_mode': (str, 'data.overlay_mode'),
  'class_scale': (float, 'data.class_scale'),
  'batch_size': (int, 'train.batch_size'),
  'gan_steps': (int, 'gan.steps'),
  'weight': (float, 'correction.weight'),
}
REMEDY_NAMES = ('none', 'blur', 'crop', 'black_stripe', 'telea', 'generative')
REMEDY_REGIONS = ('strips', 'mask')
LRP_COMPOSITES = (  # xaijax.lrp.COMPOSITES, named here so a config loads without JAX
  'epsilon',
  'epsilon_plus',
  'epsilon_gamma_box',
  'epsilon_plus_flat',
  'epsilon_alpha2_beta1',
)
CORRECTION_NAMES = ('none', 'rrr', 'rrr_lrp', 'pclarc', 'aclarc', 'rrclarc')
# λ of each correction with a penalty, chosen on validation (README: "Model corrections").
CORRECTION_WEIGHTS = {'rrr': 100.0, 'rrr_lrp': 10.0, 'rrclarc': 10.0}
SEED_STRATEGIES = ('vmap', 'loop')


def parse_arg(arg: str | None) -> dict:
  """'paper,seeds=8' -> {'paper': True, 'seeds': 8}; an unknown or malformed option is an error."""
  options = {}
  for item in filter(None, (part.strip() for part in (arg or '').split(','))):
    key, has_value, value = item.partition('=')
    if key not in ARG_OPTIONS:
      raise ValueError(f'unknown config option {key!r} in {arg!r}; known: {sorted(ARG_OPTIONS)}')
    kind = ARG_OPTIONS[key][0]
    if kind is bool:
      options[key] = value.lower() not in ('0', 'false', 'no') if has_value else True
    else:
      if not has_value:
        raise ValueError(f'config option {key!r} needs a value, e.g. {key}=...')
      try:
        options[key] = kind(value)
      except ValueError as error:
        raise ValueError(f'config option {key}={value!r} is not a valid {kind.__name__}') from error
  return options


def get_config(
  arg: str | None = None, remedy: str = 'none', correction: str = 'none'
) -> ml_collections.ConfigDict:
  """The whole config of a case whose remedy is `remedy` (an edit of the images) or whose
  correction is `correction` (an edit of the model), CPU-sized or (`paper`) the paper's."""
  options = parse_arg(arg)
  paper = options.get('paper', False)
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict(
    dict(
      name='synthetic_gc10',  # or 'gc10_det' (a GC10-DET download in manual_dir)
      resolution=224 if paper else 64,
      class_scale=1.0 if paper else 0.5,  # times GC10-DET's images per class
      min_per_class=10,
      image_seed=0,
      overlay_mode='spurious',  # 'spurious' (logo tied to class in train/val), 'random', 'none'
      logo_class_probability=0.9,
      overlay_seed=0,
      split_seed=0,
      split_fractions=(0.7, 0.2, 0.1),
      data_dir='',  # TFDS data; '' -> ~/.cache/xaijax/tensorflow_datasets
      manual_dir='',  # gc10_det only: the downloaded GC10-DET folder
      on_corrupt='error',  # gc10_det only: 'error' or 'skip' unreadable images
    )
  )

  config.remedy = ml_collections.ConfigDict(
    dict(
      name=remedy,  # one of REMEDY_NAMES
      # 'strips' (the paper's top and bottom bands) or 'mask' (the exact overlay pixels)
      region='mask' if remedy in ('telea', 'generative') else 'strips',
    )
  )

  config.model = ml_collections.ConfigDict(
    dict(
      # 'mobilenet', or your own Linen classifier as 'package.module:ClassName' or
      # 'path/to/file.py:ClassName' (see xaijax/models/registry.py).
      name='mobilenet',
      num_classes=10,
      channels=3 if paper else 1,  # input channels; 3: grayscale tiled, as ImageNet weights expect
      kwargs={},  # extra constructor arguments of a user-supplied classifier
      # MobileNet only:
      alpha=1.0 if paper else 0.5,  # width multiplier
      dropout_rate=1e-3,  # Keras' MobileNet default
      # Keras: 0.99; the few steps per epoch of the CPU config want 0.9
      batch_norm_momentum=0.99 if paper else 0.9,
      depthwise_impl='shifted',  # 'shifted' (fast on CPU) or 'xla' (grouped convolution)
      init_from='',  # a Keras MobileNet .h5 / .weights.h5 file to start from (head excluded)
    )
  )

  config.train = ml_collections.ConfigDict(
    dict(
      seeds=30 if paper else 3,  # an int n (seeds 0..n-1) or a list of seed values
      batch_size=16,
      epochs=450 if paper else 30,
      learning_rate=1e-3,
      learning_rate_per_seed=None,  # optional list, one rate per seed, overrides the above
      b1=0.9,
      patience=60 if paper else 10,  # epochs without a validation macro-F1 gain of min_delta
      min_delta=0.001,
      # 'vmap' or 'loop'; same numbers. vmap measured faster here too for 3 seeds at 64 px.
      seed_strategy='vmap',
      checkpoint_every=5,  # epochs
      keep_checkpoints=3,
      eval_batch_size=64,  # per seed; validation runs for all seeds at once inside the program
      devices=0,  # devices to shard the seed axis over (vmap); 0 = all local devices
      progress_bar=True,
      tensorboard=True,  # training curves per seed as TensorBoard event files in the workdir
    )
  )

  config.lrp = ml_collections.ConfigDict(
    dict(
      composite='epsilon',  # 'epsilon', 'epsilon_plus', 'epsilon_gamma_box', 'epsilon_plus_flat'
      # With epsilon -> 0 the epsilon rule approaches gradient x input, whose noise spreads
      # relevance over the whole image; 0.1 (pre-activations are BatchNorm-scaled, ~1) absorbs
      # weak, contradictory contributions, as Montavon et al. 2019 recommend for upper layers.
      epsilon=0.1,
      batch_size=32,
    )
  )

  config.correction = ml_collections.ConfigDict(
    dict(
      name=correction,  # one of CORRECTION_NAMES; 'none' for the image remedies
      weight=CORRECTION_WEIGHTS.get(correction, 0.0),  # λ of the penalty; 0 = plain training
      masks='mask',  # 'mask': ground-truth overlay masks; 'found': the reveal's (not wired yet)
      # Early stopping of a correction: 'overlays_swapped' (every validation image shows another
      # class's overlay, so the best epoch is not the one that reads the logo best) or
      # 'as_distributed' (the Original's validation split).
      validation='overlays_swapped',
      lrp_composite='epsilon',  # rrr_lrp: the composite differentiated in the loss
      # ClArC: the concept lives in the activations entering this module ('conv_preds': MobileNet's
      # head, i.e. the pooled features; P-ClArC needs a Dense layer, A-/RR-ClArC take any).
      layer='conv_preds',
      concept='logo',  # 'logo': one CAV per logo (a subspace); 'overlay': one CAV, any overlay
      cav='signal',  # 'signal' (pattern cov(a, y)/var(y)) or 'logistic' (linear classifier)
      fine_tune='all',  # A-/RR-ClArC: 'all' parameters, or only the 'head'
      head='conv_preds',  # the head's module, for fine_tune='head'
      epochs=10,  # A-/RR-ClArC fine-tuning epochs, from each seed's Original model
      learning_rate=1e-4,  # of the fine-tuning
      base_classifier='',  # ClArC: a finished Original run (its classifier/ folder) to reuse
    )
  )

  from xaijax.training import gan  # its defaults live beside the trainer that reads them

  config.gan = gan.default_config(paper)

  for key, value in options.items():
    if key != 'paper':
      section, field = ARG_OPTIONS[key][1].split('.')
      config[section][field] = value
  return config


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of the config file at `path` (what `--config=path:arg` gives main.py)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no config file {path!r}')
  name = 'xaijax_config_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def describe_data(data_config) -> str:
  """One line naming the dataset, its size and its overlays, for reports and logs."""
  return f'{data_config.name}, {data_config.resolution} px, overlays: {data_config.overlay_mode}'


def validate(config) -> None:
  """Fail at start, saying what to change, rather than an hour into a run."""
  problems = []
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
  if not correction.weight >= 0:
    problems.append(f'correction.weight={correction.weight}: must be at least 0')
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
  if int(correction.epochs) < 1:
    problems.append(f'correction.epochs={correction.epochs}: must be at least 1')
  if correction.base_classifier and not os.path.isdir(correction.base_classifier):
    problems.append(f'correction.base_classifier={correction.base_classifier!r}: no such folder')
  if config.remedy.region not in REMEDY_REGIONS:
    problems.append(f'remedy.region={config.remedy.region!r}: choose one of {REMEDY_REGIONS}')
  train = config.train
  for key in ('epochs', 'batch_size', 'patience', 'checkpoint_every'):
    if int(train[key]) < 1:
      problems.append(f'train.{key}={train[key]}: must be at least 1')
  if isinstance(train.seeds, int) and train.seeds < 1:
    problems.append(f'train.seeds={train.seeds}: must be at least 1')
  if not train.learning_rate > 0:
    problems.append(f'train.learning_rate={train.learning_rate}: must be positive')
  if train.seed_strategy not in SEED_STRATEGIES:
    problems.append(f'train.seed_strategy={train.seed_strategy!r}: choose one of {SEED_STRATEGIES}')
  if config.model.init_from:
    if config.model.name != 'mobilenet':
      problems.append(
        f'model.init_from={config.model.init_from!r}: Keras weights fit model.name=mobilenet only'
      )
    elif not os.path.isfile(os.path.expanduser(config.model.init_from)):
      problems.append(f'model.init_from={config.model.init_from!r}: no such file')
  if problems:
    raise ValueError('bad config:\n  ' + '\n  '.join(problems))
