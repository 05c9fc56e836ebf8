"""`pocketkube completion bash|zsh`: the generated scripts, run by real shells."""

from __future__ import annotations

import contextlib
import os
import pty
import shlex
import shutil
import subprocess
import sys
import threading

import pytest

from pocketkube import cli
from pocketkube.cli_completion import script, tables
from pocketkube.cli_tree import commands
from pocketkube.testing.requires import require
from pocketkube.testing.waits import wait_for

BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


@pytest.fixture(scope="module")
def cmds():
    return commands(cli._parser())


@pytest.fixture(scope="module")
def bash_script(cmds, tmp_path_factory):
    path = tmp_path_factory.mktemp("completion") / "pocketkube.bash"
    path.write_text(script("bash", cmds, "0.0.0"))
    return path


def bash_complete(script_path, *words: str, prelude: str = "", env=None) -> list[str]:
    """COMPREPLY of `_pocketkube` for the line `words` with the cursor at the end of the last word."""
    assign = " ".join(shlex.quote(w) for w in words)
    code = (f"{prelude}\nsource {shlex.quote(str(script_path))}\n"
            f"COMP_WORDS=({assign}); COMP_CWORD={len(words) - 1}; COMP_LINE={shlex.quote(' '.join(words))}\n"
            'COMP_POINT=${#COMP_LINE}; _pocketkube; printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True,
                         check=True, env=env, timeout=30).stdout
    return [w for w in out.splitlines() if w]


@pytest.mark.parametrize(("words", "expected"), [
    (("pocketkube", "u"), ["up", "ui"]),
    (("pocketkube", "up", "--run"), ["--runtime"]),
    (("pocketkube", "up", "--runtime", ""), ["auto", "containerd", "process"]),
    (("pocketkube", "up", "--runtime", "=", ""), ["auto", "containerd", "process"]),  # --runtime=<TAB>
    (("pocketkube", "up", "--runtime", "=", "pro"), ["process"]),
    (("pocketkube", "up", "--runtime", "="), ["auto", "containerd", "process"]),
    (("pocketkube", "token", ""), ["create"]),
    (("pocketkube", "-v", "token", ""), ["create"]),
    (("pocketkube", "token", "create", "--d"), ["--data-dir", "--description"]),
    (("pocketkube", "image", "load", "--from-host", "b"), ["busybox"]),
    (("pocketkube", "completion", ""), ["bash", "zsh"]),
    (("pocketkube", "up", "--leader-elect", ""), ["true", "false"]),  # an optional value
    (("pocketkube", "up", "--leader-elect", "false", "--nodes"), ["--nodes"]),
    (("pocketkube", "up", "--port", "7443", "--no-d"), ["--no-dns"]),  # a flag's value is skipped
    (("pocketkube", "up", "--port", ""), []),  # a free-form value: nothing to offer
])
def test_bash(bash_script, words, expected):
    assert bash_complete(bash_script, *words) == expected


def test_bash_paths(bash_script, tmp_path):
    (tmp_path / "app.tar").write_text("")
    (tmp_path / "state").mkdir()
    assert bash_complete(bash_script, "pocketkube", "image", "load", f"{tmp_path}/a") == [f"{tmp_path}/app.tar"]
    assert bash_complete(bash_script, "pocketkube", "up", "--data-dir", f"{tmp_path}/") == [f"{tmp_path}/state"]
    assert bash_complete(bash_script, "pocketkube", "agent", "--ca-file", f"{tmp_path}/a") == [f"{tmp_path}/app.tar"]


def test_bash_hands_kubectl_arguments_to_kubectls_completion(bash_script):
    """kubectl's completion sees `__pocketkube_kubectl ARGS`, the line and cursor cut to match, and
    that function runs `pocketkube kubectl [--data-dir DIR]`."""
    stub = ('__start_kubectl() { COMPREPLY=("${COMP_WORDS[*]}" "$COMP_CWORD" "${COMP_LINE:0:COMP_POINT}|" '
            '"$(declare -f __pocketkube_kubectl >/dev/null && echo "${_pocketkube_kubectl_cmd[*]}")"); }')
    got = bash_complete(bash_script, "pocketkube", "kubectl", "get", "po", prelude=stub)
    assert got == ["__pocketkube_kubectl get po", "2", "__pocketkube_kubectl get po|", "pocketkube kubectl"]
    got = bash_complete(bash_script, "pocketkube", "kubectl", "--data-dir", "/srv/pk", "get", "", prelude=stub)
    assert got == ["__pocketkube_kubectl get ", "2", "__pocketkube_kubectl get |",
                   "pocketkube kubectl --data-dir /srv/pk"]
    got = bash_complete(bash_script, "pocketkube", "kubectl", "--name", "dev", "-n", "kube-system", "get", "p",
                        prelude=stub)
    assert got == ["__pocketkube_kubectl -n kube-system get p", "4", "__pocketkube_kubectl -n kube-system get p|",
                   "pocketkube kubectl --name dev"]
    assert bash_complete(bash_script, "pocketkube", "kubectl", "--name", "", prelude=stub) == []


def test_bash_with_the_real_kubectl_completion(bash_script, tmp_path):
    """End to end: bash-completion, kubectl's generated completion, and `pocketkube kubectl
    __complete` run by it (subcommand names need no cluster)."""
    require(os.path.exists(BASH_COMPLETION), "bash-completion (apt-get install bash-completion)")
    require(shutil.which("kubectl") is not None, "kubectl")
    wrapper = tmp_path / "pocketkube"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pocketkube "$@"\n')
    wrapper.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", POCKETKUBE_DATA_DIR=str(tmp_path))
    got = bash_complete(bash_script, "pocketkube", "kubectl", "api-r", prelude=f"source {BASH_COMPLETION}", env=env)
    assert got == ["api-resources"]


def test_zsh(cmds, tmp_path):
    """The zsh script's walk, with the completion system's builtins replaced by ones that print
    what they were given."""
    require(shutil.which("zsh") is not None, "zsh (apt-get install zsh)")
    path = tmp_path / "_pocketkube"
    path.write_text(script("zsh", cmds, "0.0.0"))
    cases = [("pocketkube u", "describe:up ui"), ("pocketkube up --run", "describe:--runtime"),
             ("pocketkube up --runtime ''", "compadd:auto containerd process"),
             ("pocketkube up --runtime=co", "compset:-P *= compadd:auto containerd process"),
             ("pocketkube token ''", "describe:create"), ("pocketkube up --data-dir /t", "_files:-/"),
             ("pocketkube image load x", "_files:"), ("pocketkube completion ''", "compadd:bash zsh"),
             ("pocketkube kubectl --data-dir /srv/pk get po",
              "kubectl:__pocketkube_kubectl get po|3|pocketkube kubectl --data-dir /srv/pk"),
             ("pocketkube kubectl --name dev get ''", "kubectl:__pocketkube_kubectl get |3|pocketkube kubectl --name dev"),
             ("pocketkube kubectl --data-dir /s", "_files:-/"), ("pocketkube kubectl --name ''", "")]
    code = [
        "compdef() { }",
        'compadd() { local -a a; a=(${(P)2}); out+=("compadd:${a[*]}") }',
        # _describe -t TAG TAG ARRAY, each `name:help`: keep the names that match the word.
        '_describe() { local -a n; n=(${${(P)4}%%:*}); n=(${(M)n:#${words[CURRENT]}*}); out+=("describe:${n[*]}") }',
        '_files() { out+=("_files:$*") }', 'compset() { out+=("compset:$*") }',
        '_kubectl() { out+=("kubectl:${words[*]}|$CURRENT|${_pocketkube_kubectl_cmd[*]}") }',
        f"source {shlex.quote(str(path))}",
        't() { local -a out; words=("$@"); CURRENT=$#; _pocketkube; print -r -- "${out[*]}" }',
        *(f"t {line}" for line, _ in cases)]
    got = subprocess.run(["zsh", "-f", "-c", "\n".join(code)], capture_output=True, text=True, check=True,
                         timeout=30).stdout.splitlines()
    assert got == [want for _, want in cases]


def test_zsh_loads_under_compinit(cmds, tmp_path):
    """Sourced after compinit, the script registers itself and defines no stray globals."""
    require(shutil.which("zsh") is not None, "zsh (apt-get install zsh)")
    path = tmp_path / "_pocketkube"
    path.write_text(script("zsh", cmds, "0.0.0"))
    code = (f"autoload -U compinit; compinit -u -d {tmp_path}/zcompdump; source {path}; "
            "print -r -- $_comps[pocketkube]")
    done = subprocess.run(["zsh", "-f", "-c", code], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "_pocketkube", "")


def test_tables_are_the_parsers():
    t = tables(commands(cli._parser()))
    assert t["cmds"]["pocketkube token"] == "create"
    assert t["choices"]["pocketkube up --runtime"] == "auto containerd process"
    assert t["complete"]["pocketkube up --data-dir"] == "dir"
    assert t["complete"]["pocketkube image load"] == "file"  # the archives
    assert t["passthrough"] == {"pocketkube kubectl": "kubectl"}
    assert "--listen-fd" not in t["opts"]["pocketkube server"]  # internal flags are not offered
    assert "--no-pod-egress" in t["opts"]["pocketkube up"].split()


def test_unknown_shell():
    with pytest.raises(SystemExit):
        cli.main(["completion", "fish"])


class InteractiveZsh:
    """A real interactive zsh on a pseudo-terminal, with compinit and the script in $fpath: a
    widget bound to ^T completes the line (as TAB does) and appends the result to a file."""

    def __init__(self, tmp_path, env):
        self.out = tmp_path / "completed"
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(["zsh", "-f", "-i"], stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        self.type(f"fpath=({shlex.quote(str(tmp_path))} $fpath); autoload -U compinit; "
                  f"compinit -u -d {shlex.quote(str(tmp_path / 'zcompdump'))}\n"
                  f"_t() {{ zle complete-word; print -r -- \"$BUFFER\" >> {shlex.quote(str(self.out))} }}\n"
                  "zle -N _t; bindkey '^T' _t\n")

    def _drain(self):  # the terminal's output is not needed, but must not fill up
        with contextlib.suppress(OSError):
            while os.read(self.master, 4096):
                pass

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def complete(self, line: str) -> str:
        """The line after one completion. Nothing is typed ahead of it: zsh skips completion then."""
        done = len(self.out.read_text().splitlines()) if self.out.exists() else 0
        self.type(line + "\x14")
        result = wait_for(lambda: self.out.exists() and self.out.read_text().splitlines()[done:],
                          what=f"zsh to complete {line!r}")
        self.type("\x15")  # kill the line
        return result[0]

    def close(self):
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.fixture
def zsh(cmds, tmp_path):
    require(shutil.which("zsh") is not None, "zsh (apt-get install zsh)")
    (tmp_path / "_pocketkube").write_text(script("zsh", cmds, "0.0.0"))
    (tmp_path / "pocketkube").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pocketkube "$@"\n')
    (tmp_path / "pocketkube").chmod(0o755)
    env = dict(os.environ, PS1="> ", TERM="dumb", HOME=str(tmp_path), PATH=f"{tmp_path}:{os.environ['PATH']}",
               POCKETKUBE_DATA_DIR=str(tmp_path))
    shell = InteractiveZsh(tmp_path, env)
    yield shell
    shell.close()


def test_zsh_completes_in_a_real_shell(zsh):
    assert zsh.complete("pocketkube tok") == "pocketkube token "
    assert zsh.complete("pocketkube token cr") == "pocketkube token create "
    assert zsh.complete("pocketkube up --run") == "pocketkube up --runtime "
    assert zsh.complete("pocketkube up --runtime con") == "pocketkube up --runtime containerd "
    assert zsh.complete("pocketkube up --runtime=pro") == "pocketkube up --runtime=process "
    assert zsh.complete("pocketkube image load --from-host ng") == "pocketkube image load --from-host nginx "
    require(shutil.which("kubectl") is not None, "kubectl")
    # kubectl's own completion, loaded on first use, running `pocketkube kubectl __complete`.
    assert zsh.complete("pocketkube kubectl api-r") == "pocketkube kubectl api-resources "
