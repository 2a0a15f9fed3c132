"""The package's man pages, made from the code's own help at build time (debian/manpages.py)."""

import importlib.util
import pathlib
import shutil
import subprocess

import pytest

from snaplayers import cli
from snaplayers.device import LAYERS
from snaplayers.props import PROPERTIES

SCRIPT = pathlib.Path(__file__).parents[2] / "debian" / "manpages.py"


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("manpages", SCRIPT)
    manpages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(manpages)
    out = tmp_path_factory.mktemp("man")
    manpages.main(str(out))
    return {p.stem: p for p in out.glob("*.8")}


def test_the_plugin_page_lists_every_layer_and_property(pages):
    text = pages["script-snaplayers"].read_text().replace("\\-", "-")
    for layer in LAYERS:
        assert f"\\fB{layer.syntax}\\fR" in text
    for name in PROPERTIES:
        assert f"\\fB{name} (" in text


def test_the_operator_page_lists_every_command_and_option(pages):
    text = pages["snaplayers"].read_text().replace("\\-", "-")
    commands = next(a for a in cli.build_parser()._actions if a.dest == "command")
    for name, sub in commands.choices.items():
        assert f".SS {name}\n" in text
        for action in sub._actions[1:]:         # the first is -h
            assert f"\\fB{action.option_strings[0]}\\fR" in text


def test_the_pages_render_without_warnings(pages):
    assert shutil.which("man"), "man-db is missing: make installs it (HOST_PACKAGES)"
    for page in pages.values():
        proc = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                              text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_snaplayers_help_names_both_pages(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())      # argparse wraps at the terminal's width
    assert done.value.code == 0 and "snaplayers(8) and script-snaplayers(8)" in out
