"""
Documents from one file, input.txt in this folder, separated by lines that read '---':
train.bin, val.bin and meta.pkl in this folder.
$ python data/mydocs/prepare.py
"""
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/, for common.py
from common import Tokenizer, staged_folder, write_dataset  # noqa: E402

folder = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(folder, 'input.txt'), encoding='utf-8') as f:
    texts = [t.strip() for t in f.read().split('\n---\n') if t.strip()]

# tokenizer = Tokenizer.from_text(''.join(texts) + '\n')  # characters, '\n' included: it ends each document
tokenizer = Tokenizer()  # or GPT-2's BPE: <|endoftext|> ends each document
documents = ([text] for text in texts)  # each document a stream of text blocks, here a single block
with staged_folder(folder) as stage:  # written beside the folder, moved in only once all went well
    counts = write_dataset(documents, stage, tokenizer, val_fraction=0.1)
    with open(os.path.join(stage, 'meta.pkl'), 'wb') as f:
        pickle.dump(tokenizer.meta(), f)
print(f"{counts['documents']:,} documents: train {counts['train']:,} tokens, val {counts['val']:,}")
