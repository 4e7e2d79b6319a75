"""
Reading and writing ckpt.pt, and loading a model (with its dataset's meta.pkl) from one or from GPT-2;
shared by train.py, sample.py, export.py, hellaswag.py and the tests.
Writes are atomic: a kill or a full disk at any moment leaves the previous ckpt.pt loadable.
Reads turn a missing, truncated or foreign file into a one-line error instead of a traceback.
Also the run's records: the run log, out_dir/log.jsonl, that train.py appends to and plot.py reads,
and its wandb run.
"""

import json
import os
import pickle
import random

import numpy as np
import torch

from model import GPT, GPTConfig

REQUIRED_KEYS = ('model', 'model_args', 'iter_num', 'best_val_loss', 'config')


def save_checkpoint(checkpoint, path):
    """Write to a temporary file beside path, fsync it, then rename it over path in one step."""
    tmp = path + '.tmp'
    try:
        with open(tmp, 'wb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one
        if hasattr(os, 'O_DIRECTORY'):  # make the rename itself durable across a power cut
            fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except (OSError, RuntimeError) as e:  # torch.save reports some failed writes as RuntimeError
        try:
            os.remove(tmp)
        except OSError:
            pass
        old = 'the previous checkpoint is intact' if os.path.exists(path) else 'no checkpoint was written'
        reason = getattr(e, 'strerror', None) or str(e).strip().splitlines()[0][:120]
        raise SystemExit(f"error: could not write checkpoint {path}: {reason}; {old} "
                         f"-- free disk space or fix out_dir, then resume")


def load_checkpoint(path):
    """Load a checkpoint dict onto the CPU, safely (weights_only), or stop with a one-line error."""
    if not os.path.isfile(path):
        raise SystemExit(f"error: no checkpoint at {path} -- train one first, or point out_dir at the folder "
                         f"holding ckpt.pt")
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled code: all mean "not a usable checkpoint"
        first_line = (str(e).strip().splitlines() or [''])[0][:120]
        raise SystemExit(f"error: {path} is not a readable checkpoint ({type(e).__name__}: {first_line}) -- it may "
                         f"be truncated or corrupt; restore a copy or train again")
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
        raise SystemExit(f"error: {path} is not a checkpoint written by train.py (missing {', '.join(missing)})")
    return checkpoint


def model_from_checkpoint(checkpoint):
    """Rebuild the GPT stored in a checkpoint, in float32 on the CPU."""
    model = GPT(GPTConfig(**checkpoint['model_args']))
    # checkpoints of compiled models from older code carry this prefix; strip it
    state_dict = {k.removeprefix('_orig_mod.'): v for k, v in checkpoint['model'].items()}
    model.load_state_dict(state_dict)
    return model


def load_model(init_from, out_dir):
    """(model, dataset) to sample from or evaluate: init_from='resume' rebuilds out_dir/ckpt.pt and names the
    dataset it was trained on; anything else ('gpt2'...'gpt2-xl', a save_pretrained folder) is GPT-2's, dataset None."""
    if init_from == 'resume':
        checkpoint = load_checkpoint(os.path.join(out_dir, 'ckpt.pt'))
        return model_from_checkpoint(checkpoint), checkpoint['config'].get('dataset')
    return GPT.from_pretrained(init_from), None


def dataset_meta(dataset):
    """(meta, path) of data/<dataset>/meta.pkl: vocab_size, and stoi/itos for character-level data.
    meta is None when there is no such file (GPT-2 BPE data needs none)."""
    path = os.path.join('data', dataset, 'meta.pkl') if dataset else None
    if path is None or not os.path.exists(path):
        return None, path
    try:
        with open(path, 'rb') as f:
            return pickle.load(f), path
    except Exception as e:  # a truncated or foreign file
        raise SystemExit(f"error: cannot read {path} ({type(e).__name__}) -- run python data/{dataset}/prepare.py again")


def rng_states(sampler):
    """Everything random that decides this process's future: dropout, the data sampler, numpy, python."""
    state = dict(torch=torch.get_rng_state(), sampler=sampler.get_state(), python=random.getstate())
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    # as plain types and tensors, which torch.load(weights_only=True) accepts
    state['numpy'] = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def restore_rng_states(state, sampler):
    torch.set_rng_state(state['torch'])
    sampler.set_state(state['sampler'])
    random.setstate(state['python'])
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if torch.cuda.is_available() and 'cuda' in state:
        torch.cuda.set_rng_state(state['cuda'])


def read_run_log(path):
    """Yield the records of a log.jsonl, skipping a line cut short by a crash."""
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and 'iter' in record and 'kind' in record:
                yield record


def open_run_log(path, resume_iter=None):
    """Start the run log afresh or, resuming from a checkpoint at resume_iter, keep only what came before it
    (the steps after it will be redone), rewritten atomically. Returns the file, open for appending one
    line-buffered record at a time, and the last record kept (None if none)."""
    tmp, last = path + '.tmp', None
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(tmp, 'w') as out:
        if resume_iter is not None and os.path.exists(path):
            for record in read_run_log(path):
                # a train record's iter is the step it took; evaluations at resume_iter saw the checkpoint's weights
                if record['iter'] < resume_iter or (record['kind'] == 'eval' and record['iter'] == resume_iter):
                    out.write(json.dumps(record) + '\n')
                    last = record
    os.replace(tmp, path)
    return open(path, 'a', buffering=1), last


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
