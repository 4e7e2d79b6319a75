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
"""

import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from tqdm import tqdm

from checkpoint import dataset_files, dataset_meta, loss_scaler, open_tokens, read_tokens
from configurator import configure, default_device, require_positive, setup
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
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bf16 on CUDA if supported (else fp16) and on CPUs with AMX
compile = True  # use PyTorch 2.0 to compile the model to be faster
threads = 0  # CPU threads torch computes with; 0: torch's default (OMP_NUM_THREADS, else one per core)
warmup_iters = 10  # untimed steps first: compilation, allocator and cache warm-up
num_iters = 20  # timed steps
profile = False  # use pytorch profiler, or just simple benchmarking?
profile_dir = 'bench_log'  # where the profiler writes its chrome trace
mode = 'train'  # 'train': the training step; 'generate': sampling with and without the KV cache; 'time_to_loss'
new_tokens = '100,500,block_size'  # generate mode: the sample lengths to time, comma-separated
train_config = ''  # time_to_loss mode: the config file train.py runs
target_loss = 1.88  # time_to_loss mode: stop when the val loss is at most this
# -----------------------------------------------------------------------------
configure(globals())  # overrides from the command line or a config file
# -----------------------------------------------------------------------------
if mode == 'time_to_loss':
    # the whole process, start-up included, as a user would time it
    t0 = time.perf_counter()
    # its checkpoint in a temporary folder: never one of the user's runs
    with tempfile.TemporaryFile('w+') as err, tempfile.TemporaryDirectory() as out, tqdm(desc='train.py', unit='iter') as bar:
        proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train.py'),
                                 train_config, f'--target_val_loss={target_loss}', f'--out_dir={out}', f'--threads={threads}'],
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
    steps = re.findall(r'^step (\d+): train loss [0-9.]+, val loss ([0-9.]+)', ''.join(lines), re.M)
    if not steps:
        sys.exit("error: train.py printed no evaluation")
    iters, val = int(steps[-1][0]), float(steps[-1][1])
    print(f"{'reached' if val <= target_loss else 'did NOT reach'} val loss {target_loss}: val loss {val:.4f} at "
          f"iter {iters}, {seconds:.1f}s for the whole train.py process")
    sys.exit(0 if val <= target_loss else 1)
if mode not in ('train', 'generate'):
    sys.exit(f"error: mode must be 'train', 'generate' or 'time_to_loss', got '{mode}'")
require_positive(globals(), 'batch_size', 'block_size', 'n_layer', 'n_head', 'n_embd', 'vocab_size', 'num_iters')
if n_embd % n_head != 0:
    sys.exit(f"error: n_embd ({n_embd}) must be divisible by n_head ({n_head})")
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
        sys.exit(f"error: data/{dataset}'s train split holds {train_starts[-1]} tokens, too few for "
                 f"block_size={block_size}")
    meta, meta_path = dataset_meta(dataset)  # token ids beyond vocab_size would fail deep inside the embedding
    if meta and meta.get('vocab_size', 0) > vocab_size:
        sys.exit(f"error: {meta_path} has vocab_size {meta['vocab_size']}, larger than --vocab_size={vocab_size}; "
                 f"pass --vocab_size={meta['vocab_size']} or more")


def get_batch():
    if real_data:
        ix = torch.randint(int(train_starts[-1]) - block_size, (batch_size,))
        tokens = np.stack([read_tokens(train_files, train_starts, i, block_size + 1) for i in ix.tolist()])
        tokens = torch.from_numpy(tokens.astype(np.int64))
    else:
        tokens = torch.randint(vocab_size, (batch_size, block_size + 1))
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    if device_type == 'cuda':
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# model init
model = GPT(GPTConfig(block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=0.0,
                      bias=bias, vocab_size=vocab_size, pos_emb=pos_emb, norm=norm, norm_params=norm_params,
                      qk_norm=qk_norm, mlp_act=mlp_act, tie_weights=tie_weights))
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
    mfu = model.estimate_mfu(batch_size, dt, block_size, device_type, dtype)
    flops = model.estimate_flops_per_token(block_size) * batch_size * block_size / dt
    print(f"final loss: {lossf:.4f}")
    print(f"time per iteration: {dt * 1000:.2f}ms, tokens/s: {batch_size * block_size / dt:,.0f}, "
          f"achieved: {flops / 1e9:,.1f} GFLOP/s, "
          f"mfu: {f'{mfu * 100:.2f}%' if mfu is not None else 'n/a (peak FLOP/s unknown for this device)'}")
    phases = dict.fromkeys(('data', 'forward', 'backward', 'optimizer'), 0.0)
    for k in range(num_iters):
        train_step(phases)
    print("breakdown per iteration: " + ", ".join(f"{name} {t / num_iters * 1000:.2f}ms" for name, t in phases.items()))
