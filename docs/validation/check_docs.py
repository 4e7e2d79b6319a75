"""
Check the docs against the code, so that a renamed setting, a moved file or a reworded error message shows up as
a stale line instead of silently misleading a reader. The rules are in docs/validation/README.md.

usage: python docs/validation/check_docs.py [--no-run] [file.md or folder ...]
Checks the markdown files and folders named, by default all the docs: prints `path:line: kind: what` for each
stale item, then a summary, and exits 1 if there is any. --no-run skips the runnable blocks.
"""

import ast
import builtins
import collections
import contextlib
import functools
import glob
import importlib
import itertools
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from configurator import CONFIG_TYPES, configure  # noqa: E402  (the rules the scripts apply)

RUNNABLE_TIMEOUT = 120  # seconds a runnable block may take, unless it says <!-- runnable timeout=N -->
RUNNABLE_ENV = dict(NANOGPT_OFFLINE='1', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', WANDB_MODE='disabled',
                    OMP_NUM_THREADS='1')  # on cores other processes are busy with, 2 threads can be 40x slower than 1
COMMAND_LANGUAGES = ('', 'sh', 'bash', 'shell')  # fenced blocks whose commands are checked
PATH_EXTENSIONS = ('.py', '.md', '.sh', '.txt', '.pkl', '.bin', '.json', '.png')  # a span ending so is a path
FILE_EXTENSIONS = PATH_EXTENSIONS + ('.pt', '.tmp', '.parquet', '.jsonl', '.csv', '.toml', '.yaml', '.log')
OTHER_ARGUMENTS = ('docs/validation/check_docs.py',)  # scripts that take arguments of their own, not --key=value
MARKER = re.compile(r'<!--\s*(runnable|no-validate|source:|table:|validate:\s*ignore)(.*?)-->')
CODE_SPAN = re.compile(r'(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)')
IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\(\))?$')


def relative(path):
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def lookup(name, *folders):
    return next((os.path.join(f, name) for f in folders if os.path.exists(os.path.join(f, name))), None)


def code_spans(text):
    return [match[2].strip() for match in CODE_SPAN.finditer(text)]


@functools.lru_cache(maxsize=None)
def parse_python(path):
    with open(path, encoding='utf-8') as f:
        return ast.parse(f.read(), filename=path)


@functools.lru_cache(maxsize=None)
def project_files(root):
    """The project's files relative to root, as git lists them: tracked or new, and not what .gitignore lists."""
    listing = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=root,
                             capture_output=True, text=True).stdout
    return [rel for rel in listing.split('\0') if os.path.isfile(os.path.join(root, rel))]  # not deleted ones


@functools.lru_cache(maxsize=None)
def is_ignored(relpath, root):
    """Whether .gitignore lists relpath, which need not exist: data, checkpoints, outputs."""
    return subprocess.run(['git', 'check-ignore', '-q', '--no-index', relpath], cwd=root).returncode == 0


# ----------------------------------------------------------------------------- reading markdown and Python
def parse_markdown(path):
    """(prose, blocks, markers): prose [(line number, text)] outside code blocks, comments and paragraphs after
    <!-- no-validate -->; fenced blocks as dicts, with the runnable and no-validate comments before them as keys;
    markers [(line number, kind, words)] of source:, table:, validate: ignore and a runnable comment left dangling."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    prose, blocks, markers, pending = [], [], [], {}
    fence, skipping, in_comment, indented = None, False, False, False
    for number, text in enumerate(lines, 1):
        stripped = text.strip()
        # an indented code block (4 spaces, after a blank line) shows text as it is: no markers, fences or prose
        indented = bool(stripped) and text.startswith('    ') and (indented or not lines[number - 2].strip())
        marker, opening = MARKER.fullmatch(stripped), re.match(r'(`{3,}|~{3,})\s*([\w+-]*)', stripped)
        if fence and stripped.startswith(fence) and not stripped.strip(fence[0]):
            fence = None
        elif fence:
            blocks[-1]['lines'].append((number, text))
        elif in_comment or stripped.startswith('<!--') and not marker:  # a comment, perhaps over several lines
            in_comment = '-->' not in stripped
        elif indented:
            continue
        elif marker and marker[1] in ('runnable', 'no-validate'):
            pending[marker[1]] = marker[2]
        elif marker:
            markers.append((number, marker[1].split(':')[0], marker[2].split()))
        elif not stripped:
            skipping = False
        elif opening:
            blocks.append({'line': number, 'lang': opening[2].lower(), 'lines': [], **pending})
            fence, pending, skipping = opening[1], {}, False
        else:
            if 'runnable' in pending:
                markers.append((number, 'dangling', []))
            skipping = skipping or 'no-validate' in pending
            if not skipping:
                prose.append((number, re.sub(r'<!--.*?-->', '', text)))
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


def shell_commands(block):
    """(line number, words) of each command of a fenced block, continuation lines joined, split at && ; | ( ) and
    redirections (the 2 of 2>&1 dropped first); words is [ValueError] for a python line shlex cannot split."""
    number = block['lines'][0][0] if block['lines'] else 0  # where the next command starts
    for line in re.split(r'(?<!\\)\n', '\n'.join(text.rstrip() for _, text in block['lines'])):
        first, number = number, number + line.count('\n') + 1
        line = re.sub(r'(?<!\S)\d+(?=[<>])', '', line.replace('\\\n', ' '))
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError as e:
            words = [e] if re.search(r'(^|[\s;&|(])(python[\d.]*|torchrun)\s', line) else []
        for operator, command in itertools.groupby(words, lambda w: re.fullmatch(r'[;&|()<>]+', str(w)) is not None):
            if not operator:
                yield first, list(command)


def assign(node, settings):
    """[(name, value)] of what an assignment sets, also recorded in settings if configure() takes it for a setting:
    the value computed from literals and earlier settings (5 * 8), else '' (default_device(): any text)."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
        and node.value else []
    names = [t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith('_')]
    try:
        value = eval(compile(ast.Expression(node.value), '<default>', 'eval'), {'__builtins__': {}}, dict(settings))
    except Exception:
        value = ''
    settings.update({name: value for name in names if type(value) in CONFIG_TYPES})  # not None, a tuple, a dict
    return [(name, value) for name in names]


@functools.lru_cache(maxsize=None)
def script_settings(path):
    """A script's settings {name: default}: what it assigns before configure(globals()), with the fields of
    globals().update({... fields(X) if f.name != '...'}); none if it never calls configure."""
    settings = {}
    for node in parse_python(path).body:
        calls = {getattr(n.func, 'id', ''): n for n in ast.walk(node) if isinstance(n, ast.Call)}
        if 'configure' in calls:
            return settings
        if 'fields' in calls:  # train.py takes GPTConfig's fields as settings
            fields, found = {}, resolve(path, calls['fields'].args[0].id)
            for item in found[1].body if isinstance(found, tuple) else []:
                assign(item, fields)
            excluded = {n.comparators[0].value for n in ast.walk(node) if isinstance(n, ast.Compare)
                        and isinstance(n.ops[0], ast.NotEq) and isinstance(n.comparators[0], ast.Constant)}
            settings.update({k: v for k, v in fields.items() if k not in excluded and k not in settings})
        assign(node, settings)
    return {}


def setting_problem(script, settings, argument, root):
    """(kind, message) if the script refuses a command-line argument, --key=value or a config file, as its
    configure(globals()) decides with these settings; else None."""
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
def scope(path):
    """{name: the node that binds it at module level, or the dotted origin of an import anywhere} of a Python file."""
    imports = {}
    for node in ast.walk(parse_python(path)):
        if isinstance(node, ast.Import):  # import torch.nn binds torch
            imports.update({a.asname or a.name.split('.')[0]: a.name if a.asname else a.name.split('.')[0]
                            for a in node.names})
        elif isinstance(node, ast.ImportFrom):
            imports.update({a.asname or a.name: f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names})
    return {**imports, **dict(bindings(parse_python(path)))}


def module_file(module, near):
    """The project file that `import module` in the file near refers to, or None."""
    name = module.lstrip('.').replace('.', os.sep) + '.py'
    found = lookup(name, os.path.dirname(near), os.path.dirname(near) + '/..', ROOT) if module.strip('.') else None
    return os.path.normpath(found) if found and os.path.isfile(found) else None


def resolve(path, name):
    """What name is in the Python file path: (file, ClassDef) for a class of the project, [file] for a module of the
    project, the dotted origin of anything else imported (torch.nn.Module), True for anything else defined, or None."""
    meaning, (head, _, rest) = scope(path).get(name), name.partition('.')
    if isinstance(meaning, ast.ClassDef):
        return path, meaning
    if rest and isinstance(scope(path).get(head), str):  # nn.Module
        return f"{scope(path)[head]}.{rest}"
    if not isinstance(meaning, str):  # a function or an assignment, or nothing
        return True if meaning else None
    if module_file(meaning, path):  # import model, from data import common
        return [module_file(meaning, path)]
    module, _, original = meaning.rpartition('.')
    found = resolve(module_file(module, path), original) if module_file(module, path) else None
    return found if isinstance(found, tuple) else meaning  # from model import GPT; torch, F, np: not ours


def has_member(path, cls, member):
    """Whether class cls (a ClassDef in path) or a base has member: a method, class attribute, field or self.member."""
    assigned = {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
                and getattr(n.value, 'id', '') == 'self'}
    if member in assigned or member in dict(bindings(cls)):
        return True
    for base in (resolve(path, ast.unparse(base)) for base in cls.bases):
        if isinstance(base, tuple) and has_member(*base, member) or isinstance(base, str) and outside_has(base, member):
            return True
    return False


def outside_has(origin, member):
    """Whether the class at origin, a dotted name from outside the project (torch.nn.Module), has member; yes if it
    cannot be imported, as there is nothing to check against."""
    module, _, name = origin.rpartition('.')
    try:
        return hasattr(getattr(importlib.import_module(module), name), member)
    except Exception:
        return True


def identifier_problem(name, sources, root):
    """None if the dotted name is defined in one of the source files, else why not."""
    first, *rest = name.removesuffix('()').split('.')
    if first == 'self' and rest:
        classes = [(s, c) for s in sources for c in scope(s).values() if isinstance(c, ast.ClassDef)]
        return None if any(has_member(s, c, rest[0]) for s, c in classes) else \
            f"no class in {', '.join(map(relative, sources))} has a member {rest[0]}"
    found = next(filter(None, (resolve(s, first) or first in script_settings(s) for s in sources)), None)
    if found is None and rest and os.path.isfile(os.path.join(root, first + '.py')):
        found = [os.path.join(root, first + '.py')]  # model.GPT: a project module
    if found is None:
        return f"{first} is not defined in {', '.join(map(relative, sources))}"
    if isinstance(found, tuple) and rest and not has_member(*found, rest[0]):
        return f"{first} in {relative(found[0])} has no member {rest[0]}"
    return identifier_problem('.'.join(rest), found, root) if isinstance(found, list) and rest else None


@functools.lru_cache(maxsize=None)
def error_patterns(root):
    """The messages starting with 'error:' in the project's code but tests and this checker, each {...} of an
    f-string matching any text; 'error: {e}' stands for 'error: ' and each message the project raises."""
    def pattern(node):
        parts = node.values if isinstance(node, ast.JoinedStr) else [node]
        return ''.join(re.escape(str(v.value)) if isinstance(v, ast.Constant) else '.*?' for v in parts)
    strings, raised = [], []
    for rel in project_files(root):
        if not rel.endswith('.py') or re.search(r'(^|/)test_|_test\.py$|^docs/validation/', rel):
            continue
        try:
            nodes = list(ast.walk(parse_python(os.path.join(root, rel))))
        except SyntaxError:  # a file being edited: its messages are left out until it parses
            continue
        strings += [pattern(n) for n in nodes if isinstance(n, ast.JoinedStr) or isinstance(n, ast.Constant)
                    and isinstance(n.value, str)]  # the parts of an f-string too, which match no whole message
        raised += [pattern(n.exc.args[0]) for n in nodes if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call)
                   and n.exc.args and isinstance(n.exc.args[0], (ast.Constant, ast.JoinedStr))]
    generic = re.escape('error: ') + '.*?'  # train.py prints a bad GPTConfig's ValueError so
    patterns = [p for p in strings if p.startswith('error:') and p != generic]
    patterns += [re.escape('error: ') + p for p in raised if not p.startswith('error:')] if generic in strings else []
    return [re.compile(p, re.DOTALL) for p in patterns]


# ----------------------------------------------------------------------------- the rules of README.md
class Doc:
    """One markdown file and the problems found in it; counts (a Counter) receives how many items were checked."""

    def __init__(self, path, root, counts):
        self.path, self.root, self.counts, self.problems = path, root, counts, []
        self.prose, blocks, self.markers = parse_markdown(path)
        self.blocks = [block for block in blocks if 'no-validate' not in block]

    def report(self, line, kind, message):
        self.problems.append((relative(self.path), line, kind, message))

    def check(self, run):
        """The problems of the document, as (path, line, kind, message) tuples."""
        self.counts['files'] += 1
        ignored = {word for _, kind, words in self.markers if kind == 'validate' for word in words}
        explained = os.path.basename(os.path.dirname(self.path)) in ('concepts', 'code-analysis')
        sources = [(n, words) for n, kind, words in self.markers if kind == 'source' and explained]
        for number, kind, words in self.markers:
            if kind == 'dangling':
                self.report(number, 'runnable', "<!-- runnable --> is not followed by a fenced block")
            elif kind == 'table':
                self.check_table(number, words)
        for number, text in self.prose:
            self.check_links(number, text)
            current = ([[]] + [words for n, words in sources if n < number])[-1]  # the files of the last source:
            for span in code_spans(text):
                if span not in ignored:
                    self.check_path(number, span)
                self.check_identifier(number, span, current, ignored)
        if self.path.endswith(os.path.join(os.sep + 'guides', 'troubleshooting.md')):
            self.check_error_messages()
        for block in (block for block in self.blocks if block['lang'] in COMMAND_LANGUAGES):
            for number, words in shell_commands(block):
                self.check_command(number, words)
        if run:
            self.check_runnable([block for block in self.blocks if 'runnable' in block])
        return self.problems

    def check_links(self, number, text):
        """1. A relative link must lead to a file or folder, and its #anchor to a heading of the markdown file."""
        text = CODE_SPAN.sub('CODE', text)
        targets = re.findall(r'\]\(\s*<?([^)\s>]+)>?(?:\s+["\'][^)]*)?\)', text)
        targets += re.findall(r'^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)', text)  # [label]: target
        for target in (t for t in targets if not re.match(r'[A-Za-z][A-Za-z0-9+.-]*:', t)):  # not https: etc.
            self.counts['links'] += 1
            file_part, _, anchor = target.partition('#')
            folder = ROOT if file_part.startswith('/') else os.path.dirname(self.path)
            resolved = os.path.join(folder, file_part.lstrip('/')) if file_part else self.path
            if not os.path.exists(resolved):
                self.report(number, 'link', f"link to {target}: {file_part} does not exist")
            elif anchor and resolved.endswith('.md') and anchor.lower() not in heading_anchors(resolved):
                self.report(number, 'link', f"link to {target}: no heading makes #{anchor}")

    def check_path(self, number, span):
        """1. A code span that names a file must name one that exists, or one that git ignores."""
        if span.startswith(('/', '~', '-')) or not re.fullmatch(r'[\w.\-/]+', span):
            return  # <placeholders>, globs, $VARS, key=value, URLs, absolute paths: not checkable
        folders, first = (self.root, os.path.dirname(self.path)), span.split('/')[0]
        kind_of_file = span.startswith('.') and '/' not in span and span.count('.') == 1  # `.md`
        in_a_folder = '/' in span and (first in ('.', '..') or lookup(first, *folders))  # `data/foo/`, not `n/a`
        if kind_of_file or not (span.endswith(PATH_EXTENSIONS) or in_a_folder):
            return
        self.counts['paths'] += 1
        relpaths = [os.path.relpath(os.path.join(folder, span), self.root) for folder in folders]
        if lookup(span, *folders) or any(is_ignored(rel, self.root) for rel in relpaths if not rel.startswith('..')):
            return
        if '/' in span or span not in {os.path.basename(f) for f in project_files(self.root)}:  # `prepare.py`
            self.report(number, 'path', f"`{span}` does not exist (and git does not ignore it)")

    def check_command(self, number, words):
        """2. A python command must name a script that exists, and only config files and settings that it takes."""
        if isinstance(words[0], ValueError):
            return self.report(number, 'command', f"cannot parse this command: {words[0]}")
        words = list(itertools.dropwhile(lambda word: re.fullmatch(r'[A-Za-z_]\w*=\S*', word), words))  # VAR=value
        runs = [i for i, word in enumerate(words) if word.endswith('.py') and not word.startswith('-')]
        if not runs or not re.fullmatch(r'python[\d.]*|torchrun', os.path.basename(words[0])) \
                or {'-m', '-c', '-', '--module', '--no-python', '--no_python'} & set(words[:runs[0]]):
            return  # no python command, or python -m or -c, which runs no script file
        script, args = os.path.normpath(words[runs[0]]), words[runs[0] + 1:]
        self.counts['commands'] += 1
        if re.search(r'[$<]', script) or script in OTHER_ARGUMENTS:
            return
        if not os.path.isfile(os.path.join(self.root, script)):
            return self.report(number, 'command', f"`python {words[runs[0]]}`: {words[runs[0]]} does not exist")
        for arg in (a for a in args if not re.search(r'[$<*]', a)):  # not what the shell computes, or placeholders
            self.counts['settings'] += 1
            found = setting_problem(script, script_settings(os.path.join(self.root, script)), arg, self.root)
            if found:
                self.report(number, *found)

    def check_identifier(self, number, span, sources, ignored):
        """3. A Python name must be defined in the source: files, file.py:name in file.py; other spans are no names."""
        explicit = re.fullmatch(r'([\w./-]+\.py):([A-Za-z_][\w.]*(?:\(\))?)', span)
        name = explicit[2] if explicit else span.removesuffix('()')
        if not explicit and (not sources or not IDENTIFIER.match(span) or {span, name} & ignored
                             or keyword.iskeyword(name) or keyword.issoftkeyword(name) or name.endswith(FILE_EXTENSIONS)
                             or name.split('.')[0] in dir(builtins) or os.path.exists(os.path.join(self.root, name))):
            return  # not a name to look up: no source: yet, or a keyword, builtin, file or ignored word
        self.counts['identifiers'] += 1
        files = [explicit[1]] if explicit else sources
        missing = [f for f in files if not os.path.isfile(os.path.join(self.root, f))]
        why = f"{', '.join(missing)} does not exist" if missing else \
            identifier_problem(name, [os.path.join(self.root, f) for f in files], self.root)
        if why:
            self.report(number, 'identifier', f"`{span}`: {why}")

    def check_error_messages(self):
        """4. Each code span, line and line of a block that starts with 'error:' must be a message of the code."""
        shown = [(n, s) for n, text in self.prose for s in code_spans(text) + [text.strip()] if s.startswith('error:')]
        shown += [(n, text) for block in self.blocks for n, text in block['lines'] if text.strip().startswith('error:')]
        for number, message in shown:
            self.counts['errors'] += 1
            message = re.sub(r'\s+', ' ', message.strip())
            if not any(pattern.fullmatch(message) for pattern in error_patterns(self.root)):
                self.report(number, 'error-message', f"no message in the code reads `{message}`")

    def check_runnable(self, blocks):
        """5. Run the blocks in order with bash -e -o pipefail, in one copy of the project without what git ignores."""
        with tempfile.TemporaryDirectory(prefix='check_docs_') as copy:
            for rel in project_files(self.root):
                os.makedirs(os.path.dirname(os.path.join(copy, rel)), exist_ok=True)
                shutil.copy2(os.path.join(self.root, rel), os.path.join(copy, rel))
            for block in blocks:
                self.counts['runnable'] += 1
                timeout = int((re.search(r'timeout=(\d+)', block['runnable']) or [0, RUNNABLE_TIMEOUT])[1])
                proc = subprocess.Popen(['bash', '-e', '-o', 'pipefail', '-c', '\n'.join(t for _, t in block['lines'])],
                                        cwd=copy, env={**os.environ, **RUNNABLE_ENV}, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
                try:
                    output, why = proc.communicate(timeout=timeout)[0], f"exited with status {proc.returncode}"
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)  # its own process group, so its children stop too
                    output, why = proc.communicate()[0], f"timed out after {timeout} s"
                last = next((t.strip() for t in reversed(output.splitlines()) if t.strip()), '(no output)')
                if proc.returncode:
                    self.report(block['line'], 'runnable', f"{why}: {last}")

    def check_table(self, number, words):
        """6. The table after <!-- table: file.py NAME --> restates NAME, a literal dict in file.py: its first two
        columns must be its keys and values in order, each the same Python literal (989e12) or the same text."""
        def shows(cell, value):
            with contextlib.suppress(ValueError, SyntaxError, TypeError):
                return ast.literal_eval(cell) == value or cell == str(value)
            return cell == str(value)
        rows = []
        for line, text in ((n, text) for n, text in self.prose if n > number):
            if not text.lstrip().startswith('|') or rows and line != rows[-1][0] + 1:
                break
            rows.append((line, [cell.strip(' `') for cell in text.strip().strip('|').split('|')]))
        file = os.path.join(self.root, words[0]) if len(words) == 2 else ''
        values = [dict(assign(node, {})) for node in parse_python(file).body] if os.path.isfile(file) else []
        code = next((v[words[1]] for v in values if words[1] in v), None)
        if not isinstance(code, dict) or len(rows) < 3:  # a header, the |---| line, rows
            why = 'no table follows' if isinstance(code, dict) else 'no literal dict'
            return self.report(number, 'fact', f"<!-- table: {' '.join(words)} -->: {why}")
        self.counts['facts'] += len(code)
        for (line, cells), (key, value) in zip(rows[2:], code.items()):
            if len(cells) < 2 or not shows(cells[0], key) or not shows(cells[1], value):
                return self.report(line, 'fact', f"the table says {' | '.join(cells[:2])}; "
                                                 f"{words[1]} in {words[0]} has {key!r}, {value!r}")
        if len(rows) - 2 != len(code):
            self.report(rows[-1][0], 'fact', f"the table has {len(rows) - 2} rows; {words[1]} in {words[0]} "
                                             f"has {len(code)}")


def check(paths=None, root=ROOT, run=True, counts=None):
    """Every problem in the markdown files (or folders) named, or in all the project's docs if none: a sorted list of
    (path, line, kind, message). counts, a Counter, receives how many items were checked."""
    paths = paths or [os.path.join(root, name) for name in ('README.md', 'docs', 'data')]
    files = [path for path in paths if not os.path.isdir(path)]
    files += [file for path in paths for file in glob.glob(os.path.join(path, '**', '*.md'), recursive=True)]
    counts = collections.Counter() if counts is None else counts
    return sorted({problem for file in files for problem in Doc(os.path.abspath(file), root, counts).check(run)})


def main(argv):
    if '-h' in argv or '--help' in argv:
        print(__doc__[__doc__.index('usage:'):].strip())
        return 0
    unknown = [arg for arg in argv if arg.startswith('-') and arg != '--no-run']
    if unknown:
        sys.exit(f"error: unknown option {unknown[0]}; usage: check_docs.py [--no-run] [file.md or folder ...]")
    paths = [arg for arg in argv if arg != '--no-run']
    missing = [path for path in paths if not os.path.exists(path)]
    if missing:
        sys.exit(f"error: {missing[0]} does not exist; name markdown files or folders, or nothing for all the docs")
    counts, t0, run = collections.Counter(), time.perf_counter(), '--no-run' not in argv
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
