"""Shared by the HTML report's tests: a real ``sockspec run`` that writes the
reports, and a small tree of a page built with the standard library's HTML
parser, to look at pages by their structure rather than their text."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from suite.targets.factory import reference_template

REPO = Path(__file__).resolve().parents[1]
# Elements that never have an end tag.
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})


def mutant_template(name: str, arch: str) -> str:
    """The --cmd template that starts mutant NAME (of tests/mutants) with the reference server's flags."""
    return reference_template(arch, f"{shlex.quote(sys.executable)} -m tests.mutants {name}")


def run_sockspec(*args: str, deadline: float = 240) -> subprocess.CompletedProcess[str]:
    """``sockspec ARGS`` from the project's root, where tests.mutants can be imported."""
    return run_python("-m", "suite.cli", *args, cwd=REPO, deadline=deadline)


def run_python(*args: str, cwd: Path, deadline: float = 240) -> subprocess.CompletedProcess[str]:
    """This Python with ARGS, in its own process group, which is killed with
    the servers it started if it outlives the deadline."""
    with subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@dataclass
class Node:
    """An element of a parsed page: its tag, attributes and children (nodes and text)."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def words(self) -> str:
        """The text of each element below, apart: "bookworm Python 3.11.2" from
        ``bookworm<div>Python 3.11.2</div>``, where text() runs them together."""
        chunks = (c.split() if isinstance(c, str) else [c.words()] for c in self.children)
        return " ".join(word for chunk in chunks for word in chunk if word)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        """Every element below (and including) this one with the tag, the class and the attributes given."""
        return [
            node
            for node in self.walk()
            if (tag is None or node.tag == tag)
            and (cls is None or cls in node.classes)
            and all(node.attrs.get(name.replace("_", "-")) == value for name, value in attrs.items())
        ]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        """The first such element; an AssertionError names what is missing."""
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag or '*'}> with class {cls!r} and {attrs} in <{self.tag}>"
        return found[0]


@dataclass
class Page:
    root: Node
    problems: list[str]  # end tags that close nothing open, elements never closed


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document")
        self.stack = [self.root]
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if self.stack[-1].tag != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1].tag}>")
            if not any(node.tag == tag for node in self.stack):
                return
        while self.stack[-1].tag != tag:
            self.stack.pop()
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Page:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    problems = builder.problems + [f"<{node.tag}> is never closed" for node in builder.stack[1:]]
    return Page(builder.root, problems)


def read_page(path: Path) -> Node:
    """The page's tree; it must be well nested (every element closed, in order)."""
    page = parse(path.read_text(encoding="utf-8"))
    assert not page.problems, f"{path.name}: {page.problems[:5]}"
    return page.root
