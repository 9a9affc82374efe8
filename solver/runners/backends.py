"""Where the runners' tasks run: in this process, in local worker processes, or as Ray tasks.

The batch runner and sweeps hand :func:`map_ordered` a module-level function and one argument
tuple per task; it returns the results in task order, whatever order they finish in, so a backend
never changes a report. Ray is optional (``pip install 'llm-placement-solver[ray]'``) and imported
only when asked for.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

RAY_HINT = "pip install 'llm-placement-solver[ray]'"
# Variables the solve reads; a Ray worker is started by Ray, not by us, so they are passed on.
_FORWARDED_ENV = ("SOLVE_CATALOG_PATH",)


class BackendError(Exception):
    """The backend cannot run (Ray missing or unreachable): a usage error, exit code 2."""


@dataclass(frozen=True)
class RayOptions:
    """Run on Ray: ``address`` of an existing cluster, or None to start a local Ray.

    ``num_cpus`` limits a local Ray that we start (the command's ``--jobs``); ``cpus_per_task``
    is what each task reserves (its CP-SAT workers); ``flag`` is the option the user gave, for messages.
    """

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_task: int = 1
    flag: str = "--ray"


def map_ordered(
    fn: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    jobs: int,
    *,
    on_done: Callable[[int, Any], None] | None = None,
    on_error: Callable[[int, BaseException], Any] | None = None,
    ray: RayOptions | None = None,
) -> list[Any]:
    """``[fn(*t) for t in tasks]``, run in parallel; results in task order.

    ``jobs`` processes locally (1: in this process), or one Ray task per item with ``ray``.
    ``on_done(i, result)`` is called as each task finishes (progress). A task whose worker died
    (or that raised) gives ``on_error(i, exc)`` as its result; without ``on_error`` it raises.
    ``fn`` must be a module-level function of an importable module (it is pickled by name).
    """
    if ray is not None:
        return _map_ray(fn, tasks, ray, on_done, on_error)
    results: list[Any] = [None] * len(tasks)
    if jobs <= 1 or len(tasks) <= 1:
        for i, args in enumerate(tasks):
            results[i] = fn(*args)
            if on_done:
                on_done(i, results[i])
        return results
    # spawn: a fresh interpreter per worker, never a fork of a process holding solver threads.
    # The pool's processes are reused across tasks, so the import cost is paid once per worker.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx)
    main = threading.current_thread() is threading.main_thread()  # signals go to the main thread only
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        futures = {pool.submit(fn, *args): i for i, args in enumerate(tasks)}
        for fut in as_completed(futures):
            _collect(results, futures[fut], fut.result, on_done, on_error)
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): stop the workers now, not after their solves.
        _kill_workers(pool)
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _collect(results: list[Any], i: int, get: Callable[[], Any], on_done, on_error) -> None:
    """Task ``i``'s result into ``results``: a task that raised (its worker died) is ``on_error``'s row."""
    try:
        results[i] = get()
    except Exception as err:  # a dead worker is one failed task, not a failed run
        if on_error is None:
            raise
        results[i] = on_error(i, err)
    if on_done:
        on_done(i, results[i])


def _terminate(signum, frame) -> None:
    """SIGTERM in the main process: unwind like Ctrl-C, so the workers are stopped."""
    raise KeyboardInterrupt


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes (within a second), then let the pool wind down."""
    processes = list(getattr(pool, "_processes", {}).values())
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.join(timeout=1.0)
            if proc.is_alive():
                proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------


def import_ray(flag: str = "--ray") -> Any:
    """The ``ray`` module, or a :class:`BackendError` with the install hint."""
    try:
        import ray
    except ImportError:
        raise BackendError(f"{flag} needs Ray: {RAY_HINT}") from None
    return ray


@contextlib.contextmanager
def ray_session(opts: RayOptions) -> Iterator[Any]:
    """Ray, initialised: joins the Ray this process is already connected to, else starts or
    connects one, and shuts down only what it started."""
    ray = import_ray(opts.flag)
    started = False
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        # Workers' output and Ray's start-up lines stay off the terminal: stdout carries the report.
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if env:
            kwargs["runtime_env"] = {"env_vars": env}
        if opts.address:
            kwargs["address"] = opts.address
        else:
            kwargs["include_dashboard"] = False
            if opts.num_cpus:
                kwargs["num_cpus"] = opts.num_cpus
        try:
            ray.init(**kwargs)
        except Exception as err:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError...
            where = f"--ray-address {opts.address}" if opts.address else opts.flag
            raise BackendError(f"{where}: cannot start or reach Ray ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''})") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def ray_task(fn: Callable[..., Any], args: tuple[Any, ...], cwd: str) -> Any:
    """One task on a Ray worker: ``fn(*args)`` run from the submitting process's directory.

    Instance paths and the paths inside instances may be relative; on a local Ray (or a cluster
    with a shared filesystem) the same directory exists, so results match the local pool's.
    """
    if cwd and os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)
    return fn(*args)


def _map_ray(
    fn: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    opts: RayOptions,
    on_done: Callable[[int, Any], None] | None,
    on_error: Callable[[int, BaseException], Any] | None,
) -> list[Any]:
    results: list[Any] = [None] * len(tasks)
    with ray_session(opts) as ray:
        # A task reserves the cores its CP-SAT workers use (one by default), so Ray never puts
        # more solver threads on a node than it has cores; capped at the cluster's CPUs, or
        # no task could ever be scheduled.
        cpus = max(1, min(opts.cpus_per_task, int(ray.cluster_resources().get("CPU", 1))))
        remote = ray.remote(num_cpus=cpus)(ray_task)
        cwd = os.getcwd()
        refs = [remote.remote(fn, args, cwd) for args in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        try:
            while pending:
                # Collect what is done every half second: one wait per task would cost O(n^2).
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
                for ref in sorted(ready, key=index.__getitem__):
                    _collect(results, index[ref], lambda r=ref: ray.get(r), on_done, on_error)
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
    return results
