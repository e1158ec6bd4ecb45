"""Run folders and checkpoints: the one reader and writer of what `radiofm.train.train` saves.

A run folder holds ``checkpoint.pt`` (student, teacher, optimiser, centre, step, config:
written during the run), ``teacher_backbone.pt`` (the teacher backbone: written when the run
ends) and ``train_log.csv``. Train, export and evaluate read them only through this module.

Every ``.pt`` file is written atomically (a temporary file in the same folder, then a rename)
and carries the sha256 of its own bytes in the zip comment, which `torch.load` ignores. Reading
verifies it before anything is unpickled (with ``weights_only=True``), so a flipped byte or a
truncated copy is refused with one line that names the file. Files written before checksums
existed load with a warning.
"""

import csv
import hashlib
import logging
import os
from pathlib import Path

import torch

from .._atomic import atomic_path

__all__ = [
    "BACKBONE_FILE", "CHECKPOINT_FILE", "LOG_FILE", "CheckpointError", "RunLog", "backbone_state",
    "find_checkpoint", "read_checkpoint", "save_checkpoint",
]

log = logging.getLogger("radiofm")

CHECKPOINT_FILE = "checkpoint.pt"
BACKBONE_FILE = "teacher_backbone.pt"
LOG_FILE = "train_log.csv"

_MARK = b"radiofm-sha256:"
_COMMENT_LENGTH = len(_MARK) + 64
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes + comment
_BLOCK = 1 << 20


class CheckpointError(ValueError):
    """A file is not a radiofm checkpoint, or is damaged (checksum, truncation)."""


def save_checkpoint(state, path):
    """Write ``state`` with `torch.save`, atomically, with its sha256 in the zip comment.

    A kill at any moment leaves either the previous file or the new one, never half a file.

    Parameters
    ----------
    state : dict
        Tensors and plain values (readable with ``torch.load(weights_only=True)``).
    path : str or path-like
        The ``.pt`` file.

    Returns
    -------
    digest : str
        sha256 (hex) of the saved bytes, as stored.
    """
    with atomic_path(path, overwrite=True) as partial:
        torch.save(state, partial)
        size = partial.stat().st_size
        digest = hashlib.sha256()
        with open(partial, "r+b") as stream:
            for block in iter(lambda: stream.read(_BLOCK), b""):
                digest.update(block)
            stream.seek(size - 22)
            end = stream.read(22)
            if not (end.startswith(_EOCD) and end[-2:] == b"\0\0"):  # pragma: no cover
                raise RuntimeError(f"torch.save wrote an unexpected zip layout to {partial}")
            stream.seek(size - 2)
            stream.write(_COMMENT_LENGTH.to_bytes(2, "little") + _MARK
                         + digest.hexdigest().encode("ascii"))
            stream.flush()
            os.fsync(stream.fileno())
    return digest.hexdigest()


def _verify(path):
    """True when the stored sha256 matches, False for a file without one; raise on mismatch."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        stream.seek(max(0, size - _COMMENT_LENGTH - 22 - 64))
        tail = stream.read()
        if _MARK in tail and not (tail[-_COMMENT_LENGTH - 22:].startswith(_EOCD)
                                  and tail[-_COMMENT_LENGTH:].startswith(_MARK)):
            raise CheckpointError(f"{path} is truncated or damaged: its checksum record is "
                                  "incomplete; restore it from a copy or train again")
        tail = tail[-_COMMENT_LENGTH - 22:]
        if not (tail.startswith(_EOCD) and tail[22:].startswith(_MARK)):
            stream.seek(0)
            if not stream.read(4).startswith(b"PK\x03\x04"):
                raise CheckpointError(f"{path} is not a radiofm checkpoint (not a torch zip "
                                      "file); pass a run folder, teacher_backbone.pt or "
                                      "checkpoint.pt")
            return False
        expected = tail[22 + len(_MARK):].decode("ascii", errors="replace")
        digest = hashlib.sha256()
        stream.seek(0)
        remaining = size - _COMMENT_LENGTH - 2
        while remaining > 0:
            block = stream.read(min(_BLOCK, remaining))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
        digest.update(b"\0\0")
    if digest.hexdigest() != expected:
        raise CheckpointError(f"{path} is damaged: its sha256 {digest.hexdigest()[:16]}... "
                              f"differs from the one stored when it was written "
                              f"({expected[:16]}...); restore it from a copy or train again")
    return True


def read_checkpoint(path, *, map_location="cpu"):
    """Read a ``.pt`` file of `radiofm.train`, after checking its sha256.

    Nothing is unpickled beyond tensors and plain values (``weights_only=True``).

    Parameters
    ----------
    path : str or path-like
        ``checkpoint.pt`` or ``teacher_backbone.pt``.
    map_location : str or `torch.device`
        Where the tensors go.

    Returns
    -------
    state : dict
        With ``config`` and either ``teacher`` (a checkpoint) or ``state_dict`` and ``model``
        (a teacher backbone).

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        A damaged, truncated or foreign file (one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    if not _verify(path):
        log.warning("%s carries no checksum (written before radiofm stored them): not verified",
                    path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} cannot be read as a radiofm checkpoint (truncated or "
                              f"damaged?): {first}") from None
    if not isinstance(state, dict) or "config" not in state or not (
            "teacher" in state or "state_dict" in state):
        raise CheckpointError(f"{path} is not a radiofm checkpoint: it lacks the config and the "
                              "teacher weights that radiofm train writes")
    return state


def find_checkpoint(path):
    """The ``.pt`` file a run folder or a file name stands for.

    Parameters
    ----------
    path : str or path-like
        A run folder (its ``teacher_backbone.pt`` when the run ended, else its
        ``checkpoint.pt``) or one of those files.

    Returns
    -------
    path : `~pathlib.Path`

    Raises
    ------
    FileNotFoundError
        Neither exists.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        for name in (BACKBONE_FILE, CHECKPOINT_FILE):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} has neither {BACKBONE_FILE} nor {CHECKPOINT_FILE}; "
                                "pass a radiofm train output folder or one of those files")
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    return path


def backbone_state(state, path="checkpoint"):
    """The architecture and the teacher backbone weights of a read checkpoint.

    Parameters
    ----------
    state : dict
        As `read_checkpoint` returns.
    path : str or path-like
        How to name it in errors.

    Returns
    -------
    model : dict
        ``arch``, ``patch_size``, ``timm_options``.
    weights : dict
        The backbone's state dict.
    """
    if "state_dict" in state:
        return state["model"], state["state_dict"]
    if "teacher" in state:
        prefix = "backbone."
        weights = {key[len(prefix):]: value for key, value in state["teacher"].items()
                   if key.startswith(prefix)}
        return state["config"]["model"], weights
    raise CheckpointError(f"{path} holds neither a backbone state_dict nor a teacher")


class RunLog:
    """The run folder's CSV log, one row per step, keeping the rows before ``start`` when
    resuming (so a resumed run's log equals an uninterrupted one's).

    Parameters
    ----------
    path : path-like
        ``train_log.csv``.
    columns : sequence of str
    start : int
        First step this process writes.
    finished : bool
        Nothing is left to run: also keep the monitor row written after the last step
        (``step == start``, no loss).
    """

    def __init__(self, path, columns, start, *, finished=False):
        rows = []
        if start and path.exists():
            with open(path, newline="") as stream:
                rows = [row for row in csv.DictReader(stream) if int(row["step"]) < start
                        or (finished and int(row["step"]) == start and not row.get("loss"))]
        # a kill keeps the old log whole
        with atomic_path(path, overwrite=True) as partial, \
                open(partial, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)
        self._stream = open(path, "a", newline="")  # noqa: SIM115 (closed by close())
        self._writer = csv.DictWriter(self._stream, fieldnames=list(columns))

    def writerow(self, row):
        """Append one row and flush it."""
        self._writer.writerow(row)
        self._stream.flush()

    def close(self):
        """Close the file."""
        self._stream.close()
