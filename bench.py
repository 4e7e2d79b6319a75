"""
Time the training step (forward, backward, optimizer) of a GPT, on the CPU or a GPU:
$ python bench.py                                        # GPT-2 124M on OpenWebText, as train.py
$ python bench.py --device=cpu --n_layer=4 --n_head=4 --n_embd=128 --block_size=64 --real_data=False
$ python bench.py --profile=True                         # also write a torch.profiler trace
Prints ms/iter, tokens/s and MFU (n/a where the device's peak FLOP/s is unknown, e.g. on CPUs).
Or time generation, with and without the KV cache, side by side (random weights; speed only):
$ python bench.py --mode=generate --device=cpu --n_layer=6 --n_head=6 --n_embd=384 --block_size=256 --vocab_size=65
"""

import os
import sys
import time

import numpy as np
import torch

from configurator import configure, default_device, mixed_precision, require_positive, resolve_device
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
batch_size = 12
block_size = 1024
n_layer = 12
n_head = 12
n_embd = 768
bias = False
real_data = True  # batches from data/<dataset>/train.bin; False: random tokens
dataset = 'openwebtext'
vocab_size = 50304
seed = 1337
device = default_device()  # 'cpu', 'cuda', 'cuda:1', 'mps'; the best available by default
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bf16 on CUDA if supported, else fp16; fp32 elsewhere
compile = True  # use PyTorch 2.0 to compile the model to be faster
warmup_iters = 10  # untimed steps first: compilation, allocator and cache warm-up
num_iters = 20  # timed steps
profile = False  # use pytorch profiler, or just simple benchmarking?
profile_dir = 'bench_log'  # where the profiler writes its chrome trace
mode = 'train'  # 'train': the training step; 'generate': tokens/s of sampling with and without the KV cache
new_tokens = '100,500,block_size'  # generate mode: the sample lengths to time, comma-separated
# -----------------------------------------------------------------------------
configure(globals())  # overrides from the command line or a config file
# -----------------------------------------------------------------------------
if mode not in ('train', 'generate'):
    sys.exit(f"error: mode must be 'train' or 'generate', got '{mode}'")
require_positive(globals(), 'batch_size', 'block_size', 'n_layer', 'n_head', 'n_embd', 'vocab_size', 'num_iters')
if n_embd % n_head != 0:
    sys.exit(f"error: n_embd ({n_embd}) must be divisible by n_head ({n_head})")
device_type, dtype = resolve_device(device, dtype)
torch.manual_seed(seed)
ctx = mixed_precision(device_type, dtype)


def synchronize():
    """Wait for the device, so that wall-clock time covers the work queued on it."""
    if device_type == 'cuda':
        torch.cuda.synchronize()
    elif device_type == 'mps':
        torch.mps.synchronize()


# data loading init
if real_data and mode == 'train':
    path = os.path.join('data', dataset, 'train.bin')
    if not os.path.isfile(path):
        sys.exit(f"error: {path} not found -- run python data/{dataset}/prepare.py, or use --real_data=False")
    train_data = np.memmap(path, dtype=np.uint16, mode='r')
    if len(train_data) <= block_size:
        sys.exit(f"error: {path} holds {len(train_data)} tokens, too few for block_size={block_size}")


def get_batch():
    if real_data:
        ix = torch.randint(len(train_data) - block_size, (batch_size,))
        tokens = torch.from_numpy(np.stack([train_data[i:i + block_size + 1] for i in ix.tolist()]).astype(np.int64))
    else:
        tokens = torch.randint(vocab_size, (batch_size, block_size + 1))
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    if device_type == 'cuda':
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# model init
model = GPT(GPTConfig(block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=0.0,
                      bias=bias, vocab_size=vocab_size))
model.to(device)
optimizer = model.configure_optimizers(weight_decay=1e-2, learning_rate=1e-4, betas=(0.9, 0.95),
                                       device_type=device_type)
scaler = torch.amp.GradScaler('cuda', enabled=(dtype == 'float16'))
if compile:
    print("Compiling model...")
    model.compile()
print(f"benchmarking {model.get_num_params() / 1e6:.2f}M parameters on {device} in {dtype}, "
      f"batch {batch_size} x {block_size} tokens, {'real' if real_data else 'random'} data")


def train_step():
    X, Y = get_batch()
    with ctx:
        _, loss = model(X, Y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss


if mode == 'generate':
    # one sample at a time from a one-token prompt, as sample.py streams it; each length timed both ways
    model.eval()
    lengths = [block_size if n.strip() == 'block_size' else int(n) for n in new_tokens.split(',')]
    prompt = torch.zeros((1, 1), dtype=torch.long, device=device)
    with ctx:
        model.generate(prompt, 8, use_cache=True)  # warm-up: first calls pay for allocations
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
    mfu = model.estimate_mfu(batch_size, dt, block_size, device_type)
    print(f"final loss: {lossf:.4f}")
    print(f"time per iteration: {dt * 1000:.2f}ms, tokens/s: {batch_size * block_size / dt:,.0f}, "
          f"mfu: {f'{mfu * 100:.2f}%' if mfu is not None else 'n/a (peak FLOP/s unknown for this device)'}")
