"""
Check the docs against the code, so that a renamed setting, a moved file or a reworded error message shows up as
a stale line instead of silently misleading a reader. The rules are in README.md next to this file.
$ python docs/validation/check_docs.py [--no-run] [file.md or folder ...]    # by default all the docs
prints `path:line: kind: what` for each stale item, then a summary, and exits 1 if there is any.
--no-run skips the runnable blocks. From Python, check(paths) returns (path, line, kind, message) tuples.
"""

import ast
import builtins
import collections
import contextlib
import fnmatch
import functools
import importlib
import io
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
from configurator import CONFIG_TYPES, coerce, configure  # noqa: E402  (the rules the scripts apply)

# -----------------------------------------------------------------------------
RUNNABLE_TIMEOUT = 120  # seconds a runnable block may take, unless it says <!-- runnable timeout=N -->
RUNNABLE_ENV = dict(NANOGPT_OFFLINE='1', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', WANDB_MODE='disabled',
                    OMP_NUM_THREADS='1')  # on cores other processes are busy with, 2 threads can be 40x slower than 1
COMMAND_LANGUAGES = ('', 'sh', 'bash', 'shell', 'console')  # fenced blocks whose commands are checked
PATH_EXTENSIONS = ('.py', '.md', '.sh', '.txt', '.pkl', '.bin', '.json', '.png')  # a span ending so is a path
FILE_EXTENSIONS = PATH_EXTENSIONS + ('.pt', '.tmp', '.parquet', '.jsonl', '.csv', '.toml', '.yaml', '.log')
OTHER_ARGUMENTS = ('docs/validation/check_docs.py',)  # scripts that take arguments of their own, not --key=value
MARKER = re.compile(r'<!--\s*(runnable|no-validate|source:|table:|validate:\s*ignore)(.*?)-->')
CODE_SPAN = re.compile(r'(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)')
IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\(\))?$')
ANY = '.*?'  # what an f-string's {...} becomes in the pattern of an error message
UNKNOWN = object()  # the default of a setting whose type the source does not show, such as default_device()
# -----------------------------------------------------------------------------


def relative(path):
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def lookup(name, *folders):
    return next((os.path.join(f, name) for f in folders if os.path.exists(os.path.join(f, name))), None)


def code_spans(text):
    return [m[2].strip() for m in CODE_SPAN.finditer(text)]


@functools.lru_cache(maxsize=None)
def parse_python(path):
    with open(path, encoding='utf-8') as f:
        return ast.parse(f.read(), filename=path)


# ----------------------------------------------------------------------------- reading markdown
def parse_markdown(path):
    """(prose, blocks, markers): prose [(line number, text)] outside code blocks, comments and paragraphs after
    <!-- no-validate -->; fenced blocks as dicts with the runnable/no-validate comments before them; markers
    [(line number, kind, words)] for source:, table:, validate: ignore, and runnable comments left 'dangling'."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    prose, blocks, markers, pending = [], [], [], {}
    fence, skipping, in_comment, indented = None, False, False, False
    for number, text in enumerate(lines, 1):
        stripped = text.strip()
        # an indented code block (4 spaces, after a blank line) shows text as it is: no markers, fences or prose
        indented = bool(stripped) and text.startswith('    ') and (indented or not lines[number - 2].strip())
        marker, opening = MARKER.fullmatch(stripped), re.match(r'(`{3,}|~{3,})\s*([\w+-]*)', stripped)
        if fence:
            fence = None if stripped.startswith(fence) and not stripped.strip(fence[0]) else fence
            blocks[-1]['lines'] += [(number, text)] if fence else []
        elif in_comment or stripped.startswith('<!--') and not marker:  # a comment, perhaps over several lines
            in_comment = '-->' not in stripped
        elif indented:
            continue
        elif marker and marker[1] == 'runnable':
            timeout = re.search(r'timeout=(\d+)', marker[2])
            pending.update(runnable=True, timeout=int(timeout[1]) if timeout else RUNNABLE_TIMEOUT)
        elif marker and marker[1] == 'no-validate':
            pending['no_validate'] = True
        elif marker:
            kind = {'source:': 'source', 'table:': 'table'}.get(marker[1], 'ignore')
            markers.append((number, kind, marker[2].split()))
        elif not stripped:
            skipping = False
        elif opening:
            blocks.append(dict(line=number, lang=opening[2].lower(), lines=[], **pending))
            fence, pending, skipping = opening[1], {}, False
        else:
            markers += [(number, 'dangling', [])] if pending.get('runnable') else []
            skipping = skipping or pending.get('no_validate', False)
            prose += [] if skipping else [(number, re.sub(r'<!--.*?-->', '', text))]
            pending = {}
    return prose, blocks, markers


@functools.lru_cache(maxsize=None)
def heading_anchors(path):
    """GitHub's anchors for the headings of a markdown file: lower case, punctuation dropped, spaces as -."""
    anchors, seen = set(), collections.Counter()
    for _, text in parse_markdown(path)[0]:
        heading = re.match(r'\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$', text)
        if heading:
            title = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading[1]).replace('`', '').replace('*', '')
            slug = re.sub(r'[^\w\- ]', '', title.lower()).replace(' ', '-')
            anchors.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
            seen[slug] += 1
    return anchors


# ----------------------------------------------------------------------------- 1. links and file names
def check_links(path, number, text, counts):
    text = CODE_SPAN.sub('CODE', text)
    targets = re.findall(r'\]\(\s*<?([^)\s>]+)>?(?:\s+["\'][^)]*)?\)', text)
    targets += re.findall(r'^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)', text)  # [label]: target
    problems = []
    for target in (t for t in targets if not re.match(r'[A-Za-z][A-Za-z0-9+.-]*:', t)):  # not https: etc.
        counts['links'] += 1
        file_part, _, anchor = target.partition('#')
        file_part = urllib.parse.unquote(file_part)
        resolved = os.path.join(ROOT, file_part.lstrip('/')) if file_part.startswith('/') else \
            os.path.join(os.path.dirname(path), file_part) if file_part else path
        if not os.path.exists(resolved):
            problems.append((relative(path), number, 'link', f"link to {target}: {file_part} does not exist"))
        elif anchor and resolved.endswith('.md') and anchor.lower() not in heading_anchors(resolved):
            problems.append((relative(path), number, 'link', f"link to {target}: no heading makes #{anchor}"))
    return problems


@functools.lru_cache(maxsize=None)
def is_ignored(relpath, root):
    """Whether .gitignore lists relpath (a folder written 'folder/'): data, checkpoints, outputs."""
    gitignore = os.path.join(root, '.gitignore')
    with open(gitignore if os.path.isfile(gitignore) else os.devnull) as f:
        patterns = [p.strip() for p in f if p.strip() and not p.startswith('#')]
    parts = relpath.replace(os.sep, '/').split('/')
    for pattern in patterns:
        name = pattern.strip('/')  # name/ is a folder: not the last part of a file's path
        if fnmatch.fnmatch('/'.join(parts), name + '*') if '/' in name else \
                any(fnmatch.fnmatch(p, name) for p in parts[:-1 if pattern.endswith('/') else None]):
            return True
    return False


def project_files(root):
    """The project's files, relative to root: the tree minus .git and what .gitignore lists."""
    files = []
    for folder, dirs, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        dirs[:] = sorted(d for d in dirs if d != '.git' and not is_ignored(os.path.join(rel, d, ''), root))
        files += [os.path.normpath(os.path.join(rel, n)) for n in names if not is_ignored(os.path.join(rel, n), root)]
    return files


def check_path(path, number, span, root, counts):
    """A code span that names a file must name one that exists, or one that git ignores."""
    if ' ' in span or span.startswith(('/', '~', '-')) or not re.fullmatch(r'[\w.\-/]+', span):
        return []  # <placeholders>, globs, $VARS, key=value, URLs, absolute paths: not checkable
    folders, first = (root, os.path.dirname(path)), span.split('/')[0]
    if span.endswith(PATH_EXTENSIONS):
        is_path = not span.startswith('.') or '/' in span or span.count('.') > 1  # `.md` is a kind of file, not one
    else:  # a path if its first folder is one of the project's: `data/foo/`, but not `n/a` or `NET/IB`
        is_path = '/' in span and (first in ('.', '..') or lookup(first, *folders) is not None)
    if not is_path:
        return []
    counts['paths'] += 1
    if lookup(span, *folders) or '/' not in span and span in {os.path.basename(f) for f in project_files(root)}:
        return []  # `prepare.py`: one of the project's files of that name
    relpaths = [os.path.relpath(os.path.join(folder, span), root) for folder in folders]
    if any(is_ignored(rel, root) for rel in relpaths if not rel.startswith('..')):
        return []
    return [(relative(path), number, 'path', f"`{span}` does not exist (and git does not ignore it)")]


# ----------------------------------------------------------------------------- 2. commands and settings
def assign(node, settings):
    """Record in settings, and return, the public names an assignment sets, with the value if it is computed from
    literals and earlier settings (5 * 8), else UNKNOWN; a None, tuple or dict is no setting for configure()."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
        and node.value else []
    names = [t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith('_')]
    if not names:
        return []
    try:
        value = eval(compile(ast.Expression(node.value), '<default>', 'eval'), {'__builtins__': {}}, dict(settings))
    except Exception:
        value = UNKNOWN
    for name in names:
        settings[name] = value
        if type(value) not in CONFIG_TYPES and value is not UNKNOWN:
            del settings[name]
    return [(name, value) for name in names]


@functools.lru_cache(maxsize=None)
def script_settings(path):
    """A script's settings, {name: default or UNKNOWN}: what it assigns before configure(globals()), and the fields
    of globals().update({... fields(X) if f.name != '...'}); None if it never calls configure."""
    settings = {}
    for node in parse_python(path).body:
        calls = {getattr(n.func, 'id', ''): n for n in ast.walk(node) if isinstance(n, ast.Call)}
        if 'configure' in calls:
            return settings
        if 'fields' in calls:  # train.py takes GPTConfig's fields as settings
            fields, (_, cls) = {}, find_class(path, calls['fields'].args[0].id)
            for item in cls.body if cls else []:
                assign(item, fields)
            excluded = {n.comparators[0].value for n in ast.walk(node) if isinstance(n, ast.Compare)
                        and isinstance(n.ops[0], ast.NotEq) and isinstance(n.comparators[0], ast.Constant)}
            settings.update({k: v for k, v in fields.items() if k not in excluded and k not in settings})
        assign(node, settings)
    return None


def setting_problem(script, settings, key, value, argument=None):
    """(kind, message) if the script refuses to set key to value, else None: configure() decides on a command-line
    argument and on an unknown key, coerce() on a value from a config file."""
    namespace = {'__file__': script, **{k: '' if v is UNKNOWN else v for k, v in settings.items()}}  # '': any text
    try:
        if argument or key not in settings:
            with contextlib.redirect_stdout(io.StringIO()):  # what it prints when it takes the argument
                configure(namespace, [argument or f'--{key}='])
        elif settings[key] is not UNKNOWN and value is not UNKNOWN:
            coerce(key, value, settings[key], False)
    except SystemExit as e:
        error = str(e.code).removeprefix('error: ')
        if not e.code or argument and not re.fullmatch(r'--[^=]+=[^=]*', argument):
            return ('command', error) if e.code else None  # --help; --key without a value
        if key not in settings:
            return 'setting', f"{script} has no setting '{key}': {error}"
        kind, shown = type(settings[key]).__name__, argument or f"{key} = {value!r}"
        return 'type', f"{shown}: {script}'s {key} is {'an' if kind == 'int' else 'a'} {kind} ({error})"
    return None


def check_config_file(config, script, settings, where, counts):
    """Every assignment of a config file must set a setting of the script, with a value of its type."""
    try:
        tree = parse_python(config)
    except SyntaxError as e:
        return [(relative(config), e.lineno or 1, 'config', f"cannot be parsed: {e.msg} {where}")]
    problems, values = [], dict(settings)  # the file runs with the script's settings as its globals
    for node in tree.body:
        for key, value in assign(node, values):
            counts['settings'] += 1
            found = setting_problem(script, settings, key, value)
            problems += [(relative(config), node.lineno, found[0], f"{found[1]} {where}")] if found else []
    return problems


def shell_commands(block):
    """[(line number, words or a ValueError)] of the commands in a fenced block, split at && ; | ( ) and
    redirections; continuation lines joined; heredoc bodies and (in console blocks) output left out."""
    lines, commands, heredoc = [], [], None
    for number, text in block['lines']:
        if block['lang'] == 'console' and not text.lstrip().startswith('$ '):
            continue
        text = text.lstrip()[2:] if block['lang'] == 'console' else text.rstrip()
        if lines and lines[-1][1].endswith('\\'):
            lines[-1] = (lines[-1][0], lines[-1][1][:-1] + ' ' + text)
        else:
            lines.append((number, text))
    for number, line in lines:
        if heredoc:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        heredoc = (re.search(r'<<-?\s*[\'"]?(\w+)[\'"]?', line) or [None, None])[1]
        try:  # the 2 of 2>&1 is dropped first
            lexer = shlex.shlex(re.sub(r'(?<!\S)\d+(?=[<>])', '', line), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = list(lexer)
        except ValueError as e:
            commands += [(number, e)] if re.search(r'(^|[\s;&|(])(python[\d.]*|torchrun)\s', line) else []
            continue
        commands.append((number, []))
        for word in words:
            if re.fullmatch(r'[;&|()<>]+', word):
                commands.append((number, []))
            else:
                commands[-1][1].append(word)
    return [(n, c) for n, c in commands if c]


def python_script(words):
    """(script, arguments) of a python or torchrun command, or None: python -m or -c runs no script file."""
    while words and re.fullmatch(r'[A-Za-z_]\w*=\S*', words[0]):
        words = words[1:]  # VAR=value prefixes
    if words and re.fullmatch(r'python[\d.]*|torchrun', os.path.basename(words[0])):
        for i, word in enumerate(words[1:], 1):
            if word in ('-m', '-c', '-', '--module', '--no-python', '--no_python'):
                return None
            if word.endswith('.py') and not word.startswith('-'):
                return word, words[i + 1:]
    return None


def check_command(path, number, words, cwd, root, counts):
    """A python command must name a script that exists, and only config files and settings that it takes."""
    script, args = python_script(words) or (None, [])
    if script is None:
        return []
    counts['commands'] += 1
    script_path = os.path.normpath(os.path.join(cwd, script))
    rel_script = os.path.relpath(script_path, root)
    if '$' in script or '<' in script or rel_script in OTHER_ARGUMENTS:
        return []
    if not os.path.isfile(script_path):
        return [(relative(path), number, 'command', f"`python {script}`: {script} does not exist")]
    settings, problems = script_settings(script_path), []
    for arg in (a for a in args if not re.search(r'[$<*]', a)):  # not those computed by the shell, or placeholders
        config = os.path.normpath(os.path.join(cwd, arg))
        if settings is None:
            return [(relative(path), number, 'command', f"{rel_script} takes no settings, but is given {arg}")]
        elif not arg.startswith('--') and os.path.isfile(config):
            problems += check_config_file(config, rel_script, settings, f"(named in {relative(path)}:{number})", counts)
        elif not arg.startswith('--'):
            problems.append((relative(path), number, 'command', f"config file {arg} does not exist"))
        else:
            counts['settings'] += 1
            key, _, value = arg[2:].partition('=')
            found = setting_problem(rel_script, settings, key, value, arg)
            problems += [(relative(path), number, *found)] if found else []
    return problems


# ----------------------------------------------------------------------------- 3. Python names
def module_file(module, near):
    """The project file that `import module` in the file near refers to, or None."""
    name = module.lstrip('.').replace('.', os.sep) + '.py'
    found = lookup(name, os.path.dirname(near), os.path.dirname(near) + '/..', ROOT) if module.strip('.') else None
    return os.path.normpath(found) if found and os.path.isfile(found) else None


def find_class(path, name):
    """(file, ClassDef) of the class name as seen from path: defined there or imported from the project."""
    _, imports, classes = definitions(path)
    module, _, original = imports.get(name, '').rpartition('.')
    if name in classes or not module_file(module, path):
        return path, classes.get(name)
    return find_class(module_file(module, path), original)


def bindings(node):
    """(name, node) of what a module's or class's body binds, in if/for/with/try blocks too, not in functions."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield child.name, child
        elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            yield child.id, child
        elif not isinstance(child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            yield from bindings(child)


@functools.lru_cache(maxsize=None)
def definitions(path):
    """(names, imports, classes) of a Python file: what it binds at module level, {name: dotted origin} of the
    imports anywhere in it, {name: ClassDef}."""
    tree, imports = parse_python(path), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):  # import torch.nn binds torch
            imports.update({a.asname or a.name.split('.')[0]: a.name if a.asname else a.name.split('.')[0]
                            for a in node.names})
        elif isinstance(node, ast.ImportFrom):
            imports.update({a.asname or a.name: f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names})
    names = {name for name, _ in bindings(tree)}
    return names, imports, {name: node for name, node in bindings(tree) if isinstance(node, ast.ClassDef)}


def has_member(path, cls, member, depth=0):
    """Whether class cls (a ClassDef in path) or a base has member: a method, class attribute, field or self.member.
    A base from outside the project is imported and asked (yes if that fails: nothing to check against)."""
    if member in dict(bindings(cls)) or any(isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and
                                            getattr(n.value, 'id', '') == 'self' and n.attr == member
                                            for n in ast.walk(cls)):
        return True
    imports = definitions(path)[1]
    for base in map(ast.unparse, cls.bases):
        head = base.split('.')[0]
        base_path, base_cls = find_class(path, base)
        if base_cls is not None and depth < 10 and has_member(base_path, base_cls, member, depth + 1):
            return True
        if base_cls is None and head in imports:
            module, _, name = (imports[head] + base[len(head):]).rpartition('.')
            try:
                if hasattr(getattr(importlib.import_module(module), name), member):
                    return True
            except Exception:
                return True
    return False


def identifier_problem(name, sources, root):
    """None if the dotted name is defined in one of the source files, else why not."""
    first, *rest = name.removesuffix('()').split('.')
    if first == 'self' and rest:
        return None if any(has_member(s, c, rest[0]) for s in sources for c in definitions(s)[2].values()) else \
            f"no class in {', '.join(map(relative, sources))} has a member {rest[0]}"
    for source in sources:
        names, imports, classes = definitions(source)
        if first in classes and rest:
            return None if has_member(source, classes[first], rest[0]) else \
                f"{first} in {relative(source)} has no member {rest[0]}"
        if first in imports and rest:
            class_path, cls = find_class(source, first)
            if cls is not None:  # from model import GPT
                return identifier_problem(name, [class_path], root)
            module = module_file(imports[first].lstrip('.'), source)  # import model, from data import common
            return identifier_problem('.'.join(rest), [module], root) if module else None  # torch, F, np: not ours
        if first in names or first in imports or first in (script_settings(source) or {}):
            return None
    if rest and os.path.isfile(os.path.join(root, first + '.py')):  # model.GPT: a project module
        return identifier_problem('.'.join(rest), [os.path.join(root, first + '.py')], root)
    return f"{first} is not defined in {', '.join(map(relative, sources))}"


def check_identifier(path, number, span, sources, ignored, root, counts):
    """A Python name must be defined in the source: files, file.py:name in file.py; other spans are no names."""
    explicit = re.fullmatch(r'([\w./-]+\.py):([A-Za-z_][\w.]*(?:\(\))?)', span)
    name = explicit[2] if explicit else span.removesuffix('()')
    if not explicit and (not sources or not IDENTIFIER.match(span) or {span, name} & ignored
                         or keyword.iskeyword(name) or keyword.issoftkeyword(name) or name.endswith(FILE_EXTENSIONS)
                         or name.split('.')[0] in dir(builtins) or os.path.exists(os.path.join(root, name))):
        return []  # not a name to look up: no source: yet, or a keyword, builtin, file or ignored word
    counts['identifiers'] += 1
    files = [explicit[1]] if explicit else sources
    missing = [f for f in files if not os.path.isfile(os.path.join(root, f))]
    why = f"{', '.join(missing)} does not exist" if missing else \
        identifier_problem(name, [os.path.join(root, f) for f in files], root)
    return [(relative(path), number, 'identifier', f"`{span}`: {why}")] if why else []


# ----------------------------------------------------------------------------- 4. error messages
@functools.lru_cache(maxsize=None)
def error_patterns(root):
    """The messages starting with 'error:' in the project's Python files (not tests, not this checker), each {...}
    of an f-string matching any text. A message that is only 'error: {e}' stands for 'error: ' and each
    exception message the project raises (train.py prints a bad GPTConfig's ValueError so)."""
    def pattern(node):
        parts = node.values if isinstance(node, ast.JoinedStr) else [node]
        return ''.join(re.escape(str(v.value)) if isinstance(v, ast.Constant) else ANY for v in parts)
    patterns, raised, generic = [], [], False
    for rel in project_files(root):
        name = os.path.basename(rel)
        if not name.endswith('.py') or name.startswith('test_') or name.endswith('_test.py') \
                or rel.startswith(os.path.join('docs', 'validation', '')):
            continue
        try:
            tree = parse_python(os.path.join(root, rel))
        except SyntaxError:  # a file being edited: its messages are left out until it parses
            continue
        pieces = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args \
                    and isinstance(node.exc.args[0], (ast.Constant, ast.JoinedStr)):
                raised.append(pattern(node.exc.args[0]))
            elif isinstance(node, ast.JoinedStr) or isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in pieces:  # the literal parts of an f-string are taken with the whole
                if pattern(node).replace(ANY, '').replace('\\ ', '') == 'error:':
                    generic = True
                elif pattern(node).startswith('error:'):
                    patterns.append(pattern(node))
    patterns += ['error:\\ ' + p for p in raised if not p.startswith('error:')] if generic else []
    return [re.compile(p, re.DOTALL) for p in patterns]


def check_error_message(path, number, message, root, counts):
    counts['errors'] += 1
    message = re.sub(r'\s+', ' ', message.strip())
    if any(pattern.fullmatch(message) for pattern in error_patterns(root)):
        return []
    return [(relative(path), number, 'error-message', f"no message in the code reads `{message}`")]


# ----------------------------------------------------------------------------- 5. tables that restate the code
def check_table(path, number, words, prose, root, counts):
    """The table after <!-- table: file.py NAME --> restates NAME, a literal dict (or list) in file.py: its first
    columns must be its keys and values (or items) in order, as Python literals (989e12, 'H100') or as text."""
    def value(cell):
        try:
            return ast.literal_eval(cell)
        except (ValueError, SyntaxError, TypeError):
            return cell
    rows = []
    for n, text in [(n, text) for n, text in prose if n > number]:
        if not text.lstrip().startswith('|') or rows and n != rows[-1][0] + 1:
            break
        rows.append((n, [c.strip(' `') for c in text.strip().strip('|').split('|')]))
    file = os.path.join(root, words[0]) if len(words) == 2 else ''
    code = next((v[words[1]] for v in [dict(assign(node, {})) for node in parse_python(file).body]
                 if words[1] in v), None) if os.path.isfile(file) else None
    if not isinstance(code, (dict, list, tuple)) or len(rows) < 3:  # a header, the |---| line, rows
        why = 'no table follows' if isinstance(code, (dict, list, tuple)) else 'no literal dict or list'
        return [(relative(path), number, 'fact', f"<!-- table: {' '.join(words)} -->: {why}")]
    expected = list(code.items()) if isinstance(code, dict) else [v if type(v) is tuple else (v,) for v in code]
    counts['facts'] += len(expected)
    for (line, cells), item in zip(rows[2:], expected):
        if len(cells) < len(item) or any(value(c) != v and c != str(v) for c, v in zip(cells, item)):
            return [(relative(path), line, 'fact', f"the table says {' | '.join(cells[:len(item)])}; "
                                                   f"{words[1]} in {words[0]} has {', '.join(map(repr, item))}")]
    if len(rows) - 2 != len(expected):
        return [(relative(path), rows[-1][0], 'fact', f"the table has {len(rows) - 2} rows; {words[1]} in {words[0]} "
                                                      f"has {len(expected)}")]
    return []


# ----------------------------------------------------------------------------- 6. runnable blocks
def check_runnable(path, blocks, root, counts):
    """Run the blocks in order with bash -e -o pipefail, in one copy of the project without what git ignores."""
    problems = []
    with tempfile.TemporaryDirectory(prefix='check_docs_') as copy:
        for rel in project_files(root):
            os.makedirs(os.path.dirname(os.path.join(copy, rel)), exist_ok=True)
            shutil.copy2(os.path.join(root, rel), os.path.join(copy, rel))
        for block in blocks:
            counts['runnable'] += 1
            lines = [t for _, t in block['lines']]
            if block['lang'] == 'console':
                lines = [t.lstrip()[2:] for t in lines if t.lstrip().startswith('$ ')]
            proc = subprocess.Popen(['bash', '-e', '-o', 'pipefail', '-c', '\n'.join(lines) + '\n'], cwd=copy,
                                    env={**os.environ, **RUNNABLE_ENV}, stdin=subprocess.DEVNULL, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                output, timed_out = proc.communicate(timeout=block['timeout'])[0], False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own process group, so its children stop too
                output, timed_out = proc.communicate()[0], True
            last = next((t.strip() for t in reversed(output.splitlines()) if t.strip()), '(no output)')
            if timed_out or proc.returncode:
                why = f"timed out after {block['timeout']} s" if timed_out else f"exited with status {proc.returncode}"
                problems.append((relative(path), block['line'], 'runnable', f"{why}: {last}"))
    return problems


# -----------------------------------------------------------------------------
def check_doc(path, root=ROOT, run=True, counts=None):
    """The problems of one markdown file, as (path, line, kind, message) tuples."""
    counts = collections.Counter() if counts is None else counts
    counts['files'] += 1
    prose, blocks, markers = parse_markdown(path)
    blocks = [b for b in blocks if not b.get('no_validate')]
    folder, name = os.path.basename(os.path.dirname(path)), os.path.basename(path)
    ignored = {w for _, kind, words in markers if kind == 'ignore' for w in words}
    sources = [(n, words) for n, kind, words in markers if kind == 'source' and folder in ('concepts', 'code-analysis')]
    problems = [(relative(path), n, 'runnable', "<!-- runnable --> is not followed by a fenced block")
                for n, kind, _ in markers if kind == 'dangling']
    for number, text in prose:
        problems += check_links(path, number, text, counts)
        current = ([[]] + [words for n, words in sources if n < number])[-1]  # the files of the last source:
        for span in code_spans(text):
            problems += check_path(path, number, span, root, counts) if span not in ignored else []
            problems += check_identifier(path, number, span, current, ignored, root, counts)
    if (folder, name) == ('guides', 'troubleshooting.md'):
        shown = [(n, s) for n, text in prose for s in code_spans(text) + [text.strip()] if s.startswith('error:')]
        shown += [(n, text) for b in blocks for n, text in b['lines'] if text.strip().startswith('error:')]
        problems += [p for n, message in shown for p in check_error_message(path, n, message, root, counts)]
    for block in [b for b in blocks if b['lang'] in COMMAND_LANGUAGES]:
        cwd = root
        for number, words in shell_commands(block):
            if isinstance(words, ValueError):
                problems.append((relative(path), number, 'command', f"cannot parse this command: {words}"))
            elif words[0] == 'cd' and len(words) == 2:
                cwd = os.path.normpath(os.path.join(cwd, words[1]))  # for the commands after it
            else:
                problems += check_command(path, number, words, cwd, root, counts)
    problems += [p for n, kind, words in markers if kind == 'table'
                 for p in check_table(path, n, words, prose, root, counts)]
    runnable = [b for b in blocks if b.get('runnable')]
    return problems + (check_runnable(path, runnable, root, counts) if run and runnable else [])


def check(paths=None, root=ROOT, run=True, counts=None):
    """Every problem in the markdown files (or folders) named, or in all the project's docs if none:
    a sorted list of (path, line, kind, message). counts, a Counter, receives how many items were checked."""
    if not paths:
        data = os.path.join(root, 'data')
        paths = [os.path.join(root, 'README.md'), os.path.join(root, 'docs')]
        paths += sorted(os.path.join(data, d) for d in os.listdir(data) if os.path.isdir(os.path.join(data, d)))
    files = []
    for path in paths:
        files += [] if os.path.isdir(path) else [path]
        for folder, dirs, names in os.walk(path):  # nothing for a file
            dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
            files += [os.path.join(folder, n) for n in sorted(names) if n.lower().endswith('.md')]
    counts = collections.Counter() if counts is None else counts
    return sorted(set(p for file in files for p in check_doc(os.path.abspath(file), root, run, counts)))


def main(argv):
    run, paths = '--no-run' not in argv, [a for a in argv if not a.startswith('-')]
    unknown = [a for a in argv if a.startswith('-') and a != '--no-run']
    if unknown:
        sys.exit(f"error: unknown option {unknown[0]}; usage: check_docs.py [--no-run] [file.md or folder ...]")
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        sys.exit(f"error: {missing[0]} does not exist; name markdown files or folders, or nothing for all the docs")
    counts, t0 = collections.Counter(), time.perf_counter()
    problems = check(paths, ROOT, run, counts)
    for path, line, kind, message in problems:
        print(f"{path}:{line}: {kind}: {message}")
    items = ', '.join(f"{counts[k]} {k}" for k in ('links', 'paths', 'commands', 'settings', 'identifiers', 'errors',
                                                    'facts', 'runnable'))
    print(f"{len(problems)} problem(s) in {counts['files']} files; checked {items} "
          f"in {time.perf_counter() - t0:.1f}s{'' if run else ' (runnable blocks not run)'}")
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
