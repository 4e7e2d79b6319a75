"""
This project against the original nanoGPT, side by side on tiny Shakespeare: nanoGPT's CPU recipe run by
nanoGPT's own code, then this project's runs, round after round (interleaved, so a machine that slows down
slows both). Each run is a whole process timed from start to exit, start-up included; then every final
checkpoint gets the same independent val estimate (eval_batches fixed random batches of 12 x 64 tokens),
and the ratios to nanoGPT's time are printed:
  same       nanoGPT's command line, run by this project's train.py (same work, same loss: how much faster)
  fast       config/train_shakespeare_char_fast.py (time to val <= 1.88)
  fast_long  config/train_shakespeare_char_fast_long.py (the lowest loss in nanoGPT's time)
$ python data/shakespeare_char/prepare.py                 # the real tiny Shakespeare (needs the network once)
$ python bench_nanogpt.py --nanogpt_dir=../nanoGPT        # a clone of github.com/karpathy/nanoGPT
$ python bench_nanogpt.py --nanogpt_dir=../nanoGPT --dtype=float32 --rounds=3 --runs=fast
About 8 minutes a round on a 2-core CPU. Run nothing else meanwhile: two torch processes on a small machine
slow each other several times over (docs/guides/troubleshooting.md).
"""

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

from checkpoint import dataset_files, dataset_meta
from configurator import configure, require_positive

# -----------------------------------------------------------------------------
nanogpt_dir = ''  # a checkout of the original nanoGPT (train.py, model.py, configurator.py, config/)
runs = 'same,fast,fast_long'  # this project's runs after nanoGPT's in each round, comma-separated
rounds = 2  # each round runs nanoGPT, then each of runs; a run's ratio is to its own round's nanoGPT time
dtype = 'auto'  # this project's runs: 'float32' is what CPUs without AMX (bf16) compute in
eval_batches = 200  # the independent val estimate: this many fixed random batches of 12 x 64 val tokens
extra_config = ''  # a config file of settings for every training run, nanoGPT's too (max_iters = 20: a quick check)
# -----------------------------------------------------------------------------
configure(globals())
require_positive(globals(), 'rounds', 'eval_batches')
ROOT = os.path.dirname(os.path.abspath(__file__))
# nanoGPT's CPU recipe, as its README gives it
RECIPE = ['config/train_shakespeare_char.py', '--device=cpu', '--compile=False', '--eval_iters=20', '--log_interval=1',
          '--block_size=64', '--batch_size=12', '--n_layer=4', '--n_head=4', '--n_embd=128', '--max_iters=2000',
          '--lr_decay_iters=2000', '--dropout=0.0']
OURS = {'same': RECIPE, 'fast': ['config/train_shakespeare_char_fast.py'],
        'fast_long': ['config/train_shakespeare_char_fast_long.py']}
# the targets: (time-to-1.88 speed-up, fast_long's val loss in nanoGPT's time) per dtype
TARGETS = {'bfloat16': (5.0, 1.60), 'float32': (4.0, 1.65)}

ours = [r.strip() for r in runs.split(',') if r.strip()]
if not ours or set(ours) - set(OURS):
    sys.exit(f"error: runs must be some of {', '.join(OURS)}, comma-separated; got '{runs}'")
if not all(os.path.isfile(os.path.join(nanogpt_dir, f)) for f in ('train.py', 'model.py', 'configurator.py')):
    sys.exit(f"error: nanogpt_dir='{nanogpt_dir}' is not a nanoGPT checkout (train.py, model.py, configurator.py); "
             f"git clone https://github.com/karpathy/nanoGPT and pass --nanogpt_dir=<its folder>")
if extra_config and not os.path.isfile(extra_config):
    sys.exit(f"error: extra_config file '{extra_config}' not found")
extra = [os.path.abspath(extra_config)] if extra_config else []  # last, so that it wins; nanoGPT runs elsewhere
data = dataset_files('shakespeare_char')  # one line if data/shakespeare_char is not prepared
meta, meta_path = dataset_meta('shakespeare_char')
if meta['vocab_size'] != 65:
    print(f"note: data/shakespeare_char has {meta['vocab_size']} characters, not tiny Shakespeare's 65 (the offline "
          f"stand-in?): the losses do not compare with published ones")


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
        sys.exit(f"error: {' '.join(command[:2])} failed in {cwd or '.'}: {last}")
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


with tempfile.TemporaryDirectory() as work:
    reference = os.path.join(work, 'nanoGPT')  # a copy, with this project's prepared data: the same tokens
    shutil.copytree(nanogpt_dir, reference, ignore=shutil.ignore_patterns('.*', '__pycache__', 'out*', '*.bin',
                                                                          '*.pkl'))
    os.makedirs(os.path.join(reference, 'data', 'shakespeare_char'), exist_ok=True)
    for path in (data['train'][0], data['val'][0], meta_path):
        shutil.copy(path, os.path.join(reference, 'data', 'shakespeare_char'))
    results = {name: [] for name in ['nanoGPT', *ours]}  # (seconds, its last eval, independent val, ratio)
    computed = {}
    print(f"{cpu_name()}, {os.cpu_count()} cores, torch {importlib.metadata.version('torch')}; tiny Shakespeare"
          f"{' (its offline stand-in)' if meta['vocab_size'] != 65 else ''}; val estimate: {eval_batches} x 12 x 64 "
          f"tokens")
    print(f"{'round':>5}  {'run':<10} {'seconds':>8} {'x nanoGPT':>9} {'its val':>8} {'indep. val':>10}")
    for r in range(1, rounds + 1):
        for name in ['nanoGPT', *ours]:
            out = os.path.join(work, f'{name}-{r}')
            if name == 'nanoGPT':
                seconds, stdout = timed(['train.py', *RECIPE, f'--out_dir={out}', *extra], reference)
            else:
                seconds, stdout = timed([os.path.join(ROOT, 'train.py'), *OURS[name], f'--dtype={dtype}',
                                         f'--out_dir={out}', *extra], None)
                computed[name] = re.search(r'computed in (\w+) on', stdout)[1]
            ratio = 1.0 if name == 'nanoGPT' else results['nanoGPT'][-1][0] / seconds
            results[name].append((seconds, last_eval(stdout), independent_val(os.path.join(out, 'ckpt.pt')), ratio))
            shutil.rmtree(out)
            print(f"{r:>5}  {name:<10} {seconds:>8.1f} {ratio:>8.2f}x {results[name][-1][1]:>8.4f} "
                  f"{results[name][-1][2]:>10.4f}", flush=True)


def summary(name):
    """Mean seconds, mean ratio to nanoGPT, the worst round's ratio, and the mean independent val."""
    seconds, _, vals, ratios = zip(*results[name])
    return sum(seconds) / len(seconds), sum(ratios) / len(ratios), min(ratios), sum(vals) / len(vals)


base_seconds, _, _, base_val = summary('nanoGPT')
print(f"nanoGPT's recipe: {base_seconds:.1f} s, val {base_val:.4f} (mean of {rounds} rounds)")
for name in ours:
    seconds, ratio, worst, val = summary(name)
    speed_up, long_loss = TARGETS.get(computed[name], (None, None))
    target = {'same': "target 1.5x at the same loss",
              'fast': f"target val <= 1.88 at {speed_up}x" if speed_up else "",
              'fast_long': f"target val <= {long_loss} at >= 1.00x" if long_loss else ""}[name]
    print(f"{name} ({computed[name]}): {seconds:.1f} s, {ratio:.2f}x nanoGPT's speed (worst round {worst:.2f}x), "
          f"val {val:.4f} ({val - base_val:+.4f}); {target}")
