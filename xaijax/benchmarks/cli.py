"""Speed measurements for xaijax, printed as one JSON object per line.

Each subcommand measures one workload; every line carries `name`, `items_per_s` and the settings,
so runs can be compared side by side. Variants that belong together run interleaved in one
invocation (`timing.time_interleaved`).

  python scripts/benchmark.py train --resolution 224 --alpha 1.0 --batch 16 --seeds 1 \\
      --mode vmapped --depthwise shifted --reference torch
  python scripts/benchmark.py train --seeds 4 --mode vmapped,looped   # lists: all interleaved
  python scripts/benchmark.py lrp --reference zennit
  python scripts/benchmark.py gan --generators 16x2,16x3
  python scripts/benchmark.py quality --measures MPRT,RegionPerturbation   # against Quantus
  python scripts/benchmark.py repack --seeds 8          # a sweep with and without repacking
  python scripts/benchmark.py processes --processes 1,2 --pin   # jax.distributed, local
  python scripts/benchmark.py corrections --variants plain,rrr,rrr_lrp,counterexamples,rrclarc

A workload is a module with an `add_<name>(subparsers)` that fills its subparser and sets `run`;
list it in `SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse

from xaijax.benchmarks import corrections, gan, lrp, quality, sweep, train

SUBCOMMANDS = (
  train.add_train,
  lrp.add_lrp,
  gan.add_gan,
  quality.add_quality,
  corrections.add_corrections,
  sweep.add_repack,
  sweep.add_mesh,
  sweep.add_processes,
)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  subparsers = parser.add_subparsers(dest='command', required=True)
  for add in SUBCOMMANDS:
    add(subparsers)
  args = parser.parse_args(argv)
  args.run(args)
