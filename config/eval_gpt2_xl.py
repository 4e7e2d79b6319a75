# evaluate OpenAI's gpt2-xl (n_layer=48, n_head=25, n_embd=1600), 1558M parameters, on OpenWebText
# $ python train.py config/eval_gpt2_xl.py
batch_size = 8
eval_iters = 500  # use more iterations to get good estimate
eval_only = True
wandb_log = False
init_from = 'gpt2-xl'
