# the GPU baby GPT (train_shakespeare_char.py: 6 layers, 6 heads, 384 wide, context 256, dropout 0.2)
# with the options of the CPU time-to-loss recipe. It aims to beat nanoGPT's best val loss of 1.4697
# in fewer than its 5000 steps. UNVERIFIED: no GPU was available to run it yet.
# $ python train.py config/train_shakespeare_char_fast_gpu.py

out_dir = 'out-shakespeare-char-fast'
eval_interval = 250
eval_iters = 200
log_interval = 10
always_save_checkpoint = False

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
mlp_act = 'gelu_exact'  # as train_shakespeare_char.py: nanoGPT's exact GELU
pos_emb = 'rope'
norm_params = False
qk_norm = True
zero_init_proj = True

optimizer_name = 'muon'
muon_lr = 0.02
learning_rate = 2e-3
min_lr = 2e-4
max_iters = 3000
lr_decay_iters = 3000
lr_schedule = 'wsd'
decay_frac = 0.3
warmup_iters = 100
beta2 = 0.99
