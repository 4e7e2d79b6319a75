# the baby GPT sized for a laptop CPU (nanoGPT's CPU recipe), to a val loss of 1.92: about 40 s on a 2-core Xeon with
# AMX (bf16); 100-140 s on a 2-core AMD EPYC without AMX (float32), where nanoGPT's own code took 105-145 s
# $ python train.py config/train_shakespeare_char_cpu.py

out_dir = 'out-shakespeare-char'
eval_interval = 250
eval_iters = 20
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
mlp_act = 'gelu_exact'  # nanoGPT's exact GELU; GPT-2's tanh approximation (the default) is ~3x slower on CPUs

learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

device = 'cpu'
compile = False  # a cold compile costs more than it saves on a run this short
