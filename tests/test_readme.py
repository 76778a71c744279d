"""The README as a newcomer uses it: its first two commands, its Python snippets, its configs."""

import json
import os
import re
import shlex

import jax
import numpy as np
import pytest

from xaijax import case_config, lrp
from xaijax.models import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, 'README.md')) as readme:
  README = readme.read()
BLOCKS = re.findall(r'```(\w*)\n(.*?)```', README, flags=re.DOTALL)
PYTHON_BLOCKS = [code for language, code in BLOCKS if language == 'python']
SHELL_LINES = [
  line
  for language, code in BLOCKS
  if language == 'bash'
  for line in code.replace('\\\n', ' ').splitlines()
  if line.strip()
]


def saved_file_name(code: str) -> str | None:
  """A snippet whose first line is `# name.py` is a file the reader saves, not code to run."""
  first = code.splitlines()[0]
  return first[2:].strip() if re.fullmatch(r'# \w+\.py', first) else None


def test_the_first_lines_set_up_and_run_the_main_job_and_the_tests():
  language, first_block = BLOCKS[0]
  commands = first_block.strip().splitlines()
  assert language == 'bash' and len(commands) == 2
  assert commands[0].startswith('pip install -e . && python main.py --config=configs/')
  assert commands[1] == 'pip install -r requirements-dev.txt && python -m pytest -q'
  with open(os.path.join(ROOT, '.ci', 'run')) as ci_script:
    ci = ci_script.read()
  assert 'python -m pytest -q' in ci and 'requirements-dev.txt' in ci


@pytest.mark.parametrize(
  'code', [c for c in PYTHON_BLOCKS if not saved_file_name(c)], ids=lambda c: c.splitlines()[0]
)
def test_python_snippets_run_as_pasted(code, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a snippet that writes files writes them here
  exec(compile(code, 'README.md', 'exec'), {'__name__': '__readme__'})


def test_the_classifier_file_of_the_readme_builds_with_its_kwargs_and_lrp_runs_on_it(tmp_path):
  files = {saved_file_name(c): c for c in PYTHON_BLOCKS if saved_file_name(c)}
  assert 'my_models.py' in files
  (tmp_path / 'my_models.py').write_text(files['my_models.py'])
  command = next(line for line in SHELL_LINES if '--config.model.name=my_models.py:' in line)
  options = dict(
    arg.split('=', 1) for arg in shlex.split(command) if arg.startswith('--config.model.')
  )
  config = case_config.get_config().model
  config.name = options['--config.model.name'].replace(
    'my_models.py', str(tmp_path / 'my_models.py')
  )
  config.kwargs = json.loads(options['--config.model.kwargs'])
  classifier = registry.build(config)
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)
  x = classifier.preprocess(images)
  variables = classifier.module.init(jax.random.key(0), x, train=False)
  relevance = lrp.explain(classifier.module, variables, x)
  assert relevance.shape == x.shape and np.isfinite(relevance).all()
  assert variables['params']['classifier']['Conv_0']['kernel'].shape[-1] == config.kwargs['width']


def test_every_config_the_readme_names_loads_with_its_arguments():
  named = set()
  for line in SHELL_LINES:
    for match in re.finditer(r'--config=(configs/\w+\.py)(?::(\S+))?', line):
      path, arg = match.group(1), match.group(2)
      if arg and '/path/to' in arg:
        arg = arg.replace('/path/to/GC10-DET', '/tmp/gc10')  # a placeholder the reader replaces
      config = case_config.load_config_file(os.path.join(ROOT, path), arg)
      assert config.remedy.name in case_config.REMEDY_NAMES
      named.add(path)
  assert 'configs/generative.py' in named


def test_every_script_the_readme_runs_exists():
  scripts = {
    word
    for line in SHELL_LINES
    for word in shlex.split(line, comments=True)
    if word.startswith('scripts/')
  }
  assert scripts, 'the README runs some scripts'
  for script in scripts:
    assert os.path.exists(os.path.join(ROOT, script)), script
