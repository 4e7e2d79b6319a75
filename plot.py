"""
Loss curves of one or more training runs, drawn from the log.jsonl that train.py writes into each out_dir:
$ python plot.py --out_dirs=out-shakespeare-char
$ python plot.py --out_dirs="['out-baseline', 'out-fast']" --out_file=docs/images/loss_curves.png
Left: train and val loss against iterations; right: the same against training time. One colour per run.
"""

import os

import matplotlib

matplotlib.use('Agg')  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

from checkpoint import read_run_log  # noqa: E402
from configurator import configure, fail  # noqa: E402

# -----------------------------------------------------------------------------
out_dirs = ['out']  # the run folders to compare: --out_dirs=out-a or --out_dirs="['out-a', 'out-b']"
out_file = 'loss.png'  # the image to write
title = ''  # above both plots, if given
width = 10.0  # inches; the image is width x height x dpi pixels
height = 4.0  # inches
dpi = 100  # pixels per inch
# -----------------------------------------------------------------------------
configure(globals())
# -----------------------------------------------------------------------------
if not out_dirs:
    fail("error: no runs to plot -- pass --out_dirs=<run folder> or --out_dirs=\"['out-a', 'out-b']\"")
if not out_file.endswith('.png'):
    fail(f"error: out_file must be a .png file, got '{out_file}'")

runs = []
for folder in out_dirs:
    path = os.path.join(folder, 'log.jsonl')
    if not os.path.isfile(path):
        fail(f"error: {path} not found -- train.py writes it into out_dir; check the folder or train first")
    records = list(read_run_log(path))
    train = [r for r in records if r['kind'] == 'train' and r.get('train_loss') is not None]
    evals = [r for r in records if r['kind'] == 'eval' and r.get('val_loss') is not None]
    if not train and not evals:
        fail(f"error: {path} holds no losses yet -- let the run log a step first")
    runs.append((os.path.basename(os.path.normpath(folder)), train, evals))

fig, (by_iter, by_time) = plt.subplots(1, 2, figsize=(width, height), dpi=dpi)
for colour, (name, train, evals) in enumerate(runs):
    for ax, x in ((by_iter, 'iter'), (by_time, 'elapsed')):
        if train:  # one loss per log_interval steps, each on one batch: noisy, so drawn thin
            ax.plot([r[x] for r in train], [r['train_loss'] for r in train], color=f'C{colour}', lw=0.8, alpha=0.5,
                    label=f'{name} train')
        if evals:
            ax.plot([r[x] for r in evals], [r['val_loss'] for r in evals], color=f'C{colour}', lw=2, marker='o',
                    ms=3, label=f'{name} val')
    last = max(train + evals, key=lambda r: r['elapsed'])
    best = f", best val loss {min(r['val_loss'] for r in evals):.4f}" if evals else ""
    print(f"{name}: {len(train)} train and {len(evals)} val points up to iter {last['iter']}, "
          f"{last['elapsed']:.1f}s{best}")
by_iter.set_xlabel('iteration')
by_time.set_xlabel('training time (s)')
for ax in (by_iter, by_time):
    ax.set_ylabel('loss')
    ax.grid(alpha=0.3)
by_iter.legend(fontsize='small')
if title:
    fig.suptitle(title)
fig.tight_layout()

os.makedirs(os.path.dirname(out_file) or '.', exist_ok=True)
tmp = out_file + '.tmp'  # an existing image is replaced in one step, never left half-written
fig.savefig(tmp, format='png', dpi=dpi)
os.replace(tmp, out_file)
print(f"wrote {out_file}: {round(width * dpi)}x{round(height * dpi)} pixels, "
      f"{len(by_iter.lines)} curves against iterations, {len(by_time.lines)} against time")
