# the fast recipe given nanoGPT's ~3-minute CPU budget: twice the context (128), 2200 iterations and a
# longer decay (the val loss falls mostly while the learning rate decays). docs/benchmarks.md has the runs.
# On this project's 2-core machine (AMX: bf16): val loss 1.58 after 2200 iterations, about 120 s for the whole
# process; in float32 (CPUs without AMX) 1.59 in about 170 s.
# $ python train.py config/train_shakespeare_char_fast_3min.py
from config.train_shakespeare_char_fast import *  # noqa: F401,F403  the rest is the fast recipe

block_size = 128
eval_iters = 10  # 10 x 12 x 128 val tokens: as many as nanoGPT's CPU recipe evaluates (20 x 12 x 64)
eval_interval = 550
max_iters = 2200
lr_decay_iters = 2200
decay_frac = 0.5
