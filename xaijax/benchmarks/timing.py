"""Timing for the benchmarks: every measured variant in its own worker process, taking turns.

Measurements that belong together (ours and a reference, or several settings of ours) run in one
invocation, each in its own worker process, taking turns repeat by repeat, so that load from other
processes on a shared machine hits all alike. Besides wall time per step each line has the process
CPU time per step, which on a busy machine says more about the work done than wall time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import multiprocessing
import resource
import statistics
import time

from xaijax.cpu_memory import keep_freed_memory


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)


def time_interleaved(
  factories: dict[str, Callable], args, warmup: int, repeats: int, steps: int
) -> dict[str, dict[str, float]]:
  """Median wall and CPU seconds per step of each stepper; they take turns within each repeat.

  Each stepper lives in its own process (built by `factory(args)`), so one framework's worker
  threads (XLA's pool, PyTorch's OpenMP team, which spin after work) never compete with the
  other's inside a process, while the turn-taking exposes both to the same outside load.
  """
  context = multiprocessing.get_context('spawn')
  workers = {}
  for name, factory in factories.items():
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_worker, args=(factory, args, warmup, steps, child_end))
    process.start()
    workers[name] = (process, parent_end)
  try:
    for name, (_, pipe) in workers.items():
      _expect(pipe.recv(), name)
    samples = {name: [] for name in workers}
    for _ in range(repeats):
      for name, (_, pipe) in workers.items():
        pipe.send('step')
        samples[name].append(_expect(pipe.recv(), name))
  finally:
    for process, pipe in workers.values():
      if process.is_alive():
        pipe.send('stop')
      process.join()
  return {
    name: {
      'wall': statistics.median(wall for wall, _ in values),
      'cpu': statistics.median(cpu for _, cpu in values),
    }
    for name, values in samples.items()
  }


def _expect(message, name):
  if isinstance(message, BaseException):
    raise RuntimeError(f'benchmark worker {name!r} failed') from message
  return message


def _worker(factory, args, warmup, steps, pipe) -> None:
  try:
    if getattr(args, 'keep_freed_memory', False):
      keep_freed_memory()
    step = factory(args)
    for _ in range(warmup):
      step()
    pipe.send('ready')
    while pipe.recv() == 'step':
      usage_before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
      for _ in range(steps):
        step()
      wall = time.perf_counter() - start
      usage_after = resource.getrusage(resource.RUSAGE_SELF)
      cpu = (
        usage_after.ru_utime + usage_after.ru_stime - usage_before.ru_utime - usage_before.ru_stime
      )
      pipe.send((wall / steps, cpu / steps))
  except Exception as error:  # pylint: disable=broad-except
    pipe.send(error)


def choices(*allowed):
  """argparse type: a comma-separated list of allowed values."""

  def parse(text):
    values = [v.strip() for v in text.split(',') if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
      raise argparse.ArgumentTypeError(
        f'{text!r}: choose from {", ".join(allowed)} (comma-separated to compare several)'
      )
    return values

  return parse
