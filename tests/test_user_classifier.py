"""A user's own Linen classifier, named in the config, through the registry and the workflow."""

import json
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import pytest

from tests.test_main import ROOT, TINY
from xaijax import case_config, config_checks
from xaijax.models import registry

# A small CNN that is not MobileNet, as a user would keep it in a file of their own: no `train`
# argument, its own preprocessing, an extra constructor argument.
USER_MODEL_SOURCE = textwrap.dedent(
  """
  import flax.linen as nn
  import jax.numpy as jnp


  class PlainCnn(nn.Module):
    num_classes: int
    width: int = 8

    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Conv(self.width, (3, 3), strides=(2, 2))(x))
      x = nn.relu(nn.Conv(2 * self.width, (3, 3), strides=(2, 2))(x))
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
      return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))

    def preprocess(self, images):
      return images.astype(jnp.float32) / 255.0
  """
)


@pytest.fixture(scope='module')
def user_model_file(tmp_path_factory):
  path = tmp_path_factory.mktemp('user') / 'my_models.py'
  path.write_text(USER_MODEL_SOURCE)
  return path


def model_config(name, **kwargs):
  config = case_config.get_config().model
  config.update(name=name, num_classes=3, kwargs=kwargs)
  return config


def test_a_file_path_names_a_classifier_with_its_own_preprocessing(user_model_file):
  classifier = registry.build(model_config(f'{user_model_file}:PlainCnn', width=4))
  images = np.full((2, 16, 16, 1), 255, np.uint8)
  np.testing.assert_array_equal(classifier.preprocess(images), np.ones((2, 16, 16, 1)))
  assert registry.takes_train_flag(classifier.module), 'wrapped, so the trainer can pass train'
  variables = classifier.module.init(jax.random.key(0), classifier.preprocess(images), train=True)
  logits = classifier.module.apply(variables, classifier.preprocess(images), train=False)
  assert logits.shape == (2, 3)
  kernel = variables['params']['classifier']['Conv_0']['kernel']
  assert kernel.shape[-1] == 4, 'model.kwargs reach the constructor'


def test_an_importable_module_names_a_classifier_with_the_default_preprocessing():
  classifier = registry.build(model_config('tests.test_classifier:TinyCNN'))
  assert classifier.preprocess is registry.scale_and_tile(1)
  assert type(classifier.module).__name__ == 'TinyCNN', 'takes train already: not wrapped'


@pytest.mark.parametrize(
  'name, message',
  [
    ('PlainCnn', "use 'mobilenet', 'package.module:ClassName'"),
    ('no_such_package.models:Net', "cannot import 'no_such_package.models'"),
    ('/no/such/file.py:Net', 'no such file'),
    ('tests.test_classifier:NoSuchNet', "defines no 'NoSuchNet'"),
    ('tests.test_classifier:make_split', 'could not build make_split'),
  ],
)
def test_a_bad_model_name_says_what_to_change(name, message):
  with pytest.raises(ValueError, match=message):
    registry.build(model_config(name))


def test_keras_weights_are_refused_for_a_user_classifier():
  config = case_config.get_config()
  config.model.update(name='tests.test_classifier:TinyCNN', init_from='weights.h5')
  with pytest.raises(ValueError, match='mobilenet only'):
    config_checks.validate(config)


def test_the_whole_workflow_runs_on_a_user_classifier(user_model_file, tmp_path):
  workdir = tmp_path / 'run'
  command = [
    sys.executable,
    'main.py',
    '--config=configs/telea.py',
    f'--workdir={workdir}',
    f'--config.data.data_dir={tmp_path / "tfds"}',
    *TINY,
    f'--config.model.name={user_model_file}:PlainCnn',
  ]
  completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert completed.returncode == 0, completed.stderr[-3000:]
  results = json.loads((workdir / 'results.json').read_text())
  assert results['settings']['model']['name'].endswith('my_models.py:PlainCnn')
  assert results['settings']['remedy']['name'] == 'telea'
  for split in ('test', 'test_clean', 'test_attacked'):
    assert all(0.0 <= v <= 1.0 for v in results['splits'][split]['f1']['per_seed'])
  shares = results['relevance_mass_in_overlay']['per_seed']
  assert len(shares) == 2 and all(np.isfinite(shares)), 'LRP ran on the user classifier'
  assert (workdir / 'lrp_examples.png').stat().st_size > 500
  assert (workdir / 'report.md').exists()
  params = ml_collections.ConfigDict(json.loads((workdir / 'config.json').read_text()))
  assert params.model.name == f'{user_model_file}:PlainCnn'
