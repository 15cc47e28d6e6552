"""The README's code blocks, used as a newcomer would use them.

"Runs every code block" means this here, and no more:

* Every ```python block is executed, in the README's order and in one namespace (the
  Reproducibility block reads the file the Python API example wrote), by a fresh interpreter in
  an empty folder holding the two inputs the examples name (photo.jpg and starry.jpg, drawn by
  `painterly.samples`; the interpreter is forked from the tests' zygote, tests/cli_processes.py, which
  has torch imported). The only thing set is the documented `PAINTERLY_VGG_WEIGHTS=random`, the
  offline switch: the examples are written small enough to run as they stand.
* Every line of every ```sh block is checked against what it calls. A `painterly` command line
  (also after `|`, or under `torchrun ... -m painterly`) must parse with the command's own parser
  exactly as written, and every option in it must appear in that command's `--help`. `pip install`
  extras must exist in pyproject.toml; scripts, test files and the `-k` words given to them must
  exist; benchmark and torchrun options must be in their `--help`.
* The painterly lines that are cheap and offline as written run for real, in a folder with
  the inputs they name (a tiny random model standing in for starry.safetensors): `weights`,
  `weights --verify`, `apply` to a file, to stdout from stdin, over a folder, `export` and
  `apply` of the ONNX file, and `models pull candy`, `apply candy ...`, `models`, `models info
  candy` against a local mirror (a zip of tiny models in pytorch/examples' format). "For real"
  means the real command code on real files: a line with a pipe or a redirection runs in bash (a
  fresh process, stdin and stdout the pipe's: the console script itself, started as a user starts
  it), every other line goes, one after another, through the Typer app the console script runs
  (CliRunner, in this process, with the README's environment and working folder). The others
  take minutes as written (stylize, train, demo, an 8k image,
  a video) or run until stopped (serve), and are parsed only: their behaviour is tested in their
  own test files.

A line of a kind this file does not know fails, so a new kind of README line gets a check.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import tomllib
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cli_processes
from adain_helpers import adain_net
from helpers import click_command, file_server, random_model
from painterly import images, samples
from painterly.cli import app
from painterly.config import StylizeConfig
from painterly.modelfile import save_model
from painterly.provenance import file_sha256
from zoo_helpers import zoo_mirror

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAINTERLY = [sys.executable, "-m", "painterly"]
_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# README lines (comments removed) that cost seconds and need no network: run for real.
RUN_FOR_REAL = (
    "painterly weights",
    "painterly weights --verify",
    "painterly apply starry.safetensors photo.jpg -o photo_starry.png",
    "cat photo.jpg | painterly apply starry.safetensors - -o - > out.png",
    "painterly apply starry.safetensors photos/ -o stylized/ --strength 0.8 --preserve-color luminance",
    "painterly export starry.safetensors -o starry.onnx",
    "painterly apply starry.onnx photo.jpg -o out.png",
    "painterly models pull candy",  # from a local mirror of the catalogue's downloads, into $PAINTERLY_HOME
    "painterly apply candy photo.jpg -o photo_candy.png",
    "painterly models",
    "painterly models info candy",
)


def blocks(language: str) -> list[str]:
    return [code for lang, code in _FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


def shell_lines() -> list[str]:
    """Each command line of the sh blocks, continuation lines joined, its comment removed."""
    lines = []
    for code in blocks("sh"):
        for line in code.replace("\\\n", " ").splitlines():
            line = " ".join(without_comment(line).split())
            if line:
                lines.append(line)
    return lines


def without_comment(line: str) -> str:
    """The line up to an unquoted `#` that starts a word, as sh reads it."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def segments(line: str) -> list[list[str]]:
    """The commands of a pipeline, each without its output redirection."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|>")
    lexer.whitespace_split = True
    words, parts = list(lexer), [[]]
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "|":
            parts.append([])
        elif word == ">":
            skip = True
        else:
            parts[-1].append(word)
    return parts


def test_the_readme_has_only_blocks_this_test_knows():
    languages = {lang for lang, _ in _FENCE.findall(README.read_text(encoding="utf-8"))}
    assert languages <= {"python", "sh"}, languages
    assert blocks("python") and len(shell_lines()) > 20


# --- python blocks ---------------------------------------------------------------------------------

_HARNESS = """
import ast, json, sys


def run_blocks(codes):  # each block in turn, in one namespace: (number, repr) of each one's last expression
    namespace, values = {"__name__": "__readme__"}, []
    for number, code in enumerate(codes, 1):
        tree = ast.parse(code)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, f"README python block {number}", "exec"), namespace)
        if last is not None:  # shown as an interactive session would show it
            value = eval(compile(ast.Expression(last.value), f"README python block {number}", "eval"), namespace)
            values.append((number, repr(value)))
    return values


if __name__ == "__main__":
    for value in run_blocks(json.load(open(sys.argv[1], encoding="utf-8"))):
        print("README-VALUE", json.dumps(value), flush=True)
"""


def write_inputs(folder: Path) -> None:
    """photo.jpg and starry.jpg, a photo-like scene and a painting, larger than the examples' 64 px."""
    images.save_image(samples.landscape(96, 128), folder / "photo.jpg")
    images.save_image(samples.swirl_painting(96, 96), folder / "starry.jpg")


def readme_environment(folder: Path) -> dict[str, str]:
    env = {**os.environ, "PAINTERLY_VGG_WEIGHTS": "random", "TORCH_HOME": str(folder / "torch-home"),
           "COLUMNS": "200"}
    env.pop("PAINTERLY_WEIGHTS_MIRROR", None)
    return env


def enter_readme_environment(monkeypatch: pytest.MonkeyPatch, folder: Path, **extra: str) -> None:
    """This process in `folder`, with exactly the environment readme_environment gives a fresh one."""
    environment = {**readme_environment(folder), **extra}
    monkeypatch.chdir(folder)
    for name in set(os.environ) - set(environment):
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)


def run_python_blocks_here(codes: list[str]) -> dict[int, str]:
    """The harness's run_blocks in this process (the working folder and environment already the README's)."""
    namespace: dict = {"__name__": "__harness__"}
    exec(_HARNESS, namespace)  # the same harness the fresh interpreter runs
    return dict(namespace["run_blocks"](codes))


def run_python_blocks(folder: Path, codes: list[str]) -> dict[int, str]:
    (folder / "blocks.json").write_text(json.dumps(codes), encoding="utf-8")
    (folder / "harness.py").write_text(_HARNESS, encoding="utf-8")
    # A fresh interpreter as cli_processes makes one: forked from the zygote, which imported torch already.
    done = cli_processes.run([sys.executable, "harness.py", "blocks.json"], cwd=folder,
                             env=readme_environment(folder), capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    values = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("README-VALUE")]
    return {number: value for number, value in values}


@pytest.mark.slow
def test_every_python_block_runs_as_written(tmp_path):
    write_inputs(tmp_path)
    save_model(adain_net(), tmp_path / "adain.safetensors")  # a tiny random one stands in for a trained model
    codes = blocks("python")
    values = run_python_blocks(tmp_path, codes)
    # The AdaIN example painted the photo after starry.jpg, to a file and through apply_files.
    adain = images.read_settings(tmp_path / "photo_starry.png")
    assert adain["method"] == "adain" and adain["config"]["alpha"] == 0.8
    assert images.read_settings(tmp_path / "stylized" / "photo.jpg")["method"] == "adain"
    # The API example wrote out.png with the record the CLI writes, and the Reproducibility block read it.
    settings = images.read_settings(tmp_path / "out.png")
    assert settings["method"] == "gatys" and settings["config"]["vgg_weights"] is None
    assert settings["content"] == {"file": "photo.jpg", "sha256": file_sha256(tmp_path / "photo.jpg")}
    assert settings["styles"][0]["sha256"] == file_sha256(tmp_path / "starry.jpg")
    reproducibility = next(number for number, code in enumerate(codes, 1) if "read_settings" in code)
    assert values[reproducibility] == repr(settings["config"]["style_weight"])


def test_the_reproducibility_block_reads_a_file_the_cli_wrote(tmp_path, monkeypatch):
    """One format for both: the same expression on the output of the README's first stylize line.

    The line runs in this process (the Typer app the console script runs; the file it writes is the
    same), and so does the block, through the harness the fresh interpreter above runs."""
    write_inputs(tmp_path)
    line = next(line for line in shell_lines() if line.startswith("painterly stylize"))
    quick = ["--size", "32", "--steps", "2", "--quiet"]  # the README's line, made seconds-long
    enter_readme_environment(monkeypatch, tmp_path)
    done = CliRunner().invoke(app, [*shlex.split(line)[1:], *quick])
    assert done.exit_code == 0, done.output
    code = next(code for code in blocks("python") if "read_settings" in code)
    values = run_python_blocks_here(["import painterly as pt", code])
    assert values[2] == repr(StylizeConfig().style_weight)


# --- sh blocks: painterly command lines ------------------------------------------------------------


HELP_ENVIRONMENT = {"COLUMNS": "200", "NO_COLOR": "1"}

# Every painterly command's --help through the console script's entry point, one after another in one process.
_PAINTERLY_HELPS = """
import sys
from painterly.cli import main

for name in sys.argv[1:]:
    try:
        main([name, "--help"])
    except SystemExit as exited:
        assert not exited.code, (name, exited.code)
    print("\\0", end="", flush=True)
"""


@functools.cache
def painterly_helps() -> dict[str, str]:
    """`painterly NAME --help` for every command NAME, from one process (one start of Python for all)."""
    names = sorted(click_command(app).commands)
    done = cli_processes.run([sys.executable, "-c", _PAINTERLY_HELPS, *names], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, env={**os.environ, **HELP_ENVIRONMENT})
    assert done.returncode == 0, done.stderr
    texts = done.stdout.split("\0")
    assert len(texts) == len(names) + 1 and texts[-1] == "", done.stdout
    return dict(zip(names, texts, strict=False))


@functools.cache
def help_text(*command: str) -> str:
    if command[:-1] == tuple(PAINTERLY) and command[-1] in painterly_helps():
        return painterly_helps()[command[-1]]
    if command[:2] == (sys.executable, "-m") and len(command) == 3 and command[2] != "painterly":
        return module_help(command[2])
    done = subprocess.run([*command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **HELP_ENVIRONMENT})
    assert done.returncode == 0, done.stderr
    return done.stdout


def module_help(module: str) -> str:
    """What `python -m MODULE --help` prints, from the module run as `-m` runs it, in this process (torch,
    which all of them import, is loaded here already): its argparse parser's help, in the same columns."""
    stdout, argv, columns, code = io.StringIO(), sys.argv, os.environ.get("COLUMNS"), None
    sys.path.insert(0, str(ROOT))  # `benchmarks` is a folder of the repository
    sys.argv, os.environ["COLUMNS"] = [module, "--help"], HELP_ENVIRONMENT["COLUMNS"]
    try:
        with contextlib.redirect_stdout(stdout), warnings.catch_warnings():
            # run as `-m` runs it even when imported here already (the README checks import benchmarks.__main__)
            warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
            runpy.run_module(module, run_name="__main__")  # torchrun's main() returns after its help: no exit
    except SystemExit as exited:
        code = exited.code
    finally:
        sys.argv = argv
        sys.path.remove(str(ROOT))
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    assert not code and stdout.getvalue().startswith("usage:"), (module, code, stdout.getvalue()[-2000:])
    return stdout.getvalue()


def options(words: list[str]) -> list[str]:
    return [word.split("=", 1)[0] for word in words if word.startswith("-") and word != "-"]


def check_in_help(words: list[str], *command: str) -> None:
    text = help_text(*command)
    missing = [flag for flag in options(words) if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)]
    assert not missing, f"{' '.join(command)} --help does not show {missing}"


def check_painterly(words: list[str]) -> None:
    """`painterly COMMAND ARGS...`: parsed by the real command, every option shown by its --help."""
    assert words[0] == "painterly" and len(words) > 1, words
    names, args = [words[1]], words[2:]
    commands = click_command(app).commands  # a group: its subcommands by name
    assert names[0] in commands, f"no painterly command {names[0]!r}"
    command = commands[names[0]]
    while hasattr(command, "commands") and args and args[0] in command.commands:  # `models pull ...`
        names.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    try:
        command.make_context(f"painterly {' '.join(names)}", list(args))  # parses and checks, runs nothing
    except Exception as error:  # click's usage errors (Typer bundles its own click)
        if not hasattr(error, "format_message"):
            raise
        pytest.fail(f"painterly {' '.join(names)} does not parse {args}: {error.format_message()}")
    check_in_help(args, *PAINTERLY, *names)


def check_pip(words: list[str]) -> None:
    assert words[:2] == ["pip", "install"], words
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for spec in (word for word in words[2:] if not word.startswith("-")):
        if spec.startswith("."):
            extras = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", spec)
            assert extras, spec
            unknown = set((extras.group(1) or "").split(",")) - {""} - set(project["optional-dependencies"])
            assert not unknown, f"pyproject.toml has no extra {unknown}"
        else:
            name = re.match(r"[\w-]+", spec).group(0).lower()
            assert any(dep.lower().startswith(name) for dep in project["dependencies"]), spec


def check_script(words: list[str]) -> None:
    script = ROOT / words[0]
    assert script.is_file() and os.access(script, os.X_OK), f"{words[0]} is not an executable script"
    if words[0] == "scripts/test.sh":  # pytest arguments: the files exist, -k names a test in them
        files = [ROOT / word for word in words[1:] if word.endswith(".py")]
        assert all(path.is_file() for path in files), files
        if "-k" in words:
            word = words[words.index("-k") + 1]
            assert any(re.search(rf"def test_\w*{re.escape(word)}", path.read_text()) for path in files), word
    else:
        assert len(words) == 1, words


def check_python_module(words: list[str]) -> None:
    """`python -m benchmarks ...` (parsed by its own parser) and `python -m benchmarks.gpu ...` (its --help)."""
    assert words[1] == "-m", words
    module, args = words[2], words[3:]
    if module == "benchmarks":
        sys.path.insert(0, str(ROOT))
        try:
            from benchmarks.__main__ import parse

            parse(args)
        except SystemExit:
            pytest.fail(f"python -m benchmarks does not parse {args}")
        finally:
            sys.path.remove(str(ROOT))
    assert module in ("benchmarks", "benchmarks.gpu"), module
    check_in_help(args, sys.executable, "-m", module)


def check_segment(words: list[str]) -> None:
    program = words[0]
    if program == "painterly":
        check_painterly(words)
    elif program == "torchrun":  # torchrun OPTIONS -m painterly ARGS
        start = words.index("-m")
        assert words[start + 1] == "painterly", words
        check_in_help(words[1:start], sys.executable, "-m", "torch.distributed.run")
        check_painterly(["painterly", *words[start + 2:]])
    elif program == "pip":
        check_pip(words)
    elif program.startswith("scripts/"):
        check_script(words)
    elif program in ("python", ".venv/bin/python"):
        check_python_module(words)
    elif program == "cat":
        assert len(words) == 2, words
    else:
        pytest.fail(f"a README line this test does not know how to check: {words}")


@pytest.mark.parametrize("line", shell_lines())
def test_every_shell_line_matches_what_it_calls(line):
    for words in segments(line):
        assert words, f"an empty command in {line!r}"
        check_segment(words)


def test_a_wrong_flag_or_argument_is_caught():
    """The checks above fail on the mistakes they are there for."""
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        check_painterly(["painterly", "stylize", "photo.jpg", "-o", "out.png", "--preserve-colour", "luminance"])
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        check_painterly(["painterly", "apply", "starry.safetensors", "-o", "out.png"])  # no input
    with pytest.raises(AssertionError, match="no extra"):
        check_pip(["pip", "install", "-e", ".[gpu]"])
    with pytest.raises(pytest.fail.Exception, match="does not know"):
        check_segment(["curl", "https://example.com"])


# --- sh blocks: the cheap painterly lines, run ------------------------------------------------------


@pytest.mark.slow
def test_the_cheap_painterly_lines_run_for_real(tmp_path, monkeypatch):
    lines = shell_lines()
    missing = [line for line in RUN_FOR_REAL if line not in lines]
    assert not missing, f"no longer in the README (update RUN_FOR_REAL): {missing}"
    write_inputs(tmp_path)
    (tmp_path / "photos" / "beach").mkdir(parents=True)
    images.save_image(samples.landscape(48, 64), tmp_path / "photos" / "a.png")
    images.save_image(samples.landscape(40, 56), tmp_path / "photos" / "beach" / "b.jpg")
    save_model(random_model("light"), tmp_path / "starry.safetensors", style={"image": "starry.jpg"}, steps=1)
    home = tmp_path / "painterly-home"  # the catalogue's models are pulled into home/models
    photo = images.read_array(tmp_path / "photo.jpg")[0]
    candy = home / "models" / "candy.safetensors"

    def stylised(name: str, backend: str) -> None:
        array = images.read_array(tmp_path / name)[0]
        assert array.shape == photo.shape and not np.allclose(array, photo, atol=0.05)
        assert images.read_settings(tmp_path / name)["config"]["backend"] == backend

    def folder() -> None:
        written = sorted(path.relative_to(tmp_path / "stylized").as_posix() for path in
                         (tmp_path / "stylized").rglob("*.*"))
        assert written == ["a.png", "beach/b.jpg"]
        assert images.read_settings(tmp_path / "stylized" / "a.png")["config"]["strength"] == 0.8

    checks = {  # what each line must have done, checked before the next line runs
        RUN_FOR_REAL[0]: lambda out: "vgg19: not downloaded" in out and "vgg16: not downloaded" in out,
        RUN_FOR_REAL[1]: lambda out: str(tmp_path / "torch-home") in out,
        RUN_FOR_REAL[2]: lambda out: stylised("photo_starry.png", "torch"),
        RUN_FOR_REAL[3]: lambda out: stylised("out.png", "torch"),
        RUN_FOR_REAL[4]: lambda out: folder(),
        RUN_FOR_REAL[5]: lambda out: (tmp_path / "starry.onnx").stat().st_size > 0,
        RUN_FOR_REAL[6]: lambda out: stylised("out.png", "onnx"),
        RUN_FOR_REAL[7]: lambda out: out.strip() == str(candy) and candy.is_file(),
        RUN_FOR_REAL[8]: lambda out: stylised("photo_candy.png", "torch"),
        RUN_FOR_REAL[9]: lambda out: re.search(r"^candy .* pulled$", out, re.MULTILINE) is not None,
        RUN_FOR_REAL[10]: lambda out: "BSD-3-Clause" in out and "recorded at first download" in out,
    }
    with file_server(zoo_mirror(tmp_path / "zoo-mirror")) as mirror:
        enter_readme_environment(monkeypatch, tmp_path, PAINTERLY_HOME=str(home), PAINTERLY_MODELS_MIRROR=mirror,
                                 PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        for line in RUN_FOR_REAL:
            returncode, stdout, stderr = run_line(line)
            assert returncode == 0, f"{line}\n{stderr}"
            assert checks[line](stdout) is not False, f"{line}\n{stdout}"


def run_line(line: str) -> tuple[int, str, str]:
    """A README line as a user runs it, here (environment and working folder set): bash runs one with a pipe
    or a redirection; the Typer app the console script runs takes any other (its exit code and output, any
    unexpected exception's traceback in place of the error output)."""
    if set(line) & set("|<>"):
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {line}"], capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout, done.stderr
    result = CliRunner().invoke(app, shlex.split(line)[1:])
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        return result.exit_code, result.stdout, "".join(traceback.format_exception(*result.exc_info))
    return result.exit_code, result.stdout, result.stderr


# --- scripts/demo.sh installs only what the demo needs -----------------------------------------------


def test_demo_sh_installs_the_library_alone_and_test_sh_the_dev_extra(tmp_path):
    """demo.sh asks setup.sh for the lean install; setup.sh's stamps give each caller what it asked for.

    setup.sh runs for real in a copy of the scripts, with a `.venv/bin/python` that records the pip
    command instead of installing gigabytes."""
    assert re.search(r"^scripts/setup\.sh lean$", (ROOT / "scripts" / "demo.sh").read_text(), re.MULTILINE)
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert re.search(r"^scripts/setup\.sh$", test_sh, re.MULTILINE)  # the default: [dev]
    (tmp_path / "scripts").mkdir()
    setup = tmp_path / "scripts" / "setup.sh"
    setup.write_text((ROOT / "scripts" / "setup.sh").read_text())
    setup.chmod(0o755)
    (tmp_path / "pyproject.toml").write_text("")
    os.utime(tmp_path / "pyproject.toml", (1, 1))
    os.utime(setup, (1, 1))
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "pip.log"}\n')
    python.chmod(0o755)

    def setup_sh(*args: str) -> list[str]:
        log = tmp_path / "pip.log"
        log.unlink(missing_ok=True)
        subprocess.run(["bash", str(setup), *args], check=True, timeout=60)
        return log.read_text().splitlines() if log.exists() else []

    assert setup_sh("lean") == ["-m pip install --quiet -e ."]
    assert setup_sh("lean") == []  # done already
    assert setup_sh() == ["-m pip install --quiet -e .[dev]"]  # test.sh after demo.sh: the test tools too
    assert setup_sh() == [] and setup_sh("lean") == []  # [dev] holds everything the demo needs
    refused = subprocess.run(["bash", str(setup), "gpu"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "usage" in refused.stderr
