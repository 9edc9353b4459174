#!/bin/bash
# Before/after a runtime change: the fused loop (`converted`, T = 60) and a Stream (chunks of
# 10 steps), 1,000 images, batch 100, one fresh worker per measurement, old and new trees
# interleaved over 5 rounds. Usage: benchmarks/engine_before_after.sh OLD_TREE NEW_TREE
# (each a checkout of the repository). Run it alone. Output: one RESULT line per run.
old_root=${1:?old tree}
new_root=${2:?new tree}
export TF_CPP_MIN_LOG_LEVEL=3
for round in 1 2 3 4 5; do
  for tree in old new; do
    if [ $tree = old ]; then root=$old_root; else root=$new_root; fi
    for variant in converted stream; do
      line=$(PYTHONPATH=$root python $root/benchmarks/bench.py --worker --variant $variant --steps 60 --images 1000 --batch 100 2>/dev/null | grep RESULT)
      echo "$round $tree $line"
    done
  done
done
