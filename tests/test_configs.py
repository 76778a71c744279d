import importlib

import pytest

from xaijax import case_config, config_checks

CASES = ['original', 'blur', 'crop', 'black_stripe', 'telea', 'generative']


@pytest.mark.parametrize('case', CASES)
def test_every_case_builds_cpu_and_paper_configs(case):
  module = importlib.import_module(f'configs.{case}')
  cpu, paper = module.get_config(), module.get_config('paper')
  assert cpu.data.resolution == 64 and paper.data.resolution == 224
  assert paper.data.class_scale == 1.0
  assert cpu.remedy.name == ('none' if case == 'original' else case)
  assert f'configs/{case}.py' in module.__doc__, 'the run command sits in the docstring'


def test_arg_options_land_in_the_config():
  config = case_config.get_config(
    'paper,data=gc10_det,manual_dir=/data/gc10,resolution=96,overlay_mode=random,seeds=7'
  )
  assert config.train.seeds == 7 and config.train.epochs == 450
  assert config.data.name == 'gc10_det' and config.data.manual_dir == '/data/gc10'
  assert config.data.resolution == 96 and config.data.overlay_mode == 'random'


def test_unknown_or_malformed_options_are_errors():
  with pytest.raises(ValueError, match="unknown config option 'sedes'"):
    case_config.get_config('sedes=3')
  with pytest.raises(ValueError, match='needs a value'):
    case_config.get_config('resolution')
  with pytest.raises(ValueError, match='not a valid int'):
    case_config.get_config('resolution=big')


def test_a_typo_in_a_config_key_is_an_error():
  config = case_config.get_config()
  with pytest.raises(AttributeError):
    config.data.resolutoin  # noqa: B018


CORRECTIONS = ['rrr', 'rrr_lrp', 'counterexamples', 'pclarc', 'aclarc', 'rrclarc']


@pytest.mark.parametrize('case', CORRECTIONS)
def test_every_correction_builds_and_keeps_the_images(case):
  module = importlib.import_module(f'configs.{case}')
  config = module.get_config('weight=3')
  assert config.correction.name == case and config.remedy.name == 'none'
  assert config.correction.weight == 3.0
  assert module.get_config().correction.weight == case_config.CORRECTION_WEIGHTS.get(case, 0.0)
  assert f'configs/{case}.py' in module.__doc__, 'the run command sits in the docstring'
  config_checks.validate(config)


def test_bad_correction_settings_say_what_to_change():
  config = case_config.get_config(correction='rrclarc')
  config.remedy.name = 'telea'
  config.correction.update(
    weight=-1.0,
    lrp_weight=-2.0,
    inpainted_weight=-0.5,
    partners=0,
    cav='svm',
    fine_tune='some',
    masks='guessed',
  )
  with pytest.raises(ValueError) as error:
    config_checks.validate(config)
  for expected in (
    "remedy.name='telea': a correction edits the model",
    'correction.weight=-1.0: must be at least 0',
    'correction.lrp_weight=-2.0: must be at least 0',
    'correction.inpainted_weight=-0.5: must be at least 0',
    'correction.partners=0: must be at least 1',
    "correction.cav='svm'",
    "correction.fine_tune='some'",
    "correction.masks='guessed'",
  ):
    assert expected in str(error.value), expected


def test_a_negative_first_seed_is_refused():
  config = case_config.get_config()
  config.train.first_seed = -1
  with pytest.raises(ValueError, match=r'train\.first_seed=-1: must be at least 0'):
    config_checks.validate(config)


def test_a_penalised_correction_fine_tunes_every_parameter_at_a_positive_rate():
  config = case_config.get_config(correction='counterexamples')
  config.correction.update(fine_tune='head', learning_rate=0.0)
  with pytest.raises(ValueError) as error:
    config_checks.validate(config)
  assert "correction.fine_tune='head': counterexamples trains or fine-tunes every" in str(
    error.value
  )
  assert 'correction.learning_rate=0.0: must be positive' in str(error.value)
