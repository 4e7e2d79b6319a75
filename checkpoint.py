"""
Reading and writing ckpt.pt, and the one loader of a model with its tokenizer (load_model): from a ckpt.pt
written here or by the original nanoGPT, from GPT-2, or from a save_pretrained folder; shared by train.py,
sample.py, export.py, hellaswag.py and the tests.
Writes are atomic: a kill or a full disk at any moment leaves the previous ckpt.pt loadable.
Reads turn a missing, truncated or foreign file into a one-line error instead of a traceback.
Also the run's records: the run log, out_dir/log.jsonl, that train.py appends to and plot.py reads,
and its wandb run.
"""

import errno
import glob
import json
import os
import random
import re
from dataclasses import fields

import numpy as np

from configurator import fail
from data.common import Tokenizer, atomic_path, dataset_folder, dataset_meta, shorten

REQUIRED_KEYS = ('model', 'model_args', 'iter_num', 'best_val_loss', 'config')


def save_checkpoint(checkpoint, path):
    """Write to a new temporary file beside path (atomic_path), fsync it, then rename it over path in one step."""
    import torch
    global saving_to
    try:
        with atomic_path(path) as tmp:
            saving_to = tmp
            with open(tmp, 'wb') as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
        if hasattr(os, 'O_DIRECTORY'):  # make the rename itself durable across a power cut
            fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except (OSError, RuntimeError) as e:  # torch.save reports some failed writes as RuntimeError
        old = 'the previous checkpoint is intact' if os.path.exists(path) else 'no checkpoint was written'
        reason = getattr(e, 'strerror', None) or shorten(e, 120)
        fail(f"error: could not write checkpoint {path}: {reason}; {old} -- {os_hint(e)}, then resume")
    finally:
        saving_to = None


def os_hint(e):
    """What to do about a failed write, from what the OS said (a RuntimeError of torch.save: most often a full disk)."""
    code = getattr(e, 'errno', None)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make out_dir writable, or pass another --out_dir"
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return "out_dir must be a folder: pass another --out_dir"
    return "free disk space" if code in (errno.ENOSPC, errno.EDQUOT, None) else "fix out_dir"


saving_to = None  # the temporary file save_checkpoint is writing, if it is: a quit at once removes it


def abandon_save():
    """Remove the half-written temporary file of a save in progress (before os._exit, which skips cleanup)."""
    if saving_to:
        try:
            os.remove(saving_to)
        except OSError:
            pass


GPT2_NAMES = ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl')


def options_gpt2_lacks(args):
    """'name=value' of each option in args (some GPTConfig fields by name) away from GPT-2's architecture, which
    OpenAI's weights and transformers' GPT2LMHeadModel cannot hold (sizes, dropout and bias they can)."""
    from model import GPTConfig
    kept = ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd', 'dropout', 'bias', 'zero_init_proj')
    return [f"{f.name}={args[f.name]!r}" for f in fields(GPTConfig) if f.name not in kept and
            args.get(f.name, f.default) != f.default]


INIT_CHOICES = ("'resume' (out_dir/ckpt.pt), a GPT-2 name (gpt2, gpt2-medium, gpt2-large, gpt2-xl), a folder "
                "written by save_pretrained, or a path to a ckpt.pt or a folder holding one")


def find_weights(init_from, out_dir, training=None):
    """What init_from names, validated here for every script: ('checkpoint', path to a ckpt.pt) or
    ('pretrained', a GPT-2 name or save_pretrained folder); anything else stops with the choices. training:
    the settings a train.py run was given, where 'scratch' is a choice too, and where a GPT-2 name refuses
    an option OpenAI's weights lack before any download."""
    if init_from == 'resume':
        return 'checkpoint', os.path.join(out_dir, 'ckpt.pt')
    lacking = options_gpt2_lacks(training or {})
    if init_from in GPT2_NAMES and lacking:
        fail(f"error: init_from={init_from} loads GPT-2's architecture, which has no {', '.join(lacking)} "
             f"-- drop those settings")
    if init_from in GPT2_NAMES:
        return 'pretrained', init_from
    if os.path.isfile(init_from):
        return 'checkpoint', init_from
    if os.path.isfile(os.path.join(init_from, 'ckpt.pt')):
        return 'checkpoint', os.path.join(init_from, 'ckpt.pt')
    if any(os.path.isfile(os.path.join(init_from, f)) for f in ('model.safetensors', 'pytorch_model.bin')):
        return 'pretrained', init_from
    choices = "'scratch' (a new model), " + INIT_CHOICES if training is not None else INIT_CHOICES
    fail(f"error: init_from='{init_from}' is not {choices}")


def folder_kind(folder):
    """What a folder holds, for the tools that would write into it: 'run' (a ckpt.pt, or a run's log.jsonl or
    config.json), 'export' (a config.json of transformers, as export.py and save_pretrained write), 'empty',
    'other', or 'missing'."""
    if not os.path.isdir(folder):
        return 'missing' if not os.path.exists(folder) else 'other'
    names = set(os.listdir(folder))
    if not names:
        return 'empty'
    try:
        with open(os.path.join(folder, 'config.json')) as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = None
    if 'ckpt.pt' in names or 'log.jsonl' in names or isinstance(config, dict) and 'settings' in config:
        return 'run'
    return 'export' if isinstance(config, dict) and 'model_type' in config else 'other'


def run_folder_problem(out_dir, new_run):
    """Why a run may not write into out_dir, or '': it holds a Hugging Face export (whose config.json a run would
    overwrite), or, for a new run, an earlier run's ckpt.pt."""
    if folder_kind(out_dir) == 'export':
        return (f"error: {out_dir} holds a Hugging Face export (its config.json), not a run, and a run there would "
                f"overwrite that config.json -- pass another --out_dir")
    return existing_run(out_dir) if new_run and os.path.isfile(os.path.join(out_dir, 'ckpt.pt')) else ''


def start_run_records(out_dir, config, previous_config, iter_num, resuming):
    """A run's first writes into out_dir, on its master process: the lock (lock_run_folder), log.jsonl
    (open_run_log) and config.json (record_settings). Returns (lock, run log, (iter, kind) of its last record, or
    None); a folder that cannot be written is one line."""
    try:
        lock = lock_run_folder(out_dir)
        run_log, last_logged = open_run_log(os.path.join(out_dir, 'log.jsonl'), iter_num if resuming else None)
        record_settings(os.path.join(out_dir, 'config.json'), config, previous_config, iter_num)
    except OSError as e:  # a read-only folder, a file in its place, a full disk
        fail(f"error: cannot write in out_dir {out_dir}: {e.strerror or e} -- {os_hint(e)}")
    return lock, run_log, last_logged and (last_logged['iter'], last_logged['kind'])


def lock_run_folder(out_dir):
    """Hold out_dir for this process's run until it ends: an exclusive lock on out_dir/.lock, which the kernel
    releases when the process ends, however it ends. A second run on the folder stops at once, in one line naming
    the holder. Holding it, removes what earlier runs killed mid-save left (their temporary files). Returns the
    lock's file descriptor, to keep open (None where there is no flock: Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    os.makedirs(out_dir, exist_ok=True)
    fd = os.open(os.path.join(out_dir, '.lock'), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors='replace').strip() or 'unknown'
        os.close(fd)
        raise SystemExit(f"error: another run (process {holder}) is training in {out_dir} -- wait for it to end, "
                         f"or pass another --out_dir")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    # the temporary files of this folder's runs killed mid-write (atomic_path's names): no one else writes here now
    for left in glob.glob(os.path.join(glob.escape(out_dir), '.*.tmp')):
        if re.fullmatch(r'\.(ckpt\.pt|log\.jsonl|config\.json)\.\w+\.tmp', os.path.basename(left)):
            os.remove(left)
    return fd


def existing_run(out_dir):
    """The one line that stops a new run pointed at a folder that holds a run's ckpt.pt: whose, and the ways on."""
    path = os.path.join(out_dir, 'ckpt.pt')
    checkpoint = peek_checkpoint(path)
    try:
        what = f"iteration {checkpoint['iter_num']:,}, best val loss {checkpoint['best_val_loss']:.4f}"
    except (KeyError, TypeError, ValueError):  # unreadable, or not ours: still not to be replaced by accident
        what = "a checkpoint that cannot be read"
    return (f"error: {out_dir} holds a run ({path}: {what}) that a new run would replace -- continue it with "
            f"--init_from=resume, start elsewhere with --out_dir=<another folder>, or replace it with --overwrite=True")


def peek_checkpoint(path):
    """A checkpoint's dict, mapped (only what is then looked at is read, however big the file), or {} if it cannot be
    read (load_checkpoint says why, where that matters)."""
    import torch
    try:
        checkpoint = torch.load(path, map_location='cpu', mmap=True, weights_only=True)
    except Exception:
        return {}
    return checkpoint if isinstance(checkpoint, dict) else {}


def load_checkpoint(path):
    """Load a checkpoint dict onto the CPU, safely (weights_only), or stop with a one-line error. One written by
    the original nanoGPT (no rng_states, scaler or mlp_act) is read as what it is: exact GELU, plain names."""
    import torch
    if not os.path.isfile(path):
        fail(f"error: no checkpoint at {path} -- train one first, or point out_dir at the folder "
             f"holding ckpt.pt")
    try:  # mapped: a tensor is read from the file when it is used, so no process holds a second copy of it all
        try:
            checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
        except RuntimeError as e:  # torch's legacy format (before torch 1.6) cannot be mapped: read it whole
            if 'mmap can only be used' not in str(e):
                raise
            checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled code: all mean "not a usable checkpoint"
        fail(f"error: {path} is not a readable checkpoint ({type(e).__name__}: {shorten(e, 120)}) -- it may "
             f"be truncated or corrupt; restore a copy or train again")
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
        fail(f"error: {path} is not a checkpoint written by train.py (missing {', '.join(missing)})")
    # compiled models' weights carry this prefix (nanoGPT's, and this project's older ones); nanoGPT without
    # flash attention also saved its causal mask as attn.bias
    checkpoint['model'] = {k.removeprefix('_orig_mod.'): v for k, v in checkpoint['model'].items()
                           if not k.endswith('.attn.bias')}
    checkpoint['best_val_loss'] = float(checkpoint['best_val_loss'])  # nanoGPT saved a tensor
    checkpoint['nanogpt'] = not any(k in checkpoint for k in ('rng_states', 'scaler')) and \
        'mlp_act' not in checkpoint['model_args']
    if checkpoint['nanogpt']:
        checkpoint['model_args'] = {**checkpoint['model_args'], 'mlp_act': 'gelu_exact'}  # nanoGPT's nn.GELU()
        checkpoint['optimizer'] = named_optimizer_state(checkpoint.get('optimizer'), checkpoint['model'])
    return checkpoint


def named_optimizer_state(state, model_state):
    """nanoGPT's AdamW state, whose tensors are numbered in its parameter order (matrices and embeddings
    first, then biases and norms), keyed by parameter name as train.py saves and loads it."""
    if not state:
        return None
    names = [k for k in model_state if k != 'lm_head.weight']  # the head is tied to wte: not a parameter of its own
    order = [n for n in names if model_state[n].dim() >= 2] + [n for n in names if model_state[n].dim() < 2]
    numbers = [i for group in state['param_groups'] for i in group['params']]
    if sorted(numbers) != list(range(len(order))):
        return None  # not the optimizer this model makes: train.py starts a fresh one
    return dict(state={order[i]: v for i, v in state['state'].items()},
                param_groups=[{**g, 'params': [order[i] for i in g['params']]} for g in state['param_groups']])


def model_from_checkpoint(checkpoint, dropout=None):
    """Rebuild the GPT stored in a checkpoint, in float32 on the CPU (with another dropout, for training)."""
    from model import GPT, GPTConfig
    model_args = checkpoint['model_args'] if dropout is None else {**checkpoint['model_args'], 'dropout': dropout}
    unknown = sorted(set(model_args) - {f.name for f in fields(GPTConfig)})
    if unknown:
        fail(f"error: the checkpoint has model option{'s' * (len(unknown) > 1)} {', '.join(unknown)}, "
             f"which this version of model.py does not know (a newer version wrote it?) -- update "
             f"this project")
    try:
        model = GPT(GPTConfig(**model_args))
        model.load_state_dict(checkpoint['model'])
    except (ValueError, TypeError, RuntimeError) as e:
        fail(f"error: the checkpoint's model_args do not fit its weights ({shorten(e, 150)}) -- it was "
             f"edited or damaged; use another checkpoint")
    return model


def model_type(folder):
    """config.json's model_type in a model folder ('gpt2', 'nanogpt', ...), or None."""
    try:
        with open(os.path.join(folder, 'config.json')) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config.get('model_type') if isinstance(config, dict) else None


def load_export(folder, dropout=None):
    """A folder export.py wrote for options GPT-2 lacks (config.json's model_type 'nanogpt'): model.py's GPT with
    its weights. A tied head is stored once, as transformers ties it; an older export, fine-tuned in transformers
    after it untied them, holds two: the model is then built untied, to give transformers' logits."""
    import torch
    from safetensors.torch import load_file
    from model import GPT, GPTConfig
    with open(os.path.join(folder, 'config.json')) as f:
        options = json.load(f)['gpt']
    weights = {k.removeprefix('gpt.'): v for k, v in load_file(os.path.join(folder, 'model.safetensors')).items()}
    wte = weights['transformer.wte.weight']
    head = weights.setdefault('lm_head.weight', wte)
    tied = options.get('tie_weights', True) and torch.equal(wte, head)
    model = GPT(GPTConfig(**{**options, 'tie_weights': tied, **({} if dropout is None else {'dropout': dropout})}))
    model.load_state_dict(weights)
    return model


def load_model(init_from, out_dir, dropout=None):
    """The one loader, for every script and every init_from but 'scratch' (see find_weights). Returns
    (model, tokenizer, dataset, checkpoint): the model in float32 on the CPU, the tokenizer of its data,
    the dataset it was trained on (None for GPT-2's weights) and the checkpoint dict (None for those)."""
    from model import GPT
    kind, path = find_weights(init_from, out_dir)
    if kind == 'pretrained':  # an export carries its tokenizer
        try:
            if model_type(path) == 'nanogpt':  # export.py's kind for options GPT-2 lacks: model.py's own
                model = load_export(path, dropout)
            else:
                model = GPT.from_pretrained(path, {} if dropout is None else dict(dropout=dropout))
            return model, Tokenizer.from_export(path), None, None
        except SystemExit as e:  # model.py stands alone in exports: its one-line errors go through fail here
            fail(e.code)
    checkpoint = load_checkpoint(path)
    if checkpoint['nanogpt'] and int(os.environ.get('RANK', 0)) == 0:  # said once, under torchrun too
        print(f"{path} was written by nanoGPT: loaded with its exact GELU (mlp_act='gelu_exact')")
    dataset = checkpoint['config'].get('dataset')
    tokenizer = Tokenizer.from_meta(dataset_meta(dataset, path)[0], dataset_folder(dataset, path) if dataset else None)
    return model_from_checkpoint(checkpoint, dropout), tokenizer, dataset, checkpoint


def check_architecture(model, asked, given, source, resuming):
    """Weights fix the architecture: a setting given (on the command line or in a config file) that disagrees
    with the loaded model stops with one line, except a shorter block_size for a new run, which crops it."""
    for k, asks in asked.items():
        has = getattr(model.config, k)
        if k in ('vocab_size', 'dropout', 'zero_init_proj') or k not in given or has == asks:
            continue
        if k == 'block_size' and asks < has and not resuming:
            model.crop_block_size(asks)  # e.g. finetuning GPT-2 with a shorter context
        else:
            hint = " (if the run was started with it)" if resuming else ""
            fail(f"error: {source} has {k}={has!r} but this run asks for {k}={asks!r} -- drop that "
                 f"setting, or pass --{k}={has!r}{hint}")


def rng_states(sampler, device_type='cpu'):
    """Everything random that decides this process's future: dropout (on the CPU, and on the run's GPU or MPS), the
    sampler, numpy, python. Another device's generator is left alone: a CPU run never creates a CUDA context."""
    import torch
    state = dict(torch=torch.get_rng_state(), sampler=sampler.get_state(), python=random.getstate())
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    # as plain types and tensors, which torch.load(weights_only=True) accepts
    state['numpy'] = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    if device_type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state()  # the current GPU's: setup made it this process's
    if device_type == 'mps':  # dropout on MPS draws from its own generator
        state['mps'] = torch.mps.get_rng_state()
    return state


def restore_rng_states(states, rank, world_size, sampler, seed, iter_num, device_type='cpu', verbose=True):
    """Put back this process's random states from a checkpoint's list of every process's. Says so when that
    cannot be exact: another number of processes, or a nanoGPT checkpoint, which has none."""
    import torch
    if not states:
        sampler.manual_seed(seed + iter_num)
        torch.manual_seed(seed + rank + iter_num)
        if verbose:
            print("note: resuming a checkpoint written by nanoGPT: a fresh loss scaler and newly seeded random state, "
                  "so not bit-exact")
        return
    state = states[rank if len(states) == world_size else 0]
    torch.set_rng_state(state['torch'])
    sampler.set_state(state['sampler'])
    random.setstate(state['python'])
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if device_type in ('cuda', 'mps') and device_type in state:
        getattr(torch, device_type).set_rng_state(state[device_type])
    if len(states) != world_size:  # the data stream is shared by all, so it carries over; dropout's streams cannot
        torch.manual_seed(seed + rank + iter_num)
        if verbose:
            print(f"note: resuming {len(states)} processes' run with {world_size}: same data order, new dropout "
                  f"masks, so not bit-identical")


def loss_scaler(device_type, dtype, state=None, verbose=True):
    """torch's GradScaler, which scales float16 losses and does nothing for the other dtypes. A resumed run takes the
    checkpoint's scale if it saved one; one saved in bf16 or float32 (or by nanoGPT) has none: the scale starts anew."""
    import torch
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')
    if state:
        scaler.load_state_dict(state)
    elif state is not None and scaler.is_enabled() and verbose:
        print(f"note: the checkpoint holds no float16 loss scale; it starts anew at {scaler.get_scale():.0f}")
    return scaler


def read_run_log(path):
    """Yield the records of a log.jsonl, skipping a line cut short by a crash."""
    with open(path, encoding='utf-8', errors='replace') as f:  # a damaged (binary) line is skipped, not an error
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and 'iter' in record and 'kind' in record:
                yield record


def write_record(run_log, wandb_run, it, kind, train_loss, val_loss=None, lr=None, grad_norm=None,
                 tokens_per_sec=None, mfu=None, elapsed=0.0, train_time=0.0, val_bpb=None):
    """One record of log.jsonl (line-buffered: a crash leaves a valid log), and its numbers to wandb;
    mfu comes as a fraction and is logged in percent. elapsed: the run's seconds; train_time: of them,
    the seconds of training steps (what time_budget counts); val_bpb: val bits per byte, if known."""
    numbers = dict(train_loss=train_loss, val_loss=val_loss, val_bpb=val_bpb, lr=lr, grad_norm=grad_norm, tokens_per_sec=tokens_per_sec,
                   mfu=None if mfu is None else mfu * 100, elapsed=round(elapsed, 3), train_time=round(train_time, 3))
    if run_log:
        run_log.write(json.dumps({'iter': it, 'kind': kind, **numbers}) + '\n')
    if wandb_run:
        wandb_run.log({'iter': it, **{f'{kind}/{k}': v for k, v in numbers.items() if v is not None}})


def open_run_log(path, resume_iter=None):
    """Start the run log afresh or, resuming from a checkpoint at resume_iter, keep only what came before it
    (the steps after it will be redone), rewritten atomically. Returns the file, open for appending one
    line-buffered record at a time, and the last record kept (None if none)."""
    last = None
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, 'w') as out:
        if resume_iter is not None and os.path.exists(path):
            for record in read_run_log(path):
                # a train record's iter is the step it took; evaluations at resume_iter saw the checkpoint's weights
                if record['iter'] < resume_iter or (record['kind'] == 'eval' and record['iter'] == resume_iter):
                    out.write(json.dumps(record) + '\n')
                    last = record
    return open(path, 'a', buffering=1), last


def record_settings(path, settings, previous=None, iter_num=0):
    """Write out_dir/config.json: the run's settings as it resolved them, human-readable. A resumed run
    (previous: the settings saved in its checkpoint) keeps the record of earlier resumes and adds what it
    changed, at which iteration, and says so."""
    record, changed = {'settings': settings, 'resumes': []}, {}
    if previous is not None:
        try:
            with open(path) as f:
                record['resumes'] = json.load(f)['resumes']
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a run from before config.json existed, or a damaged file: the history starts here
        changed = {k: (previous[k], v) for k, v in settings.items() if k in previous and previous[k] != v
                   and k != 'init_from' and previous[k] != 'auto'}  # older runs saved dtype='auto' unresolved
        record['resumes'].append({'iter': iter_num, 'changed': {k: list(v) for k, v in changed.items()}})
        if changed:
            print("resumed with other settings: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, 'w') as f:
        json.dump(record, f, indent=1)


def start_wandb(project, name, config, run_id=None):
    """A wandb run, continuing run_id if given; logged offline when it cannot log online (no key, no network)."""
    import wandb
    args = dict(project=project, name=name, config=config, id=run_id, resume='allow')
    try:
        run = wandb.init(**args)
    except Exception as e:  # keep the training run going and its metrics on disk
        print(f"wandb: cannot log online ({type(e).__name__}); logging offline instead, sync later with `wandb sync`")
        run = wandb.init(**args, mode='offline')
    run.define_metric('*', step_metric='iter')
    return run


def checkpoint_reason(improved, always_save, final, new_state, saved_this_run, resuming):
    """Why to write ckpt.pt after an evaluation, or '' not to. Only new weights are saved; a run that never
    improves still leaves its final model, unless it resumed: then the checkpoint it came from is kept."""
    if not new_state or not (improved or always_save or final and not saved_this_run and not resuming):
        return ''
    return 'val loss improved' if improved else 'always_save_checkpoint' if always_save else 'final; never improved'
