"""
Train a GPT on one device (a GPU, the CPU or MPS), or on several with distributed data parallel:
$ python train.py config/train_shakespeare_char_cpu.py
$ torchrun --standalone --nproc_per_node=4 train.py                    # 4 GPUs on 1 node
$ torchrun --nnodes=2 --nproc_per_node=8 ... train.py   # 2 nodes: docs/guides/distributed.md; FSDP: --fsdp=True
Ctrl-C or SIGTERM saves ckpt.pt after this step (or at once in an evaluation). --help: settings
"""

import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import fields

import torch
import torch.distributed as dist

from checkpoint import (check_architecture, checkpoint_reason, find_weights, load_model, loss_scaler,
                        peek_checkpoint, restore_rng_states, rng_states, run_folder_problem,
                        save_checkpoint, start_run_records, start_wandb, write_record)
from data.common import (bpb_scales, check_splits, dataset_files, dataset_meta, open_tokens,
                         pass_offsets, read_batch)
from configurator import (config_keys, configure, default_device, device_peak_flops, fail,
                          require_positive, setup)
from distributed import (catch_stop_signals, full_state_dicts, gather_objects, init_distributed,
                         launched_by_torchrun, load_optimizer, replicate_model, resume_command,
                         shard_model, stop_requested, sum_over_ranks)
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
# default config values designed to train a gpt2 (124M) on OpenWebText
# I/O
out_dir = 'out'  # where ckpt.pt, config.json and log.jsonl go
eval_interval = 2000  # evaluate (and maybe save) every this many iterations
log_interval = 1  # print and log the training loss every this many iterations
eval_iters = 200  # batches per split in each evaluation
eval_only = False  # if True, evaluate once and exit
eval_at_start = True  # False: no evaluation before the first step (saves seconds in a short run)
target_val_loss = 0.0  # if > 0, stop (and save) at the first evaluation with val loss <= this
target_val_bpb = 0.0  # the same in val bits per byte, which compare across tokenizers
always_save_checkpoint = True  # False: save only when val loss improves (and at the end if never)
init_from = 'scratch'  # or 'resume' (out_dir), a ckpt.pt or its folder, 'gpt2'..., an HF folder
overwrite = False  # let a new run replace the run already in out_dir (checkpoint and run log)
# wandb logging
wandb_log = False  # log to Weights & Biases too (offline if it cannot reach it)
wandb_project = 'owt'  # its project...
wandb_run_name = 'gpt2'  # ...and run name
# data
dataset = 'openwebtext'  # the folder data/<dataset>/ with train.bin and val.bin
gradient_accumulation_steps = 5 * 8  # simulates larger batches; shared by the DDP processes
batch_size = 12  # micro-batch size per process
block_size = 1024  # context length in tokens
sampling = 'random'  # or 'epochs': passes over train.bin, each token a target once a pass
# model
n_layer = 12  # transformer blocks
n_head = 12  # attention heads per block
n_embd = 768  # width of the residual stream
dropout = 0.0  # for pretraining 0 is good, for finetuning try 0.1+
bias = False  # do we use bias inside LayerNorm and Linear layers?
pos_emb = 'learned'  # 'learned' absolute positions, or 'rope': rotary, on queries and keys
norm = 'layernorm'  # or 'rmsnorm'
norm_params = True  # False: norms without a learned scale (and bias)
qk_norm = False  # normalize each head's queries and keys: tame attention logits
mlp_act = 'gelu'  # 'gelu' (tanh, as GPT-2), 'gelu_exact' (erf, as nanoGPT) or 'relu2'
tie_weights = True  # the output head is the token embedding
zero_init_proj = False  # residual projections start at 0: blocks start as identity
# adamw optimizer
learning_rate = 6e-4  # max learning rate
max_iters = 600000  # total number of optimizer steps
time_budget = 0.0  # > 0: train for this many seconds of steps; follows the clock: not bit-reproducible
weight_decay = 1e-1  # on matrices and embeddings only
beta1 = 0.9  # AdamW's momentum...
beta2 = 0.95  # ...and its second-moment decay
grad_clip = 1.0  # clip gradients at this norm, or disable if == 0.0
optimizer_name = 'adamw'  # or 'muon': Muon for the blocks' matrices (muon_lr), AdamW for the rest
muon_lr = 0.02  # Muon's max learning rate (the schedule scales it like learning_rate)
muon_momentum = 0.95  # Muon's momentum (Nesterov's), of its matrices' gradients
# learning rate decay settings
decay_lr = True  # False: a constant learning_rate
lr_schedule = 'cosine'  # or 'wsd': warmup, stable, linear decay over the last decay_frac
decay_frac = 0.2  # the share of the iterations after warmup that 'wsd' decays over
warmup_iters = 2000  # linear warmup from near 0 to learning_rate
lr_decay_iters = 600000  # should be ~= max_iters per Chinchilla
min_lr = 6e-5  # should be ~= learning_rate/10 per Chinchilla
# system
backend = ''  # DDP backend: '' picks nccl on CUDA, gloo elsewhere
fsdp = False  # shard parameters, gradients and optimizer state across processes (FSDP2)
ddp_timeout = 600  # seconds to wait for every process to join, and for any collective
device = default_device()  # 'cpu', 'cuda', 'cuda:1', 'mps'; the best available by default
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bf16 where native, else fp16 (CUDA) or fp32
compile = True  # use PyTorch 2.0 to compile the model to be faster
seed = 1337  # initial weights, data order and dropout all follow from it
threads = 0  # CPU threads torch computes with; 0: torch's default (OMP_NUM_THREADS, or 1 per core)
# -----------------------------------------------------------------------------
overridden = configure(globals())  # overrides from the command line or a config file: the keys set
config = {k: globals()[k] for k in config_keys(globals())}  # for checkpoints, config.json, wandb
# -----------------------------------------------------------------------------

# settings that would only fail later, deep inside torch, are refused here in one line
require_positive(globals(), 'batch_size', 'block_size', 'gradient_accumulation_steps', 'eval_iters',
                 'eval_interval', 'log_interval', 'n_layer', 'n_head', 'n_embd', 'learning_rate',
                 'min_lr')
if min(max_iters, warmup_iters, time_budget) < 0:
    fail(f"error: max_iters, warmup_iters and time_budget must be >= 0, got {max_iters}, "
         f"{warmup_iters} and {time_budget}")
if init_from != 'scratch':  # a mistyped init_from, or an option GPT-2's weights lack, stops here
    _, weights_path = find_weights(init_from, out_dir, {k: globals()[k] for k in overridden})
if init_from == 'resume' and 'dataset' not in overridden:  # the checkpoint's, unless given
    dataset = (peek_checkpoint(weights_path).get('config') or {}).get('dataset', dataset)
device, device_type, dtype, ctx = setup(device, dtype, seed, threads=threads, compiled=compile)

ddp = launched_by_torchrun()
if fsdp and (not ddp or dtype == 'float16' or optimizer_name != 'adamw'):
    fail("error: fsdp=True needs a torchrun launch, float32 or bfloat16 (float16 loss scaling is "
         "not sharded) and AdamW (Muon needs whole matrices)")
if optimizer_name not in ('adamw', 'muon') or lr_schedule not in ('cosine', 'wsd') or \
        not 0 < decay_frac <= 1 or sampling not in ('random', 'epochs'):
    fail(f"error: optimizer_name must be adamw or muon, lr_schedule cosine or wsd, decay_frac in "
         f"(0, 1], sampling random or epochs; got {optimizer_name!r}, {lr_schedule!r}, {decay_frac}, "
         f"{sampling!r}")
ddp_world_size = int(os.environ.get('WORLD_SIZE', 1))
if gradient_accumulation_steps % ddp_world_size != 0:
    fail(f"error: gradient_accumulation_steps ({gradient_accumulation_steps}) must be divisible by "
         f"the number of processes ({ddp_world_size}); use a multiple of {ddp_world_size}")
gradient_accumulation_steps //= ddp_world_size  # each process does its share of the micro-steps
ddp_rank, ddp_local_rank = init_distributed(backend, device_type, ddp_timeout) if ddp else (0, 0)
master_process = ddp_rank == 0  # this process will do logging, checkpointing etc.
ckpt_path = os.path.join(out_dir, 'ckpt.pt')

# data: each split's uint16 token files (one, or a big dataset's shards), read as one
data_paths = dataset_files(dataset)
data_files = {split: open_tokens(paths) for split, paths in data_paths.items()}  # (files, starts)
data_lengths = {split: int(starts[-1]) for split, (_, starts) in data_files.items()}
# the vocab size from the dataset's meta.pkl, if it has one (character-level datasets do)
meta, meta_path = dataset_meta(dataset)
meta_vocab_size = meta.get('vocab_size') if meta else None
if master_process and meta_vocab_size is not None:
    print(f"found vocab_size = {meta_vocab_size} (inside {meta_path})")

# model init: new weights, or weights and architecture (settings may not contradict) from a file
iter_num, best_val_loss, checkpoint = 0, 1e9, None
elapsed, train_time, wandb_run_id = 0.0, 0.0, None  # clocks and wandb run, continued by a resume
resuming, previous_config = init_from == 'resume', None  # the settings of the run resumed
model_args = {f.name: globals()[f.name] for f in fields(GPTConfig) if f.name != 'vocab_size'}
if master_process:
    print({'scratch': "Initializing a new model from scratch", 'resume': f"Resuming training from {out_dir}"}
          .get(init_from, f"Starting a new run from the weights of {init_from}"))
if init_from == 'scratch':
    # GPT-2's 50257 tokens padded up to 50304 for efficiency, unless the dataset says otherwise
    model_args['vocab_size'] = meta_vocab_size if meta_vocab_size is not None else 50304
    try:
        model = GPT(GPTConfig(**model_args))
    except ValueError as e:  # e.g. n_embd not divisible by n_head
        fail(f"error: {e}")
else:
    model, _, _, checkpoint = load_model(init_from, out_dir, dropout)
    check_architecture(model, model_args, overridden, weights_path, resuming)
    model_args = dict(vars(model.config))
    globals().update({k: v for k, v in model_args.items() if k != 'vocab_size'})  # what runs
    if resuming:  # (older runs saved the shape as given, not as run: model_args wins)
        iter_num, best_val_loss = checkpoint['iter_num'], checkpoint['best_val_loss']
        previous_config = {**checkpoint['config'], **checkpoint['model_args']}
        elapsed, wandb_run_id = checkpoint.get('elapsed', 0.0), checkpoint.get('wandb_run_id')
        train_time = checkpoint.get('train_time', 0.0)
    else:
        checkpoint = None  # only the weights: a new run, with a fresh optimizer, from iteration 0
if meta_vocab_size is not None and meta_vocab_size > model.config.vocab_size:
    fail(f"error: {meta_path} has vocab_size {meta_vocab_size}, larger than the model's "
         f"{model.config.vocab_size}; train this dataset from scratch")
config.update({k: v for k, v in model_args.items() if k in config}, device=device, dtype=dtype)
tokens_per_iter = gradient_accumulation_steps * ddp_world_size * batch_size * block_size
if master_process:
    print(f"tokens per iteration will be: {tokens_per_iter:,}, computed in {dtype} on {device} "
          f"with {torch.get_num_threads()} CPU threads")

check_splits(dataset, data_paths, data_files, block_size, model.config.vocab_size)  # now it can
bpb = bpb_scales(dataset, meta, data_paths, needed=target_val_bpb > 0)  # loss x bpb: bits per byte


def draw_offsets(split, generator, n, step=None):
    """Start positions of n batches of batch_size sequences, from generator's stream; with
    sampling='epochs', training's step (its number) takes the next ones of the passes over the split."""
    if sampling == 'epochs' and step is not None:
        return pass_offsets(data_lengths[split], block_size, seed, step * n * batch_size, n * batch_size).view(n, -1)
    return torch.randint(data_lengths[split] - block_size, (n, batch_size), generator=generator)


def get_batch(split, offsets):
    """The (input, target) sequences that start at offsets, on the device."""
    return read_batch(*data_files[split], offsets, block_size, device)


# every process draws the same global batches from it and trains on its share: any process count
train_generator = torch.Generator().manual_seed(seed)

model.to(device)
if fsdp:
    shard_model(model, compile)
torch.manual_seed(seed + ddp_rank)  # but different dropout masks

optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type,
                                       optimizer_name, muon_lr, dtype, master_process, muon_momentum)
scaler_state = checkpoint.get('scaler', {}) if checkpoint else None  # None: a new run, a fresh scale
scaler = loss_scaler(device_type, dtype, scaler_state, master_process)
if checkpoint is not None:  # resume the optimizer and random states too
    load_optimizer(model, optimizer, checkpoint['optimizer'], fsdp)
    restore_rng_states(checkpoint.get('rng_states'), ddp_rank, ddp_world_size, train_generator,
                       seed, iter_num, device_type, master_process)
    checkpoint = None  # free up memory

if compile and master_process:
    print("compiling the model... (takes a ~minute)")
if compile and not fsdp:  # (FSDP: shard_model compiled each block)
    model.compile()  # in place, so its state_dict keeps plain names (no _orig_mod. prefix)
train_model = replicate_model(model, device_type, ddp_local_rank) if ddp and not fsdp else model  # FSDP: in place


@torch.no_grad()
def estimate_loss():
    """Mean loss over eval_iters batches per split, the same batches every time (so evals compare,
    and leave the training stream alone); each process its share, summed. None if stopped."""
    out = {}
    model.eval()
    share = range(ddp_rank, math.ceil(eval_iters / ddp_world_size) * ddp_world_size, ddp_world_size)
    # small batches go several to a forward, within 16k tokens and 4M logits; compiled: one shape
    logits = batch_size * block_size * max(256, model.config.vocab_size)
    group = 1 if compile else max(1, 2 ** 22 // logits)
    for split in ('train', 'val'):
        offsets = draw_offsets(split, torch.Generator().manual_seed(seed), eval_iters)
        total = torch.zeros((), dtype=torch.float64, device=device)  # one host sync per split
        for i in range(0, len(share), group):
            if stop_requested() and not ddp:  # alone, a stop need not wait for the evaluation
                return None
            ks = share[i:i + group]
            X, Y = get_batch(split, offsets[[min(k, eval_iters - 1) for k in ks]].flatten())
            real = sum(k < eval_iters for k in ks)
            Y[real * batch_size:] = -1  # padding (FSDP needs equal forward counts) counts for 0
            with ctx:
                _, loss = model(X, Y)
            if real:
                total += loss.double() * real
        out[split] = sum_over_ranks(ddp, total) / eval_iters
    model.train()
    return out


def get_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters, decay_lr=True,
           lr_schedule='cosine', decay_frac=0.2):
    """Linear warmup (non-zero at step 0), then cosine decay down to min_lr at lr_decay_iters (or,
    for 'wsd', constant until the last decay_frac of the way, then linear)."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters or lr_decay_iters <= warmup_iters:  # the latter as nanoGPT: then min_lr
        return min_lr
    if lr_schedule == 'wsd':
        decay_start = lr_decay_iters - decay_frac * (lr_decay_iters - warmup_iters)
        if it < decay_start:
            return learning_rate
        return min_lr + (learning_rate - min_lr) * (lr_decay_iters - it) / (lr_decay_iters - decay_start)
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # coeff ranges 0..1
    return min_lr + coeff * (learning_rate - min_lr)


def stop(message, code):
    """End the run with message, said once; an error (code 1) through fail, as every other error."""
    if ddp:
        dist.destroy_process_group()
    if code:
        fail(message)
    if master_process:
        print(message)
    sys.exit(0)


# the run's records: out_dir/config.json (its settings), log.jsonl (every line, for plot.py), wandb
run_log, last_logged, run_lock, wandb_run = None, None, None, None
if not eval_only and (problem := run_folder_problem(out_dir, not resuming and not overwrite)):
    stop(problem, 1)  # before anything is written
if master_process and not eval_only:  # the lock: one run per folder, for as long as this one lives
    run_lock, run_log, last_logged = start_run_records(out_dir, config, previous_config, iter_num,
                                                       resuming)
if wandb_log and master_process:
    wandb_run = start_wandb(wandb_project, wandb_run_name, config, wandb_run_id)
    wandb_run_id = wandb_run.id


def save(reason, iter_num, best_val_loss, elapsed, train_time):
    """Every process hands in its random states (and, under FSDP, its shards); the master writes."""
    states = gather_objects(ddp, rng_states(train_generator, device_type))
    model_state, optimizer_state = full_state_dicts(model, optimizer, fsdp, master_process)
    if master_process:
        os.makedirs(out_dir, exist_ok=True)
        save_checkpoint(dict(model=model_state, optimizer=optimizer_state, model_args=model_args,
                             scaler=scaler.state_dict(), iter_num=iter_num, config=config,
                             best_val_loss=best_val_loss, rng_states=states, elapsed=elapsed,
                             train_time=train_time, wandb_run_id=wandb_run_id), ckpt_path)
        print(f"saved checkpoint to {ckpt_path} at iter {iter_num} ({reason})")


def log(it, kind, **numbers):
    """A record of log.jsonl and wandb, from rank 0, once (a resume repeats its log's last eval)."""
    if master_process and (it, kind) != last_logged:
        write_record(run_log, wandb_run, it, kind, **numbers)


# training loop
start_iter, stops = iter_num, 0  # where this run started (nothing is new until it moves on)
catch_stop_signals(master_process, nothing_new=lambda: iter_num == start_iter)  # then: save, stop
saved_this_run, running_mfu, peak_flops = False, None, device_peak_flops(device_type, dtype)  # None: no MFU
t0 = time.time()
run_start = t0 - elapsed  # log.jsonl's clock, continued across resumes
clock = train_time  # rank 0's seconds of training steps, shared with every process: the budget's
while True:
    if stops > 0:  # Ctrl-C or SIGTERM in any process, after a step or during an evaluation
        save(f'stopped by {stop_requested() or "another process"}', iter_num, best_val_loss,
             time.time() - run_start, train_time)
        stop(f"stopped at iter {iter_num}; resume with: {resume_command(sys.argv, os.environ)}", 0)
    # with a time budget, the schedule runs over the share of it used, as if over lr_decay_iters
    progress = clock / time_budget * lr_decay_iters if time_budget > 0 else iter_num
    lr = get_lr(progress, learning_rate, min_lr, warmup_iters, lr_decay_iters, decay_lr,
                lr_schedule, decay_frac)
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr * param_group.get('lr_scale', 1.0)

    # evaluate the loss on train/val sets and write checkpoints; also once more at the very end
    final = iter_num >= max_iters or 0 < time_budget <= clock  # the last step, or the budget spent
    due = iter_num % eval_interval == 0 and (iter_num > start_iter or eval_at_start)
    if due or final or eval_only:
        if (losses := estimate_loss()) is None:  # stopped during it; else the same on every process
            stops = 1
            continue
        val_bpb = losses['val'] * bpb['val'] if bpb else math.inf  # bits per byte: any tokenizer's
        reached = not final and (losses['val'] <= target_val_loss or val_bpb <= target_val_bpb)
        final = final or reached
        line = f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
        if bpb:
            line += f", val_bpb {val_bpb:.4f}"
        if reached:
            line += f"; target reached: stopping at iter {iter_num} of {max_iters}"
        if time_budget > 0:  # the run's clock, and how many steps it bought
            line += f" ({clock:.1f}s of time_budget={time_budget:g}s, {iter_num - start_iter} steps this run)"
        if master_process:
            print(line)
        if not math.isfinite(losses['val']):
            stop(f"error: val loss is not finite at iter {iter_num}; stopped without saving, "
                 f"{ckpt_path} is unchanged -- lower learning_rate or fix the data, then resume", 1)
        log(iter_num, 'eval', train_loss=losses['train'], val_loss=losses['val'], lr=lr, mfu=running_mfu,
            val_bpb=val_bpb if bpb else None, elapsed=time.time() - run_start, train_time=clock)
        improved = losses['val'] < best_val_loss
        best_val_loss = min(best_val_loss, losses['val'])
        new_state = iter_num > start_iter and not eval_only
        reason = checkpoint_reason(improved, always_save_checkpoint, final, new_state,
                                   saved_this_run, resuming)
        if final and new_state and master_process and reason == 'final; never improved':
            print(f"val loss never improved on {best_val_loss:.4f}; saving the final model anyway")
        elif final and new_state and master_process and reason == '':
            print(f"val loss {losses['val']:.4f} did not beat {best_val_loss:.4f}; {ckpt_path} kept")
        if reason:
            save(reason, iter_num, best_val_loss, time.time() - run_start, train_time)
            saved_this_run = True
        t0 = time.time()  # the next step's time, tok/s and MFU leave out this evaluation and save
    if final or eval_only:
        break

    # forward backward update, with optional gradient accumulation to simulate larger batch size
    offsets = draw_offsets('train', train_generator, gradient_accumulation_steps * ddp_world_size, iter_num)
    offsets = offsets.view(ddp_world_size, -1, batch_size)[ddp_rank]  # this process's share, at:
    X, Y = get_batch('train', offsets[0])
    loss_sum = torch.zeros((), device=device)
    for micro_step in range(gradient_accumulation_steps):
        last = micro_step == gradient_accumulation_steps - 1
        # gradients are averaged across processes only on the last micro-step
        if fsdp:
            model.set_requires_gradient_sync(last)
        with (train_model.no_sync() if ddp and not fsdp and not last else nullcontext()):
            with ctx:
                logits, loss = train_model(X, Y)
                loss = loss / gradient_accumulation_steps  # scale for gradient accumulation
            if not last:  # fetch the next batch while the GPU works
                X, Y = get_batch('train', offsets[micro_step + 1])
            scaler.scale(loss).backward()  # scaled for fp16, passed through otherwise
        loss_sum += loss.detach()
    scaler.unscale_(optimizer)
    # the norm before clipping is logged; with grad_clip 0 nothing is clipped
    max_norm = grad_clip if grad_clip > 0 else float('inf')
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    # one collective: the loss mean over all processes' micro-batches (as one process would log it;
    # a NaN anywhere makes it NaN) and the count of processes asked to stop (the norm is global)
    flags = torch.tensor([stop_requested() is not None, train_time if master_process else 0.0], device=device)
    stats = torch.cat([(loss_sum / ddp_world_size).view(1), flags])
    if ddp:
        dist.all_reduce(stats)
    # one host sync per step buys a NaN check before the update: ~0.15% of GPT-2's step on 8 H100s
    (lossf, stops, clock), normf = stats.tolist(), grad_norm.item()
    if not math.isfinite(lossf) or (not scaler.is_enabled() and not math.isfinite(normf)):
        stop(f"error: loss is not finite at iter {iter_num} (loss {lossf}, grad norm {normf}); "
             f"stopped before the update, {ckpt_path} is unchanged -- lower learning_rate", 1)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)  # flush the gradients as soon as we can

    # timing and logging
    t1 = time.time()
    dt, t0 = t1 - t0, t1
    iter_num += 1
    if iter_num > start_iter + 1:  # a run's first step is warm-up: kernels chosen, or compilation
        train_time += dt
    if (iter_num - 1) % log_interval == 0 and master_process:
        if iter_num - start_iter >= 5:  # let the training loop settle a bit
            mfu = model.estimate_mfu(batch_size * gradient_accumulation_steps, dt, peak_flops)
            if mfu is not None:
                running_mfu = mfu if running_mfu is None else 0.9 * running_mfu + 0.1 * mfu
        mfu_text = f"{running_mfu * 100:.2f}%" if running_mfu is not None else "n/a"
        log(iter_num - 1, 'train', train_loss=lossf, grad_norm=normf, lr=lr, mfu=running_mfu,
            tokens_per_sec=tokens_per_iter / dt, elapsed=t1 - run_start, train_time=train_time)
        print(f"iter {iter_num - 1}: loss {lossf:.4f}, grad norm {normf:.4f}, lr {lr:.4e}, "
              f"time {dt * 1000:.2f}ms, tok/s {tokens_per_iter / dt:,.0f}, mfu {mfu_text}")

if ddp:  # barrier: gloo's threads drop the last tensors before Python exits (else, rarely, SIGABRT)
    dist.barrier()
    dist.destroy_process_group()
if run_lock is not None:  # the folder is free for the next run (the kernel frees it too, at exit)
    os.close(run_lock)
