"""
Zero-shot HellaSwag: for each context, which of its 4 endings does the model find likeliest?
$ python hellaswag.py --init_from=gpt2
$ python hellaswag.py --out_dir=out --data_file=hellaswag_val.jsonl
Each ending (' ' + ending, GPT-2 BPE) is scored by the model's cross-entropy on its own tokens after the
context. acc picks the lowest total loss; acc_norm the lowest mean loss per token, so long endings are
not penalized for their length (as nanoGPT's and llm.c's evaluations define it). The 4 endings of an
example go through the model as one padded batch.
"""

import json
import os
import socket

import torch
from torch.nn import functional as F
from tqdm import tqdm

from checkpoint import find_weights, load_model
from configurator import configure, default_device, fail, setup
from data.common import offline, why

# -----------------------------------------------------------------------------
init_from = 'resume'  # 'resume' (from out_dir), a ckpt.pt or its folder, 'gpt2'... or a save_pretrained folder
out_dir = 'out'  # ignored if init_from is not 'resume'
data_file = ''  # HellaSwag's official hellaswag_val.jsonl (or a file in its format); '' = Rowan/hellaswag from the hub
max_examples = 0  # score only the first max_examples; 0 = all (the validation split has 10,042)
device = default_device()  # 'cpu', 'cuda', 'cuda:1', 'mps'; the best available by default
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bf16 where native, else fp16 (CUDA) or fp32
threads = 0  # CPU threads torch computes with; 0: torch's default (OMP_NUM_THREADS, else one per core)
# -----------------------------------------------------------------------------
configure(globals())  # overrides from the command line or a config file
# -----------------------------------------------------------------------------
OFFICIAL_FILE = 'https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl'
if max_examples < 0:
    fail(f"error: max_examples must be >= 0 (0 means all), got {max_examples}")
device, device_type, dtype, autocast = setup(device, dtype, seed=1337, threads=threads, training=False)
if data_file and not os.path.isfile(data_file):  # before a model load
    fail(f"error: data_file '{data_file}' not found -- pass the path of HellaSwag's hellaswag_val.jsonl "
         f"({OFFICIAL_FILE})")


def load_examples():
    """[(context, [4 endings], label)] from data_file, or from the validation split on the Hugging Face hub."""
    source = data_file or 'Rowan/hellaswag'
    try:
        if data_file:
            with open(data_file, encoding='utf-8') as f:
                rows = [json.loads(line) for line in f if line.strip()]
        else:
            from datasets import load_dataset
            rows = load_dataset('Rowan/hellaswag', split='validation')
    except Exception as e:  # a moved dataset, a broken file
        if data_file:
            fail(f"error: cannot read {data_file} ({why(e)}) -- it should hold one JSON object per line")
        no_hub(why(e))
    try:
        examples = [(row['ctx'], list(row['endings']), int(row['label'])) for row in rows]
    except (KeyError, TypeError, ValueError) as e:
        fail(f"error: {source} is not in HellaSwag's format ({why(e)}) -- each example needs ctx, endings, label")
    if not examples or any(len(endings) != 4 or not 0 <= label < 4 for _, endings, label in examples):
        fail(f"error: {source} holds no examples, or one without 4 endings and a label 0..3")
    return examples[:max_examples or None]


def hub_reachable(timeout=2.0):
    """Whether the Hugging Face hub answers at all; without a network, datasets would retry for half a minute."""
    if os.environ.get('HF_HUB_OFFLINE', '') not in ('', '0'):
        return False
    try:
        socket.create_connection(('huggingface.co', 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def cached_hellaswag():
    """Whether a copy of Rowan/hellaswag may be in the hub's or the datasets' cache (without importing datasets)."""
    home = os.environ.get('HF_HOME') or os.path.join(os.environ.get('XDG_CACHE_HOME') or
                                                     os.path.expanduser('~/.cache'), 'huggingface')
    hub = os.environ.get('HF_HUB_CACHE') or os.path.join(home, 'hub')
    return os.path.isdir(os.path.join(hub, 'datasets--Rowan--hellaswag')) or os.path.isdir(
        os.path.join(os.environ.get('HF_DATASETS_CACHE') or os.path.join(home, 'datasets'), 'Rowan___hellaswag'))


def no_hub(reason):
    fail(f"error: cannot load HellaSwag from the Hugging Face hub ({reason}) -- pass "
         f"--data_file=path/to/hellaswag_val.jsonl (the official file: {OFFICIAL_FILE}), or go online")


# what is known without the network comes first: whether the examples can be had at all, and the model's tokenizer
hub_offline = not data_file and (offline() or not hub_reachable())
if hub_offline:  # the datasets cache only, instead of half a minute of retries
    os.environ['HF_HUB_OFFLINE'] = os.environ['HF_DATASETS_OFFLINE'] = '1'
unobtainable = hub_offline and not cached_hellaswag()
if unobtainable and find_weights(init_from, out_dir)[0] == 'pretrained':  # GPT-2's BPE: known without a load
    no_hub("offline, and no copy of Rowan/hellaswag in the Hugging Face caches")
model, tokenizer, dataset, _ = load_model(init_from, out_dir)
if tokenizer.kind == 'char':
    fail(f"error: {os.path.join(out_dir, 'ckpt.pt') if init_from == 'resume' else init_from} is a character-level "
         f"model (trained on {dataset}), and HellaSwag is scored in BPE tokens -- evaluate a model trained "
         f"on GPT-2 tokens or on a BPE of its own (data/text/prepare.py --tokenizer=bpe)")
if model.config.vocab_size < tokenizer.vocab_size:
    fail(f"error: the model's vocabulary has {model.config.vocab_size} tokens, fewer than its tokenizer's "
         f"{tokenizer.vocab_size} that HellaSwag is scored in -- evaluate a model trained on these tokens")
if unobtainable:
    no_hub("offline, and no copy of Rowan/hellaswag in the Hugging Face caches")
model.eval()
model.to(device)
examples = load_examples()


@torch.no_grad()
def ending_losses(context, endings):
    """The model's summed and mean cross-entropy on each ending's tokens, following the context: two (4,) tensors."""
    context_tokens = tokenizer.encode(context)
    rows, n_scored = [], []
    for ending in endings:
        ending_tokens = tokenizer.encode(' ' + ending)
        keep = model.config.block_size - len(ending_tokens)  # longer contexts lose their beginning
        if keep < 1:
            fail(f"error: a HellaSwag ending of {len(ending_tokens)} tokens does not fit the model's block_size "
                 f"of {model.config.block_size}")
        rows.append(context_tokens[-keep:] + ending_tokens)
        n_scored.append(len(ending_tokens))
    # right-padded with token 0: causal attention keeps the padding out of every real position
    idx = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    scored = torch.zeros_like(idx, dtype=torch.bool)  # where idx holds an ending's token
    for i, (row, n) in enumerate(zip(rows, n_scored)):
        idx[i, :len(row)] = torch.tensor(row)
        scored[i, len(row) - n:len(row)] = True
    idx, scored = idx.to(device), scored.to(device)
    with autocast:
        logits, _ = model(idx, idx)  # with targets: the logits at every position
    # the loss of each token given the ones before it: position t predicts token t + 1, among the tokenizer's ids
    # only (GPT-2's 50257: the padding rows up to 50304 have no text and take no probability)
    losses = F.cross_entropy(logits[:, :-1, :tokenizer.vocab_size].float().transpose(1, 2), idx[:, 1:],
                             reduction='none')
    losses = losses * scored[:, 1:]
    total = losses.sum(dim=1)
    return total, total / scored[:, 1:].sum(dim=1)


correct = correct_norm = 0
bar = tqdm(examples, desc='hellaswag', unit='example')
for n, (context, endings, label) in enumerate(bar, 1):
    total, mean = ending_losses(context, endings)
    correct += int(total.argmin().item() == label)
    correct_norm += int(mean.argmin().item() == label)
    bar.set_postfix(acc=f"{correct / n:.4f}", acc_norm=f"{correct_norm / n:.4f}", refresh=False)
n = len(examples)
print(f"hellaswag: {n} examples, acc {correct / n:.4f} ({correct}/{n}), acc_norm {correct_norm / n:.4f} "
      f"({correct_norm}/{n})")
