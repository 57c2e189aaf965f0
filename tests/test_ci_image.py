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


def test_continued_lines_join_as_docker_joins_them(image):
    # comment and blank lines inside are skipped; the next line joins as it is (no space added)
    steps = image.instructions("FROM a\nRUN one \\\n# a note\n\n  && two\nRUN foo\\\nbar\n")
    assert steps == [("FROM", "a"), ("RUN", "one   && two"), ("RUN", "foobar")]


def test_what_it_cannot_read_fails(image):
    with pytest.raises(image.Fail, match="directive"):
        image.instructions("# escape=`\nFROM a\n")
    assert image.instructions("# syntax=docker/dockerfile:1\nFROM a\n") == [("FROM", "a")]
    with pytest.raises(image.Fail, match="variable"):
        image.env_pairs("PATH=/x:$PATH")
    with pytest.raises(image.Fail, match="HEALTHCHECK"):
        image.healthcheck('--start-interval=1s CMD ["true"]')


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
    rules = image.ignore_rules("*.py[co]\n[!a]x\nweird\\*name\n")
    assert image.ignored("m.pyc", rules) and image.ignored("m.pyo", rules) and not image.ignored("m.py", rules)
    assert image.ignored("bx", rules) and not image.ignored("ax", rules)
    assert image.ignored("weird*name", rules) and not image.ignored("weirdXname", rules)


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
    with pytest.raises(image.Fail):
        image.substitute("${B?}", env)                    # unset, without the colon too
    assert image.substitute("${EMPTY?x}", env) == ""      # set (empty) is enough without the colon
    assert image.substitute("${EMPTY-d}|${B-d}", env) == "|d"
    assert image.substitute("${A:+on}|${EMPTY:+on}|${EMPTY+on}", env) == "on||on"
    assert image.substitute("$A-$$A", env) == "1-$A"


def test_compose_wiring_it_stands_in_for_is_checked(image):
    yaml = pytest.importorskip("yaml")
    img = image.Image(Path("/nonexistent"))
    img.volumes = ["/data"]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    image.check_services(compose, img)   # the project's own file passes

    def broken(change):
        copy = yaml.safe_load((ROOT / "compose.yaml").read_text())
        change(copy["services"])
        with pytest.raises(image.Fail):
            image.check_services(copy, img)

    broken(lambda s: s["site"].pop("network_mode"))                      # the site on a network of its own
    broken(lambda s: s["sandbox"]["ports"].pop(0))                       # the site's port not published
    broken(lambda s: s["sandbox"].update(read_only=True))                # a setting it does not carry out
    broken(lambda s: s["site"].update(volumes=[]))                       # /data not mounted
