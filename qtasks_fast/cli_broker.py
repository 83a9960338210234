"""Where the CLI takes the broker URL from, and keeping its password out of every command line.

A process's arguments are world-readable (``/proc/<pid>/cmdline``, ``ps``), and the
supervisor's forked workers inherit them, so ``--broker redis://:pw@host`` shows the password
to every user of the host for as long as the pool runs. Hence two other sources, read in
this order after ``--broker``: ``--broker-file PATH`` (its first non-empty line) and the
environment variable ``QTASKS_BROKER_URL`` (``/proc/<pid>/environ`` is readable by its owner
only). Each of them overrides the app's own ``broker_url``, as ``--broker`` does (the environment
leaves an app built with a broker object of its own alone): the one precedence of every setting,
flag > environment > code > default, see ``BaseQueueTasks.broker_source``. When
``--broker`` is given a URL with a credential anyway, the CLI warns once and ``run``
executes itself again at once with the URL moved from its arguments into the environment,
so that neither the supervisor nor its workers carry it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from qtasks_fast.url import has_secret

ENV = "QTASKS_BROKER_URL"
#: set with ``ENV`` by the re-execution of a ``run`` given ``--broker``: the URL keeps the flag's precedence
FROM_FLAG = "QTASKS_BROKER_URL_FROM_FLAG"
#: a broker file is a URL, not a data set: reading stops here
MAX_FILE = 64 * 1024


class BrokerURLError(Exception):
    """A broker URL source that cannot be used; the message is one line that says what to do."""


def add_arguments(parser: argparse.ArgumentParser, broker_help: str) -> None:
    """``--broker URL`` and ``--broker-file PATH`` (one or the other) on ``parser``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--broker", default=None, help=broker_help)
    group.add_argument("--broker-file", default=os.environ.get("QTASKS_BROKER_FILE") or None, metavar="PATH",
                       help=f"read the broker URL from the first non-empty line of PATH, so that its password is "
                            f"not in the command line (/proc/<pid>/cmdline); env QTASKS_BROKER_FILE, or {ENV} "
                            "with the URL itself")


def read_file(path: str) -> str:
    """The first non-empty line of ``path``, that is not a ``#`` comment."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_FILE)
    except OSError as exc:
        raise BrokerURLError(f"cannot read --broker-file {path}: {exc.strerror or exc}; pass a readable file "
                             "whose first line is the broker URL") from None
    except UnicodeDecodeError:
        raise BrokerURLError(f"--broker-file {path} is not UTF-8 text: put the broker URL on its first line") from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise BrokerURLError(f"--broker-file {path} is empty: put the broker URL on its first line")


def resolve(args: argparse.Namespace) -> str | None:
    """The URL of a flag: ``--broker``, else ``--broker-file``, else the URL a re-executed ``run`` moved
    from its ``--broker`` into the environment (it keeps the flag's precedence); None: no flag, so the
    app's own precedence applies (``$QTASKS_BROKER_URL``, then its code, see ``BaseQueueTasks.broker_source``)."""
    if getattr(args, "broker", None):
        return str(args.broker)
    if getattr(args, "broker_file", None):
        return read_file(args.broker_file)
    if os.environ.pop(FROM_FLAG, None) == "1":
        return os.environ.get(ENV) or None
    return None


def source(args: argparse.Namespace) -> str:
    """Where :func:`resolve` took the URL from: ``flag --broker`` or ``flag --broker-file PATH``."""
    if getattr(args, "broker_file", None) and not getattr(args, "broker", None):
        return f"flag --broker-file {args.broker_file}"
    return "flag --broker"


def without(argv: Sequence[str], url: str) -> list[str]:
    """``argv`` without the option that carries ``url`` (``--broker URL`` or ``--broker=URL``, abbreviated
    or not)."""
    out: list[str] = []
    for tok in argv:
        if tok == url and out and out[-1].startswith("--"):
            out.pop()
        elif not (tok.startswith("--") and tok.endswith("=" + url)):
            out.append(tok)
    return out


def hide_password(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """When ``--broker`` holds a credential: warn once; for ``run``, execute again without it (see module doc).

    ``argv`` must be this process's own arguments (``sys.argv[1:]``): only then is there a command line to
    clean. Returns when nothing is to be done (or it cannot be done safely); otherwise never returns.
    """
    url = getattr(args, "broker", None)
    if not url or not has_secret(url):
        return
    print(f"qtasks-fast: warning: the password is visible to other users in /proc/{os.getpid()}/cmdline; "
          f"use {ENV} or --broker-file", file=sys.stderr, flush=True)
    if args.command not in ("run", "web"):  # a short-lived command: the warning is all
        return
    clean = without(argv, url)
    if any(url in tok for tok in clean):  # an unusual spelling: never loop on exec
        return
    orig = list(getattr(sys, "orig_argv", []))
    n = len(argv)
    if n and orig[-n:] == list(argv):
        cmd = orig[:-n] + clean  # the interpreter's own options (-X, -W, ...) and its way in (-m, a script)
    else:
        cmd = [sys.executable, "-m", "qtasks_fast", *clean]
    sys.stdout.flush()
    try:
        os.execve(sys.executable, cmd, {**os.environ, ENV: url, FROM_FLAG: "1"})
    except OSError as exc:  # e.g. the interpreter was replaced on disk: run on, visibly so
        print(f"qtasks-fast: warning: could not restart without --broker ({exc}); the password stays visible",
              file=sys.stderr, flush=True)
