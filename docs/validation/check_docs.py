"""
Check the docs against the code, so that a renamed setting, a moved file or a reworded error message
shows up as a stale line instead of silently misleading a reader. The rules are in README.md next
to this file. Run from anywhere:
$ python docs/validation/check_docs.py                  # README.md, docs/**/*.md, data/*/readme.md
$ python docs/validation/check_docs.py docs/guides      # some files or folders only
$ python docs/validation/check_docs.py --no-run         # skip the runnable blocks (static checks only)
It prints one line per stale item, `path:line: kind: what`, then a summary, and exits 1 if any.
From Python: check(paths) returns the problems as (path, line, kind, message) tuples.
"""

import ast
import builtins
import collections
import fnmatch
import functools
import importlib
import keyword
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from configurator import CONFIG_TYPES, coerce, unknown_key_error  # noqa: E402  (the rules the scripts apply)

# -----------------------------------------------------------------------------
RUNNABLE_TIMEOUT = 120  # seconds a runnable block may take, unless it says <!-- runnable timeout=N -->
RUNNABLE_ENV = dict(NANOGPT_OFFLINE='1', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', WANDB_MODE='disabled',
                    OMP_NUM_THREADS='1')  # on cores other processes are busy with, 2 threads can be 40x slower than 1
COMMAND_LANGUAGES = ('', 'sh', 'bash', 'shell', 'console')  # fenced blocks whose commands are checked
PATH_EXTENSIONS = ('.py', '.md', '.sh', '.txt', '.pkl', '.bin', '.json', '.png')  # a span ending so is a path
FILE_EXTENSIONS = PATH_EXTENSIONS + ('.pt', '.tmp', '.parquet', '.jsonl', '.csv', '.toml', '.yaml', '.log')
OTHER_ARGUMENTS = ('docs/validation/check_docs.py',)  # scripts that take arguments of their own, not --key=value
IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\(\))?$')
ANY = '.*?'  # what an f-string's {...} becomes in the pattern of an error message
# -----------------------------------------------------------------------------


def problem(path, line, kind, message):
    return (relative(path), line, kind, message)


def relative(path):
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def doc_files(paths, root):
    """The markdown files to check: those named (folders searched), or the project's docs."""
    if not paths:
        paths = [os.path.join(root, 'README.md'), os.path.join(root, 'docs')]
        paths += sorted(os.path.join(root, 'data', d) for d in os.listdir(os.path.join(root, 'data'))
                        if os.path.isdir(os.path.join(root, 'data', d)))
    files = []
    for path in paths:
        if os.path.isdir(path):
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
                files += [os.path.join(folder, n) for n in sorted(names) if n.lower().endswith('.md')]
        else:
            files.append(path)
    return [os.path.abspath(f) for f in files]


# -----------------------------------------------------------------------------
# reading markdown: prose lines, fenced blocks, markers

def parse_markdown(path):
    """The document as (prose, blocks, markers). prose: [(line number, text)] outside fenced blocks, HTML
    comments removed. blocks: dicts with 'line' (of the opening fence), 'lang', 'lines' [(number, text)] and
    the markers of the comment lines right before it ('runnable', 'timeout', 'no_validate'). markers: the
    source: and validate: ignore comments, as (line number, 'source' or 'ignore', [word, ...]), and
    ('dangling', [...]) for a runnable marker with no fenced block after it.
    <!-- no-validate --> before a paragraph (not a fenced block) leaves that paragraph out of prose."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    prose, blocks, markers = [], [], []
    pending = {}  # markers for the next block
    block, skipping, in_comment, indented = None, False, False, False
    for number, text in enumerate(lines, 1):
        stripped = text.strip()
        # an indented code block (4 spaces, after a blank line) shows text as it is: no markers, fences or prose
        indented = bool(stripped) and text.startswith('    ') and (indented or not lines[number - 2].strip())
        if indented and block is None and not in_comment:
            continue
        if block is not None:
            if stripped.startswith(block['fence']) and not stripped.strip(block['fence'][0]):
                blocks.append(block)
                block = None
            else:
                block['lines'].append((number, text))
            continue
        if in_comment:
            in_comment = '-->' not in stripped
            continue
        marker = re.fullmatch(r'<!--\s*(runnable|no-validate|source:|validate:\s*ignore)(.*?)-->', stripped)
        if marker:
            kind, rest = marker[1], marker[2]
            if kind == 'runnable':
                timeout = re.search(r'timeout=(\d+)', rest)
                pending.update(runnable=True, timeout=int(timeout[1]) if timeout else RUNNABLE_TIMEOUT)
            elif kind == 'no-validate':
                pending['no_validate'] = True
            else:
                markers.append((number, 'source' if kind == 'source:' else 'ignore', rest.split()))
            continue
        if stripped.startswith('<!--'):  # any other comment, perhaps over several lines
            in_comment = '-->' not in stripped
            continue
        if not stripped:
            skipping = False
            continue
        fence = re.match(r'(`{3,}|~{3,})\s*([\w+-]*)', stripped)
        if fence:
            block = dict(line=number, fence=fence[1], lang=fence[2].lower(), lines=[], **pending)
            pending, skipping = {}, False
            continue
        if pending:
            skipping = skipping or pending.get('no_validate', False)
            if pending.get('runnable'):
                markers.append((number, 'dangling', []))
            pending = {}
        if not skipping:
            prose.append((number, re.sub(r'<!--.*?-->', '', text)))
    if block is not None:
        blocks.append(block)
    return prose, blocks, markers


def code_spans(text):
    """The contents of the `code spans` in a line of prose."""
    return [m[2].strip() for m in re.finditer(r'(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)', text)]


def without_code_spans(text):
    return re.sub(r'(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)', 'CODE', text)


@functools.lru_cache(maxsize=None)
def heading_anchors(path):
    """GitHub's anchors for the headings of a markdown file: lower case, punctuation dropped, spaces as -."""
    prose, _, _ = parse_markdown(path)
    anchors, seen = set(), collections.Counter()
    for _, text in prose:
        heading = re.match(r'\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$', text)
        if heading:
            title = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading[1]).replace('`', '').replace('*', '')
            slug = re.sub(r'[^\w\- ]', '', title.lower()).replace(' ', '-')
            anchors.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
            seen[slug] += 1
    return anchors


# -----------------------------------------------------------------------------
# 1. links and paths

def check_links(path, prose, counts):
    problems = []
    for number, text in prose:
        text = without_code_spans(text)
        targets = re.findall(r'\]\(\s*<?([^)\s>]+)>?(?:\s+["\'][^)]*)?\)', text)
        targets += re.findall(r'^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)', text)  # [label]: target
        for target in targets:
            if re.match(r'[A-Za-z][A-Za-z0-9+.-]*:', target):
                continue  # https:, mailto: and the like
            counts['links'] += 1
            file_part, _, anchor = target.partition('#')
            file_part = urllib.parse.unquote(file_part)
            if file_part.startswith('/'):
                resolved = os.path.join(ROOT, file_part.lstrip('/'))
            else:
                resolved = os.path.join(os.path.dirname(path), file_part) if file_part else path
            if not os.path.exists(resolved):
                problems.append(problem(path, number, 'link', f"link to {target}: {file_part} does not exist"))
            elif anchor and resolved.endswith('.md') and anchor.lower() not in heading_anchors(resolved):
                problems.append(problem(path, number, 'link', f"link to {target}: no heading makes #{anchor}"))
    return problems


def looks_like_path(span, path, root):
    """Whether a code span names a file of the project: it ends in a file extension, or its first folder is
    one of the project's (so `n/a` or `NET/IB` is not taken for a path, `data/foo/` is)."""
    if ' ' in span or span.startswith(('/', '~', '-')) or not re.fullmatch(r'[\w.\-/]+', span):
        return False  # <placeholders>, globs, $VARS, key=value, URLs, absolute paths: not checkable
    if span.endswith(PATH_EXTENSIONS):
        return not span.startswith('.') or '/' in span or span.count('.') > 1  # `.md` is a kind of file, not one
    first = span.split('/')[0]
    return '/' in span and (first in ('.', '..') or any(os.path.exists(os.path.join(folder, first))
                                                        for folder in (root, os.path.dirname(path))))


@functools.lru_cache(maxsize=None)
def project_file_names(root):
    names = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs
                   if not d.startswith('.') and not is_ignored(os.path.relpath(os.path.join(folder, d), root), root)]
        names.update(files)
    return names


@functools.lru_cache(maxsize=None)
def gitignore_patterns(root):
    try:
        with open(os.path.join(root, '.gitignore')) as f:
            return [p.strip() for p in f if p.strip() and not p.startswith('#')]
    except OSError:
        return []


def matches_gitignore(relpath, root):
    """A plain reading of .gitignore, for when git cannot answer (no git, or not a checkout)."""
    parts = relpath.replace(os.sep, '/').strip('/').split('/')
    for pattern in gitignore_patterns(root):
        directory_only = pattern.endswith('/')
        pattern = pattern.strip('/')
        candidates = parts[:-1] if directory_only else parts
        if '/' in pattern:
            if fnmatch.fnmatch('/'.join(parts), pattern) or fnmatch.fnmatch('/'.join(parts), pattern + '/*'):
                return True
        elif any(fnmatch.fnmatch(p, pattern) for p in candidates):
            return True
    return False


@functools.lru_cache(maxsize=None)
def is_ignored(relpath, root):
    """Whether git ignores relpath: data, checkpoints and outputs that a doc may name but git never holds."""
    try:
        out = subprocess.run(['git', '-C', root, 'check-ignore', '-q', '--', relpath], capture_output=True)
        if out.returncode in (0, 1):
            return out.returncode == 0
    except OSError:
        pass
    return matches_gitignore(relpath, root)


def check_path_span(path, number, span, root, counts):
    counts['paths'] += 1
    candidates = [os.path.join(root, span), os.path.join(os.path.dirname(path), span)]
    if any(os.path.exists(c) for c in candidates):
        return []
    if '/' not in span and span in project_file_names(root):
        return []  # `prepare.py`: one of the project's files of that name
    for candidate in candidates:
        rel = os.path.relpath(candidate, root)
        if not rel.startswith('..') and is_ignored(rel, root):
            return []
    return [problem(path, number, 'path', f"`{span}` does not exist (and git does not ignore it)")]


# -----------------------------------------------------------------------------
# 2. commands: python <script>.py [config files] [--key=value ...]

@functools.lru_cache(maxsize=None)
def parse_python(path):
    with open(path, encoding='utf-8') as f:
        return ast.parse(f.read(), filename=path)


def module_file(module, near):
    """The project file a `from module import ...` in the file `near` refers to, or None."""
    name = module.replace('.', os.sep) + '.py'
    for folder in (os.path.dirname(near), os.path.dirname(os.path.dirname(near)), ROOT):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def imported_from(tree, name):
    """(module, original name) of the import that binds name in tree, or None."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return node.module, alias.name
    return None


def common_type(types):
    types = set(types)
    if types <= {int, float} and float in types:
        return float
    return types.pop() if len(types) == 1 else None


def value_type(node, path, known, depth=0):
    """The type of the value an expression evaluates to, as far as the source shows it: int, float, bool,
    str or list (the types configure() accepts), object (anything else: not a setting) or None (unknown).
    known maps the names assigned earlier in the file to their example values."""
    try:
        value = ast.literal_eval(node)
        return type(value) if type(value) in CONFIG_TYPES else object
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if depth > 5:
        return None
    again = functools.partial(value_type, path=path, known=known, depth=depth + 1)
    if isinstance(node, ast.JoinedStr):
        return str
    if isinstance(node, ast.Name):
        return type(known[node.id]) if known.get(node.id) is not None else None
    if isinstance(node, ast.BinOp):
        left, right = again(node.left), again(node.right)
        if left in (int, float) and right in (int, float):
            return float if isinstance(node.op, ast.Div) else common_type([left, right])
        return left if left == right and left in (str, list) and isinstance(node.op, ast.Add) else None
    if isinstance(node, ast.IfExp):
        return common_type([again(node.body), again(node.orelse)])
    if isinstance(node, (ast.Dict, ast.Tuple, ast.Set, ast.Lambda, ast.DictComp, ast.SetComp, ast.GeneratorExp)):
        return object
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name in ('int', 'len', 'round'):
            return int
        if name in ('float', 'str', 'bool', 'list'):
            return getattr(builtins, name)
        if name in ('max', 'min', 'abs'):
            types = [again(a) for a in node.args]
            return common_type(t for t in types if t is not None) if any(types) else None
        return function_return_type(path, name, depth)
    return None


def function_return_type(path, name, depth):
    """The type a project function returns, if all its return statements agree (e.g. default_device: str)."""
    tree = parse_python(path)
    source = imported_from(tree, name)
    if source:
        path = module_file(source[0], path)
        if path is None:
            return None
        tree, name = parse_python(path), source[1]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            returns = [n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
            types = [value_type(r, path, {}, depth + 1) for r in returns]
            return common_type(types) if returns and None not in types else None
    return None


EXAMPLE = {int: 0, float: 0.0, bool: False, str: '', list: []}  # a value of each type, where the default is not literal


def assigned_settings(statements, path, known):
    """Add the settings that module-level statements assign to known: {name: example value, or None if its
    type is unknown}. Includes globals().update({f.name: f.default for f in fields(SomeDataclass) if ...})."""
    for node in statements:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            kind = value_type(node.value, path, known)
            try:
                example = ast.literal_eval(node.value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                example = EXAMPLE.get(kind)
            for target in targets:
                if isinstance(target, ast.Name) and not target.id.startswith('_'):
                    if kind is object:
                        known.pop(target.id, None)
                    else:
                        known[target.id] = example
        elif isinstance(node, ast.Expr) and 'globals().update' in ast.unparse(node) and 'fields(' in ast.unparse(node):
            for key, example in dataclass_settings(node, path).items():
                known.setdefault(key, example)  # fields assigned above keep the script's own default
    return known


def dataclass_settings(node, path):
    """The fields of the dataclass named in fields(...), minus those excluded with f.name != '...'."""
    call = next(n for n in ast.walk(node) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'fields')
    cls_name = call.args[0].id
    excluded = {n.comparators[0].value for n in ast.walk(node) if isinstance(n, ast.Compare)
                and isinstance(n.ops[0], ast.NotEq) and isinstance(n.comparators[0], ast.Constant)}
    cls_path, cls = find_class(path, cls_name)
    settings = {}
    if cls is not None:
        for item in cls.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                if item.target.id not in excluded:
                    settings[item.target.id] = assigned_settings([item], cls_path, {}).get(item.target.id)
    return settings


def find_class(path, name):
    """(file, ClassDef) of the class name as seen from path: defined there or imported from the project."""
    tree = parse_python(path)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return path, node
    source = imported_from(tree, name)
    if source and module_file(source[0], path):
        return find_class(module_file(source[0], path), source[1])
    return path, None


def calls_configure(node):
    return any(isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'configure' for n in ast.walk(node))


@functools.lru_cache(maxsize=None)
def script_settings(path):
    """The settings configure(globals()) accepts in a script, {name: example value or None}, read from its
    module-level assignments before the configure call; None if the script never calls configure."""
    tree = parse_python(path)
    known = {}
    for node in tree.body:
        if calls_configure(node):
            return known
        assigned_settings([node], path, known)
    return None


def check_value(script, key, value, example, from_command_line):
    """configurator's own coercion, on a value of the setting's type; the problem text, or None if it is fine."""
    try:
        coerce(key, value, example, from_command_line)
    except SystemExit as e:
        shown = f"--{key}={value}" if from_command_line else f"{key} = {value!r}"
        kind = type(example).__name__
        article = 'an' if kind == 'int' else 'a'
        return f"{shown}: {script}'s {key} is {article} {kind} ({str(e).removeprefix('error: ')})"
    return None


def unknown_setting(script, key, settings):
    hint = str(unknown_key_error(key, list(settings))).removeprefix('error: ')
    return f"{script} has no setting '{key}': {hint.split('; known keys')[0]}"


def check_config_file(config, script, settings, doc, number, counts):
    """Every assignment of a config file must set a setting of the script, with a value of its type."""
    problems = []
    where = f"(named in {relative(doc)}:{number})"
    try:
        tree = parse_python(config)
    except SyntaxError as e:
        return [problem(config, e.lineno or 1, 'config', f"cannot be parsed: {e.msg} {where}")]
    known = {}
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
            if not isinstance(target, ast.Name) or target.id.startswith('_'):
                continue
            counts['settings'] += 1
            key = target.id
            if key not in settings:
                message = unknown_setting(relative(script), key, settings)
                problems.append(problem(config, node.lineno, 'setting', f"{message} {where}"))
                continue
            if settings[key] is None:
                continue
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                kind = value_type(node.value, config, known)
                if kind is None:
                    continue
                value = EXAMPLE.get(kind, object())
            message = check_value(relative(script), key, value, settings[key], False)
            if message:
                problems.append(problem(config, node.lineno, 'type', f"{message} {where}"))
        assigned_settings([node], config, known)
    return problems


def shell_commands(block):
    """The commands of a fenced block: [(line number, [word, ...])], continuation lines joined, heredoc
    bodies, comments and (in console blocks) output lines left out, && ; | ( ) splitting commands."""
    commands, pending, first, heredoc = [], '', None, None
    for number, text in block['lines']:
        if heredoc:
            heredoc = None if text.strip() == heredoc else heredoc
            continue
        if block['lang'] == 'console' and not pending:
            if not text.lstrip().startswith('$ '):
                continue
            text = text.lstrip()[2:]
        first = first or number
        if text.rstrip().endswith('\\'):
            pending += text.rstrip()[:-1] + ' '
            continue
        line, pending = pending + text, ''
        start, first = first, None
        marker = re.search(r'<<-?\s*[\'"]?(\w+)[\'"]?', line)
        heredoc = marker[1] if marker else None
        line = replace_substitutions(line)
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = list(lexer)
        except ValueError as e:
            words = None
            if re.search(r'(^|[\s;&|(])(python[\d.]*|torchrun)\s', line):
                commands.append((start, ValueError(str(e))))
        command = []
        for word in words or []:
            if re.fullmatch(r'[;&|()]+', word):
                commands.append((start, command))
                command = []
            else:
                command.append(word)
        commands.append((start, command))
    return [(n, c) for n, c in commands if c]


def replace_substitutions(line):
    """$(...) becomes $X: the shell computes it, so the word it is part of cannot be checked."""
    out, depth = '', 0
    i = 0
    while i < len(line):
        if line.startswith('$(', i):
            depth += 1
            out += '$X' if depth == 1 else ''
            i += 2
            continue
        if depth and line[i] == '(':
            depth += 1
        elif depth and line[i] == ')':
            depth -= 1
        elif not depth:
            out += line[i]
        i += 1
    return out


def python_script(words):
    """(script, arguments) of a python or torchrun command, or None: python -m/-c and the like are not scripts."""
    while words and re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*=\S*', words[0]):
        words = words[1:]  # VAR=value prefixes
    if not words:
        return None
    program = os.path.basename(words[0])
    if re.fullmatch(r'python[\d.]*', program):
        rest = words[1:]
        while rest and rest[0].startswith('-'):
            if rest[0] in ('-m', '-c') or rest[0] == '-':
                return None
            rest = rest[1:]
        return (rest[0], rest[1:]) if rest and rest[0].endswith('.py') else None
    if program == 'torchrun':
        for i, word in enumerate(words[1:], 1):
            if word.endswith('.py') and not word.startswith('-'):
                return word, words[i + 1:]
            if word in ('-m', '--module', '--no-python', '--no_python'):
                return None
    return None


def check_command(path, number, words, cwd, root, counts):
    found = python_script(words)
    if found is None:
        return []
    script, args = found
    counts['commands'] += 1
    if '$' in script or '<' in script:
        return []
    script_path = os.path.normpath(os.path.join(cwd, script))
    if not os.path.isfile(script_path):
        return [problem(path, number, 'command', f"`python {script}`: {script} does not exist")]
    rel_script = os.path.relpath(script_path, root)
    if rel_script in OTHER_ARGUMENTS:
        return []
    settings = script_settings(script_path)
    if settings is None:
        return [problem(path, number, 'command', f"{rel_script} takes no settings, but is given {' '.join(args)}")] \
            if args and not re.fullmatch(r'\d+', args[0]) else []
    problems = []
    args = list(args)
    while args:
        arg = args.pop(0)
        if re.fullmatch(r'\d+', arg) and args and re.fullmatch(r'[<>&]+', args[0]):
            continue  # the 2 of 2>&1
        if re.fullmatch(r'[<>&]+', arg):
            args = args[1:]  # a redirection and its target
            continue
        if '$' in arg or '<' in arg or '*' in arg:
            continue  # computed by the shell, or a placeholder
        if not arg.startswith('--'):
            config = os.path.normpath(os.path.join(cwd, arg))
            if not os.path.isfile(config):
                problems.append(problem(path, number, 'command', f"config file {arg} does not exist"))
            else:
                problems += check_config_file(config, script_path, settings, path, number, counts)
            continue
        counts['settings'] += 1
        key, equals, value = arg[2:].partition('=')
        if not equals:
            problems.append(problem(path, number, 'command', f"{arg} has no value; the scripts take --key=value"))
        elif key not in settings:
            problems.append(problem(path, number, 'setting', unknown_setting(rel_script, key, settings)))
        elif settings[key] is not None:
            message = check_value(rel_script, key, value, settings[key], True)
            if message:
                problems.append(problem(path, number, 'type', message))
    return problems


def check_commands(path, blocks, root, counts):
    problems = []
    for block in blocks:
        if block.get('no_validate') or block['lang'] not in COMMAND_LANGUAGES:
            continue
        cwd = root
        for number, words in shell_commands(block):
            if isinstance(words, ValueError):
                problems.append(problem(path, number, 'command', f"cannot parse this command: {words}"))
            elif words[0] == 'cd' and len(words) == 2:
                cwd = os.path.normpath(os.path.join(cwd, words[1]))
            else:
                problems += check_command(path, number, words, cwd, root, counts)
    return problems


# -----------------------------------------------------------------------------
# 3. identifiers in concepts/ and code-analysis/

@functools.lru_cache(maxsize=None)
def definitions(path):
    """What a Python file defines: (names, imports, classes), names being its top-level functions, classes,
    assignments and settings, imports {name: dotted origin} from anywhere in it, classes {name: ClassDef}."""
    tree = parse_python(path)
    names, imports, classes = set(), {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split('.')[0]  # import torch.nn binds torch
                imports[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                imports[alias.asname or alias.name] = f"{'.' * node.level}{node.module or ''}.{alias.name}"
    pending = list(tree.body)
    while pending:  # module level, into if/for/while/with/try blocks, not into functions or classes
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                classes[node.name] = node
            continue
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [i.optional_vars for i in node.items if i.optional_vars is not None]
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        for field in ('body', 'orelse', 'finalbody', 'handlers'):
            pending += getattr(node, field, [])
    names.update(script_settings(path) or {})
    return names, imports, classes


def class_members(path, cls):
    """Methods, class attributes and dataclass fields, and self.x attributes set in any method."""
    members = set()
    for item in cls.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            members.add(item.name)
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
            for target in (item.targets if isinstance(item, ast.Assign) else [item.target]):
                members.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == 'self' \
                and isinstance(node.ctx, ast.Store):
            members.add(node.attr)
    return members


def has_member(path, cls, member, depth=0):
    """Whether class cls (a ClassDef in path) or one of its bases has member. A base from outside the
    project is imported to ask it; if that fails, the answer is yes (nothing to check against)."""
    if member in class_members(path, cls):
        return True
    _, imports, classes = definitions(path)
    for base in cls.bases:
        dotted = ast.unparse(base)
        head = dotted.split('.')[0]
        if dotted in classes and depth < 10:
            if has_member(path, classes[dotted], member, depth + 1):
                return True
        elif head in imports:
            origin = imports[head] + dotted[len(head):]
            project = find_class(path, head) if '.' not in dotted else (path, None)
            if project[1] is not None and project[0] != path:
                if has_member(project[0], project[1], member, depth + 1):
                    return True
                continue
            external = import_object(origin)
            if external is None or hasattr(external, member):
                return True
    return False


@functools.lru_cache(maxsize=None)
def import_object(dotted):
    parts = dotted.split('.')
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except Exception:
            continue
        try:
            for part in parts[i:]:
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            return None
    return None


def identifier_defined(name, sources, root):
    """None if the dotted name is defined in one of the source files, else why not."""
    first, *rest = name.removesuffix('()').split('.')
    if first == 'self' and rest:
        if any(has_member(s, c, rest[0]) for s in sources for c in definitions(s)[2].values()):
            return None
        return f"no class in {', '.join(map(relative, sources))} has a member {rest[0]}"
    for source in sources:
        names, imports, classes = definitions(source)
        if first in classes and rest:
            if has_member(source, classes[first], rest[0]):
                return None
            return f"{first} in {relative(source)} has no member {rest[0]}"
        if first in imports and rest:
            project_class = find_class(source, first)
            if project_class[1] is not None and project_class[0] != source:
                return identifier_defined(name, [project_class[0]], root)
            module = module_file(imports[first].lstrip('.'), source)
            if module:  # import model, from data import common: a project module
                return identifier_defined('.'.join(rest), [module], root)
            return None  # torch, F, np...: not this project's to check
        if first in names or first in imports:
            return None
    module = os.path.join(root, first + '.py')
    if rest and os.path.isfile(module):  # model.GPT: a project module
        return identifier_defined('.'.join(rest), [module], root)
    return f"{first} is not defined in {', '.join(map(relative, sources))}"


def check_identifiers(path, prose, markers, root, counts):
    problems = []
    ignored = {w for _, kind, words in markers if kind == 'ignore' for w in words}
    source_at = sorted((n, words) for n, kind, words in markers if kind == 'source')
    for number, text in prose:
        current = [words for n, words in source_at if n < number]
        sources = current[-1] if current else []
        for span in code_spans(text):
            explicit = re.fullmatch(r'([\w./-]+\.py):([A-Za-z_][\w.]*(?:\(\))?)', span)
            if explicit:
                counts['identifiers'] += 1
                file = os.path.join(root, explicit[1])
                why = identifier_defined(explicit[2], [file], root) if os.path.isfile(file) \
                    else f"{explicit[1]} does not exist"
                if why:
                    problems.append(problem(path, number, 'identifier', f"`{span}`: {why}"))
                continue
            if not sources or not IDENTIFIER.match(span) or span in ignored or span.removesuffix('()') in ignored:
                continue
            bare = span.removesuffix('()')
            if keyword.iskeyword(bare) or keyword.issoftkeyword(bare) or bare.split('.')[0] in dir(builtins):
                continue
            if bare.endswith(FILE_EXTENSIONS) or os.path.exists(os.path.join(root, bare)):
                continue  # a file name, not a Python name
            counts['identifiers'] += 1
            files = [os.path.join(root, s) for s in sources]
            missing = [s for s, f in zip(sources, files) if not os.path.isfile(f)]
            if missing:
                problems.append(problem(path, number, 'identifier', f"source file {', '.join(missing)} does not exist"))
                continue
            why = identifier_defined(bare, files, root)
            if why:
                problems.append(problem(path, number, 'identifier', f"`{span}`: {why}"))
    return problems


# -----------------------------------------------------------------------------
# 4. error messages in the troubleshooting guide

def message_pattern(node):
    """A string constant or f-string as a regular expression in which each {...} matches any text."""
    if isinstance(node, ast.Constant):
        return re.escape(node.value)
    return ''.join(re.escape(v.value) if isinstance(v, ast.Constant) else ANY for v in node.values)


@functools.lru_cache(maxsize=None)
def error_patterns(root):
    """Every message starting with 'error:' in the project's Python sources (tests and this checker left out),
    as compiled patterns. A message that is only 'error: {e}' stands for 'error: ' and each exception
    message the project raises (train.py prints a bad GPTConfig's ValueError so)."""
    patterns, raised, generic = [], [], False
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(('.', '__', 'out')) and d != 'validation']
        for name in files:
            if not name.endswith('.py') or name.startswith('test_') or name.endswith('_test.py'):
                continue
            try:
                tree = parse_python(os.path.join(folder, name))
            except SyntaxError:
                continue
            pieces = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
            for node in ast.walk(tree):
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args \
                        and isinstance(node.exc.args[0], (ast.Constant, ast.JoinedStr)):
                    raised.append(message_pattern(node.exc.args[0]))
                if id(node) in pieces or not isinstance(node, (ast.Constant, ast.JoinedStr)):
                    continue  # the literal parts of an f-string are taken with the whole
                if isinstance(node, ast.Constant) and not isinstance(node.value, str):
                    continue
                pattern = message_pattern(node)
                if pattern.startswith('error:'):
                    if pattern.replace(ANY, '').replace('\\ ', '') == 'error:':
                        generic = True
                    else:
                        patterns.append(pattern)
    if generic:
        patterns += ['error:\\ ' + p for p in raised if not p.startswith('error:')]
    return [re.compile(p, re.DOTALL) for p in patterns]


def check_error_messages(path, prose, blocks, root, counts):
    shown = [(n, span) for n, text in prose for span in code_spans(text) if span.startswith('error:')]
    shown += [(n, text.strip()) for n, text in prose if text.strip().startswith('error:')]
    shown += [(n, text.strip()) for b in blocks if not b.get('no_validate') for n, text in b['lines']
              if text.strip().startswith('error:')]
    problems = []
    for number, message in shown:
        counts['errors'] += 1
        message = re.sub(r'\s+', ' ', message)
        if not any(pattern.fullmatch(message) for pattern in error_patterns(root)):
            problems.append(problem(path, number, 'error-message', f"no message in the code reads `{message}`"))
    return problems


# -----------------------------------------------------------------------------
# 5. runnable blocks

def copy_project(root, dest):
    """The files git would commit (tracked, or new and not ignored); outside a git checkout, the tree
    minus what .gitignore lists (data, checkpoints, outputs)."""
    try:
        out = subprocess.run(['git', '-C', root, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                             capture_output=True, check=True)
        files = [f for f in out.stdout.decode().split('\0') if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for folder, dirs, names in os.walk(root):
            rel = os.path.relpath(folder, root)
            dirs[:] = [d for d in dirs if d != '.git' and not matches_gitignore(os.path.join(rel, d) + '/x', root)]
            files += [os.path.normpath(os.path.join(rel, n)) for n in names
                      if not matches_gitignore(os.path.join(rel, n), root)]
    for rel in files:
        source = os.path.join(root, rel)
        if os.path.isfile(source):  # a tracked file may have been deleted in the working tree
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(source, os.path.join(dest, rel))


def run_block(code, cwd, timeout):
    """(exit status or None on timeout, output) of code run by bash -e -o pipefail in cwd."""
    proc = subprocess.Popen(['bash', '-e', '-o', 'pipefail', '-c', code], cwd=cwd, env={**os.environ, **RUNNABLE_ENV},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, so a timeout stops its children too
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return None, output


def check_runnable(path, blocks, markers, root, counts):
    runnable = [b for b in blocks if b.get('runnable') and not b.get('no_validate')]
    problems = [problem(path, n, 'runnable', "<!-- runnable --> is not followed by a fenced block")
                for n, kind, _ in markers if kind == 'dangling']
    if not runnable:
        return problems
    with tempfile.TemporaryDirectory(prefix='check_docs_') as copy:
        copy_project(root, copy)
        for block in runnable:
            counts['runnable'] += 1
            lines = [t for _, t in block['lines']]
            if block['lang'] == 'console':
                lines = [t.lstrip()[2:] for t in lines if t.lstrip().startswith('$ ')]
            status, output = run_block('\n'.join(lines) + '\n', copy, block['timeout'])
            last = next((t.strip() for t in reversed(output.splitlines()) if t.strip()), '(no output)')
            if status is None:
                message = f"timed out after {block['timeout']} s: {last}"
                problems.append(problem(path, block['line'], 'runnable', message))
            elif status != 0:
                problems.append(problem(path, block['line'], 'runnable', f"exited with status {status}: {last}"))
    return problems


# -----------------------------------------------------------------------------

def doc_kind(path):
    """'identifiers' for docs/concepts and docs/code-analysis, 'troubleshooting' for the guide, else ''."""
    folder, name = os.path.basename(os.path.dirname(path)), os.path.basename(path)
    if folder in ('concepts', 'code-analysis'):
        return 'identifiers'
    return 'troubleshooting' if (folder, name) == ('guides', 'troubleshooting.md') else ''


def check_doc(path, root=ROOT, run=True, counts=None):
    """The problems of one markdown file, as (path, line, kind, message) tuples."""
    counts = collections.Counter() if counts is None else counts
    counts['files'] += 1
    prose, blocks, markers = parse_markdown(path)
    ignored = {w for _, kind, words in markers if kind == 'ignore' for w in words}
    problems = check_links(path, prose, counts)
    for number, text in prose:
        for span in code_spans(text):
            if looks_like_path(span, path, root) and span not in ignored:
                problems += check_path_span(path, number, span, root, counts)
    problems += check_commands(path, blocks, root, counts)
    if doc_kind(path) == 'identifiers':
        problems += check_identifiers(path, prose, markers, root, counts)
    else:  # file.py:name is unambiguous anywhere
        problems += check_identifiers(path, prose, [], root, counts)
    if doc_kind(path) == 'troubleshooting':
        problems += check_error_messages(path, prose, blocks, root, counts)
    if run:
        problems += check_runnable(path, blocks, markers, root, counts)
    return problems


def check(paths=None, root=ROOT, run=True, counts=None):
    """Every problem in the markdown files (or folders) named, or in all the project's docs if none:
    a sorted list of (path, line, kind, message). counts, a Counter, receives how many items were checked."""
    counts = collections.Counter() if counts is None else counts
    problems = []
    for path in doc_files(paths, root):
        problems += check_doc(path, root, run, counts)
    return sorted(set(problems))


def main(argv):
    run = '--no-run' not in argv
    unknown = [a for a in argv if a.startswith('-') and a != '--no-run']
    if unknown:
        sys.exit(f"error: unknown option {unknown[0]}; usage: check_docs.py [--no-run] [file.md or folder ...]")
    paths = [a for a in argv if not a.startswith('-')]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        sys.exit(f"error: {missing[0]} does not exist; name markdown files or folders, or nothing for all the docs")
    counts = collections.Counter()
    t0 = time.perf_counter()
    problems = check(paths, ROOT, run, counts)
    for path, line, kind, message in problems:
        print(f"{path}:{line}: {kind}: {message}")
    items = ', '.join(f"{counts[k]} {k}" for k in ('links', 'paths', 'commands', 'settings', 'identifiers',
                                                    'errors', 'runnable'))
    print(f"{len(problems)} problem(s) in {counts['files']} files; checked {items} "
          f"in {time.perf_counter() - t0:.1f}s{'' if run else ' (runnable blocks not run)'}")
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
