"""
Reading and writing ckpt.pt, shared by train.py, sample.py and the tests.
Writes are atomic: a kill or a full disk at any moment leaves the previous ckpt.pt loadable.
Reads turn a missing, truncated or foreign file into a one-line error instead of a traceback.
"""

import os
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
