"""Shared builders: a CA certificate, foreign kubeconfigs, specs, isolated paths."""

from __future__ import annotations

import os

from core.kube import ClusterSpec, ExecCredential, KubeconfigPaths, Mode

WICKET_BIN = "/opt/wicket/bin/wicket"


#: A fixed self-signed CA (no key kept): every process writes the same bytes.
CA_PEM = b"""-----BEGIN CERTIFICATE-----
MIIBNjCB3KADAgECAgEBMAoGCCqGSM49BAMCMBkxFzAVBgNVBAMMDndpY2tldC10
ZXN0LWNhMCAXDTI0MDEwMTAwMDAwMFoYDzIxMjQwMTAxMDAwMDAwWjAZMRcwFQYD
VQQDDA53aWNrZXQtdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNtB
S4YN86MO8vylZLkLbD829XZ2YcZhUIRnACTW2GAs3gyVR5hSfEOyImObtYcRUSBB
3x2Ccogyr8wA5UhJ8OajEzARMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SQAwRgIhANfJ4/D1bFL30tVzmobpeSTjbIFXdIHZU8IGo6EgsC6aAiEAhkp/MxGF
LYM7JTTcJ1KP0F4VlZaXxV4emXql7SujnZ8=
-----END CERTIFICATE-----
"""


def ca_pem() -> bytes:
    return CA_PEM


def spec(
    name: str = "prod",
    port: int = 16443,
    *,
    public: str | None = None,
    mode: Mode = Mode.PASSTHROUGH,
) -> ClusterSpec:
    return ClusterSpec(
        name=name,
        port=port,
        ca_pem=ca_pem(),
        tls_server_name="kubernetes.default.svc",
        credentials=ExecCredential(WICKET_BIN),
        mode=mode,
        public_server=public,
    )


def paths_for(file: str, home: str | None = None) -> KubeconfigPaths:
    """Paths for a single KUBECONFIG file, never the real home."""
    home = home or os.path.dirname(file)
    return KubeconfigPaths.resolve(env={"KUBECONFIG": file}, home=home)


def foreign_kubeconfig(count: int, *, current: int = 0) -> str:
    """kubectl's layout with comments, extensions and unknown fields; no Wicket entries."""
    out = ["# Managed by hand. Do not lose this comment.\n", "apiVersion: v1\n", "clusters:\n"]
    for i in range(count):
        out.append(f"# cluster {i}\n" if i % 7 == 0 else "")
        out += ["- cluster:\n", f"    certificate-authority-data: {'QUJD' * 20}\n"]
        if i % 5 == 0:
            out += [
                "    extensions:\n",
                "    - extension:\n",
                f"        last-update: 'day {i}'\n",
                "        provider: minikube.sigs.k8s.io\n",
                "      name: cluster_info\n",
            ]
        out += [
            f"    server: https://10.0.{i // 250}.{i % 250}:6443  # api {i}\n",
            f"  name: c{i}\n",
        ]
    out += ["# contexts follow\n", "contexts:\n"]
    for i in range(count):
        out += [
            "- context:\n",
            f"    cluster: c{i}\n",
            f"    namespace: ns-{i}\n",
            f"    user: u{i}\n",
            f"  name: ctx-{i}\n",
        ]
    out += [f"current-context: ctx-{current}\n", "kind: Config\n"]
    out += ["preferences:\n", "  colors: true\n", "users:\n"]
    for i in range(count):
        out += [f"- name: u{i}\n", "  user:\n", f"    client-certificate: /certs/u{i}.crt\n"]
    out += [
        "- name: aws\n",
        "  user:\n",
        "    exec:\n",
        "      apiVersion: client.authentication.k8s.io/v1\n",
        "      command: aws\n",
        "      args:\n",
        "      - eks\n",
        "      - get-token\n",
        "      interactiveMode: IfAvailable\n",
    ]
    out += ["x-unknown-field:\n", "  kept: yes  # really\n", "# trailing comment\n"]
    return "".join(out)
