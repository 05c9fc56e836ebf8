"""`pocketkube --help`, examples and `--version`: every command shows an example its parser runs."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import pocketkube
from pocketkube import cli, cli_help
from pocketkube.cli_tree import walk
from pocketkube.kubectl import split_data_dir

ROOT = Path(__file__).resolve().parents[2]


def _paths():
    return [path for path, _ in walk(cli._parser())]


@pytest.mark.parametrize("path", _paths(), ids=lambda p: " ".join(p) or "pocketkube")
def test_every_command_shows_an_example(path):
    parser = dict(walk(cli._parser()))[path]
    shown = cli_help.examples(path, parser)
    assert shown, (f"`pocketkube {' '.join(path)}` has no example: add one to cli_help.EXAMPLES "
                   f"under {' '.join(path)!r}")
    assert parser.epilog.startswith("Examples:\n")
    for _, line in shown:
        assert line in parser.epilog


def test_every_shown_example_parses():
    parser = cli._parser()
    for path, p in walk(parser):
        for _, line in cli_help.examples(path, p):
            argv = shlex.split(line)
            assert argv[0] == "pocketkube"
            if argv[1] == "kubectl":  # main() hands it to kubectl before argparse
                _, rest = split_data_dir(argv[2:])
                assert rest and not rest[0].startswith("-"), line
                continue
            try:
                args = parser.parse_args(argv[1:])
            except SystemExit:
                pytest.fail(f"example does not parse: {line}")
            if path:
                assert args.command == path[0]


def test_an_example_for_a_flag_or_command_still_to_come_waits():
    parser = cli._parser()
    assert not cli_help.applicable(parser, ["up", "--no-such-flag", "1"])
    assert not cli_help.applicable(parser, ["no-such-command"])
    assert cli_help.applicable(parser, ["up", "--nodes=2", "--runtime", "process"])
    assert cli_help.applicable(parser, ["kubectl", "--anything", "get", "pods"])  # kubectl's flags
    up = dict(walk(parser))[("up",)]
    assert cli_help.examples(("up",), up)  # those with flags `up` has
    assert all(" --no-such-flag" not in line for _, line in cli_help.examples(("up",), up))


def test_examples_are_keyed_by_real_or_announced_commands():
    announced = {"down", "status", "list", "logs", "doctor"}  # issue 14's, added by other changes
    known = {" ".join(p) for p in _paths()}
    assert set(cli_help.EXAMPLES) <= known | announced


def test_top_level_help_groups_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pocketkube [-h] [-v] [--version] COMMAND ...")
    for title, _ in cli_help.GROUPS:
        assert title.split(" (")[0] in out
    assert "Other:" not in out, "a command is in no group: add it to cli_help.GROUPS"
    for name, _, _ in cli_help.subcommands(cli._parser()):
        assert f"\n  {name} " in out
    assert "Examples:\n  # Start a cluster" in out


def test_a_missing_or_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["nope"])
    assert e.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_completion_help_shows_how_to_install(capsys):
    with pytest.raises(SystemExit):
        cli.main(["completion", "--help"])
    out = capsys.readouterr().out
    assert "source <(pocketkube completion bash)" in out
    assert 'pocketkube completion zsh > "${fpath[1]}/_pocketkube"' in out


def test_version_matches_the_package_and_the_server(capsys):
    from pocketkube.apiserver.discovery import version_info

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pocketkube.__version__ == pyproject["project"]["version"]
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == out
    assert out.splitlines()[0] == f"pocketkube {pocketkube.__version__}"
    assert f"server gitVersion {version_info()['gitVersion']})" in out
    assert f"Python {sys.version.split()[0]} " in out


def test_help_and_version_stay_light():
    """--help and --version import no server, client or asyncio-heavy stack (a fresh interpreter)."""
    code = ("import sys; from pocketkube import cli; cli._parser().format_help();"
            "import pocketkube.cli_help as h; h.version_text();"
            "print(' '.join(m for m in sys.modules if m.startswith(('pocketkube.apiserver', 'pocketkube.storage', "
            "'pocketkube.registry', 'pocketkube.client.rest', 'aiohttp', 'grpc', 'cryptography', 'yaml'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
