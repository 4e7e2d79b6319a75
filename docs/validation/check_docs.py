"""Check the docs against the code, so that a stale statement shows up instead of misleading a reader; the rules
are in docs/validation/README.md.
usage: python docs/validation/check_docs.py [--no-run] [file.md or folder ...]
Checks the markdown files and folders named (by default all the docs), prints `path:line: kind: what` for each
stale item and a summary, and exits 1 if there is any. --no-run skips the runnable blocks.
check_guides.py, beside it, runs every guide's commands in order."""

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
import symtable
import sys
import time

from project import (ROOT, assign, is_ignored, lookup, parse_python, project_copy, project_files, relative,
                     run_shell, script_settings, setting_problem)

RUNNABLE_TIMEOUT = 120  # seconds a runnable block may take, unless it says <!-- runnable timeout=N -->
COMMAND_LANGUAGES = ('', 'sh', 'bash', 'shell')  # fenced blocks whose commands are checked
PATH_EXTENSIONS = ('.py', '.md', '.sh', '.txt', '.pkl', '.bin', '.json', '.png')  # a span ending so is a path
FILE_EXTENSIONS = PATH_EXTENSIONS + ('.pt', '.tmp', '.parquet', '.jsonl', '.csv', '.toml', '.yaml', '.log')
OTHER_ARGUMENTS = ('docs/validation/check_docs.py', 'docs/validation/check_guides.py')  # scripts that take arguments of their own, not --key=value
MARKER = re.compile(r'<!--\s*(runnable|no-validate|guide:|source:|table:|settings:|validate:\s*ignore)(.*?)-->')
CODE_SPAN = re.compile(r'(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)')
IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\(\))?$')
ANY = object()  # what a script's name is, known only from ast: any member of it passes


def code_spans(text):
    return [match[2].strip() for match in CODE_SPAN.finditer(text)]


# ----------------------------------------------------------------------------- reading markdown and Python
def parse_markdown(path):
    """(prose, blocks, markers): [(line, text)] to check, fenced blocks as dicts, [(line, kind, words)] of comments."""
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
        elif marker and marker[1] == 'guide:':  # several may stand before one block
            pending.setdefault('guide', []).append(marker[2].strip())
        elif marker:
            markers.append((number, marker[1].split(':')[0], marker[2].split()))
        elif not stripped:
            skipping = False
        elif opening:
            blocks.append({'line': number, 'lang': opening[2].lower(), 'lines': [], **pending})
            fence, pending, skipping = opening[1], {}, False
        else:
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
    """(line number, words) of each command of a fenced block, split at && ; | ( ) and redirections (2>&1 too)."""
    number = block['lines'][0][0] if block['lines'] else 0  # where the next command starts
    for line in re.split(r'(?<!\\)\n', '\n'.join(text.rstrip() for _, text in block['lines'])):
        first, number = number, number + line.count('\n') + 1
        line = re.sub(r'(?<!\S)\d+(?=[<>])', '', line.replace('\\\n', ' '))
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        with contextlib.suppress(ValueError):  # shlex cannot split an unbalanced quote: nothing to check
            for operator, command in itertools.groupby(list(lexer), lambda w: bool(re.fullmatch(r'[;&|()<>]+', w))):
                if not operator:
                    yield first, list(command)


@functools.lru_cache(maxsize=None)
def module_of(path):
    """{name: what it is} of a Python file. A library (its top level only imports, defines and assigns, calling
    nothing) is imported for its real objects; a script would run, so ast reads it, following its project imports."""
    tree, folder = parse_python(path), os.path.dirname(path)
    imports = {a.asname or a.name.split('.')[0]: (getattr(node, 'module', None), a.name) for node in ast.walk(tree)
               if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}  # in functions too
    names = dict.fromkeys(imports, ANY)
    runs = [n for statement in tree.body if not isinstance(statement, (ast.FunctionDef, ast.ClassDef))
            for n in ast.walk(statement) if isinstance(n, ast.Call)]
    with contextlib.suppress(Exception):  # a library that cannot be imported is read like a script
        if not runs:
            return {**names, **vars(importlib.import_module(relative(path).removesuffix('.py').replace(os.sep, '.')))}
    for name, (module, member) in imports.items():  # from model import GPT is followed, import torch (no module) not
        file = module and lookup(module.replace('.', os.sep) + '.py', folder, os.path.dirname(folder), ROOT)
        names[name] = module_of(file).get(member, ANY) if file else ANY
    table = symtable.symtable(ast.unparse(tree), path, 'exec')  # what the top level binds, in if/for/try too
    return {**names, **{symbol.get_name(): ANY for symbol in table.get_symbols() if symbol.is_assigned()}}


def has_member(meaning, member):
    """Whether meaning has member: an attribute, a dataclass field, or self.member = ... in a method of its class."""
    if meaning is ANY or hasattr(meaning, member) or member in getattr(meaning, '__dataclass_fields__', {}):
        return True
    files = [(k.__name__, f"{ROOT}/{k.__module__.replace('.', '/')}.py") for k in getattr(meaning, '__mro__', [])]
    nodes = [n for name, file in files if os.path.isfile(file) for n in parse_python(file).body
             if isinstance(n, ast.ClassDef) and n.name == name]
    return any(isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and getattr(n.value, 'id', '') == 'self'
               and n.attr == member for node in nodes for n in ast.walk(node))


def identifier_problem(name, sources, root):
    """None if the dotted name is defined in one of the source files, else why not."""
    first, *rest = name.removesuffix('()').split('.')
    where = ', '.join(map(relative, sources))
    if first == 'self' and rest:
        classes = [module_of(s)[n.name] for s in sources for n in parse_python(s).body if isinstance(n, ast.ClassDef)]
        return None if any(has_member(c, rest[0]) for c in classes) else f"no class in {where} has a member {rest[0]}"
    home = next((s for s in sources if first in module_of(s) or first in script_settings(s)), None)
    if home is None and rest and os.path.isfile(os.path.join(root, first + '.py')):  # model.GPT: a project module
        return identifier_problem('.'.join(rest), [os.path.join(root, first + '.py')], root)
    if home is None:
        return f"{first} is not defined in {where}"
    meaning = module_of(home).get(first, ANY)  # not there: a setting train.py takes from GPTConfig
    if rest and not has_member(meaning, rest[0]):
        defined_in = getattr(sys.modules.get(getattr(meaning, '__module__', None)), '__file__', None) or home
        return f"{first} in {relative(defined_in)} has no member {rest[0]}"
    return None


@functools.lru_cache(maxsize=None)
def error_patterns(root):
    """The code's messages starting with 'error:' ({...} matching any text, 'error: {e}' any message it raises)."""
    def pattern(node):
        parts = node.values if isinstance(node, ast.JoinedStr) else [node]
        return ''.join(re.escape(str(v.value)) if isinstance(v, ast.Constant) else '.*?' for v in parts)
    strings, raised = [], []
    for rel in project_files(root):
        if not rel.endswith('.py') or re.search(r'(^|/)test_|_test\.py$|^docs/validation/', rel):
            continue
        nodes = []  # a file being edited: its messages are left out until it parses
        with contextlib.suppress(SyntaxError):
            nodes = list(ast.walk(parse_python(os.path.join(root, rel))))
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
            if kind in ('table', 'settings'):
                (self.check_table if kind == 'table' else self.check_settings_table)(number, words)
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
        with project_copy(self.root) as copy:
            for block in blocks:
                self.counts['runnable'] += 1
                timeout = int((re.search(r'timeout=(\d+)', block['runnable']) or [0, RUNNABLE_TIMEOUT])[1])
                failure = run_shell('\n'.join(t for _, t in block['lines']), copy, timeout)
                if failure:
                    self.report(block['line'], 'runnable', failure)

    def check_table(self, number, words):
        """6. The first two columns of the table after <!-- table: file.py NAME --> are the items of a literal dict."""
        def shows(cell, value):
            with contextlib.suppress(ValueError, SyntaxError, TypeError):
                return ast.literal_eval(cell) == value or cell == str(value)
            return cell == str(value)
        rows = [(line, [cell.strip(' `') for cell in text.strip().strip('|').split('|')])
                for line, text in self.table_after(number)]
        file = os.path.join(self.root, words[0]) if len(words) == 2 else ''
        values = [dict(assign(node, {})) for node in parse_python(file).body] if os.path.isfile(file) else []
        code = next((v[words[1]] for v in values if words[1] in v), None)
        if not isinstance(code, dict) or len(rows) < 3:  # a header, the |---| line, rows
            why = 'no table follows' if isinstance(code, dict) else 'no literal dict'
            return self.report(number, 'fact', f"<!-- table: {' '.join(words)} -->: {why}")
        self.counts['facts'] += len(code)
        has = f"{words[1]} in {words[0]} has"
        for (line, cells), (key, value) in zip(rows[2:], code.items()):
            if len(cells) < 2 or not shows(cells[0], key) or not shows(cells[1], value):
                return self.report(line, 'fact', f"the table says {' | '.join(cells[:2])}; {has} {key!r}, {value!r}")
        if len(rows) - 2 != len(code):
            self.report(rows[-1][0], 'fact', f"the table has {len(rows) - 2} rows; {has} {len(code)}")


    def check_settings_table(self, number, words):
        """7. The table after <!-- settings: script.py --> names every setting of the script (its first column
        only settings, as `name`)."""
        script = os.path.join(self.root, words[0]) if len(words) == 1 else ''
        settings = script_settings(script) if os.path.isfile(script) else {}
        rows = self.table_after(number)
        if not settings or len(rows) < 3:
            return self.report(number, 'settings', f"<!-- settings: {' '.join(words)} -->: no script with settings, "
                                                   f"or no table after it")
        named = {span for _, text in rows[2:] for span in code_spans(text)}
        firsts = [(line, code_spans(text.strip().strip('|').split('|')[0])) for line, text in rows[2:]]
        self.counts['settings'] += len(settings)
        for line, span in ((line, span) for line, spans in firsts for span in spans if span not in settings):
            self.report(line, 'settings', f"`{span}` is not a setting of {words[0]}")
        missing = [name for name in settings if name not in named]
        if missing:
            self.report(number, 'settings', f"the table lacks {', '.join(missing)}, settings of {words[0]}")

    def table_after(self, number):
        """[(line, text)] of the markdown table that follows line number."""
        rows = []
        for line, text in ((n, text) for n, text in self.prose if n > number):
            if not text.lstrip().startswith('|') or rows and line != rows[-1][0] + 1:
                break
            rows.append((line, text))
        return rows


def check(paths=None, root=ROOT, run=True, counts=None):
    """Sorted (path, line, kind, message) of the docs (files or folders, all by default); counts: what was checked."""
    paths = paths or [os.path.join(root, name) for name in ('README.md', 'docs', 'data')]
    files = [path for path in paths if not os.path.isdir(path)]
    files += [file for path in paths for file in glob.glob(os.path.join(path, '**', '*.md'), recursive=True)]
    counts = collections.Counter() if counts is None else counts
    return sorted({problem for file in files for problem in Doc(os.path.abspath(file), root, counts).check(run)})


def main(argv):
    if '-h' in argv or '--help' in argv:
        print(__doc__[__doc__.index('usage:'):].strip())
        return 0
    paths = [arg for arg in argv if arg != '--no-run']
    for path in (p for p in paths if p.startswith('-') or not os.path.exists(p)):
        sys.exit(f"error: {'unknown option' if path.startswith('-') else 'no file or folder'} {path}; usage: "
                 f"check_docs.py [--no-run] [file.md or folder ...] (all the docs if none)")
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
