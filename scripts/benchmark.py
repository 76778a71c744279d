"""Speed measurements for xaijax, one JSON object per line (see xaijax/benchmarks/cli.py).

python scripts/benchmark.py train --resolution 224 --alpha 1.0 --batch 16 --reference torch
python scripts/benchmark.py lrp --resolution 224 --alpha 1.0 --batch 16 --reference zennit
python scripts/benchmark.py gan --resolution 64 --batch 8 --generators 16x2,16x3
"""

from xaijax.benchmarks import cli

if __name__ == '__main__':
  cli.main()
