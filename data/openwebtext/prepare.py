"""
Prepare OpenWebText (or any local text/json/parquet files) with the GPT-2 BPE:
train.bin and val.bin in this folder, uint16 ids, each document followed by <|endoftext|>.
$ python data/openwebtext/prepare.py                      # the hub's Skylion007/openwebtext
$ python data/openwebtext/prepare.py --data_files=shards/*.parquet --data_format=parquet
"""

import math
import os
import sys

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from configurator import configure  # noqa: E402
from data.common import get_gpt2_encoding  # noqa: E402

# -----------------------------------------------------------------------------
num_proc = max(1, (os.cpu_count() or 2) // 2)  # workers for tokenizing; good to have ~ cpu cores / 2
dataset_name = 'Skylion007/openwebtext'  # a Hugging Face hub dataset with a 'text' column
data_files = ''  # instead: local files (a path or glob) with a 'text' column
data_format = 'text'  # format of data_files: 'text', 'json' or 'parquet'
val_fraction = 0.0005  # OpenWebText has only a train split; hold out this much of it
seed = 2357
out_dir = os.path.dirname(os.path.abspath(__file__))
# -----------------------------------------------------------------------------
configure(globals())
if data_format not in ('text', 'json', 'parquet'):
    sys.exit(f"error: data_format must be text, json or parquet, got '{data_format}'")
enc = get_gpt2_encoding()


def tokenize(example):
    ids = enc.encode_ordinary(example['text'])  # encode_ordinary ignores any special tokens
    ids.append(enc.eot_token)  # add the end of text token, e.g. 50256 for gpt2 bpe
    return {'ids': ids, 'len': len(ids)}


def prepare(split_dataset, out_dir, num_proc):
    """Tokenize every split of a DatasetDict in parallel and write each to out_dir/<split>.bin."""
    tokenized = split_dataset.map(tokenize, remove_columns=['text'], desc="tokenizing the splits", num_proc=num_proc)
    for split, dset in tokenized.items():
        arr_len = int(np.sum(dset['len'], dtype=np.uint64))
        filename = os.path.join(out_dir, f'{split}.bin')
        # written under another name first: an interrupted run never leaves a short .bin behind
        arr = np.memmap(filename + '.tmp', dtype=np.uint16, mode='w+', shape=(arr_len,))
        total_batches = min(1024, len(dset))  # never more shards than rows
        idx = 0
        for batch_idx in tqdm(range(total_batches), desc=f'writing {filename}'):
            # batch together samples for faster write
            batch = dset.shard(num_shards=total_batches, index=batch_idx, contiguous=True).with_format('numpy')
            arr_batch = np.concatenate(batch['ids'])
            if arr_batch.size and arr_batch.max() > 65535:
                del arr
                os.remove(filename + '.tmp')
                sys.exit(f"error: token id {int(arr_batch.max())} does not fit the uint16 .bin format; "
                         f"{filename} not written")
            arr[idx: idx + len(arr_batch)] = arr_batch
            idx += len(arr_batch)
        arr.flush()
        del arr
        os.replace(filename + '.tmp', filename)
        print(f"{filename}: {arr_len:,} tokens")


if __name__ == '__main__':
    from datasets import load_dataset
    try:
        if data_files:
            dataset = load_dataset(data_format, data_files=data_files, num_proc=num_proc)
        else:
            # takes 54GB in the huggingface .cache dir, about 8M documents (8,013,769)
            dataset = load_dataset(dataset_name, num_proc=num_proc)
    except Exception as e:  # offline, a typo in a path, a missing dataset: all need the same advice
        sys.exit(f"error: cannot load {data_files or dataset_name} ({type(e).__name__}: {str(e).splitlines()[0][:150]})"
                 f" -- connect to the Hugging Face hub, or pass local files: --data_files='docs/*.parquet' "
                 f"--data_format=parquet")
    documents = dataset['train']
    if len(documents) < 2:
        sys.exit(f"error: {len(documents)} document(s) found; need at least 2 to split into train and val")
    # the same number of val documents that train_test_split(test_size=0.0005) takes: 4,007 of OpenWebText
    split_dataset = documents.train_test_split(test_size=max(1, math.ceil(val_fraction * len(documents))),
                                               seed=seed, shuffle=True)
    split_dataset['val'] = split_dataset.pop('test')  # rename the test split to val
    prepare(split_dataset, out_dir, num_proc)

# on OpenWebText: train.bin is ~17GB, val.bin ~8.5MB
# train has ~9B tokens (9,035,582,198)
# val has ~4M tokens (4,434,897)
# to read the bin files later, e.g. with numpy:
# m = np.memmap('train.bin', dtype=np.uint16, mode='r')
