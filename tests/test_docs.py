"""The documentation stays usable: links and pictures resolve, the README's commands name files
that exist, the README stays short, and no page talks about the project's work history.

External (http, https, mailto) links are not fetched.
"""

import glob
import itertools
import os.path as osp
import re

import pytest
from conftest import REPO

README = 'README.md'
PAGES = [README] + sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs', '**', '*.md'), recursive=True)
)
MAX_README_LINES = 250

FENCE = re.compile(r'^\s*(```|~~~)')
INLINE_CODE = re.compile(r'`[^`]*`')
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*#*\s*$')
# A repository path in a command: starts with one of these folders, not inside another path
# (`my_project/configs/...`) or a dotted name (`mmsgformer.configs`).
REPO_PATH = re.compile(r'(?<![\w./$-])((?:tools|configs|mmsgformer|docs|tests)/[\w./{},*-]*)')
PLACEHOLDER = re.compile(r'(^|/)(?!README\.)[A-Z][A-Z0-9_]+(\.\w+)?(/|$)')  # CONFIG, FILE.onnx
HISTORY = re.compile(r'\bissues?\s*#?\d+|\bsessions?\b', re.IGNORECASE)


def read(page):
    with open(osp.join(REPO, page), encoding='utf-8') as f:
        return f.read()


def split_code(text):
    """(prose lines, fenced code blocks) of a markdown text."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if FENCE.match(line):
            if block is None:
                block = []
            else:
                blocks.append('\n'.join(block))
                block = None
        elif block is None:
            prose.append(line)
        else:
            block.append(line)
    return prose, blocks


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link in a heading: its text
    text = text.replace('`', '').strip().lower()
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(page):
    seen, result = {}, set()
    for line in split_code(read(page))[0]:
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f'{base}-{count}')
    return result


def links(page):
    for line in split_code(read(page))[0]:
        for match in LINK.finditer(INLINE_CODE.sub('', line)):
            yield match.group(1)


def expand_braces(path):
    """``a_{s,m}_b`` -> ``a_s_b``, ``a_m_b``."""
    parts = re.split(r'\{([^{}]*,[^{}]*)\}', path)
    options = [[p] if i % 2 == 0 else p.split(',') for i, p in enumerate(parts)]
    return [''.join(choice) for choice in itertools.product(*options)]


@pytest.mark.parametrize('page', PAGES)
def test_links_and_pictures_resolve(page):
    broken = []
    for target in links(page):
        if re.match(r'[a-z]+:', target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        file = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
        if not osp.exists(osp.join(REPO, file)):
            broken.append(f'{target}: no file {file}')
        elif anchor and file.endswith('.md') and anchor not in anchors(file):
            broken.append(f'{target}: no heading #{anchor} in {file}')
    assert not broken, f'{page}: ' + '; '.join(sorted(set(broken)))


def test_readme_command_paths_exist():
    missing = []
    for block in split_code(read(README))[1]:
        for token in REPO_PATH.findall(block):
            token = token.rstrip('.,:;')
            for path in expand_braces(token):
                if not glob.glob(osp.join(REPO, path)) and not PLACEHOLDER.search(path):
                    missing.append(path)
    assert not missing, f'{README} commands name paths that do not exist: {sorted(set(missing))}'


def test_readme_is_short():
    lines = len(read(README).splitlines())
    assert lines <= MAX_README_LINES, f'{README} has {lines} lines (at most {MAX_README_LINES})'


@pytest.mark.parametrize('page', PAGES)
def test_no_work_history(page):
    """The docs describe the software as it is, not the issues and sessions that made it."""
    found = [
        f'line {i}: {m.group(0)!r}'
        for i, line in enumerate(read(page).splitlines(), 1)
        for m in HISTORY.finditer(line)
    ]
    assert not found, f'{page}: ' + '; '.join(found)
