"""
Prepare OpenWebText (or local text/json/parquet files) with the GPT-2 BPE: train.bin and val.bin
in this folder, uint16 ids, every document followed by <|endoftext|>.
$ python data/openwebtext/prepare.py                      # Skylion007/openwebtext from the hub
$ python data/openwebtext/prepare.py --data_files='docs/*.parquet' --data_format=parquet
"""

import os
import sys

import pyarrow.compute as pc
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # configurator
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/, for common.py
from configurator import configure  # noqa: E402
from common import Tokenizer, get_gpt2_encoding, why, write_token_chunks  # noqa: E402

# -----------------------------------------------------------------------------
num_proc = max(1, (os.cpu_count() or 2) // 2)  # workers for tokenizing; good to have ~ cpu cores / 2
dataset_name = 'Skylion007/openwebtext'  # a Hugging Face hub dataset with a 'text' column
data_files = ''  # instead of the hub: local files (a path or a glob) with a 'text' column
data_format = 'parquet'  # of data_files: 'parquet', 'json' (one object a line) or 'text' (a file a document)
val_fraction = 0.0005  # OpenWebText has only a train split; hold out this much of it
seed = 2357  # of the train/val split
out_dir = os.path.dirname(os.path.abspath(__file__))  # where train.bin and val.bin go
# -----------------------------------------------------------------------------


TOKENIZER = Tokenizer()  # GPT-2 BPE; its encoding is built once, in prepare(), before the workers fork


def tokenize(example):
    ids = TOKENIZER.encode(example['text'])  # as plain text: a '<|endoftext|>' in a document is not special
    ids.append(TOKENIZER.eot)  # add the end of text token, 50256 for gpt2 bpe
    return {'ids': ids, 'len': len(ids)}


def prepare(split_dataset, out_dir, num_proc):
    """Tokenize every split of a DatasetDict (a 'text' column) in parallel, write each to out_dir/<split>.bin."""
    get_gpt2_encoding()  # here, so that the workers inherit it and any offline notice shows once
    columns = next(iter(split_dataset.values())).column_names
    tokenized = split_dataset.map(tokenize, remove_columns=columns, desc="tokenizing the splits", num_proc=num_proc)
    for split, dset in tokenized.items():
        dset = dset.with_format('arrow')  # whole Arrow columns: iterating rows costs minutes on 8M documents
        arr_len = pc.sum(dset['len']).as_py() or 0
        filename = os.path.join(out_dir, f'{split}.bin')
        total_batches = min(1024, len(dset))  # never more shards than documents
        # batch together samples for faster write
        batches = (pc.list_flatten(dset.shard(num_shards=total_batches, index=i, contiguous=True)['ids']).to_numpy()
                   for i in range(total_batches))
        write_token_chunks(filename, arr_len, tqdm(batches, total=total_batches, desc=f'writing {filename}'))
        print(f"{split} has {arr_len:,} tokens")


if __name__ == '__main__':
    configure(globals())
    if data_format not in ('parquet', 'json', 'text'):
        sys.exit(f"error: data_format must be parquet, json or text, got '{data_format}'")
    from datasets import load_dataset
    try:
        if data_files:
            # 'text' would make each line a document; a whole file is one, as in OpenWebText's own .txt files
            options = {'sample_by': 'document'} if data_format == 'text' else {}
            dataset = load_dataset(data_format, data_files=data_files, num_proc=num_proc, **options)
        else:
            # takes 54GB in the huggingface .cache dir, about 8M documents (8,013,769)
            dataset = load_dataset(dataset_name, num_proc=num_proc)
    except Exception as e:  # offline, a dataset that is not there, a path that matches nothing
        if data_files:
            sys.exit(f"error: cannot load {data_files} as {data_format} ({why(e)}) -- check the path or glob "
                     f"and --data_format")
        sys.exit(f"error: cannot load {dataset_name} from the Hugging Face hub ({why(e)}) -- connect to the "
                 f"internet, or pass local files: "
                 f"--data_files='docs/*.parquet' --data_format=parquet (or json, or text)")
    documents = dataset['train']
    if 'text' not in documents.column_names:
        sys.exit(f"error: the documents need a 'text' column; found {', '.join(documents.column_names)}")
    if len(documents) < 2:
        sys.exit(f"error: {len(documents)} document(s) found; need at least 2 to split into train and val")
    # owt by default only contains the 'train' split, so create a test split (4,007 documents of OpenWebText)
    split_dataset = documents.train_test_split(test_size=val_fraction, seed=seed, shuffle=True)
    split_dataset['val'] = split_dataset.pop('test')  # rename the test split to val
    os.makedirs(out_dir, exist_ok=True)
    prepare(split_dataset, out_dir, num_proc)

# on OpenWebText: train.bin is ~17GB, val.bin ~8.5MB
# train has ~9B tokens (9,035,582,198)
# val has ~4M tokens (4,434,897)
# to read the bin files later, e.g. with numpy:
# m = np.memmap('train.bin', dtype=np.uint16, mode='r')
