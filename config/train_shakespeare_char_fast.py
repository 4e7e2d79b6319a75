# the time-to-loss recipe for a 2-core CPU: tiny Shakespeare to a val loss below 1.88 as fast as we could make it.
# The CPU baby GPT (4 layers, context 64) made 96 wide, with the options that paid (docs/benchmarks.md): rotary
# positions, parameter-free norms, QK-norm, zero-initialised residual projections, Muon for the hidden matrices and
# a warmup-stable-decay schedule; 220 steps of 32 sequences, evaluated once, at the end.
# On an AMD EPYC (2 cores, AVX2, no AMX: float32): val loss 1.85 in about 21 s for the whole process, where nanoGPT's
# CPU recipe took 105-145 s to reach 1.90: 6x (bench.py --mode=nanogpt, 2 rounds side by side; docs/benchmarks.md).
# $ python train.py config/train_shakespeare_char_fast.py
from config.train_shakespeare_char_cpu import *  # noqa: F401,F403  data, out_dir, context, depth, exact GELU as there

n_embd = 96  # narrower than the CPU baby GPT's 128: in a run this short, more steps pay more than width
batch_size = 32  # fewer, larger steps: Muon's cost per step is spread over more tokens
eval_iters = 8  # 8 x 32 sequences per split: about as many as nanoGPT's 20 x 12
eval_at_start = False  # the loss of random weights is known (~4.2): its evaluation would only cost time

pos_emb = 'rope'
norm_params = False
qk_norm = True
zero_init_proj = True

optimizer_name = 'muon'
weight_decay = 0.0  # decay only cost loss in runs this short: val 1.843 without, 1.854 at 0.1 (230 steps)
muon_lr = 0.06
learning_rate = 6e-3  # AdamW, for the token embedding (tied to the head): no biases, norm weights or wpe here
min_lr = 6e-4
max_iters = 220
lr_decay_iters = 220
lr_schedule = 'wsd'
decay_frac = 0.3
warmup_iters = 20
