# the time-to-loss recipe for a 2-core CPU: the CPU baby GPT's size and batch, with the options that paid
# (docs/benchmarks.md): rotary positions, parameter-free norms, QK-norm, zero-initialised residual
# projections, Muon for the hidden matrices and a warmup-stable-decay schedule.
# On this project's 2-core machine: val loss 1.84 after 500 iterations, about 21 s for the whole process.
# $ python train.py config/train_shakespeare_char_fast.py

out_dir = 'out-shakespeare-char'
eval_interval = 250
eval_iters = 20  # 20 x 12 x 64 val tokens, as nanoGPT's CPU recipe
log_interval = 50
always_save_checkpoint = False

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
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
beta2 = 0.99

device = 'cpu'
compile = False  # a cold compile costs more than it saves on a run this short
