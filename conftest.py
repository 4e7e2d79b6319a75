"""
Shared by quick_test.py and test_integration.py: the `gpu` marker, a script run in the test's own process
(run_script, and the script_here fixture), a folder's fingerprint (tree_digest), the characters of a character
dataset (CHARS), and a CUDA machine simulated on a CPU build of torch (the fake_cuda fixture).

The simulation patches only what torch's Python layer calls into its C++ core (torch._C's CUDA entry points,
and what torch._C._cuda_init installs), so torch's own Python code runs unchanged above it: argument checks
(set_device('cuda') fails as on a real GPU), lazy initialisation, seeding, is_bf16_supported,
get_device_properties, the RNG state functions. A tensor op on such a device fails as the CPU build fails it:
"Could not run '...' with arguments from the 'CUDA' backend", which is where a simulated start-up ends.
"""

import contextlib
import hashlib
import os
import runpy
import signal
import subprocess
import sys
import types

import pytest
import torch
import torch.cuda

# (backend, op) pairs of torch's fp32 precision settings, which torch.backends.cuda.matmul.allow_tf32 and
# torch.backends.cudnn.allow_tf32 write to (and float32_matmul_precision with them)
FP32_PRECISION_KEYS = [('generic', 'all'), ('cuda', 'matmul'), ('cuda', 'conv'), ('cuda', 'rnn'), ('mkldnn', 'all'),
                       ('mkldnn', 'matmul'), ('mkldnn', 'conv'), ('mkldnn', 'rnn')]
GPU_NAMES = {(7, 0): 'Tesla V100-SXM2-16GB', (7, 5): 'Tesla T4', (8, 0): 'NVIDIA A100-SXM4-80GB',
             (8, 6): 'NVIDIA GeForce RTX 3090', (8, 9): 'NVIDIA L4', (9, 0): 'NVIDIA H100 80GB HBM3'}
ROOT = os.path.dirname(os.path.abspath(__file__))
CHARS = ''.join(chr(c) for c in range(32, 97))  # 65 characters, ASCII only: a character dataset's vocabulary


def pytest_configure(config):
    config.addinivalue_line('markers', "gpu: needs a CUDA GPU; python -m pytest -m gpu quick_test.py "
                                       "test_integration.py runs them all, and they skip where there is none")


def run_script(monkeypatch, script, *args, root=ROOT):
    """root/script run in this process, as `python script args` would run it: returns its globals, and what it
    raises (SystemExit for an error) reaches the caller. The Ctrl-C and SIGTERM handlers it installs are put back."""
    monkeypatch.setattr(sys, 'argv', [script, *args])
    monkeypatch.setattr(sys, 'path', list(sys.path))  # the data/ scripts add their folders to it
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return runpy.run_path(os.path.join(root, script), run_name='__main__')
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


@pytest.fixture
def script_here(monkeypatch, capsys):
    """script_here(cwd, script, *args, env=None, root=ROOT): run_script in folder cwd with env added to the
    environment, answered as a subprocess would be: a CompletedProcess whose returncode is python's (SystemExit's
    code; 1 for a message, which goes to stderr), with the stdout and stderr it printed. For the runs whose
    process itself is not under test: no signals, no torchrun, no limits of the process."""
    def run_here(cwd, script, *args, env=None, root=ROOT):
        capsys.readouterr()  # what came before is not this run's
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            code = None
            try:
                run_script(patch, script, *args, root=root)
            except SystemExit as e:
                code = e.code
            if not isinstance(code, (int, type(None))):  # as python ends on SystemExit('error: ...')
                print(code, file=sys.stderr)
                code = 1
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess([script, *args], code or 0, out, err)
    return run_here


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree_digest(folder, skip=()):
    """Relative path -> sha256 of every file under folder but those in skip (None if there is no such folder),
    to prove that a failed run changed nothing on disk."""
    if not os.path.isdir(folder):
        return None
    paths = {os.path.relpath(os.path.join(d, n), folder): os.path.join(d, n) for d, _, names in os.walk(folder)
             for n in names if '__pycache__' not in d}
    return {name: sha256(path) for name, path in sorted(paths.items()) if name not in skip}


def real_gpus():
    """CUDA GPUs this machine really has (0 on a CPU build or without a driver)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextlib.contextmanager
def simulated_cuda(capability=(8, 0), count=2, name=None):
    """count GPUs of this compute capability (and name: by default a GPU of that capability), as torch's C++ core
    would report them. Everything it touches in torch is put back on exit, however the block ends."""
    if hasattr(torch._C, '_cuda_getDeviceCount') and not getattr(torch._C._cuda_getDeviceCount, 'simulated', False):
        pytest.skip("a CUDA build of torch: its own C++ core runs, nothing is simulated")
    cuda, current = torch.cuda, [0]
    props = types.SimpleNamespace(name=name or GPU_NAMES.get(tuple(capability), 'NVIDIA Simulated GPU'),
                                  major=capability[0], minor=capability[1], total_memory=80 * 2 ** 30,
                                  multi_processor_count=132)

    def valid(device):
        if not 0 <= device < count:
            raise RuntimeError("CUDA error: invalid device ordinal")  # what cudaSetDevice reports
        return device

    def get_device_count():
        return count

    def cuda_init():  # torch/csrc/cuda/Module.cpp, THCPModule_initExtension: one generator per GPU, the properties
        cuda.default_generators = tuple(torch.Generator().manual_seed(67280421310721) for _ in range(count))
        cuda._get_device_properties = lambda device: props if valid(device) == device else None

    def set_device(device):  # THCPModule_setDevice_wrap: lazy init first, then cudaSetDevice
        cuda._lazy_init()
        current[0] = valid(device)

    def get_device():
        cuda._lazy_init()
        return current[0]

    def exchange_device(device):
        if device < 0:
            return -1
        previous, current[0] = current[0], valid(device)
        return previous

    get_device_count.simulated = True
    entry_points = dict(_cuda_getDeviceCount=get_device_count, _cuda_init=cuda_init, _cuda_setDevice=set_device,
                        _cuda_getDevice=get_device, _cuda_exchangeDevice=exchange_device,
                        _cuda_maybeExchangeDevice=exchange_device, _cuda_getCurrentRawStream=lambda device: 0,
                        # torch.accelerator (which torch.distributed asks): the build's accelerator, and its device
                        _accelerator_getAccelerator=lambda: torch.device('cuda'),
                        _accelerator_getDeviceIndex=get_device, _accelerator_setDeviceIndex=set_device)
    module_state = {k: getattr(cuda, k) for k in ('_initialized', '_cached_device_count', '_cudart',
                                                  'default_generators', '_exchange_device', '_maybe_exchange_device')}
    queued, seeds = list(cuda._queued_calls), dict(vars(cuda._lazy_seed_tracker))
    precision = (torch.get_float32_matmul_precision(),
                 [torch._C._get_fp32_precision_getter(*key) for key in FP32_PRECISION_KEYS])
    c_state = {k: getattr(torch._C, k) for k in entry_points if hasattr(torch._C, k)}  # the accelerator's exist
    for key, function in entry_points.items():
        setattr(torch._C, key, function)
    cuda._initialized, cuda._cached_device_count = False, None
    cuda._cudart = types.SimpleNamespace()  # _lazy_init only checks that the runtime module loaded
    cuda._exchange_device, cuda._maybe_exchange_device = exchange_device, exchange_device  # bound at import
    cuda._check_bf16_tensor_supported.cache_clear()
    try:
        yield props
    finally:
        for key in entry_points:
            if key in c_state:
                setattr(torch._C, key, c_state[key])
            else:
                delattr(torch._C, key)
        for key, value in module_state.items():
            setattr(cuda, key, value)
        if hasattr(cuda, '_get_device_properties'):
            del cuda._get_device_properties
        cuda._queued_calls[:] = queued
        vars(cuda._lazy_seed_tracker).update(seeds)
        cuda._check_bf16_tensor_supported.cache_clear()
        torch.set_float32_matmul_precision(precision[0])  # then the finer settings it also wrote, as they were
        for key, value in zip(FP32_PRECISION_KEYS, precision[1]):
            torch._C._set_fp32_precision_setter(*key, value)


@pytest.fixture
def fake_cuda():
    """fake_cuda(capability=(8, 0), count=2, name=None): from then on, until the test ends or fake_cuda is called
    again, torch sees that machine (see simulated_cuda). Returns the GPUs' properties."""
    stack = contextlib.ExitStack()

    def simulate(capability=(8, 0), count=2, name=None):
        stack.close()
        return stack.enter_context(simulated_cuda(capability, count, name))

    with stack:
        yield simulate
