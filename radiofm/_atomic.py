"""Atomic output files, and the checks every command makes before it writes anything."""

import contextlib
import os
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["atomic_path", "check_not_inputs", "check_writable_folder", "exclusive_lock"]


@contextlib.contextmanager
def atomic_path(path, *, overwrite=False):
    """A temporary path beside ``path`` to write to; renamed onto ``path`` on success.

    The one way radiofm writes a file that another process may read or write at the same
    time (outputs, caches, checkpoints, the model registry). The temporary file lies in the
    target folder (created if needed) and ends with the target's name, so writers that
    choose a format from the extension choose the same one. Its name is unique to the call,
    so processes and threads writing the same target at once never share a temporary file:
    the last rename wins, whole. A crash leaves the old file (or none), never half a file;
    an error removes the temporary file.

    Parameters
    ----------
    path : str or path-like
        The final file.
    overwrite : bool
        Replace an existing file; otherwise an existing file is refused before writing.

    Yields
    ------
    partial : `~pathlib.Path`

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from radiofm._atomic import atomic_path
    >>> target = Path(tempfile.mkdtemp()) / "out" / "counts.txt"
    >>> with atomic_path(target) as partial:
    ...     _ = partial.write_text("3")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('3', ['counts.txt'])
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"would overwrite {path}; pass --overwrite (overwrite=True)")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


@contextlib.contextmanager
def exclusive_lock(path):
    """Hold an exclusive lock on the lock file ``path`` (created if needed) for the block.

    For a read-modify-write of a shared file (the model registry): other processes and
    threads that take the same lock wait until the block ends. The lock file stays, empty;
    the operating system releases the lock when its holder exits, even by a crash.

    Parameters
    ----------
    path : str or path-like
        The lock file, beside the file it guards.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from radiofm._atomic import exclusive_lock
    >>> folder = Path(tempfile.mkdtemp())
    >>> with exclusive_lock(folder / ".counts.lock"):
    ...     _ = (folder / "counts.txt").write_text("3")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as stream:
        _lock(stream.fileno())
        try:
            yield
        finally:
            _unlock(stream.fileno())


if os.name == "nt":
    import msvcrt

    def _lock(fd):
        while True:  # LK_LOCK gives up after 10 s; a registry writer may take longer
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                time.sleep(0.05)

    def _unlock(fd):
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd):
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd):
        fcntl.flock(fd, fcntl.LOCK_UN)


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_not_inputs(outputs, inputs):
    """Refuse an output path that is one of the inputs, whatever ``--overwrite`` says.

    Parameters
    ----------
    outputs, inputs : iterable of str or path-like
        ``None`` entries are skipped; registered model names that are no files are harmless.
    """
    inputs = [Path(p) for p in inputs if p is not None and Path(p).exists()]
    for output in outputs:
        if output is None:
            continue
        for given in inputs:
            if _same_file(output, given):
                raise ValueError(f"refusing to write {output}: it is an input of this command "
                                 f"({given}); choose another output name")


def check_writable_folder(folder):
    """Create ``folder`` if needed and prove it writable (before any long computation)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".radiofm-write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PermissionError(f"cannot write to the output folder {folder} ({reason}); choose "
                              "a writable one with -o") from None
    return folder
