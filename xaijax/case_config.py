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
  'overlay_placement': (str, 'data.overlay_placement'),
  'poison_fraction': (float, 'data.poison_fraction'),
  'class_scale': (float, 'data.class_scale'),
  'batch_size': (int, 'train.batch_size'),
  'gan_steps': (int, 'gan.steps'),
  'region': (str, 'remedy.region'),
}
REMEDY_NAMES = ('none', 'blur', 'crop', 'black_stripe', 'telea', 'generative')
REMEDY_REGIONS = ('strips', 'mask', 'found')
# Remedies that can act on masks found by the reveal (blur and crop act on the strips only).
FOUND_REGION_REMEDIES = ('black_stripe', 'telea', 'generative')
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


def get_config(arg: str | None = None, remedy: str = 'none') -> ml_collections.ConfigDict:
  """The whole config of a case whose remedy is `remedy`, CPU-sized or (`paper`) the paper's."""
  options = parse_arg(arg)
  paper = options.get('paper', False)
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict(
    dict(
      # or 'gc10_det' (a GC10-DET download in manual_dir), or 'image_folder' (your own images in
      # manual_dir, one subfolder per class; data=image_folder burns no overlays in by default)
      name='synthetic_gc10',
      resolution=224 if paper else 64,
      class_scale=1.0 if paper else 0.5,  # times GC10-DET's images per class
      min_per_class=10,
      image_seed=0,
      # 'spurious' (logo tied to class in train/val), 'random', 'poisoned' (a fraction of some
      # classes carries its class's logo alone), 'none'
      overlay_mode='spurious',
      overlay_placement='strips',  # 'strips' (the paper's) or 'anywhere' (random places)
      logo_class_probability=0.9,
      poison_classes=(1, 5),  # overlay_mode='poisoned': the classes whose images carry a logo
      poison_fraction=0.3,  # ... on this fraction of their train/validation images
      overlay_seed=0,
      split_seed=0,
      split_fractions=(0.7, 0.2, 0.1),
      data_dir='',  # TFDS data; '' -> ~/.cache/xaijax/tensorflow_datasets
      manual_dir='',  # gc10_det, image_folder: the folder of the images
      on_corrupt='error',  # gc10_det, image_folder: 'error' or 'skip' unreadable images
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

  config.reveal = reveal_defaults()

  from xaijax.training import gan  # its defaults live beside the trainer that reads them

  config.gan = gan.default_config(paper)

  if options.get('data') == 'image_folder' and 'overlay_mode' not in options:
    # Your own images carry their own shortcut, if any: burn nothing in unless asked.
    config.data.overlay_mode = 'none'
  for key, value in options.items():
    if key != 'paper':
      section, field = ARG_OPTIONS[key][1].split('.')
      config[section][field] = value
  return config


def reveal_defaults() -> ml_collections.ConfigDict:
  """`config.reveal`: finding a shortcut nobody named (xaijax/reveal), and remedy.region='found'."""
  return ml_collections.ConfigDict(
    dict(
      # region='found': the Original run (its workdir) whose model is revealed; '' trains one in
      # <workdir>/original first.
      model_workdir='',
      split='train',  # the images clustered
      group_by='true',  # cluster each class's images by 'true' or 'predicted' label
      # What SpRAy clusters (xaijax/reveal/items.py): 'regions' (each image's strongest relevant
      # regions, by their relevance per channel at `layer`'s input), 'concepts' (whole images,
      # relevance per channel pooled over space) or 'heatmaps' (CoRelAy's downsampled pixel maps).
      features='regions',
      max_regions=3,  # features='regions': regions per image
      # A layer name ('conv_pw_2'); '' = the first layer whose input is at most 1/4 of the image's
      # side (conv_pw_2 of MobileNet).
      layer='',
      # epsilon_plus (z+ below the head) points at a small artifact more often than epsilon
      # (measured on poisoned+anywhere: 77% against 71% of artifact images, DESIGN.md).
      composite='epsilon_plus',
      heatmap_size=16,  # features='heatmaps': side of the downsampled maps
      neighbours=10,  # CoRelAy's k-nearest-neighbour graph
      eigenvectors=32,  # CoRelAy's eigenpairs
      max_clusters=8,  # the eigengap is looked for among the first this many eigenvalues
      num_clusters=0,  # clusters per class; 0 = as many as the eigengap says
      # A person's choice after looking at reveal_clusters.png, as 'class:cluster' pairs
      # ('1:3,5:0'); '' = every cluster with shortcut evidence.
      shortcut_clusters='',
      seed=0,  # k-means, t-SNE, the attack's pairs, the eigensolver's start vector
      # Localisation (Reveal2Revise): relevance > low x max, Gaussian blur, > high x max.
      low=0.1,
      high=0.3,
      blur_sigma=0.02,  # of the image side (1.3 px at 64 px)
      attack_images=64,  # validation images of other classes each cluster's region is pasted into
      # A cluster shows shortcut evidence when the paste flips at least this many more images to its
      # class than the control does, its outline covers at most this share of the image, and holds
      # at least this share of the positive relevance.
      min_flip_excess=0.5,
      max_mask_area=0.1,
      min_relevance_in_mask=0.2,
      batch_size=64,
      progress_bar=True,
    )
  )


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
  if not 0 <= reveal.low < reveal.high <= 1:
    problems.append(
      f'reveal.low={reveal.low}, reveal.high={reveal.high}: need 0 <= low < high <= 1'
    )
  for key in (
    'neighbours',
    'eigenvectors',
    'max_clusters',
    'max_regions',
    'attack_images',
    'batch_size',
  ):
    if int(reveal[key]) < 1:
      problems.append(f'reveal.{key}={reveal[key]}: must be at least 1')
  return problems


def validate(config) -> None:
  """Fail at start, saying what to change, rather than an hour into a run."""
  problems = []
  if config.data.resolution < 32 and config.model.name == 'mobilenet':
    problems.append(f'data.resolution={config.data.resolution}: MobileNet needs at least 32 px')
  if config.remedy.name not in REMEDY_NAMES:
    problems.append(f'remedy.name={config.remedy.name!r}: choose one of {REMEDY_NAMES}')
  if config.remedy.region not in REMEDY_REGIONS:
    problems.append(f'remedy.region={config.remedy.region!r}: choose one of {REMEDY_REGIONS}')
  problems += _reveal_problems(config)
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
