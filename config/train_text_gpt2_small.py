# a small GPT for your own GPT-2 BPE data (data/text/prepare.py --tokenizer=gpt2 suggests it up to 100M
# tokens): the shakespeare_char baby GPT's size and schedule, on a GPU. A 50,257-token vocabulary makes
# the output layer the biggest cost; on a CPU a character dataset (--tokenizer=char) trains in minutes.
# $ python train.py config/train_text_gpt2_small.py --dataset=<name> --out_dir=out-<name>
from config.train_shakespeare_char import *  # noqa: F401,F403  size, batch, schedule, evaluation as there

wandb_project = 'text'
wandb_run_name = 'gpt2-small'
dropout = 0.1  # small data overfits: the best val loss is kept (always_save_checkpoint = False)
