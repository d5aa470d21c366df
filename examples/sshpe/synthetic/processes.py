"""The processes of a generation: worker processes that exit when the generator dies, and
whether the process that owns a temporary folder still exists.

A process pool's workers wait for tasks on a pipe whose writing end every worker inherited
too, so a generator killed with ``kill -9`` (no chance to shut its pool down) would leave
them waiting forever: the pipe never reports end-of-file. :func:`_worker_pool` makes
workers that end themselves instead.

This module uses the standard library only.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

#: ``PR_SET_PDEATHSIG`` of ``<linux/prctl.h>``: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of ``workers`` processes that exit when this process dies."""
    context = multiprocessing.get_context()
    # The workers are this process's children, except under the forkserver start method,
    # where they are children of the fork server (which exits when this process does).
    parent = None if context.get_start_method() == "forkserver" else os.getpid()
    return ProcessPoolExecutor(
        workers, mp_context=context, initializer=_exit_with_parent, initargs=(parent,)
    )


def _exit_with_parent(parent: int | None) -> None:
    """Pool initializer: end this worker when its parent process ``parent`` (``None``:
    whichever it has now) dies.

    On Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` kills the worker the
    moment its parent exits, whatever the worker is busy with, with no thread or polling.
    (Strictly, when the parent's *thread* that started the worker ends: the pool starts
    its workers in the thread that submits the tasks, which waits for them all.) Elsewhere
    a daemon thread polls :func:`os.getppid`, which changes when the orphaned worker is
    adopted by another process (POSIX; on Windows it never changes, and this thread never
    ends the worker). The worker is killed, not stopped cleanly: all it can leave is an
    image file in the generation's temporary folder, which the next generation removes.
    """
    if parent is None:
        parent = os.getppid()
    if not _set_parent_death_signal():
        threading.Thread(target=_poll_parent, args=(parent,), daemon=True).start()
    # The parent may have died before the above took effect: then it has adopted us already.
    if os.getppid() != parent:
        os._exit(1)


def _set_parent_death_signal() -> bool:
    """Have Linux SIGKILL this process when its parent dies; False where it cannot."""
    if sys.platform != "linux":
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # no C library with prctl
        return False
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    prctl.restype = ctypes.c_int
    return int(prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0


def _poll_parent(parent: int) -> None:
    """Exit this process once its parent is no longer ``parent``, checking twice a second."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a killed one until it is reaped).

    Assumed so where this cannot be checked harmlessly: on Windows ``os.kill`` would end it.
    """
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to another user
        pass
    return True
