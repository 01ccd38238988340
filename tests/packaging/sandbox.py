"""A FAKE of systemd's seccomp sandbox, for running a program as a unit file says.

systemd (PID 1) is not running on the test machines, so a unit cannot be started. What
could break Python, cffi or cryptography under the units is their seccomp filters, and
those this module builds the way systemd 252 does (src/shared/seccomp-util.c) from the
unit file's own lines, with libseccomp, then ``execv``s the program:

- ``SystemCallFilter=`` (allow-list, ``~`` lines take away, groups expanded by
  ``systemd-analyze syscall-filter``) with ``SystemCallErrorNumber=``;
- ``MemoryDenyWriteExecute=yes``: mmap with PROT_WRITE|PROT_EXEC, mprotect and
  pkey_mprotect adding PROT_EXEC, shmat with SHM_EXEC fail with EPERM;
- ``RestrictAddressFamilies=`` (allow-list): socket() with any other family fails with
  EAFNOSUPPORT;
- ``NoNewPrivileges=yes`` and an empty ``CapabilityBoundingSet=`` (no capabilities).

Mount namespaces, users and the other ``Protect*`` settings are not reproduced.

    python -m tests.packaging.sandbox UNIT_FILE -- PROGRAM [ARG...]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_MASKED_EQ = 7
SHM_EXEC = 0o100000
AF_MAX = 46  # linux/socket.h
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_AF = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}


class ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """``[Service]`` assignments of a unit file, every value of a repeated key in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        if section == "[Service]":
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@cache
def syscall_groups() -> dict[str, list[str]]:
    """Every ``@group`` systemd knows, with its members (syscalls and ``@groups``)."""
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.split()[0], [])
        elif line.strip() and not line.strip().startswith("#") and line.startswith(" "):
            current.append(line.strip())
    return groups


def expand(names: list[str]) -> set[str]:
    out: set[str] = set()
    for name in names:
        if name.startswith("@"):
            out |= expand(syscall_groups()[name])
        else:
            out.add(name)
    return out


def allowed_syscalls(lines: list[str]) -> set[str] | None:
    """The allow-list ``SystemCallFilter=`` lines make (None: no filter)."""
    if not lines:
        return None
    assert not lines[0].startswith("~"), "a deny-list first is not reproduced here"
    allowed: set[str] = set()
    for line in lines:
        deny = line.startswith("~")
        names = expand(line.removeprefix("~").split())
        allowed = allowed - names if deny else allowed | names
    return allowed


class Seccomp:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
        self.lib.seccomp_init.restype = ctypes.c_void_p
        self.lib.seccomp_init.argtypes = (ctypes.c_uint32,)
        self.lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
        self.lib.seccomp_rule_add_array.argtypes = (
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp),
        )  # fmt: skip
        self.lib.seccomp_load.argtypes = (ctypes.c_void_p,)
        self.lib.seccomp_release.argtypes = (ctypes.c_void_p,)

    def number(self, name: str) -> int | None:
        nr: int = self.lib.seccomp_syscall_resolve_name(name.encode())
        return None if nr == -1 else nr  # -1: no such call on this architecture

    def load(self, default: int, rules: list[tuple[int, str, list[ArgCmp]]]) -> None:
        """One filter: ``default`` unless a rule (action, syscall, argument tests) hits."""
        ctx = self.lib.seccomp_init(default)
        assert ctx, "seccomp_init failed"
        try:
            for action, name, cmps in rules:
                nr = self.number(name)
                if nr is None:
                    continue
                array = (ArgCmp * len(cmps))(*cmps) if cmps else None
                rc = self.lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
                assert rc == 0, f"seccomp rule for {name}: {os.strerror(-rc)}"
            rc = self.lib.seccomp_load(ctx)
            assert rc == 0, f"seccomp_load: {os.strerror(-rc)}"
        finally:
            self.lib.seccomp_release(ctx)


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM unless root: nothing to drop
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def apply(unit: Path) -> None:
    """This process (and what it execs) gets the unit's seccomp sandbox."""
    settings = unit_settings(unit)
    libc = ctypes.CDLL(None, use_errno=True)
    if settings.get("CapabilityBoundingSet") == [""]:
        _drop_capabilities(libc)  # root execs with none left: P' = F & bounding set
    if settings.get("NoNewPrivileges") == ["yes"]:
        assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    seccomp = Seccomp()
    if settings.get("MemoryDenyWriteExecute") == ["yes"]:
        deny = act_errno(errno.EPERM)
        wx = mmap.PROT_WRITE | mmap.PROT_EXEC
        x = mmap.PROT_EXEC
        seccomp.load(
            SCMP_ACT_ALLOW,
            [
                (deny, "mmap", [ArgCmp(2, SCMP_CMP_MASKED_EQ, wx, wx)]),
                (deny, "mmap2", [ArgCmp(2, SCMP_CMP_MASKED_EQ, wx, wx)]),
                (deny, "mprotect", [ArgCmp(2, SCMP_CMP_MASKED_EQ, x, x)]),
                (deny, "pkey_mprotect", [ArgCmp(2, SCMP_CMP_MASKED_EQ, x, x)]),
                (deny, "shmat", [ArgCmp(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)]),
            ],
        )
    families = settings.get("RestrictAddressFamilies")
    if families:
        keep = {_AF[name] for name in re.split(r"\s+", " ".join(families))}
        deny = act_errno(errno.EAFNOSUPPORT)
        rules = [(deny, "socket", [ArgCmp(0, SCMP_CMP_EQ, af, 0)]) for af in range(AF_MAX)]
        rules = [r for r in rules if r[2][0].datum_a not in keep]
        rules.append((deny, "socket", [ArgCmp(0, SCMP_CMP_GE, AF_MAX, 0)]))
        seccomp.load(SCMP_ACT_ALLOW, rules)
    # last, as systemd does: the allow-list has no seccomp() to load more filters with
    allowed = allowed_syscalls(settings.get("SystemCallFilter", []))
    if allowed is not None:
        (error,) = settings.get("SystemCallErrorNumber", ["EPERM"])
        seccomp.load(act_errno(getattr(errno, error)), [(SCMP_ACT_ALLOW, n, []) for n in allowed])


def main(argv: list[str]) -> None:
    unit, dashes, *program = argv
    assert dashes == "--" and program, __doc__
    apply(Path(unit))
    os.execv(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
