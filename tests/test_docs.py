"""Every ```python block of README.md and docs/*.md runs as written.

A page's blocks run in order, in one namespace (fresh for each page), in a temporary
working directory, on the TensorFlow backend. A page sets up its small model and data
once, visibly, in its first block. A block is not run when the line directly before its
opening fence is `<!-- fragment -->` (an excerpt that needs what the page cannot give,
such as a second process or several devices); other languages (bash, text) never run.
docs/contributing.md describes the convention.
"""

import pathlib
import re
import textwrap
import time

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FRAGMENT = "<!-- fragment -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")


def code_blocks(text):
    """`(language, first line number (1-based), code, is_fragment)` for each fenced block."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        fragment = i > 0 and lines[i - 1].strip() == FRAGMENT
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : j]
        ]
        blocks.append((match["lang"].lower(), i + 2, textwrap.dedent("\n".join(body)), fragment))
        i = j + 1
    return blocks


def python_blocks(path):
    """The blocks of a page that run: `(first line number, code)`."""
    return [
        (line, code)
        for lang, line, code, fragment in code_blocks(path.read_text())
        if lang in ("python", "py") and not fragment
    ]


def test_code_blocks_are_found_and_fragments_skipped():
    text = "\n".join(
        [
            "# Page",
            "```python",
            "a = 1",
            "```",
            "<!-- fragment -->",
            "```python",
            "not run",
            "```",
            "- item:",
            "",
            "  ```python",
            "  b = a + 1",
            "  ```",
            "```bash",
            "echo no",
            "```",
        ]
    )
    blocks = code_blocks(text)
    assert [(lang, line, fragment) for lang, line, _, fragment in blocks] == [
        ("python", 3, False),
        ("python", 7, True),
        ("python", 12, False),
        ("bash", 15, False),
    ]
    assert blocks[2][2] == "b = a + 1"


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "page",
    [page for page in PAGES if python_blocks(page)],
    ids=lambda page: page.relative_to(ROOT).as_posix(),
)
def test_page_examples_run(page, tmp_path, monkeypatch):
    # The pages are written for the default backend: some show TensorFlow's own features
    # (SavedModel export, TFLite, tf.distribute, tf.nn.relu), so they run in the
    # TensorFlow session.
    blocks = python_blocks(page)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": f"docs_{page.stem}"}
    start = time.perf_counter()
    for line, code in blocks:
        # Line numbers of tracebacks are the page's own.
        source = "\n" * (line - 1) + code
        exec(compile(source, str(page), "exec"), namespace)
    keras.backend.clear_session()
    print(f"{page.name}: {len(blocks)} blocks in {time.perf_counter() - start:.1f}s")
