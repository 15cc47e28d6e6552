"""Every command's `--help`, rendered by the real console entry point in a wide terminal.

The help must say what the options really take and default to: no text swallowed as markup
(`painterly[web]`, `[default: …]`), no value placeholder on a flag, the choices of a choice
option, the arguments as they are typed, and a help text for every option.
"""

import os
import re
import sys

import pytest

import cli_processes
from helpers import click_command
from painterly import config
from painterly.cli import app

COMMANDS = ["stylize", "demo", "train", "apply", "export", "convert", "card", "models", "serve", "weights"]

# The choices each option takes, from the tuples config.py validates against.
CHOICES = {
    "optimizer": config.OPTIMIZERS, "multiscale": config.MULTISCALE, "precision": config.PRECISIONS,
    "pooling": config.POOLINGS, "vgg": config.VGG_ARCHS, "lr_schedule": config.LR_SCHEDULES,
    "backend": config.BACKENDS, "device": config.DEVICES, "loss_normalisation": config.LOSS_NORMALISATIONS,
    "init": (*config.INITS, "path"), "vgg_weights": ("imagenet", "random", "path"), "flow": config.FLOWS,
}
CHOICES_BY_COMMAND = {
    ("stylize", "preserve_color"): config.COLOR_MODES,
    ("apply", "preserve_color"): config.FAST_COLOR_MODES,
    ("train", "arch"): config.TRAIN_ARCHS,
    ("weights", "arch"): (*config.VGG_ARCHS, *config.FLOWS[1:], "all"),
}

# The options issue 14 found without their default (Rich markup ate "[default: …]"), and what it says.
DOCUMENTED_DEFAULTS = [
    ("stylize", "--coarse-steps", "a third of --steps"),
    ("stylize", "--lr", "1 for lbfgs, 0.02 for adam"),
    ("stylize", "--content-layers", ",".join(config.DEFAULT_CONTENT_LAYERS)),
    ("stylize", "--style-layers", ",".join(config.DEFAULT_STYLE_LAYERS)),
    ("stylize", "--vgg-weights", "$PAINTERLY_VGG_WEIGHTS, else imagenet"),
    ("demo", "--vgg-weights", "$PAINTERLY_VGG_WEIGHTS, else imagenet if it can be had, else random"),
    ("train", "--style-size", "its own size"),
    ("train", "--content-layers", ",".join(config.JOHNSON_CONTENT_LAYERS)),
    ("train", "--style-layers", ",".join(config.JOHNSON_STYLE_LAYERS)),
    ("apply", "--tile", f"{config.AUTO_TILE}-pixel tiles for images over {config.AUTO_TILE_ABOVE:,} pixels"),
    ("serve", "--workdir", "the system's temp folder"),
]

INSTALL_HINTS = {"serve": ["painterly[web]"], "apply": ["painterly[onnx]", "painterly[video]"],
                 "export": ["painterly[onnx]"]}


# `painterly COMMAND --help` for each COMMAND given ("" for the overview), one after another through the console
# script's entry point in one process (one start of Python for all of them), each followed by a line END.
END = "--- end of help ---"
HELP_IN_TURN = f"""
import sys
from painterly.cli import main

for command in sys.argv[1:]:
    try:
        main([*command.split(), "--help"])
    except SystemExit as exited:
        assert not exited.code, (command, exited.code)
    print({END!r}, flush=True)
"""


def _render(*commands: str) -> list[str]:
    environment = {**os.environ, "COLUMNS": "200", "LINES": "50"}
    result = cli_processes.run([sys.executable, "-c", HELP_IN_TURN, *commands], capture_output=True, text=True,
                               timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    texts = result.stdout.split(f"{END}\n")
    assert len(texts) == len(commands) + 1 and texts[-1] == "", result.stdout
    return texts[:-1]


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    """Each command's help, and the overview's under ""."""
    return dict(zip([*COMMANDS, ""], _render(*COMMANDS, ""), strict=True))


def _command(name: str):
    return click_command(app).commands[name]  # type: ignore[attr-defined]


def _entries(text: str) -> dict[str, str]:
    """Each argument's and option's entry, by its long flag (or argument name), whitespace collapsed:
    an entry starts on a line indented by two spaces and goes on over the more deeply indented ones."""
    entries: dict[str, list[str]] = {}
    key = None
    for line in text.splitlines():
        if re.match(r"  \S", line):
            head = line.split()
            flags = [word.rstrip(",") for word in head if word.startswith("--")]
            key = flags[0] if flags else head[0]
            entries[key] = [line.strip()]
        elif line.startswith("   ") and key is not None:
            entries[key].append(line.strip())
        else:
            key = None
    return {name: " ".join(lines) for name, lines in entries.items()}


def _options(name: str):
    return [param for param in _command(name).params if param.param_type_name == "option"]


def _long_flag(param) -> str:
    return next(opt for opt in param.opts if opt.startswith("--"))


def test_every_command_is_covered():
    assert sorted(click_command(app).commands) == sorted(COMMANDS)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_and_its_default(name, helps):
    entries = _entries(helps[name])
    for param in _options(name):
        entry = entries[_long_flag(param)]
        assert param.help, f"{name} {_long_flag(param)} has no help text"
        assert " ".join(param.help.split())[:40] in entry, entry
        if param.is_flag:
            continue
        if isinstance(param.show_default, str):
            assert f"[default: ({param.show_default})]" in entry, entry
        elif param.default is not None and not param.required:
            assert f"[default: {param.default}]" in entry, entry


@pytest.mark.parametrize("name,flag,default", DOCUMENTED_DEFAULTS)
def test_the_defaults_markup_swallowed_are_shown(name, flag, default, helps):
    assert f"[default: ({default})]" in _entries(helps[name])[flag]


@pytest.mark.parametrize("name", COMMANDS)
def test_nothing_is_cut_short(name, helps):
    entries = _entries(helps[name])
    assert "--help" in entries
    for entry in entries.values():
        assert not re.search(r"\s\.(\s|$)", entry), f"a stray ' .' (text lost before it): {entry}"
    for line in helps[name].splitlines():  # whatever the layout, boxes drawn around it included
        assert not re.search(r"\s\.(\s|$)", re.sub(r"[\u2500-\u257f]", " ", line)), line
    assert "[]" not in helps[name] and "()" not in helps[name]


@pytest.mark.parametrize("name,hints", INSTALL_HINTS.items())
def test_install_hints_keep_their_extra(name, hints, helps):
    text = " ".join(helps[name].split())
    for hint in hints:
        assert f"pip install '{hint}'" in text, text


def test_every_install_hint_written_in_a_help_text_is_shown(helps):
    for name in COMMANDS:
        command = _command(name)
        written = " ".join([command.help or "", *(param.help or "" for param in command.params)])
        shown = " ".join(helps[name].split())
        for hint in re.findall(r"painterly\[\w+\]", written):
            assert hint in shown, (name, hint)
    overview = helps[""]
    assert "pip install 'painterly[web]'" in overview


@pytest.mark.parametrize("name", COMMANDS)
def test_flags_take_no_value_and_choices_are_listed(name, helps):
    text = helps[name]
    assert "<bool>" not in text
    entries = _entries(text)
    for param in _options(name):
        head = entries[_long_flag(param)].split("  ")[0]  # the flags and the value placeholder
        if param.is_flag:
            assert "<" not in head, head
            continue
        choices = CHOICES_BY_COMMAND.get((name, param.name), CHOICES.get(param.name))
        if choices is not None:
            assert f"<{'|'.join(choices)}>" in head, head
            assert "<str>" not in head


@pytest.mark.parametrize("name,usage", [
    ("stylize", "painterly stylize [OPTIONS] CONTENT STYLES..."),
    ("train", "painterly train [OPTIONS] STYLE"),
    ("apply", "painterly apply [OPTIONS] MODEL INPUTS..."),
    ("export", "painterly export [OPTIONS] MODEL"),
    ("convert", "painterly convert [OPTIONS] MODEL"),
    ("demo", "painterly demo [OPTIONS]"),
])
def test_usage_line_names_the_arguments_as_typed(name, usage, helps):
    assert helps[name].splitlines()[0] == f"Usage: {usage}"
    assert "{" not in helps[name]


@pytest.mark.parametrize("name", ["stylize", "train", "apply"])
def test_precision_help_says_where_bf16_pays(name, helps):
    entry = _entries(helps[name])["--precision"]
    assert "bf16 pays only where the hardware computes it" in entry
    assert "emulated" in entry


def test_quiet_help_documents_the_progress_interval(helps):
    for name in ("stylize", "demo", "train", "apply"):
        assert "$PAINTERLY_PROGRESS_SECONDS" in _entries(helps[name])["--quiet"]


def test_a_missing_argument_is_named_as_in_the_usage_line():
    result = cli_processes.run([sys.executable, "-m", "painterly", "stylize"], capture_output=True, text=True,
                               timeout=120)
    assert result.returncode == 2
    assert "Missing argument 'CONTENT'" in result.stderr and "Traceback" not in result.stderr
