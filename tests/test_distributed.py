"""One case over two local processes (jax.distributed on localhost, CPU collectives over Gloo).

A two-process run of main.py is killed after epoch 3 (its last checkpoint: epoch 2), resumed by a
second two-process run, and must end with exactly the numbers of one uninterrupted process
holding two devices: the same mesh of two devices, so the same program per device.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.test_main import ROOT
from xaijax import case_config, config_checks, distributed

CASE = [
  '--config=configs/black_stripe.py',
  '--config.data.resolution=32',
  '--config.data.class_scale=0.03',
  '--config.data.min_per_class=6',
  '--config.model.name=tests.test_classifier:TinyCNN',  # compiles in a second, unlike MobileNet
  '--config.train.epochs=4',
  '--config.train.checkpoint_every=2',
  '--config.train.seeds=2',
  '--config.train.batch_size=8',
  '--config.train.progress_bar=False',
  '--config.quality.enabled=False',  # one process's stage; test_main covers it
]
# main.py, ended by an exception after epoch 3 as a kill would end it.
KILLED_AFTER_EPOCH_3 = """
import runpy, sys
from xaijax.training import classifier
train_classifier = classifier.train_classifier
def killed_after_epoch_3(*args, on_epoch_end=None, **kwargs):
  def end_of_epoch(epoch, records):
    if on_epoch_end is not None:
      on_epoch_end(epoch, records)
    if epoch == 3:
      raise KeyboardInterrupt('killed after epoch 3')
  return train_classifier(*args, on_epoch_end=end_of_epoch, **kwargs)
classifier.train_classifier = killed_after_epoch_3
sys.argv = ['main.py', *sys.argv[1:]]
runpy.run_path('main.py', run_name='__main__')
"""
TIMEOUT_S = 300


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def launch(program, workdir, data_dir, processes, how='config'):
  """Runs `program` (argv after the interpreter) as `processes` processes of one run; returns
  their exit codes and the tail of their logs. `how`: the processes learn of each other from
  config flags or from the JAX_* environment variables."""
  port = free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  env.pop('XLA_FLAGS', None)
  if processes == 1:
    env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
  running = []
  for index in range(processes):
    flags, process_env = [], dict(env)
    if processes > 1 and how == 'config':
      flags = [
        '--config.distributed.initialize=True',
        f'--config.distributed.coordinator_address=localhost:{port}',
        f'--config.distributed.num_processes={processes}',
        f'--config.distributed.process_id={index}',
      ]
    elif processes > 1:
      process_env.update(
        JAX_COORDINATOR_ADDRESS=f'localhost:{port}',
        JAX_NUM_PROCESSES=str(processes),
        JAX_PROCESS_ID=str(index),
      )
    command = [
      sys.executable,
      *program,
      f'--workdir={workdir}',
      *CASE,
      f'--config.data.data_dir={data_dir}',
      *flags,
    ]
    running.append(
      subprocess.Popen(
        command,
        cwd=ROOT,
        env=process_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
    )
  codes, logs = [], []
  for process in running:
    try:
      output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
      for other in running:
        other.kill()
      output, _ = process.communicate()
      output += f'\n[test] killed after {TIMEOUT_S} s'
    codes.append(process.returncode)
    logs.append(output[-3000:])
  report = '\n'.join(
    f'--- process {i} (exit {c}):\n{log}' for i, (c, log) in enumerate(zip(codes, logs))
  )
  return codes, report


def read(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return f.read()


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('distributed')
  data_dir = tmp / 'tfds'
  one, two = tmp / 'one_process', tmp / 'two_processes'
  codes, logs = launch(['main.py'], one, data_dir, processes=1)
  assert codes == [0], logs
  codes, logs = launch(['-c', KILLED_AFTER_EPOCH_3], two, data_dir, processes=2, how='env')
  assert all(code != 0 for code in codes) and 'killed after epoch 3' in logs, logs
  killed = {
    'checkpoints': sorted(os.listdir(two / 'classifier' / 'checkpoints')),
    'metrics_lines': len(read(two / 'classifier', 'metrics.jsonl').splitlines()),
    'finished': os.path.exists(two / 'classifier' / 'train_result.json'),
  }
  codes, logs = launch(['main.py'], two, data_dir, processes=2)
  assert codes == [0, 0], logs
  return one, two, killed


def test_a_killed_two_process_run_had_checkpointed_epoch_2_and_resumed_from_it(runs):
  _, two, killed = runs
  assert killed['checkpoints'] == ['2'] and not killed['finished']
  assert killed['metrics_lines'] == 2 * 3, 'both seeds, epochs 1-3'
  result = json.loads(read(two / 'classifier', 'train_result.json'))
  assert result['processes'] == 2 and result['devices'] == 2
  assert result['slot_epochs_computed'] == 2 * 2, 'the resumed run trained epochs 3 and 4 only'


def test_two_processes_give_the_numbers_of_one_process_with_two_devices(runs):
  one, two, _ = runs
  expected, actual = (json.loads(read(w, 'results.json')) for w in (one, two))
  assert actual['seeds'] == [0, 1] and actual['epochs_run'] == 4
  for key in ('splits', 'best_epoch', 'epochs_run'):
    assert actual[key] == expected[key], key
  for region in ('overlay', 'strips', 'defect'):
    key = f'relevance_mass_in_{region}'
    assert actual[key] == expected[key], key
  # Per seed and epoch, the training curves are the same to the last bit.
  assert read(two / 'classifier', 'metrics.jsonl') == read(one / 'classifier', 'metrics.jsonl')
  expected_train, actual_train = (
    json.loads(read(w / 'classifier', 'train_result.json')) for w in (one, two)
  )
  for key in ('validation_f1', 'train_loss', 'best_validation_f1', 'stopped_epoch'):
    assert actual_train[key] == expected_train[key], key
  assert expected_train['processes'] == 1 and expected_train['devices'] == 2
  for name in ('report.md', 'validation_f1.png', 'lrp_examples.png'):
    assert os.path.getsize(two / name) > 100, name
  assert set(json.loads(read(two, 'timings.json'))) >= {'dataset', 'train', 'explain'}


def test_settings_come_from_the_config_before_the_environment(monkeypatch):
  config = case_config.get_config().distributed
  monkeypatch.delenv(distributed.COORDINATOR_ENV, raising=False)
  assert not distributed.wanted(config)
  monkeypatch.setenv(distributed.COORDINATOR_ENV, 'host0:1234')
  assert distributed.wanted(config), 'a coordinator in the environment means several processes'
  monkeypatch.setenv(distributed.PROCESS_ID_ENV, '3')
  assert distributed._setting(-1, distributed.PROCESS_ID_ENV, -1, int) == 3
  assert distributed._setting(1, distributed.PROCESS_ID_ENV, -1, int) == 1
  monkeypatch.setenv(distributed.PROCESS_ID_ENV, 'three')
  with pytest.raises(ValueError, match="JAX_PROCESS_ID='three'"):
    distributed._setting(-1, distributed.PROCESS_ID_ENV, -1, int)


def test_bad_distributed_settings_are_explained():
  config = case_config.get_config()
  config.distributed.update(coordinator_address='localhost', num_processes=2, process_id=2)
  with pytest.raises(ValueError, match=r'give host:port(.|\n)*process_id=2: must lie in \[0'):
    config_checks.validate(config)
