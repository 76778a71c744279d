"""Shared defaults for every case and the `file.py:arg` parser (big_vision style).

`arg` is a comma-separated list: bare words are flags (`paper`), `key=value` pairs set options
(`seeds=8`, `data=gc10_det`, `manual_dir=/data/GC10-DET`, `resolution=96`). With no arg the config is
CPU-sized on the embedded dataset; `paper` gives the paper's settings (DESIGN.md) for accelerators.
Any key can also be overridden on the command line: `--config.train.seeds=5`.
"""

from __future__ import annotations

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
  'overlay_mode': (str, 'data.overlay_mode'),
  'class_scale': (float, 'data.class_scale'),
  'batch_size': (int, 'train.batch_size'),
  'gan_steps': (int, 'gan.steps'),
}


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


def get_config(arg: str | None = None, remedy: str = 'none') -> ml_collections.ConfigDict:
  options = parse_arg(arg)
  paper = options.get('paper', False)
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict(
    dict(
      name='synthetic_gc10',
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
      name=remedy,  # 'none', 'blur', 'crop', 'black_stripe', 'telea', 'generative'
      region='mask'
      if remedy in ('telea', 'generative')
      else 'strips',  # 'strips' (paper) or 'mask'
    )
  )

  config.model = ml_collections.ConfigDict(
    dict(
      name='mobilenet',
      num_classes=10,
      alpha=1.0 if paper else 0.5,  # width multiplier
      dropout_rate=1e-3,  # Keras' MobileNet default
      batch_norm_momentum=0.99
      if paper
      else 0.9,  # Keras: 0.99; few steps per epoch on the CPU want 0.9
      depthwise_impl='shifted',  # 'shifted' (fast on CPU) or 'xla' (grouped convolution)
      channels=3 if paper else 1,  # 3: grayscale tiled, as ImageNet weights expect
      init_from='',  # a Keras MobileNet .h5 / .weights.h5 file to start from (head excluded)
    )
  )

  config.train = ml_collections.ConfigDict(
    dict(
      seeds=30 if paper else 3,
      batch_size=16,
      epochs=450 if paper else 30,
      learning_rate=1e-3,
      b1=0.9,
      patience=60 if paper else 10,  # epochs without a validation macro-F1 gain of min_delta
      min_delta=0.001,
      seed_strategy='vmap',  # or 'loop'; same numbers. vmap measured faster here too for 3 seeds at 64 px
      checkpoint_every=5,
      keep_checkpoints=3,
      eval_batch_size=64,  # per seed; validation runs for all seeds at once inside the program
      devices=0,  # devices to shard the seed axis over (vmap); 0 = all local devices
      progress_bar=True,
    )
  )

  config.lrp = ml_collections.ConfigDict(
    dict(
      composite='epsilon',  # 'epsilon', 'epsilon_plus', 'epsilon_gamma_box', 'epsilon_plus_flat'
      # With epsilon -> 0 the epsilon rule approaches gradient x input, whose noise spreads relevance over
      # the whole image; 0.1 (pre-activations are BatchNorm-scaled, ~1) absorbs weak, contradictory
      # contributions, as Montavon et al. 2019 recommend for the upper layers.
      epsilon=0.1,
      batch_size=32,
    )
  )

  from xaijax.training import gan  # its defaults live beside the trainer that reads them

  config.gan = gan.default_config(paper)

  for key, value in options.items():
    if key != 'paper':
      section, field = ARG_OPTIONS[key][1].split('.')
      config[section][field] = value
  return config
