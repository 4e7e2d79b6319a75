# the fast recipe given the time nanoGPT's CPU recipe takes (~2.5 minutes on 2 cores): the lowest val loss in it.
# Back to the CPU baby GPT's 128 wide, 700 steps of 32 sequences, and a decay over the last half of the steps
# (the val loss falls mostly while the learning rate decays); no weight decay (val 1.623 without, 1.647 at 0.1).
# On an AMD EPYC (2 cores, AVX2, no AMX: float32): val loss 1.62 in 95-104 s for the whole process, where nanoGPT's
# CPU recipe took 105-145 s to reach 1.90 (bench.py --mode=nanogpt, 2 rounds side by side; docs/benchmarks.md).
# $ python train.py config/train_shakespeare_char_fast_long.py
from config.train_shakespeare_char_fast import *  # noqa: F401,F403  the rest is the fast recipe

n_embd = 128
muon_lr = 0.05  # 0.04 did as well, 0.07 worse (1.662 at weight decay 0.1)
learning_rate = 5e-3
min_lr = 5e-4
max_iters = 700
lr_decay_iters = 700
decay_frac = 0.5
warmup_iters = 50
eval_interval = 350  # once halfway, once at the end
