"""What the docs checkers know of the project itself: its files (as .gitignore leaves them, with or without
git), a copy of them to run commands in, and the settings each script takes, read as configure() reads them.
Shared by check_docs.py and check_guides.py."""

import ast
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import pathspec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from configurator import CONFIG_TYPES, configure  # noqa: E402  (the rules the scripts apply)

RUNNABLE_ENV = dict(NANOGPT_OFFLINE='1', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', WANDB_MODE='disabled',
                    OMP_NUM_THREADS='1')  # on cores other processes are busy with, 2 threads can be 40x slower than 1


def relative(path):
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def lookup(name, *folders):
    return next((os.path.join(f, name) for f in folders if os.path.exists(os.path.join(f, name))), None)


@functools.lru_cache(maxsize=None)
def parse_python(path):
    with open(path, encoding='utf-8') as f:
        return ast.parse(f.read(), filename=path)


@functools.lru_cache(maxsize=None)
def ignore_rules(root):
    """root/.gitignore's patterns, read as git reads them; no git needed (a downloaded zip has no .git)."""
    path = os.path.join(root, '.gitignore')
    return pathspec.GitIgnoreSpec.from_lines(open(path, encoding='utf-8') if os.path.exists(path) else [])


def is_ignored(relpath, root):
    """Whether .gitignore lists relpath, which need not exist: data, checkpoints, outputs."""
    return ignore_rules(root).match_file(relpath)


@functools.lru_cache(maxsize=None)
def project_files(root):
    """The project's files relative to root: every file but .git's and what .gitignore lists."""
    files = []
    for folder, subfolders, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        subfolders[:] = [d for d in subfolders if d != '.git' and not is_ignored(os.path.join(rel, d, ''), root)]
        files += [r for r in (os.path.normpath(os.path.join(rel, n)) for n in names) if not is_ignored(r, root)]
    return files


def assign(node, settings):
    """[(name, value)] of what an assignment sets, also recorded in settings if configure() takes it for a setting."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
        and node.value else []
    names = [t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith('_')]
    value = ''  # unless computed from literals and settings: default_device() gives any text
    with contextlib.suppress(Exception):
        value = eval(compile(ast.Expression(node.value), '<default>', 'eval'), {'__builtins__': {}}, dict(settings))
    settings.update({name: value for name in names if type(value) in CONFIG_TYPES})  # not None, a tuple, a dict
    return [(name, value) for name in names]


@functools.lru_cache(maxsize=None)
def script_settings(path):
    """A script's settings {name: default}: what it assigns before configure(globals()); {} if it never calls it."""
    settings = {}
    for node in parse_python(path).body:
        calls = {getattr(n.func, 'id', ''): n for n in ast.walk(node) if isinstance(n, ast.Call)}
        if 'configure' in calls:
            return settings
        assign(node, settings)
    return {}


def setting_problem(script, settings, argument, root):
    """(kind, message) if the script's configure(globals()) refuses an argument (--key=value, a config file)."""
    try:
        with contextlib.chdir(root), contextlib.redirect_stdout(None):  # print() then writes nothing
            configure({'__file__': script, **settings}, [argument])
    except SystemExit as e:
        key, error = argument[2:].partition('=')[0], str(e.code).removeprefix('error: ')
        if not e.code or not argument.startswith('--'):
            return ('config', f"{argument}: {error}") if e.code else None  # a config file, or --help
        if not re.fullmatch(r'--[^=]+=[^=]*', argument):
            return 'command', error  # --key without a value
        if key not in settings:
            return 'setting', f"{script} has no setting '{key}': {error}"
        kind = type(settings[key]).__name__
        return 'type', f"{argument}: {script}'s {key} is {'an' if kind == 'int' else 'a'} {kind} ({error})"
    return None


@contextlib.contextmanager
def project_copy(root):
    """A temporary copy of the project's files (project_files: no .git, datasets or checkpoints), then deleted."""
    with tempfile.TemporaryDirectory(prefix='check_docs_') as copy:
        for rel in project_files(root):
            os.makedirs(os.path.dirname(os.path.join(copy, rel)), exist_ok=True)
            shutil.copy2(os.path.join(root, rel), os.path.join(copy, rel))
        yield copy


def run_shell(script, cwd, timeout):
    """Run script with bash -e -o pipefail, offline; None if it succeeds, else why it failed and its last line."""
    proc = subprocess.Popen(['bash', '-e', '-o', 'pipefail', '-c', script], cwd=cwd, env=os.environ | RUNNABLE_ENV,
                            stdin=subprocess.DEVNULL, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        output, why = proc.communicate(timeout=timeout)[0], f"exited with status {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group, so its children stop too
        output, why = proc.communicate()[0], f"timed out after {timeout} s"
    return f"{why}: {last_error_line(output)}" if proc.returncode else None


def last_error_line(output):
    """The line of output that says what failed: the last 'error: ...' or Python exception line of any process
    (torchrun ends with a banner of its own after its worker's), else the last line that is not a rule."""
    lines = [re.sub(r'^\[rank\d+\]:\s*', '', t.strip()) for t in output.splitlines() if t.strip('=-* \t')]
    ours = [t for t in lines if t.startswith('error: ')]
    raised = [t for t in lines if re.match(r'[\w.]*(Error|Exception)\b', t) and 'ChildFailedError' not in t]
    return (ours or raised or lines or ['(no output)'])[-1]


