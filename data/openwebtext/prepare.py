"""
Prepare OpenWebText (or local text/json/parquet files) with the GPT-2 BPE: train.bin and val.bin
in this folder, uint16 ids, every document followed by <|endoftext|>. Streamed from the hub: nothing
but the two .bin files is kept on disk.
$ python data/openwebtext/prepare.py                      # Skylion007/openwebtext from the hub
$ python data/openwebtext/prepare.py --data_files='docs/*.parquet' --data_format=parquet
"""

import os
import sys

from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # configurator
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/, for common.py
from configurator import configure, fail  # noqa: E402
from common import Tokenizer, hf_documents, staged_folder, write_dataset  # noqa: E402

# -----------------------------------------------------------------------------
num_proc = max(1, (os.cpu_count() or 2) // 2)  # processes that tokenize; good to have ~ cpu cores / 2
dataset_name = 'Skylion007/openwebtext'  # a Hugging Face hub dataset with a 'text' column
data_files = ''  # instead of the hub: local files (a path or a glob) with a 'text' column
data_format = 'parquet'  # of data_files: 'parquet', 'json' (one object a line) or 'text' (a file a document)
text_column = 'text'  # the column that holds the text
val_fraction = 0.0005  # OpenWebText has only a train split; 1 document in 2,000 is held out (~4,000)
out_dir = os.path.dirname(os.path.abspath(__file__))  # where train.bin and val.bin go
# -----------------------------------------------------------------------------

if __name__ == '__main__':
    configure(globals())
    if data_format not in ('parquet', 'json', 'text'):
        fail(f"error: data_format must be parquet, json or text, got '{data_format}'")
    documents = hf_documents(data_format if data_files else dataset_name, '', 'train', data_files, text_column,
                             hint=", or pass local files: --data_files='docs/*.parquet' --data_format=parquet "
                                  "(or json, or text)")
    with staged_folder(out_dir) as stage:
        with tqdm(documents, desc='tokenizing', unit=' documents') as bar:  # closed before any error line
            counts = write_dataset(bar, stage, Tokenizer(), val_fraction, num_proc)
    print(f"train has {counts['train']:,} tokens")
    print(f"val has {counts['val']:,} tokens")

# on OpenWebText (8,013,769 documents): train.bin is ~17GB (~9.0B tokens), val.bin ~8.5MB (~4.4M tokens)
# to read the bin files later, e.g. with numpy:
# m = np.memmap('train.bin', dtype=np.uint16, mode='r')
