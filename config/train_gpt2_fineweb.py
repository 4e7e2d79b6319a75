# GPT-2 (124M) on FineWeb-Edu's 10B-token sample, with the hyper-parameters of Karpathy's GPT-2 124M runs in
# llm.c (scripts/run_gpt2_124M.sh) and build-nanogpt (train_gpt2.py): 524,288 tokens a step, lr 6e-4 after 700
# warmup steps, 18,865 steps (~9.9B tokens, about one epoch). llm.c took ~90 min on 8x A100 80GB (~12 A100-hours,
# ~$20) to HellaSwag 29.9 (OpenAI's GPT-2 124M: 29.4). Costs and sources: docs/guides/reproduce_gpt2.md.
# $ python data/fineweb_edu/prepare.py
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb.py

out_dir = 'out-gpt2-fineweb'
dataset = 'fineweb_edu'
wandb_project = 'fineweb'
wandb_run_name = 'gpt2-124M'  # --wandb_log=True to follow the run there

# 64 sequences of 1024 tokens on each of 8 GPUs = 524,288 tokens a step (llm.c: -b 64 -t 1024 -d 524288);
# on 40 GB GPUs use batch_size = 32 and gradient_accumulation_steps = 16: the same tokens a step
batch_size = 64
block_size = 1024
gradient_accumulation_steps = 8  # over all processes: 1 per GPU on 8 GPUs, 8 on one

learning_rate = 6e-4  # llm.c -l 0.0006
warmup_iters = 700  # llm.c -u 700 (build-nanogpt: 715)
max_iters = 18865  # llm.c's one epoch of its 10B-token FineWeb sample
lr_decay_iters = 18865
min_lr = 6e-5  # build-nanogpt's max_lr * 0.1 (llm.c decays to 0)
weight_decay = 0.1  # llm.c -c 0.1; AdamW betas (0.9, 0.95) and grad_clip 1.0 are train.py's defaults

eval_interval = 250  # llm.c -v 250
eval_iters = 20  # build-nanogpt's 20 val batches
log_interval = 10
