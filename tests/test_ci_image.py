"""The pieces of .ci/image that read the Dockerfile, .dockerignore and compose's ${...}: the CI step
that builds the image without a container engine is only as good as these readings."""
from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def image():
    loader = importlib.machinery.SourceFileLoader("ci_image", str(ROOT / ".ci" / "image"))
    spec = importlib.util.spec_from_loader("ci_image", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_reads_the_projects_dockerfile(image):
    steps = image.instructions((ROOT / "Dockerfile").read_text())
    words = [w for w, _ in steps]
    assert words[0] == "FROM" and words.count("CMD") == 1 and "USER" in words and "HEALTHCHECK" in words
    run = next(rest for w, rest in steps if w == "RUN")
    assert "pip install" in run and "useradd" in run and "chown" in run   # the continued lines joined
    env = dict(pair for w, rest in steps if w == "ENV" for pair in image.env_pairs(rest))
    assert env["GBC_INSTANCE_PATH"] == "/data"
    health = image.healthcheck(next(rest for w, rest in steps if w == "HEALTHCHECK"))
    assert health["cmd"][0] == "python" and "/healthz" in health["cmd"][-1]
    assert (health["interval"], health["start_period"], health["retries"]) == (15, 30, 3)


def test_dockerfile_grammar_errors_are_loud(image):
    with pytest.raises(image.Fail):
        image.instructions("FROM x\nRUN a \\\n")
    with pytest.raises(image.Fail):
        image.env_pairs("KEY value")
    with pytest.raises(image.Fail):
        image.exec_form("gunicorn app:site", "CMD")
    with pytest.raises(image.Fail):
        image.seconds("15")
    assert image.seconds("95s") == 95 and image.seconds("1m") == 60 and image.seconds("500ms") == 0.5


def test_comments_inside_a_continued_instruction_are_dropped(image):
    steps = image.instructions("FROM a\nRUN one \\\n# a note\n    && two\n")
    assert steps == [("FROM", "a"), ("RUN", "one  && two")]


@pytest.mark.parametrize("path, out", [
    (".git/config", True),
    (".env", True),
    (".env.local", True),
    (".env.example", False),          # the exception
    ("demo/__pycache__/x.cpython-311.pyc", True),
    ("demo/site/views.py", False),
    ("instance/site.sqlite", True),
    ("gbc_demo.egg-info/PKG-INFO", True),
    ("templates/site/run.html", False),
    ("tests/conftest.py", False),
])
def test_dockerignore_like_docker(image, path, out):
    rules = image.ignore_rules((ROOT / ".dockerignore").read_text())
    assert image.ignored(path, rules) is out


def test_dockerignore_patterns(image):
    rules = image.ignore_rules("*.md\n!README.md\ndocs/**/*.png\n/build\n")
    assert image.ignored("NOTES.md", rules) and not image.ignored("README.md", rules)
    assert not image.ignored("demo/NOTES.md", rules)          # * does not cross folders
    assert image.ignored("docs/a/b/c.png", rules) and image.ignored("docs/c.png", rules)
    assert image.ignored("build/x", rules) and not image.ignored("demo/build/x", rules)


def test_build_context_is_the_project_minus_dockerignore(image):
    files = set(image.build_context(ROOT))
    assert {"Dockerfile", "app.py", "pyproject.toml", "config/gunicorn.conf.py", ".env.example"} <= files
    assert not any(f.startswith((".git/", ".venv/", "instance/")) or "__pycache__" in f for f in files)


def test_compose_substitution(image):
    env = {"A": "1", "EMPTY": ""}
    assert image.substitute("x${A}y", env) == "x1y"
    assert image.substitute("${EMPTY:-d}", env) == "d"
    assert image.substitute("${A:?set A}", env) == "1"
    with pytest.raises(image.Fail, match="set B"):
        image.substitute("${B:?set B}", env)
