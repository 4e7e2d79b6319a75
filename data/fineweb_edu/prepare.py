"""
Prepare FineWeb-Edu (HuggingFaceFW/fineweb-edu: educational web pages) with the GPT-2 BPE for GPT-2-scale runs:
uint16 shards of shard_size tokens in this folder (train_000000.bin, ..., val_000000.bin), every document
followed by <|endoftext|>. Streamed from the hub: the disk never holds the raw parquet, only the shards.
$ python data/fineweb_edu/prepare.py                               # sample-10BT: ~10B tokens, ~20 GB of shards
$ python data/fineweb_edu/prepare.py --max_tokens=1000000000       # its first 1B tokens
$ python data/fineweb_edu/prepare.py --data_files='fw/*.parquet'   # local parquet files of its rows
"""

import os
import sys

from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # configurator
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/, for common.py
from configurator import configure, fail  # noqa: E402
from common import Tokenizer, hf_documents, staged_folder, write_dataset  # noqa: E402

# -----------------------------------------------------------------------------
hf_dataset = 'HuggingFaceFW/fineweb-edu'  # a Hugging Face hub dataset with a 'text' column
hf_config = 'sample-10BT'  # ~10B tokens, 9.7M documents; also sample-100BT, sample-350BT, default (1.3T)
data_files = ''  # instead of the hub: local parquet files (a path or a glob) of its rows
text_column = 'text'  # the column that holds the text
max_tokens = 0  # stop after this many tokens (train and val); 0: the whole dataset
shard_size = 100_000_000  # tokens per .bin shard (200 MB), as in llm.c and build-nanogpt
val_fraction = 0.001  # 1 document in 1,000 is held out for validation: ~10M tokens of 10B
num_proc = max(1, (os.cpu_count() or 2) // 2)  # processes that tokenize; good to have ~ cpu cores / 2
out_dir = os.path.dirname(os.path.abspath(__file__))  # where the shards go
# -----------------------------------------------------------------------------

if __name__ == '__main__':
    configure(globals())
    source = 'parquet' if data_files else hf_dataset
    documents = hf_documents(source, '' if data_files else hf_config, 'train', data_files, text_column,
                             hint=", or pass local parquet files: --data_files='fw/*.parquet'")
    with staged_folder(out_dir) as stage:
        with tqdm(documents, desc='tokenizing', unit=' documents') as bar:  # closed before any error line
            counts = write_dataset(bar, stage, Tokenizer(), val_fraction, num_proc, shard_size, max_tokens)
        if counts['train'] == 0:
            fail(f"error: no text in {data_files or hf_dataset}; nothing was written")
    print(f"{out_dir}: train {counts['train']:,} tokens, val {counts['val']:,} tokens, "
          f"{counts['documents']:,} documents")
    print("next: torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb.py")
