"""The reveal's config keys: what they accept and the errors they give."""

import pytest

from xaijax import case_config, config_checks


def test_a_persons_cluster_choice_is_read_as_class_cluster_pairs():
  assert config_checks.parse_cluster_choice('1:3, 5:0') == [(1, 3), (5, 0)]
  assert config_checks.parse_cluster_choice('') == []
  with pytest.raises(ValueError, match='class:cluster pairs'):
    config_checks.parse_cluster_choice('welding_line:3')


def test_bad_reveal_settings_fail_at_start_saying_what_to_change():
  config = case_config.get_config(remedy='blur')
  config.remedy.region = 'found'
  config.reveal.features = 'pixels'
  config.reveal.shortcut_clusters = '1-3'
  config.reveal.low, config.reveal.high = 0.5, 0.3
  config.reveal.model_workdir = '/no/such/run'
  config.reveal.localise = 'template'
  config.reveal.min_clusters = 0
  config.reveal.appearance_margin = -0.5
  config.reveal.max_copy_spread = -1.0
  config.reveal.min_copy_in_class = 1.5
  with pytest.raises(ValueError) as error:
    config_checks.validate(config)
  message = str(error.value)
  for expected in (
    "remedy.region='found' with remedy 'blur'",
    "reveal.features='pixels'",
    'reveal.shortcut_clusters',
    'need 0 <= low < high <= 1',
    "reveal.model_workdir='/no/such/run': no such folder",
    "reveal.localise='template': choose 'auto', 'relevance' or 'appearance'",
    'reveal.min_clusters=0: must be at least 1',
    'reveal.appearance_margin=-0.5: must be at least 0',
    'reveal.max_copy_spread=-1.0: must be at least 0',
    'reveal.min_copy_in_class=1.5: must be in [0, 1]',
  ):
    assert expected in message, expected


def test_the_new_data_options_reach_the_config():
  config = case_config.get_config(
    'overlay_mode=poisoned,overlay_placement=anywhere,poison_fraction=0.5'
  )
  assert (config.data.overlay_mode, config.data.overlay_placement) == ('poisoned', 'anywhere')
  assert config.data.poison_fraction == 0.5
  assert case_config.get_config('data=image_folder').data.overlay_mode == 'none'
  assert (
    case_config.get_config('data=image_folder,overlay_mode=random').data.overlay_mode == 'random'
  )
