"""``executor="process"``: sync tasks in child processes, so ``max_time`` is a hard limit.

A thread cannot be stopped; a process can. Each worker process keeps up to one
child per CPU (started on demand, reused; more calls wait for a free one), each running
``python -m qtasks_fast.worker.procexec <app import spec>``: it imports the app
like the CLI's ``-A`` and runs one call at a time. Parent and child talk over the
child's stdin/stdout in frames (4-byte big-endian length + msgpack; never
pickle): the request is the encoded envelope, the reply ``["ok", result]``,
``["error", traceback text, message, exception class names]`` (plus the keyword arguments of a
``ctx.plugin_error``, which the worker raises again as a ``TaskPluginTriggerError`` for its plugins and
middlewares to recover, as with a thread) or ``["cancel", reason]``.
The child validates the arguments itself, so the call is exactly what a thread
would make. Output the task prints goes to stderr (the worker's log), never
into the frames; so does what it logs, formatted as in the worker, at the worker's level, with the
worker id and the task (see :mod:`qtasks_fast.log`).

At ``max_time`` (or on ``app.cancel``) the child is killed (SIGKILL) and a fresh
one is started in the background for the next call; the record turns
``error`` (``TimeoutError``) or ``cancel``. A child that dies by itself fails its
task with the exit code. The app import spec is the CLI's ``-A`` (recorded by
the loader as ``app._import_spec``), else the module of the task's function
when it holds the app; an app defined in ``__main__`` needs ``-A``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import struct
import sys
import traceback
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.exceptions import TaskCancel, TaskPluginTriggerError
from qtasks_fast.log import LOGGER_NAME, current_task, get_logger, setup_logging
from qtasks_fast.schemas.bigint import decode_result

if TYPE_CHECKING:
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.task import TaskFunc

log = get_logger("worker")
HEADER = struct.Struct(">I")
_encode = msgspec.msgpack.Encoder().encode


class RemoteError(Exception):
    """A task failed in its child process; ``traceback`` is the child's text, ``mro_names`` its
    exception's classes (``module.qualname``), so ``retry_on_exc`` still matches subclasses."""

    def __init__(self, message: str, traceback_text: str, mro_names: list[str]) -> None:
        super().__init__(message)
        self.traceback = traceback_text
        self.mro_names = mro_names


class RemotePluginTriggerError(RemoteError, TaskPluginTriggerError):
    """A ``ctx.plugin_error(**kwargs)`` of a task run in a child: a ``TaskPluginTriggerError`` with the child's
    ``kwargs``, so the ``task_plugin_error`` plugins and ``recover`` hooks of the worker answer it as they answer
    one raised in a thread; and a ``RemoteError``, so its record keeps the child's traceback."""

    def __init__(self, message: str, traceback_text: str, mro_names: list[str], kwargs: dict[str, Any]) -> None:
        super().__init__(message, traceback_text, mro_names)
        self.kwargs = kwargs


def import_spec(task: TaskFunc) -> str:
    """How a child process imports ``task``'s app: the CLI's ``-A``, else ``module:name`` of the function's module."""
    app = task.app
    spec = getattr(app, "_import_spec", None)
    if spec:
        return str(spec)
    module = sys.modules.get(getattr(task.func, "__module__", "") or "")
    if module is not None and module.__name__ != "__main__":
        for name, value in vars(module).items():
            if value is app:
                return f"{module.__name__}:{name}"
    raise RuntimeError(f"task {task.name!r} has executor='process': its child process must import the app, and "
                       "no import path is known. Start the worker with `qtasks-fast -A module:app run`, define the "
                       "task in the module that holds the app, or set app._import_spec = 'module:app'")


class _Child:
    """One child process and its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def read(self) -> Any:
        assert self.proc.stdout is not None
        try:
            (size,) = HEADER.unpack(await self.proc.stdout.readexactly(4))
            return decode_result(await self.proc.stdout.readexactly(size))  # a wide int comes back an int
        except asyncio.IncompleteReadError:
            code = await self.proc.wait()
            raise RuntimeError(f"the task's process {self.proc.pid} died (exit code {code})") from None

    async def call(self, frame: bytes) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(HEADER.pack(len(frame)) + frame)
        await self.proc.stdin.drain()
        return await self.read()

    def kill(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass


class ProcessPool:
    """Up to ``size`` reusable children of one worker process."""

    def __init__(self, spec: str, size: int) -> None:
        self.spec = spec
        self.size = size
        self.idle: list[_Child] = []
        self.slots = asyncio.Semaphore(size)
        self._bg: set[asyncio.Task[None]] = set()
        self.closed = False

    async def _spawn(self) -> _Child:
        level = logging.getLevelName(logging.getLogger(LOGGER_NAME).getEffectiveLevel())
        # this process' import path goes along: the app's module must import in the child as it did here (a test
        # runner puts a test's directory on sys.path, which `python -m` in the child would not)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "qtasks_fast.worker.procexec", self.spec,
                                                    level, os.pathsep.join(p for p in sys.path if p),
                                                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        child = _Child(proc)
        try:
            hello = await child.read()
        except RuntimeError:
            hello = ["fatal", "it exited while importing the app"]
        if hello[0] != "ready":
            child.kill()
            await proc.wait()
            raise RuntimeError(f"cannot start a process for executor='process' with app {self.spec!r}: {hello[1]}")
        return child

    def _replace(self) -> None:
        """Start a child in the background, so the call after a kill does not wait for the import."""
        async def spawn() -> None:
            try:
                child = await self._spawn()
            except Exception as exc:  # noqa: BLE001 - the next call spawns (and reports) itself
                log.warning("could not start a replacement task process: %s", exc)
                return
            if self.closed:
                child.kill()
            else:
                self.idle.append(child)

        task = asyncio.get_running_loop().create_task(spawn())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def run(self, env: Envelope, worker_id: str, timeout: float | None) -> Any:
        """Run ``env``'s call in a child; its value, or raise what the call raised (``RemoteError``,
        ``TaskCancel``), ``TimeoutError`` after ``timeout`` seconds."""
        frame = _encode([msgspec.msgpack.encode(env), worker_id])
        async with self.slots:
            child = self.idle.pop() if self.idle else await self._spawn()
            reusable = False
            try:
                call = child.call(frame)
                reply = await (asyncio.wait_for(call, timeout) if timeout else call)
                reusable = True
            except asyncio.TimeoutError:
                raise TimeoutError(f"task exceeded max_time={timeout}s; its process {child.proc.pid} was killed") \
                    from None
            finally:
                if reusable and not self.closed:
                    self.idle.append(child)
                else:  # timed out, cancelled (cancel or drain) or broken: it must not run anything else
                    child.kill()
                    if not self.closed and child.proc.returncode is None:
                        self._replace()
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "cancel":
            raise TaskCancel(reply[1])
        if len(reply) > 4:
            raise RemotePluginTriggerError(reply[2], reply[1], reply[3], reply[4])
        raise RemoteError(reply[2], reply[1], reply[3])

    def close(self) -> None:
        self.closed = True
        for child in self.idle:
            child.kill()
        self.idle.clear()
        for task in list(self._bg):
            task.cancel()

    async def aclose(self) -> None:
        """:meth:`close`, and reap the children, so their pipes are closed on this loop (not by the GC later,
        when the loop may be closed: a worker in a thread ends its loop right after)."""
        children = list(self.idle)
        self.close()
        for child in children:
            await child.proc.wait()


# ------------------------------------------------------------------------------------------ child
def _reply(tf: TaskFunc, env: Envelope, worker_id: str, validate: bool) -> bytes:
    from qtasks_fast.contrib.pydantic import encode_with_models
    from qtasks_fast.exceptions import TaskArgumentsError
    from qtasks_fast.worker.context import EchoTask

    current_task.set(env)
    try:
        echo = EchoTask(tf, env, worker_id) if tf.echo else None
        args, kwargs = tf.call_args(env.args, env.kwargs, {}, echo, validate)
        value = tf.func(*args, **kwargs)
        if tf.is_gen:
            handler = tf.generate_handler
            value = [handler(v) if handler else v for v in value]
        try:
            try:
                return _encode(["ok", value])
            except (TypeError, msgspec.EncodeError, OverflowError):
                return encode_with_models(["ok", value])
        except (TypeError, msgspec.EncodeError, OverflowError) as enc:
            raise TypeError(f"result of type {type(value).__name__} is not serializable to msgpack: {enc}") from None
    except TaskCancel as exc:
        return _encode(["cancel", exc.reason or "cancelled"])
    except BaseException as exc:  # noqa: BLE001 - reported to the worker, which records it
        if isinstance(exc, TaskArgumentsError):
            text = str(exc)
        else:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        names = [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__]
        reply: list[Any] = ["error", text, f"{type(exc).__name__}: {exc}", names]
        if isinstance(exc, TaskPluginTriggerError):
            return _plugin_error_reply(reply, exc.kwargs)
        return _encode(reply)


def _plugin_error_reply(reply: list[Any], kwargs: dict[str, Any]) -> bytes:
    """``reply`` with ``ctx.plugin_error``'s keyword arguments: as they are when msgpack (or a pydantic model)
    carries them, else each as its ``repr``, so the worker's plugins still learn what the task said."""
    from qtasks_fast.contrib.pydantic import encode_with_models

    try:
        return encode_with_models([*reply, kwargs])
    except (TypeError, msgspec.EncodeError, OverflowError):
        return _encode([*reply, {str(k): repr(v) for k, v in kwargs.items()}])


def _read(stream: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return buf


def main(argv: list[str]) -> int:
    """The child: import the app, say ready, then answer one request at a time until stdin closes."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() in a task goes to stderr, never into the frames
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the worker decides
    if sys.platform.startswith("linux"):  # die with the worker even if it is SIGKILLed
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - stdin EOF still ends us
            pass

    def write(body: bytes) -> None:
        out.write(HEADER.pack(len(body)) + body)
        out.flush()

    from qtasks_fast.loader import load_app
    from qtasks_fast.schemas import Envelope

    if len(argv) > 2:  # the worker's import path (see ProcessPool._spawn), ahead of ours
        sys.path[:0] = [p for p in argv[2].split(os.pathsep) if p and p not in sys.path]
    try:
        app = load_app(argv[0])
    except BaseException as exc:  # noqa: BLE001
        write(_encode(["fatal", f"{type(exc).__name__}: {exc}"]))
        return 2
    write(_encode(["ready", os.getpid()]))
    decode_env = msgspec.msgpack.Decoder(Envelope).decode
    inp = sys.stdin.buffer
    validate = app.config.validate_args
    level = argv[1] if len(argv) > 1 else "INFO"
    logged_as = ""
    while True:
        header = _read(inp, 4)
        if not header:
            return 0
        raw, worker_id = msgspec.msgpack.decode(_read(inp, HEADER.unpack(header)[0]))
        env = decode_env(raw)
        if worker_id != logged_as:  # the worker's id arrives with its first call
            setup_logging(level, worker_id, root=True, fmt=app.config.logs_format)
            logged_as = worker_id
        tf = app.tasks.get(env.task_name)
        if tf is None:
            text = f"task {env.task_name!r} is not registered in the app imported from {argv[0]!r}"
            write(_encode(["error", text, text, []]))
            continue
        write(_reply(tf, env, worker_id, validate))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
