"""The README and docs/ speak to users and agree with the code: snippets run, lists are complete."""

import re
from pathlib import Path

import pytest

import tcsnn
from tcsnn.train.recipes import list_recipes

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGE = Path(tcsnn.__file__).parent


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("path", [ROOT / "README.md", ROOT / "docs" / "simulate.md"], ids=lambda p: p.name)
def test_python_snippets_run_as_written(path, capsys):
    blocks = _python_blocks(path)
    assert blocks
    namespace = {"__name__": "__doc_snippet__"}  # one namespace per file: later blocks build on earlier ones
    for code in blocks:
        exec(compile(code, str(path), "exec"), namespace)
    if path.name == "simulate.md":
        assert "'accuracy':" in capsys.readouterr().out  # the summary it prints


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_speak_to_users(path):
    text = " ".join(path.read_text().split()).lower()
    for phrase in ("the issue", "issue asks", "the request", "was asked", " asked)", "the brief"):
        assert phrase not in text, f"{path.name}: {phrase!r}"
    assert "/work/" not in text and "/home/" not in text  # no machine-specific absolute paths


def test_readme_lists_every_recipe():
    text = (ROOT / "README.md").read_text()
    for name in list_recipes():
        assert f"| `{name}`" in text, f"recipe {name} is missing from the README's recipe table"


def test_readme_layout_names_every_module():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    for path in sorted(PACKAGE.iterdir()):
        if path.suffix == ".py":
            assert f"{path.name} " in layout, f"Layout does not mention {path.name}"
        elif (path / "__init__.py").exists():
            assert f"{path.name}/ " in layout, f"Layout does not mention {path.name}/"
            for module in sorted(path.glob("*.py")):
                if not module.name.startswith("_"):  # public modules; private helpers may stay unnamed
                    assert module.stem in layout, f"Layout does not mention {path.name}/{module.name}"


def test_nir_install_line_works_from_a_checkout():
    text = (ROOT / "docs" / "nir.md").read_text()
    assert 'pip install -e ".[nir]"' in text and "tcsnn[nir]'" not in text
    assert ".venv" not in text  # the README never makes one
