# the time-to-loss recipe for a 2-core CPU: the CPU baby GPT's size and batch, with the options that paid
# (docs/benchmarks.md): rotary positions, parameter-free norms, QK-norm, zero-initialised residual
# projections, Muon for the hidden matrices and a warmup-stable-decay schedule.
# On this project's 2-core machine (AMX: bf16): val loss 1.84 after 500 iterations, about 21 s for the whole
# process; in float32 (CPUs without AMX, or --dtype=float32) 1.84 in about 27 s.
# $ python train.py config/train_shakespeare_char_fast.py
from config.train_shakespeare_char_cpu import *  # noqa: F401,F403  size, batch, data, evaluation, exact GELU as there

pos_emb = 'rope'
norm_params = False
qk_norm = True
zero_init_proj = True

optimizer_name = 'muon'
muon_lr = 0.03
learning_rate = 3e-3  # AdamW, for the token embedding (tied to the head): no biases, norm weights or wpe here
min_lr = 3e-4
max_iters = 500
lr_decay_iters = 500
lr_schedule = 'wsd'
decay_frac = 0.3
warmup_iters = 50
