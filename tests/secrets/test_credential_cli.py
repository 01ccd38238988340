"""``wicket credential`` as kubectl runs it: a real subprocess, and a real kubectl over
the kubeconfig entries Wicket writes (``interactiveMode: IfAvailable``): the plugin asks
for the encrypted file's passphrase on kubectl's terminal, and only there."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from keyring.backends import SecretService
from ruamel.yaml import YAML

from core.cli.secrets import exec_credential, parse_exec_info
from core.errors import ConfigError
from core.secrets import Storage, encrypted_file_store, open_store, upstream_token_key
from core.secrets.encrypted_file import ScryptCost
from tests.secrets.fakes import new_backend
from tests.support.credential import (
    FAIL,
    NO_TERMINAL,
    SECRET_SERVICE,
    kubectl_command,
    needs_kubectl,
    on_a_terminal,
    plugin_env,
    run_credential,
    run_kubectl,
    wicket_command,
    write_kubeconfig,
)

pytestmark = pytest.mark.timeout(30)
TOKEN = "upstream-tok-5f3a9c"


def store_token_in_keyring() -> None:
    store = open_store(Storage.KEYRING, backend=new_backend(SecretService.Keyring))
    store.set_sync(upstream_token_key("prod"), TOKEN)


def test_exec_info_parsing() -> None:
    assert parse_exec_info(None, stdin_is_tty=False).api_version.endswith("/v1")
    info = parse_exec_info(
        '{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",'
        ' "spec": {"interactive": true}}',
        stdin_is_tty=False,
    )
    assert info.api_version.endswith("/v1beta1")
    assert info.interactive
    # kubectl's word decides, whatever stdin is: it says no when it has no terminal.
    assert not parse_exec_info(
        '{"apiVersion": "client.authentication.k8s.io/v1"}', True
    ).interactive
    for bad in ("{", "[]", '{"apiVersion": "client.authentication.k8s.io/v2"}'):
        with pytest.raises(ConfigError):
            parse_exec_info(bad, stdin_is_tty=True)
    assert json.loads(exec_credential("t")) == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "t"},
    }


def test_plugin_reads_the_token_from_the_real_keyring(secret_service: str, home: Path) -> None:
    store_token_in_keyring()
    proc = run_credential(plugin_env(home, SECRET_SERVICE), exec_info=None)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": TOKEN},
    }
    assert TOKEN not in proc.stderr

    info = '{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential"}'
    proc = run_credential(plugin_env(home, SECRET_SERVICE), exec_info=info)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["apiVersion"] == "client.authentication.k8s.io/v1beta1"


def test_missing_token_is_a_clear_error(secret_service: str, home: Path) -> None:
    proc = run_credential(plugin_env(home, SECRET_SERVICE), cluster="unknown")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "no token stored for cluster 'unknown'" in proc.stderr


def test_no_keyring_and_no_file_is_a_clear_error(home: Path) -> None:
    proc = run_credential(plugin_env(home, FAIL))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "no secure keyring" in proc.stderr


def test_bad_exec_info_is_refused(home: Path) -> None:
    proc = run_credential(plugin_env(home, FAIL), exec_info='{"apiVersion": "x/v9"}')
    assert proc.returncode == 1
    assert "unsupported ExecCredential apiVersion" in proc.stderr


def _encrypted_file_with_token(home: Path) -> Path:
    path = home / "data" / "wicket" / "secrets.enc"
    store = encrypted_file_store("file-passphrase", path, cost=ScryptCost(12, 8, 1))
    store.set_sync(upstream_token_key("prod"), TOKEN)
    return path


def test_encrypted_file_needs_a_terminal(home: Path) -> None:
    _encrypted_file_with_token(home)
    proc = run_credential(plugin_env(home, FAIL))
    assert proc.returncode == 1
    assert NO_TERMINAL in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one sentence, one line
    assert TOKEN not in proc.stderr + proc.stdout


def test_encrypted_file_with_passphrase_on_the_terminal(home: Path) -> None:
    _encrypted_file_with_token(home)
    info = '{"apiVersion": "client.authentication.k8s.io/v1", "spec": {"interactive": true}}'
    env = plugin_env(home, FAIL, KUBERNETES_EXEC_INFO=info)
    command = f"{sys.executable} -m core.cli credential --cluster prod"
    # script(1) gives the plugin a controlling terminal, as kubectl's own would be.
    status, output = on_a_terminal(command, env, [(b"Passphrase for", b"file-passphrase")])
    assert status == 0, output
    assert b"file-passphrase" not in output, "the passphrase was echoed"
    reply = json.loads(output[output.index(b"{") :])
    assert reply["status"] == {"token": TOKEN}


@needs_kubectl
def test_kubectl_uses_the_plugin(
    secret_service: str, home: Path, fake_apiserver: tuple[str, Path, list[str | None]]
) -> None:
    store_token_in_keyring()
    url, ca_path, seen = fake_apiserver
    kubeconfig = home / "kubeconfig"
    write_kubeconfig(kubeconfig, url, ca_path, wicket_command(home / "bin"))
    proc = run_kubectl(plugin_env(home, SECRET_SERVICE), kubeconfig, "get", "--raw", "/version")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["minor"] == "33"
    assert seen and set(seen) == {f"Bearer {TOKEN}"}
    assert TOKEN not in kubeconfig.read_text()


@needs_kubectl
def test_kubectl_lets_the_plugin_ask_on_its_terminal_only(
    home: Path, fake_apiserver: tuple[str, Path, list[str | None]]
) -> None:
    """The passphrase prompt appears when kubectl runs in a terminal (it hands the plugin
    its stdin and says ``interactive: true``); without one, the one-sentence error."""
    _encrypted_file_with_token(home)
    url, ca_path, seen = fake_apiserver
    kubeconfig = home / "kubeconfig"
    write_kubeconfig(kubeconfig, url, ca_path, wicket_command(home / "bin"))
    (user,) = YAML(typ="safe").load(kubeconfig.read_text())["users"]
    assert user["user"]["exec"]["interactiveMode"] == "IfAvailable"
    env = plugin_env(home, FAIL)

    proc = run_kubectl(env, kubeconfig, "get", "--raw", "/version")  # stdin: /dev/null
    assert proc.returncode != 0
    assert NO_TERMINAL in proc.stderr and "Passphrase for" not in proc.stderr
    assert seen == [] and TOKEN not in proc.stderr + proc.stdout

    command = shlex.join(kubectl_command(kubeconfig, "get", "--raw", "/version"))
    status, output = on_a_terminal(command, env, [(b"Passphrase for", b"file-passphrase")])
    assert status == 0, output
    assert b"file-passphrase" not in output, "the passphrase was echoed"
    assert json.loads(output[output.index(b"{") :])["minor"] == "33"
    assert seen and set(seen) == {f"Bearer {TOKEN}"}
