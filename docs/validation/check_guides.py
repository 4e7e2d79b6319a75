"""Follow each guide as a reader would: run every command block of it, in order, as written, in a fresh copy of
the project per guide, so that a guide whose steps no longer work shows up (rule 7 of docs/validation/README.md).
usage: python docs/validation/check_guides.py [guide.md ...]
Runs the guides named (by default README.md and docs/guides/), one per core, prints each block's result and each
guide's summary, and exits 1 if a guide failed. The checks of what the docs say are check_docs.py's."""

import glob
import importlib.util
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_docs import COMMAND_LANGUAGES, parse_markdown  # noqa: E402
from project import ROOT, project_copy, relative, run_shell  # noqa: E402

GUIDE_TIMEOUT = 600  # seconds a block of a guide may take


def add_arguments(script, name, arguments):
    """script with arguments added at the end of each command that runs the file name (e.g. train.py), so that
    they win over the command's own; commands end at a line's end, a comment, && || ; | and redirections."""
    out = []
    for line in re.split(r'(?<=[^\\]\n)', script):  # logical lines: a line ending in \ continues
        parts, start, quote, depth, i = [], 0, None, 0, 0
        while i < len(line):  # split at the operators outside quotes and $(...)
            c = line[i]
            if quote:
                quote = None if c == quote else quote
            elif c in '\'"':
                quote = c
            elif line.startswith('$(', i) or depth and c in '()':
                depth += 1 if c != ')' else -1
                i += 2 if c == '$' else 1
                continue
            elif depth:
                pass
            elif re.match(r'&&|\|\||[;|]|\d?>|<|\s#', line[i:]) and not line[i - 1:i] == '\\':
                parts.append(line[start:i])
                start = i
                i += len(re.match(r'&&|\|\||[;|]|\d?>+|<|\s#.*', line[i:], re.DOTALL)[0])
                parts.append(line[start:i])
                start = i
                continue
            i += 1
        parts.append(line[start:])
        for k in range(0, len(parts), 2):  # commands at the even places, operators between them
            if re.search(rf'(^|[\s/]){re.escape(name)}(\s|$)', parts[k]):
                body = parts[k].rstrip()
                parts[k] = f"{body} {arguments}{parts[k][len(body):]}"
        out.append(''.join(parts))
    return ''.join(out)


def check_guide(path, root):
    """7. Every command block of a guide, in order, in a fresh copy of the project, as a reader would run them;
    a block marked <!-- guide: skip REASON --> is left out, and one marked <!-- guide: needs MODULE --> where
    MODULE does not import; <!-- guide: FILE ARGUMENTS --> adds ARGUMENTS to the block's commands that run FILE.
    Returns (problems, [(line, reason) skipped], blocks run, seconds)."""
    blocks = [block for block in parse_markdown(path)[1] if block['lang'] in COMMAND_LANGUAGES]
    problems, skipped, ran, t0 = [], [], 0, time.perf_counter()
    with project_copy(root) as copy:
        for block in blocks:
            reason, script = None, '\n'.join(text for _, text in block['lines'])
            for marker in block.get('guide', []):
                kind, _, rest = marker.partition(' ')
                rest = rest.strip()
                if kind == 'skip':
                    reason = rest or 'no reason given'
                # an optional package (lm-eval): its blocks run where it is installed, as in CI, skipped elsewhere
                elif kind == 'needs' and (not rest or importlib.util.find_spec(rest) is None):
                    reason = f"needs {rest or 'a module the marker does not name'}, which is not installed"
                elif kind != 'needs':  # FILE ARGUMENTS
                    script = add_arguments(script, kind, rest)
            if reason is not None:
                skipped.append((block['line'], reason))
                continue
            ran, start = ran + 1, time.perf_counter()
            failure = run_shell(script, copy, GUIDE_TIMEOUT)
            print(f"{relative(path)}:{block['line']}: {'failed' if failure else 'ok'} in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            if failure:  # the later blocks build on this one
                problems.append((relative(path), block['line'], 'guide', failure))
                break
    return problems, skipped, ran, time.perf_counter() - t0


def check_guides(paths, root=ROOT, jobs=None):
    """Run the guides (README.md and docs/guides/ by default), several at once, printing each one's result;
    returns the problems."""
    paths = paths or [os.path.join(root, 'README.md')] + sorted(glob.glob(os.path.join(root, 'docs', 'guides', '*.md')))
    problems = []
    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        for path, (found, skipped, ran, seconds) in zip(paths, pool.map(lambda p: check_guide(p, root), paths)):
            problems += found
            skips = '; '.join(f"line {line}: {reason}" for line, reason in skipped)
            print(f"{relative(path)}: {ran} block(s) run in {seconds:.0f} s{', failed' if found else ''}"
                  f"{f'; skipped {skips}' if skips else ''}", flush=True)
            for problem in found:
                print(f"{problem[0]}:{problem[1]}: {problem[2]}: {problem[3]}", flush=True)
    return problems


def main(argv):
    if '-h' in argv or '--help' in argv:
        print(__doc__[__doc__.index('usage:'):].strip())
        return 0
    for path in (p for p in argv if p.startswith('-') or not os.path.isfile(p)):
        sys.exit(f"error: {'unknown option' if path.startswith('-') else 'no file'} {path}; usage: "
                 f"check_guides.py [guide.md ...] (README.md and docs/guides/ if none)")
    t0 = time.perf_counter()
    problems = check_guides([os.path.abspath(p) for p in argv])
    print(f"{len(problems)} guide(s) failed; {time.perf_counter() - t0:.0f} s in all")
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
