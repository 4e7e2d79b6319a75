# the fast recipe given nanoGPT's ~3-minute CPU budget: twice the context (128), 2200 iterations and a
# longer decay (the val loss falls mostly while the learning rate decays). docs/benchmarks.md has the runs.
# On this project's 2-core machine: val loss 1.59 after 2200 iterations, about 167 s for the whole process.
# $ python train.py config/train_shakespeare_char_fast_3min.py

out_dir = 'out-shakespeare-char'
eval_interval = 550
eval_iters = 10  # 10 x 12 x 128 val tokens: as many as nanoGPT's CPU recipe evaluates (20 x 12 x 64)
log_interval = 50
always_save_checkpoint = False

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 12
block_size = 128

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
max_iters = 2200
lr_decay_iters = 2200
lr_schedule = 'wsd'
decay_frac = 0.5
warmup_iters = 50
beta2 = 0.99

device = 'cpu'
compile = False  # a cold compile costs more than it saves on a run this short
