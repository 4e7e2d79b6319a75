"""
Your own text as a dataset, in one command: text files (a file, a folder, a glob) or a Hugging Face dataset
to data/<name>/ with train.bin and val.bin (uint16 ids), meta.pkl and a readme.md that records how it was made.
It ends by printing the train.py and sample.py commands to run next.
$ python data/text/prepare.py --input=my_notes/                       # characters; name: my_notes
$ python data/text/prepare.py --input='books/**/*.txt' --name=books --tokenizer=gpt2
$ python data/text/prepare.py --hf_dataset=roneneldan/TinyStories --tokenizer=gpt2
$ python data/text/prepare.py --hf_dataset=parquet --data_files='dump/*.parquet' --name=dump
Each file (or row) is a document. Files with a NUL byte in their first 8 KB are binary: skipped in a folder
or a glob, named on stderr; an error if given alone. Hidden files and folders are skipped.
"""

import codecs
import datetime
import glob
import os
import pickle
import re
import shlex
import sys

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # configurator
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/, for common.py
from configurator import configure, fail  # noqa: E402
from common import (BPE_VOCAB, PIECE_CHARS, Tokenizer, atomic_path, bytes_per_token, cut_pieces,  # noqa: E402
                    goes_to_val, hf_documents, read_meta, small_pieces, staged_folder, train_bpe, write_dataset)

# -----------------------------------------------------------------------------
# the text
input = ''  # a text file, a folder (every file in it, recursively) or a glob such as 'notes/**/*.md'
hf_dataset = ''  # instead of input: a Hugging Face dataset id, or parquet, json or text with data_files
hf_config = ''  # the Hugging Face dataset's configuration, if it has several
data_files = ''  # with hf_dataset=parquet, json or text: local files, a path or a glob
text_column = 'text'  # the Hugging Face dataset's column that holds the text
split = 'train'  # the Hugging Face dataset's split to read
errors = 'strict'  # a file that is not UTF-8: 'strict' stops and names the byte; 'replace' reads it as U+FFFD
# the dataset
name = ''  # it goes to data/<name>/ and trains with --dataset=<name>; by default the input's name
tokenizer = 'char'  # 'char': each character a token; 'bpe': a byte-level BPE learned from the train split; 'gpt2'
vocab_size = 2048  # with tokenizer='bpe': its tokens, from 257 (the 256 bytes and <|endoftext|>) to 65,536
val_fraction = 0.1  # held out for validation: 1 document in 1/val_fraction, or the text's end if too few
overwrite = False  # replace data/<name>/ even if this script did not make it
num_proc = max(1, (os.cpu_count() or 2) // 2)  # processes that tokenize
# -----------------------------------------------------------------------------

DATA = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(DATA)
PREPARED_BY = 'data/text/prepare.py'  # in meta.pkl: a folder this script may replace without --overwrite
MIN_CONTEXTS = 10  # each split holds at least this many block_size contexts, or its loss says little
# by tokenizer, for up to so many train tokens: (the launch, its config, the config's block_size, what it is)
CPU_RECIPE = (20e6, 'python train.py', 'config/train_shakespeare_char_fast.py', 64,
              "the fast CPU recipe (minutes on a laptop)")
BABY_GPT = (float('inf'), 'python train.py', 'config/train_shakespeare_char.py', 256, "the baby GPT, for a GPU")
RECIPES = {'char': [CPU_RECIPE, BABY_GPT], 'bpe': [CPU_RECIPE, BABY_GPT],
           'gpt2': [(100e6, 'python train.py', 'config/train_text_gpt2_small.py', 256,
                     "a small BPE model, for a GPU (on a CPU, --tokenizer=char trains in minutes)"),
                    (float('inf'), 'torchrun --standalone --nproc_per_node=8 train.py', 'config/train_gpt2_fineweb.py',
                     1024, "GPT-2 124M, for 8 GPUs")]}


def default_name():
    """The dataset's name from its source: a file's name, a folder's, a glob's fixed folder, a hub id's last part."""
    source = input or (data_files if hf_dataset in ('parquet', 'json', 'text') else hf_dataset)
    fixed = re.split(r'[*?\[]', source)[0]  # a glob's part before its first wildcard
    if fixed != source and not fixed.endswith('/'):
        fixed = os.path.dirname(fixed)
    base = os.path.basename(os.path.normpath(fixed)) if fixed else ''
    base = os.path.splitext(base)[0] if os.path.isfile(fixed) else base
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', base).strip('._')


def check_folder(folder):
    """Refuse a name that is not a plain folder name, this script's own folder, or a folder made otherwise."""
    if not re.fullmatch(r'[A-Za-z0-9_-][A-Za-z0-9_.-]*', name):
        fail(f"error: --name={name!r}: use letters, digits, '_', '-' and '.' (it becomes the folder "
             f"data/{name}/)")
    if name == 'text':
        fail("error: data/text/ holds this script -- pick another --name")
    if os.path.exists(folder) and not os.path.isdir(folder):
        fail(f"error: data/{name} is a file -- pick another --name")
    content = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if content and not overwrite and made_here(folder) is None:
        shown = ', '.join(content[:5]) + (', ...' if len(content) > 5 else '')
        fail(f"error: data/{name}/ exists and was not made by this script (it holds {shown}); nothing was "
             "written -- pick another --name, or pass --overwrite=True to replace its .bin files, "
             "meta.pkl and readme.md")


def made_here(folder):
    """The meta.pkl of a dataset this script made in folder, else None."""
    try:
        meta = read_meta(os.path.join(folder, 'meta.pkl'))
    except SystemExit:  # none, or not ours to read (and nothing in it runs)
        return None
    return meta if isinstance(meta, dict) and meta.get('prepared_by') == PREPARED_BY else None


def is_binary(path):
    with open(path, 'rb') as f:
        return b'\0' in f.read(8192)  # git's test for a binary file


def input_files():
    """(text files, skipped binary files) of input: a file, a folder's files (recursively) or a glob's, sorted."""
    if os.path.isfile(input):
        if is_binary(input):
            fail(f"error: {input} is a binary file (a NUL byte in its first 8 KB) -- give text files, "
                 "UTF-8")
        return [input], []
    if os.path.exists(input) and not os.path.isdir(input):
        fail(f"error: --input={input} is not a regular file or a folder (a device, a pipe or a socket?) -- "
             f"give text files")
    if os.path.isdir(input):
        paths = []
        for folder, subfolders, names in os.walk(input):
            subfolders[:] = [d for d in subfolders if not d.startswith('.')]
            paths += [os.path.join(folder, n) for n in names if not n.startswith('.')]
    else:
        paths = [p for p in glob.glob(os.path.expanduser(input), recursive=True)
                 if os.path.isfile(p) or os.path.islink(p)]
        if not paths:
            fail(f"error: --input={input}: no such file or folder, and no file matches it as a glob")
    paths = read_once(paths)
    binary = [p for p in paths if is_binary(p)]
    files = sorted(set(paths) - set(binary))
    if not files:
        skipped = f" (skipped {len(binary)} binary: {', '.join(sorted(binary)[:3])})" if binary else ''
        fail(f"error: no text files in {input}{skipped} -- point --input at UTF-8 text files")
    return files, sorted(binary)


def read_once(paths):
    """paths, each file once: a link to a file read anyway (GPL -> GPL-3) would put the same text in train and
    in val. A file is read under its own name rather than a link's; dangling links are skipped. Both said."""
    dangling = [p for p in paths if not os.path.exists(p)]
    by_target = {}
    for p in sorted(set(paths) - set(dangling), key=lambda p: (os.path.islink(p), p)):  # files before links
        by_target.setdefault(os.path.realpath(p), p)
    repeats = len(paths) - len(dangling) - len(by_target)
    if repeats or dangling:
        shown = f": {', '.join(sorted(dangling)[:5])}{' ...' if len(dangling) > 5 else ''}" if dangling else ''
        print(f"skipped {repeats} link(s) to a file read anyway, and {len(dangling)} dangling link(s){shown}",
              file=sys.stderr)
    return sorted(by_target.values())


def first_bad_byte(path):
    """(offset, byte) of the first byte of path that is not UTF-8."""
    decoder, offset = codecs.getincrementaldecoder('utf-8')(), 0
    with open(path, 'rb') as f:
        while True:
            block = f.read(PIECE_CHARS)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                return offset - pending + e.start, e.object[e.start]
            if not block:
                return offset, None
            offset += len(block)


def read_blocks(path, bar):
    """A file's text as a stream of blocks: newlines made '\\n' as Python's open does, a BOM dropped."""
    done = 0  # bytes of it shown on the progress bar
    try:
        with open(path, encoding='utf-8-sig', errors=errors) as f:
            while block := f.read(PIECE_CHARS):
                bar.update(f.buffer.tell() - done)
                done = f.buffer.tell()
                yield block
    except UnicodeDecodeError:
        offset, byte = first_bad_byte(path)
        fail(f"error: {path} is not UTF-8: byte 0x{byte:02x} at offset {offset:,}; nothing was written -- "
             "convert it (e.g. iconv -f latin1 -t utf-8), or pass --errors=replace to read such bytes as "
             "U+FFFD")
    bar.update(os.path.getsize(path) - done)


def progress(files, desc):
    """A progress bar over the bytes of files, or the documents of a Hugging Face dataset."""
    if hf_dataset:
        return tqdm(desc=desc, unit=' documents')
    return tqdm(total=sum(os.path.getsize(p) for p in files), desc=desc, unit='B', unit_scale=True)


def documents(files, bar):
    """A fresh stream of the documents, each a stream of text blocks, counted on bar."""
    if not hf_dataset:
        return (read_blocks(path, bar) for path in files)
    texts = hf_documents(hf_dataset, hf_config, split, data_files, text_column,
                         hint=", or pass local files: --hf_dataset=parquet --data_files='docs/*.parquet'")
    return counted(texts, bar)


def counted(texts, bar):
    for text in texts:
        bar.update()
        yield text


def char_tokenizer(files):
    """The character vocabulary of the text (a first pass over it), and <|endoftext|>, last: it ends each document
    (and gives an export its begin- and end-of-text token)."""
    chars = set()
    with progress(files, 'reading the vocabulary') as bar:  # closed before an error: the error is the last line
        for document in documents(files, bar):
            for block in document:
                chars.update(block)
    if len(chars) >= 65536:
        fail(f"error: the text has {len(chars):,} distinct characters, which with <|endoftext|> are more than the "
             "65,536 ids of the uint16 .bin format; nothing was written -- use --tokenizer=gpt2")
    return Tokenizer.from_text(''.join(chars), eot=True)


def bpe_tokenizer(files):
    """A BPE of vocab_size tokens learned from the train split alone: the documents that write_dataset will not
    put in val, or, with too few documents for that, the text before its last val_fraction of bytes (which
    write_dataset then cuts off as val at the first token after it). A first pass counts documents and bytes."""
    n_documents, text_bytes = 0, 0
    with progress(files, 'counting the documents') as bar:
        for document in documents(files, bar):
            sizes = [len(block.encode('utf-8', 'surrogatepass')) for block in document]
            n_documents, text_bytes = n_documents + (sum(sizes) > 0), text_bytes + sum(sizes)
    by_document = np.floor(n_documents * val_fraction) >= 1  # as goes_to_val: some document goes to val

    def train_text(bar):
        index, left = 0, int(text_bytes * (1 - val_fraction))
        for document in documents(files, bar):
            seen = False
            for piece in cut_pieces(document):
                seen = True
                if by_document and not goes_to_val(index, val_fraction):
                    yield from small_pieces(piece)
                elif not by_document and left > 0:
                    data = piece.encode('utf-8', 'surrogatepass')[:left]
                    left -= len(data)
                    yield from small_pieces(data.decode('utf-8', 'ignore'))
            index += seen
    with progress(files, f'learning a BPE of {vocab_size:,} tokens') as bar:
        bpe = train_bpe(train_text(bar), vocab_size)
    if bpe.vocab_size < vocab_size:
        fail(f"error: the train split has too few distinct byte pairs for a BPE of {vocab_size:,} tokens: "
             f"it learned {bpe.vocab_size:,}; nothing was written -- use --vocab_size={bpe.vocab_size} or "
             f"less, or add text")
    return bpe


def has_gpu():
    """Whether torch sees a CUDA GPU here (torch imported only now: the rest of this script needs none of it)."""
    import torch
    return torch.cuda.is_available()


def recipe(train_tokens):
    """(launch, config, block_size, what) to train on this data. A GPU recipe on a machine without one would
    compile for minutes and then crawl: the CPU recipe is named instead, with the GPU one in the words."""
    launch, config, block_size, what = next(r[1:] for r in RECIPES[tokenizer] if train_tokens <= r[0])
    if config != CPU_RECIPE[2] and not has_gpu():
        return *CPU_RECIPE[1:4], f"{CPU_RECIPE[4]}; no GPU here (with one: {launch} {config})"
    return launch, config, block_size, what


def check_sizes(counts, block_size):
    for split in ('train', 'val'):
        if counts[split] < MIN_CONTEXTS * block_size:
            total = counts['train'] + counts['val']
            needed = MIN_CONTEXTS * block_size / max(total, 1)
            fix = (f"raise --val_fraction to {needed + 0.005:.2f} or add text" if split == 'val' and needed < 0.5
                   else "add text")
            fail(f"error: the {split} split would hold {counts[split]:,} tokens, fewer than "
                 f"{MIN_CONTEXTS} contexts of the suggested config's block_size={block_size} "
                 f"({MIN_CONTEXTS * block_size:,}); nothing was written -- {fix}")


def describe_source(files, binary):
    if hf_dataset:
        where = f"`{data_files}` as {hf_dataset}" if data_files else f"the Hugging Face dataset `{hf_dataset}`"
        configuration = f", configuration `{hf_config}`" if hf_config else ''
        return f"{where}{configuration}, split `{split}`, column `{text_column}`"
    def named(paths):
        return ', '.join(f'`{os.path.relpath(p, input) if os.path.isdir(input) else p}`' for p in paths[:20]) + (
            ', ...' if len(paths) > 20 else '')
    skipped = f"; skipped as binary: {named(binary)}" if binary else ''
    return f"{len(files)} file(s) from `{input}`: {named(files)}{skipped}"


def readme(command, counts, vocab_size, source, how_split, next_commands):
    kind = {'char': f"characters, a vocabulary of {vocab_size:,}, `<|endoftext|>` ({vocab_size - 1}) after each document",
            'bpe': f"a byte-level BPE of {vocab_size:,} tokens learned from the train split (`tokenizer.json`), "
                   "`<|endoftext|>` (0) after each document",
            'gpt2': "GPT-2's BPE (50,257 tokens), `<|endoftext|>` (50256) after each document"}[tokenizer]
    return (f"# {name}\n\nMade by `{PREPARED_BY}` on {datetime.date.today()}, with\n\n    {command}\n\n"
            f"- Source: {source}.\n- Tokenizer: {kind}.\n- Documents: {counts['documents']:,}; {how_split}.\n"
            f"- `train.bin`: {counts['train']:,} tokens; `val.bin`: {counts['val']:,} tokens (uint16).\n\n"
            "Train and sample, from the repository's root:\n\n" + ''.join(f"    {c}\n" for c in next_commands) +
            "\nRun the command above again to make it anew; the script replaces what it made.\n")


if __name__ == '__main__':
    configure(globals())
    input = os.path.expanduser(input)
    if bool(input) == bool(hf_dataset):
        fail("error: give one of --input=<file, folder or glob> and --hf_dataset=<id, or parquet/json/text "
             "with --data_files>")
    if data_files and hf_dataset not in ('parquet', 'json', 'text'):
        fail(f"error: --data_files takes --hf_dataset=parquet, json or text, got {hf_dataset!r}")
    if tokenizer not in RECIPES:
        fail(f"error: --tokenizer={tokenizer!r}: use char, bpe or gpt2")
    if errors not in ('strict', 'replace'):
        fail(f"error: --errors={errors!r}: use strict (stop at a byte that is not UTF-8) or replace")
    if not 0 < val_fraction < 1:
        fail(f"error: --val_fraction={val_fraction}: use a fraction between 0 and 1, such as 0.1")
    if tokenizer == 'bpe' and not BPE_VOCAB[0] <= vocab_size <= BPE_VOCAB[1]:
        fail(f"error: --vocab_size={vocab_size}: a BPE needs {BPE_VOCAB[0]} (the 256 bytes and <|endoftext|>) "
             f"to {BPE_VOCAB[1]:,} (the uint16 .bin format's ids) tokens")
    name = name or default_name()
    if not name:
        fail("error: cannot make a dataset name from the input -- pass --name=<name>")
    folder = os.path.join(DATA, name)
    check_folder(folder)
    files, binary = input_files() if input else ([], [])
    if binary:
        print(f"skipped {len(binary)} binary file(s) (a NUL byte in the first 8 KB): "
              f"{', '.join(binary[:10])}{' ...' if len(binary) > 10 else ''}", file=sys.stderr)
    TOKENS = {'char': char_tokenizer, 'bpe': bpe_tokenizer}.get(tokenizer, lambda _: Tokenizer())(files)
    new_folder = not os.path.isdir(folder)
    with staged_folder(folder) as stage:
        with progress(files, f'tokenizing into data/{name}') as bar:
            try:
                counts = write_dataset(documents(files, bar), stage, TOKENS, val_fraction, num_proc)
            except ValueError as e:  # a character the first pass did not see: the stream changed in between
                fail(f"error: the text changed after the vocabulary was read (new: {e}); nothing was "
                     "written -- run again")
        if new_folder:  # a dataset is data, not code: git ignores it (delete .gitignore to commit its readme.md)
            with open(os.path.join(stage, '.gitignore'), 'w') as f:
                f.write('*\n')
        if counts['train'] + counts['val'] == 0:
            fail(f"error: no text in {input or data_files or hf_dataset} (every document is empty); "
                 "nothing was written")
        launch, config, block_size, what = recipe(counts['train'])
        check_sizes(counts, block_size)
        how_split = (f"1 in {round(1 / val_fraction)} to val" if counts['by_document']
                     else f"val is the last {val_fraction:.0%} of the text")
        command = shlex.join(['python', PREPARED_BY] + sys.argv[1:])
        next_commands = [f"{launch} {config} --dataset={name} --out_dir=out-{name}",
                         f"python sample.py --out_dir=out-{name}"]
        source = describe_source(files, binary)
        if TOKENS.kind == 'bpe':
            TOKENS.bpe.save(os.path.join(stage, 'tokenizer.json'))
        lengths = TOKENS.byte_lengths()  # for val_bpb: bits per byte, comparable across tokenizers
        text_bytes = {s: bytes_per_token([os.path.join(stage, f'{s}.bin')], lengths) for s in ('train', 'val')}
        with atomic_path(os.path.join(stage, 'meta.pkl')) as tmp, open(tmp, 'wb') as f:
            pickle.dump({**TOKENS.meta(), 'prepared_by': PREPARED_BY, 'source': source, 'command': command,
                         'bytes_per_token': text_bytes}, f)
        with open(os.path.join(stage, 'readme.md'), 'w') as f:
            f.write(readme(command, counts, TOKENS.vocab_size, source, how_split, next_commands))
    print(f"data/{name}/: train.bin {counts['train']:,} tokens, val.bin {counts['val']:,} tokens, "
          f"{counts['documents']:,} document{'s' * (counts['documents'] != 1)} ({how_split}), {TOKENS.vocab_size:,} "
          f"token vocabulary; readme.md says "
          f"how it was made")
    print(f"next, {what}{'' if os.getcwd() == ROOT else ', from ' + ROOT}:")
    for c in next_commands:
        print(f"  {c}")
    if tokenizer == 'char' and config == CPU_RECIPE[2]:  # what won at this size, in bits per byte
        better = shlex.join(['python', PREPARED_BY] + sys.argv[1:] + ['--tokenizer=bpe', '--vocab_size=512'])
        print(f"tip: a BPE of the text's own learned 1 MB texts better than characters in the same time (val_bpb, "
              f"docs/benchmarks.md):\n  {better}")
