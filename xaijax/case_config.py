"""The config of one case: every default in one place and the `file.py:arg` parser.

Config files in `configs/` (big_vision style) call `get_config(arg, remedy=...)`. `arg` is a
comma-separated list: bare words are flags (`paper`), `key=value` pairs set options (`seeds=8`,
`data=gc10_det`, `manual_dir=/data/GC10-DET`, `resolution=96`). With no arg the config is CPU-sized
on the embedded dataset; `paper` gives the paper's settings (DESIGN.md) for accelerators. Any key
can also be overridden on the command line: `--config.train.seeds=5`.

Code that reads a config reads its keys directly (no `.get(key, default)`): defaults live here.
Whether a config can run is checked by `config_checks.validate` (xaijax/config_checks.py).
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
  'defect_placement': (str, 'data.defect_placement'),
  'class_scale': (float, 'data.class_scale'),
  'batch_size': (int, 'train.batch_size'),
  'gan_steps': (int, 'gan.steps'),
  'weight': (float, 'correction.weight'),
  'overlay_placement': (str, 'data.overlay_placement'),
  'poison_fraction': (float, 'data.poison_fraction'),
  'region': (str, 'remedy.region'),
}
# Seeds per case in the study (scripts/reproduce_paper.py) on the CPU config: enough for Welch's
# test to separate real differences; main.py's single case keeps train.seeds.
CPU_STUDY_SEEDS = 5
REMEDY_NAMES = ('none', 'blur', 'crop', 'black_stripe', 'telea', 'generative')
REMEDY_REGIONS = ('strips', 'mask', 'found')
# Remedies that can act on masks found by the reveal (blur and crop act on the strips only).
FOUND_REGION_REMEDIES = ('black_stripe', 'telea', 'generative')
LRP_COMPOSITES = (  # xaijax.lrp.COMPOSITES, named here so a config loads without JAX
  'epsilon',
  'epsilon_plus',
  'epsilon_gamma_box',
  'epsilon_plus_flat',
  'epsilon_alpha2_beta1',
)
CORRECTION_NAMES = ('none', 'rrr', 'rrr_lrp', 'counterexamples', 'pclarc', 'aclarc', 'rrclarc')
# The corrections whose penalty is a term of the training loss (from scratch, or fine-tuning).
PENALISED_CORRECTIONS = ('rrr', 'rrr_lrp', 'counterexamples')
# λ of each correction with a penalty, chosen on validation (README: "Model corrections"):
# scripts/sweep_correction.py, spurious setting, 2 seeds, 20 epochs, the highest validation F1
# with the overlays swapped. RRR: 0.001 of 1e-3..100 (from 0.03 up the model collapses to a
# constant; below, it keeps the shortcut). RRR-LRP: 10 of 1 and 10. RR-ClArC: not swept.
CORRECTION_WEIGHTS = {'rrr': 0.001, 'rrr_lrp': 10.0, 'counterexamples': 1.0, 'rrclarc': 10.0}
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
      # or 'gc10_det' (a GC10-DET download in manual_dir), or 'image_folder' (your own images in
      # manual_dir, one subfolder per class; data=image_folder burns no overlays in by default)
      name='synthetic_gc10',
      resolution=224 if paper else 64,
      class_scale=1.0 if paper else 0.5,  # times GC10-DET's images per class
      min_per_class=10,
      image_seed=0,
      # synthetic_gc10 only: 'anywhere' (the whole frame, so the overlay strips hide part or all
      # of some defects, as on GC10-DET's photos) or 'between_strips' (never under the strips)
      defect_placement='anywhere',
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
      # Width multiplier. CPU: 0.25 costs 0.41x the CPU time per step of 0.5 (5 vmapped seeds,
      # 64 px, batch 16) for a slightly lower validation F1 on Crop (best 0.56-0.57 against
      # 0.57-0.63), which buys the epochs convergence needs (README: "The study").
      alpha=1.0 if paper else 0.25,
      dropout_rate=1e-3,  # Keras' MobileNet default
      # Keras' 0.99 for both: with 0.9 the running statistics of the last few batches made the
      # CPU config's validation F1 jump by up to 0.05 between epochs even at a vanishing learning
      # rate, so early stopping never settled (measured on Crop, 5 seeds)
      batch_norm_momentum=0.99,
      depthwise_impl='shifted',  # 'shifted' (fast on CPU) or 'xla' (grouped convolution)
      init_from='',  # a Keras MobileNet .h5 / .weights.h5 file to start from (head excluded)
    )
  )

  config.train = ml_collections.ConfigDict(
    dict(
      seeds=30 if paper else 3,  # an int n: seeds first_seed..first_seed+n-1
      # Where the seeds start: another run's first_seed=5 with seeds=5 adds 5 new seeds to a run
      # of seeds 0..4 (a replication on fresh seeds).
      first_seed=0,
      batch_size=16,
      # CPU: a 50-epoch cosine schedule, then up to a patience more at its last, small rate
      epochs=450 if paper else 60,
      # CPU: the cosine schedule's peak. A sweep on Crop (alpha 0.5, 30 epochs, one seed per rate,
      # so +-0.05 of noise) ended at validation F1 0.34, 0.36, 0.47, 0.45, 0.57, 0.57, 0.61, 0.63,
      # 0.53 for peaks 1e-3, 2e-3, 4e-3, 6e-3, 8e-3, 1e-2, 1.6e-2, 2.4e-2, 3.2e-2; the paper's
      # constant 1e-3 was at 0.30 after 16 epochs. 1.6e-2 sits inside the good range.
      learning_rate=1e-3 if paper else 1.6e-2,
      learning_rate_per_seed=None,  # optional list, one rate per seed, overrides the above
      # 'constant' (the paper) or 'cosine': warm up over warmup_epochs, then decay towards 0 at
      # `epochs`, so a short CPU run ends on a plateau (xaijax/training/per_seed.py)
      learning_rate_schedule='constant' if paper else 'cosine',
      warmup_epochs=0 if paper else 2,
      # The epochs the cosine's decay spans (0: all of `epochs`; more than `epochs`: all of them);
      # later epochs keep its last, small rate. CPU: 50, a patience before the limit: a decay that
      # ends at the limit improves some seeds a little until its last epochs, so early stopping
      # cannot fire; a 40-epoch decay gave worse models (README, "Training that converges").
      schedule_epochs=0 if paper else 50,
      b1=0.9,
      patience=60 if paper else 10,  # epochs without a validation macro-F1 gain of min_delta
      min_delta=0.001,
      # 'vmap' or 'loop'; same numbers. vmap measured faster here too for 3 seeds at 64 px.
      seed_strategy='vmap',
      checkpoint_every=5,  # epochs
      keep_checkpoints=3,
      eval_batch_size=64,  # per seed; validation runs for all seeds at once inside the program
      devices=0,  # devices (of every process) the seeds are spread over (vmap); 0 = all
      # Devices that share each seed's batch (a seeds x data mesh): 0 = automatic (1 while the
      # seeds fill the devices; with fewer seeds than devices, the rest share batches); or a
      # divisor of the device count and of batch_size.
      data_parallel=0,
      # vmap: once early stopping has ended enough seeds, run the rest in a smaller program
      # (power-of-two slot counts, so few compilations) instead of carrying the stopped ones.
      repack_stopped_seeds=True,
      # A finished classifier/ folder to copy instead of training, used only when it ran this very
      # setup on byte-identical data (run_config.json and data_digest.json match); the study
      # points each case at the same case of its other overlay setting.
      reuse_identical_run='',
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

  config.quality = ml_collections.ConfigDict(
    dict(
      enabled=True,  # the explanation-quality table (xaijax.quality) after the explain stage
      images=64 if paper else 16,  # test images scored (a seeded random choice)
      mask='mask',  # localisation against 'mask' (the overlay's pixels) or 'defect'
      # Explainers and measures by name (xaijax.quality.EXPLAINERS, xaijax.quality.MEASURES).
      explainers=(
        'gradient',
        'gradient_x_input',
        'integrated_gradients',
        'smoothgrad',
        'random',
        'edges',
        'lrp_epsilon',
        'lrp_epsilon_plus',
        'lrp_epsilon_gamma_box',
        'lrp_epsilon_plus_flat',
      ),
      measures=(
        'MPRT',
        'MPRT_SSIM',
        'EfficientMPRT',
        'RandomLogit',
        'RegionPerturbation_MoRF',
        'RegionPerturbation_LeRF',
        'FaithfulnessCorrelation',
        'RelevanceMassAccuracy',
        'RelevanceRankAccuracy',
        'PointingGame',
        'AUC',
        'Sparseness',
        'Complexity',
      ),
      integrated_gradients_steps=32 if paper else 16,
      smoothgrad_samples=32 if paper else 16,
      smoothgrad_noise=0.1,  # noise std / each image's value range (Smilkov et al.: 0.1-0.2)
      mprt_cuts=10 if paper else 5,  # points of the top-down cascade measured (last: all layers)
      entropy_bins=100,  # EfficientMPRT's histogram (Quantus' default)
      region_patch=8,  # RegionPerturbation's patch side in pixels (Quantus' default)
      regions=100 if paper else 16,  # patches replaced, one per step (Quantus: 100)
      # 'mean' (each image's mean), 'black' (its minimum: Quantus' default), 'white', 'zero'. On
      # metal images a black patch looks like a defect (oil or water spot), so with 'black' every
      # order, random included, drops the score at once (AOPC MoRF 0.64-0.74 for all explainers
      # on the CPU-sized original case); the mean separates them (README, explanation quality).
      baseline='mean',
      region_softmax=True,  # RegionPerturbation tracks probabilities (Quantus' default)
      faithfulness_runs=100 if paper else 32,  # random subsets (Quantus: 100)
      faithfulness_subset=224 if paper else 64,  # pixels per subset (Quantus: 224 at 224 px)
      # Images per call of a compiled program (models x images): bounds memory, not results.
      images_per_call=2048 if paper else 512,
      sanity_threshold=0.5,  # an explainer fails MPRT if its Spearman stays at or above this
      seed=0,
    )
  )

  # One run over several processes (xaijax/distributed.py). Unset keys come from the environment
  # (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) or from JAX's detection of a
  # TPU pod slice, SLURM job or Open MPI launch.
  config.distributed = ml_collections.ConfigDict(
    dict(
      # True: call jax.distributed.initialize (so does JAX_COORDINATOR_ADDRESS in the environment)
      initialize=False,
      coordinator_address='',  # 'host:port' of process 0
      num_processes=0,  # 0: from the environment or the cluster
      process_id=-1,  # -1: from the environment or the cluster
      initialization_timeout_s=300,
      barrier_timeout_s=24 * 3600,  # how long the others wait while process 0 runs a stage
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
      # rrr_lrp: the composite differentiated in the loss. epsilon_plus (z+ below the head) was
      # chosen on validation: with overlays swapped 0.27 against epsilon's 0.14 (2 seeds, 20
      # epochs, λ 10); the network learned to hide the logo from epsilon-LRP (README).
      lrp_composite='epsilon_plus',
      # counterexamples: λ of an RRR-LRP term (`lrp_composite`) added to its loss; 0: none.
      lrp_weight=0.0,
      partners=1,  # counterexamples per image and step
      inpainted_weight=0.0,  # λ of the agreement with the Telea-inpainted training image
      # ClArC: the concept lives in the activations entering this module ('conv_preds': MobileNet's
      # head, i.e. the pooled features; P-ClArC needs a Dense layer, A-/RR-ClArC take any).
      layer='conv_preds',
      concept='logo',  # 'logo': one CAV per logo (a subspace); 'overlay': one CAV, any overlay
      cav='signal',  # 'signal' (pattern cov(a, y)/var(y)) or 'logistic' (linear classifier)
      fine_tune='all',  # A-/RR-ClArC: 'all' parameters, or only the 'head'
      head='conv_preds',  # the head's module, for fine_tune='head'
      epochs=10,  # fine-tuning epochs, from each seed's model in base_classifier (or Original)
      learning_rate=1e-4,  # of the fine-tuning
      # A finished run's classifier/ folder. ClArC: the Original to reuse instead of training it.
      # rrr, rrr_lrp, counterexamples: the models every seed fine-tunes from with the penalty
      # (`epochs` at `learning_rate`) instead of training from scratch.
      base_classifier='',
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
      # ... but at least this many: a class whose artifact sits on a minority of its images can show
      # one eigengap for the whole class (silk_spot in 2 of 3 seeds; README, "Reveal")
      min_clusters=4,
      # How a shortcut cluster is outlined in every image: 'relevance' (its regions there, as the
      # model explains the image), 'appearance' (the object its members look at, found by its look
      # wherever it is, also where the model did not look) or 'auto' (appearance for a cluster
      # whose object is a copy, see max_copy_spread below; relevance otherwise). Measured on the
      # poisoned logos (README, "Reveal"): relevance found them in 43-58% of the images, the
      # appearance of the object in all, at IoU 1.00.
      localise='auto',
      # localise='appearance': grow each matched box by this fraction of its side on every side
      # (for an inpainting remedy that should reach past the object's edge).
      appearance_margin=0.0,
      # A person's choice after looking at reveal_clusters.png, as 'class:cluster' pairs
      # ('1:3,5:0'); '' = every cluster with shortcut evidence.
      shortcut_clusters='',
      seed=0,  # k-means, t-SNE, the attack's pairs, the eigensolver's start vector
      # Localisation (Reveal2Revise): relevance > low x max, Gaussian blur, > high x max.
      low=0.1,
      high=0.3,
      blur_sigma=0.02,  # of the image side (1.3 px at 64 px)
      attack_images=64,  # validation images of other classes each cluster's region is pasted into
      # A cluster shows shortcut evidence when its outline covers at most max_mask_area of the
      # image and either the paste flips at least min_flip_excess more images to its class than
      # the control does while the outline holds at least min_relevance_in_mask of the positive
      # relevance, or its object is a copy: its pixels vary across the images showing it at most
      # max_copy_spread times as much as its surroundings do, and at least min_copy_in_class of
      # those images are of the cluster's class (evidence.is_shortcut).
      min_flip_excess=0.5,
      max_mask_area=0.1,
      min_relevance_in_mask=0.2,
      max_copy_spread=0.25,
      min_copy_in_class=0.5,
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
  """One line naming the dataset, its size, its overlays and (synthetic) where its defects sit."""
  description = (
    f'{data_config.name}, {data_config.resolution} px, overlays: {data_config.overlay_mode}'
  )
  if data_config.name == 'synthetic_gc10':
    description += f', defects: {data_config.defect_placement}'
  return description
