"""The desktop configuration: the clusters the user added, and the app's settings.

One file, ``<state dir>/clusters.json`` (``$XDG_DATA_HOME/wicket/app``), shared by the
desktop app, ``wicket up`` and ``wicket cluster``: every change is a locked
read-modify-write (:func:`core.fsutil.update_locked`), so two writers take turns and
neither loses the other's update. Readers need no lock.

Schema (version 2)::

    {"version": 2,
     "demo": true,                                 # start the built-in demo in the app
     "demo_mode": "passthrough",                   # the demo's endpoint mode
     "relay": {"listen": "127.0.0.1:41234"},       # the embedded relay's saved address
     "clusters": [{"name": "lab", "relay": "embedded" | "HOST:PORT", "port": 43120,
                   "mode": "passthrough" | "inspect", "cluster_ca": PEM, "server_name": "",
                   "target": "HOST:PORT", "secrets": "keyring" | "encrypted-file" | "session",
                   "user": "",                    # a kubeconfig user, or "": the exec plugin
                   "public_server": ""}]}         # https://HOST[:PORT] at the relay, or ""

Older files are migrated on reading and saved as version 2 by the next write: version 1
had no ``public_server`` (read as ""), and a file without ``version`` is the format the
app wrote before (``{"demo", "clusters"}``), read as version 0. A newer version, or a
file that does not parse, is refused with a :class:`~core.errors.ConfigError` naming the
file and the field, and is left exactly as it is: a Wicket that does not know a field
must not write the file back without it (why ``public_server`` took a new version).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import fsutil
from core.errors import ConfigError
from core.kube.model import public_server_problem
from core.mode import Mode, mode_of
from core.paths import data_dir
from core.secrets import Storage

SCHEMA_VERSION = 2
CONFIG_FILE = "clusters.json"
EMBEDDED = "embedded"
DEFAULT_RELAY_LISTEN = "127.0.0.1:0"  # the embedded relay's first start: any free port


#: Where a cluster's upstream token is kept: the user's choice, per cluster.
SecretStorage = Storage

_STORAGE_TEXT = {
    Storage.KEYRING: "the desktop keyring",
    Storage.ENCRYPTED_FILE: "the passphrase-encrypted file",
    Storage.SESSION: "this session only (forgotten when Wicket quits)",
}


def describe_storage(storage: Storage) -> str:
    return _STORAGE_TEXT[storage]


def check_public_server(url: str) -> None:
    """A cluster's public server is "" (none) or ``https://HOST[:PORT]``."""
    problem = public_server_problem(url) if url else None
    if problem is not None:
        raise ConfigError(f"public server {url!r}: {problem}")


@dataclass(frozen=True)
class ClusterConfig:
    """A cluster the user added: everything needed to bring its local endpoint back."""

    name: str
    relay: str  # EMBEDDED, or the remote relay's HOST:PORT
    port: int  # the local endpoint's port (0 until one was picked)
    mode: Mode = Mode.PASSTHROUGH
    cluster_ca: str = ""  # the apiserver's CA (PEM) and certificate name
    server_name: str = ""
    target: str = ""  # HOST:PORT of the apiserver as the agent sees it
    secrets: SecretStorage = SecretStorage.KEYRING
    user: str = ""  # the kubeconfig user kubectl uses; "": Wicket's credential plugin
    public_server: str = ""  # the relay's public endpoint, https://HOST[:PORT]; "": none

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", mode_of(self.mode))
        object.__setattr__(self, "secrets", SecretStorage(self.secrets))
        check_public_server(self.public_server)

    @property
    def embedded(self) -> bool:
        return self.relay == EMBEDDED


@dataclass
class DesktopConfig:
    """The whole file; change it on disk only through :meth:`update`."""

    demo: bool = True
    relay_listen: str = ""  # the embedded relay's address, saved at its first start
    demo_mode: Mode = Mode.PASSTHROUGH  # the demo's endpoint mode (Cluster → Edit…)
    clusters: list[ClusterConfig] = field(default_factory=list)

    # -- reading -----------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> DesktopConfig:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: bytes | None, path: Path) -> DesktopConfig:
        """The configuration in ``data`` (``None``: no file yet, the defaults)."""
        if data is None:
            return cls()
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not JSON ({exc}); left as it is") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: not a JSON object; left as it is")
        return _from_doc(doc, _Where(path))

    def dump(self) -> bytes:
        doc = {
            "version": SCHEMA_VERSION,
            "demo": self.demo,
            "demo_mode": self.demo_mode.value,
            "relay": {"listen": self.relay_listen},
            "clusters": [cluster_doc(c) for c in self.clusters],
        }
        return (json.dumps(doc, indent=1) + "\n").encode()

    # -- writing -----------------------------------------------------------------------

    @classmethod
    def update(cls, path: Path, change: Callable[[DesktopConfig], None]) -> DesktopConfig:
        """Apply ``change`` to the configuration as it is on disk now; returns the result.

        A refused file (corrupt, newer) raises before anything is written.
        """
        result = cls()

        def apply(data: bytes | None) -> bytes:
            nonlocal result
            result = cls.parse(data, path)
            change(result)
            return result.dump()

        try:
            fsutil.ensure_private_dir(path.parent)
            fsutil.update_locked(path, apply)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write: {exc.strerror}") from exc
        return result

    # -- the clusters ------------------------------------------------------------------

    def cluster(self, name: str) -> ClusterConfig | None:
        return next((c for c in self.clusters if c.name == name), None)

    def put(self, cfg: ClusterConfig) -> None:
        """Add ``cfg``, or replace the cluster of that name where it stands."""
        for i, known in enumerate(self.clusters):
            if known.name == cfg.name:
                self.clusters[i] = cfg
                return
        self.clusters.append(cfg)

    def drop(self, name: str) -> None:
        self.clusters = [c for c in self.clusters if c.name != name]


def default_state_dir() -> Path:
    """``$XDG_DATA_HOME/wicket/app``: the app's and ``wicket up``'s state."""
    return data_dir("app")


def relay_dir(state_dir: Path) -> Path:
    """The embedded relay's CA and registry."""
    return state_dir / "relay"


def config_path(state_dir: Path) -> Path:
    return state_dir / CONFIG_FILE


# -- parsing and validation --------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """A position in the file, for errors that name the file and the field."""

    path: Path
    at: str = ""

    def child(self, key: str | int) -> _Where:
        part = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.at else key)
        return _Where(self.path, self.at + part)

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.at or 'the file'}: {problem}; left as it is")


def _get(doc: dict[str, Any], key: str, kind: type, default: Any, where: _Where) -> Any:
    value = doc.get(key, default)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise where.child(key).error(f"expected {kind.__name__}, found {type(value).__name__}")
    return value


def _from_doc(doc: dict[str, Any], where: _Where) -> DesktopConfig:
    version = doc.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise where.child("version").error("expected a schema version number")
    if version > SCHEMA_VERSION:
        raise where.child("version").error(
            f"schema version {version} is newer than this Wicket's ({SCHEMA_VERSION}): "
            "upgrade Wicket"
        )
    relay = _get(doc, "relay", dict, {}, where)
    listen = _get(relay, "listen", str, "", where.child("relay"))
    clusters = _get(doc, "clusters", list, [], where)
    config = DesktopConfig(bool(_get(doc, "demo", bool, True, where)), listen)
    demo_mode = _get(doc, "demo_mode", str, Mode.PASSTHROUGH.value, where)
    config.demo_mode = _mode(demo_mode, where.child("demo_mode"))
    for i, item in enumerate(clusters):
        cfg = _cluster(item, where.child("clusters").child(i))
        if config.cluster(cfg.name) is not None:
            raise where.child("clusters").child(i).error(f"a second cluster {cfg.name!r}")
        config.clusters.append(cfg)
    return config


def _cluster(item: object, where: _Where) -> ClusterConfig:
    if not isinstance(item, dict):
        raise where.error("expected an object")
    keys = ("cluster_ca", "server_name", "target", "user", "public_server")
    text = {k: _get(item, k, str, "", where) for k in keys}
    if text["public_server"] and (problem := public_server_problem(text["public_server"])):
        raise where.child("public_server").error(f"{text['public_server']!r}: {problem}")
    port = _get(item, "port", int, 0, where)
    if not 0 <= port <= 65535:
        raise where.child("port").error(f"port {port} is out of range")
    name, relay = _get(item, "name", str, "", where), _get(item, "relay", str, EMBEDDED, where)
    if not name:
        raise where.child("name").error("missing")
    mode = _mode(_get(item, "mode", str, Mode.PASSTHROUGH.value, where), where.child("mode"))
    secrets = _get(item, "secrets", str, SecretStorage.KEYRING.value, where)
    try:
        storage = SecretStorage(secrets)
    except ValueError:
        choices = ", ".join(s.value for s in SecretStorage)
        raise where.child("secrets").error(f"{secrets!r} is not one of {choices}") from None
    return ClusterConfig(name, relay, port, mode, secrets=storage, **text)


def _mode(text: str, where: _Where) -> Mode:
    try:
        return mode_of(text)
    except (ValueError, ConfigError) as exc:
        raise where.error(str(exc)) from None


def cluster_doc(cfg: ClusterConfig) -> dict[str, Any]:
    """The cluster as the file (and ``wicket cluster list --json``) has it."""
    doc = asdict(cfg)
    doc["mode"], doc["secrets"] = cfg.mode.value, cfg.secrets.value
    return doc
