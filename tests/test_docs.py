"""The documentation cannot drift from the code.

- Every ```python block of docs/**/*.md and README.md runs, on the backend
  that KERAS_BACKEND selects. The blocks of one page share a namespace and
  run in order, like a notebook, so a page can build on its first block.
  Each page runs in a fresh temporary directory.
- A block that cannot run standalone is marked by the comment
  `<!-- skip-snippet: reason -->` on the line just before its fence; each
  such block is reported as a skipped test with its place and reason.
- No page keeps a placeholder (TODO, TBD, FIXME, XXX).
- Every public name of the package has an entry in the API reference.
"""

import dataclasses
import importlib
import inspect
import pathlib
import re
import textwrap
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_DOCS = DOCS / "api"
SKIP_MARKER = re.compile(r"^\s*<!--\s*skip-snippet:\s*(?P<reason>.*?)\s*-->\s*$")
FENCE_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b")
API_DIRECTIVE = re.compile(r"^:::\s*(?P<path>[\w.]+)\s*$", re.MULTILINE)
# Subpackages and modules whose public names are part of the API.
PUBLIC_MODULES = (
    "activations",
    "layers",
    "regularizers",
    "rules",
    "operations",
    "schedules",
    "optimizers",
    "svrg",
    "montecarlo",
    "models",
    "experiments",
    "config",
)


@dataclasses.dataclass(frozen=True)
class Snippet:
    page: pathlib.Path
    line: int
    code: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[pathlib.Path]:
    found = sorted(DOCS.rglob("*.md"))
    readme = ROOT / "README.md"
    return found + [readme] if readme.exists() else found


def snippets_of(page: pathlib.Path) -> list[Snippet]:
    """The ```python blocks of `page`, with their skip markers.

    Raises:
        ValueError: on a skip marker that no ```python block follows, or an
            unclosed fence, so a stale marker cannot hide.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    pending_skip = None
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = SKIP_MARKER.match(line)
        if marker:
            pending_skip = (index + 1, marker.group("reason") or "no reason given")
            index += 1
            continue
        opening = FENCE_OPEN.match(line)
        if not opening:
            if pending_skip and line.strip():
                raise ValueError(f"{page}:{pending_skip[0]}: a skip-snippet marker must stand just before a ```python fence")
            index += 1
            continue
        fence, indent = opening.group("fence"), opening.group("indent")
        closing = re.compile(rf"^\s*{re.escape(fence)}\s*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{index + 1}: unclosed code fence")
        if opening.group("lang") == "python":
            body = "\n".join(text[len(indent):] if text.startswith(indent) else text for text in lines[index + 1 : end])
            reason = pending_skip[1] if pending_skip else None
            found.append(Snippet(page, index + 1, textwrap.dedent(body), reason))
        elif pending_skip:
            raise ValueError(f"{page}:{pending_skip[0]}: a skip-snippet marker must stand just before a ```python fence")
        pending_skip = None
        index = end + 1
    if pending_skip:
        raise ValueError(f"{page}:{pending_skip[0]}: a skip-snippet marker must stand just before a ```python fence")
    return found


def _page_id(page: pathlib.Path) -> str:
    return str(page.relative_to(ROOT))


PAGES_WITH_CODE = [page for page in pages() if any(s.skip_reason is None for s in snippets_of(page))]
SKIPPED = [snippet for page in pages() for snippet in snippets_of(page) if snippet.skip_reason is not None]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_page_id)
def test_page_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_snippet_{page.stem}"}
    for snippet in snippets_of(page):
        if snippet.skip_reason is not None:
            continue
        code = compile(snippet.code, snippet.where, "exec")
        try:
            exec(code, namespace)
        except Exception as error:
            raise AssertionError(f"the snippet at {snippet.where} failed: {type(error).__name__}: {error}") from error


@pytest.mark.parametrize("snippet", SKIPPED, ids=lambda snippet: snippet.where)
def test_skipped_snippets_are_reported(snippet):
    compile(snippet.code, snippet.where, "exec")  # a skipped block must still be valid Python
    pytest.skip(f"{snippet.where}: {snippet.skip_reason}")


def test_snippet_parser_rejects_a_stale_skip_marker(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- skip-snippet: needs data -->\n\nSome text.\n\n```python\nx = 1\n```\n")
    with pytest.raises(ValueError, match="skip-snippet marker"):
        snippets_of(page)


def test_snippet_parser_reads_indented_blocks_and_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "=== \"Tab\"\n\n    ```python\n    x = 1\n    ```\n\n"
        "<!-- skip-snippet: needs a GPU -->\n```python\ny = 2\n```\n```bash\nls\n```\n"
    )
    found = snippets_of(page)
    assert [(s.line, s.code.strip(), s.skip_reason) for s in found] == [(3, "x = 1", None), (8, "y = 2", "needs a GPU")]


@pytest.mark.parametrize("page", pages(), ids=_page_id)
def test_page_has_no_placeholder(page):
    hits = [f"{_page_id(page)}:{number}: {line.strip()}" for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1) if PLACEHOLDER.search(line)]
    assert not hits, "placeholders left in the docs:\n" + "\n".join(hits)


def _documented_paths() -> set[str]:
    return {match.group("path") for page in API_DOCS.glob("*.md") for match in API_DIRECTIVE.finditer(page.read_text(encoding="utf-8"))}


def _public_names(module: types.ModuleType) -> list[str]:
    """`__all__`, or the public functions and classes defined in `module` or re-exported from its submodules."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        home = getattr(value, "__module__", "")
        if home == module.__name__ or home.startswith(module.__name__ + "."):
            names.append(name)
    return names


def _api_objects() -> list[tuple[str, object]]:
    package = importlib.import_module("keras_gsmooth")
    objects = [(f"keras_gsmooth.{name}", getattr(package, name)) for name in _public_names(package)]
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(f"keras_gsmooth.{module_name}")
        objects += [(f"keras_gsmooth.{module_name}.{name}", getattr(module, name)) for name in _public_names(module)]
    return objects


def _resolve(path: str):
    """The object a `::: path` line names, or None."""
    module_path, _, attribute = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_path), attribute, None)
    except ImportError:
        found = None
    if found is None:
        try:
            found = importlib.import_module(path)
        except ImportError:
            pass
    return found


def test_every_public_name_is_in_the_api_reference():
    documented = {id(_resolve(path)) for path in _documented_paths()}
    missing = sorted({path for path, value in _api_objects() if id(value) not in documented})
    assert not missing, "public names without an API entry (add a `::: name` line under docs/api/):\n" + "\n".join(missing)


def test_api_entries_name_existing_objects():
    stale = [path for path in sorted(_documented_paths()) if _resolve(path) is None]
    assert not stale, "API entries that name no object:\n" + "\n".join(stale)
