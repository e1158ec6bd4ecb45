"""The registry of bundled models: name -> ONNX file, sha256 and description."""

import hashlib
import json
import os
from pathlib import Path

from .._atomic import atomic_path, exclusive_lock

__all__ = ["DEFAULT_MODEL", "ModelRegistry", "bundled_registry", "check_sha256", "file_sha256",
           "graph_sha256", "locate_model", "resolve_model"]

#: The name that stands for the shipped default model.
DEFAULT_MODEL = "default"
REGISTRY_FILE = "registry.json"
LOCK_FILE = ".registry.lock"
DATA_DIR = Path(__file__).parent / "data"

_BLOCK = 1 << 20
_GRAPH_FIELD = 7  # onnx.ModelProto.graph: the nodes and the weights (initializers)


def file_sha256(path):
    """sha256 of a file as hex, read from disk on every call (nothing is cached).

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    digest : str
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _varint(data, pos):
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def graph_sha256(model_bytes, *, source="model"):
    """sha256 of an ONNX model's graph (nodes and weights), whatever its metadata says.

    The metadata of a model lives in the same file as its weights, so a file cannot carry its
    own file hash; it carries this one instead (``weights_sha256``, written by
    `radiofm.export`), which every change to the graph or the weights alters. It is computed
    from the protobuf wire format, with no onnx package.

    Parameters
    ----------
    model_bytes : bytes
        The content of an ``.onnx`` file.
    source : str
        How to name the model in errors.

    Returns
    -------
    digest : str

    Raises
    ------
    ValueError
        The bytes are no ONNX model (no graph, or a broken protobuf).
    """
    data = memoryview(model_bytes)
    digest, found, pos = hashlib.sha256(), False, 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, pos = _varint(data, pos)
                if pos + length > len(data):
                    raise ValueError("truncated protobuf field")
                if field == _GRAPH_FIELD:
                    digest.update(data[pos:pos + length])
                    found = True
                pos += length
            else:
                raise ValueError(f"protobuf wire type {wire}")
    except ValueError as error:
        raise ValueError(f"{source} is not a readable ONNX file ({error}); it is damaged or "
                         "truncated") from None
    if not found or pos != len(data):
        raise ValueError(f"{source} is not a readable ONNX file (no graph); it is damaged or "
                         "truncated")
    return digest.hexdigest()


class ModelRegistry:
    """Named ONNX models in one folder, listed in its ``registry.json``.

    ``registry.json`` holds ``{"default": NAME or null, "models": {NAME: {"file": ...,
    "sha256": ..., "description": ..., "figures": {...}}}}`` with files relative to the
    folder; ``figures`` are the model card's evaluation figures of that very file. A file
    whose sha256 differs from its entry is refused.

    Parameters
    ----------
    folder : str or path-like
        The folder with ``registry.json`` and the model files (created by `add` if absent).

    Examples
    --------
    >>> from radiofm.models import bundled_registry
    >>> registry = bundled_registry()
    >>> registry.names()
    ['radiofm-resnet18-dino-v2']
    >>> registry.entry("default")["name"]
    'radiofm-resnet18-dino-v2'
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self._read()

    def _read(self):
        path = self.folder / REGISTRY_FILE
        if path.is_file():
            with open(path) as stream:
                content = json.load(stream)
        else:
            content = {"default": None, "models": {}}
        self.default = content.get("default")
        self.models = dict(content.get("models", {}))

    def __repr__(self):
        return f"<ModelRegistry {self.names()} in {self.folder}>"

    def names(self):
        """Registered model names, sorted."""
        return sorted(self.models)

    def entry(self, name):
        """The entry of ``name`` (``"default"`` resolves to the default model).

        Raises
        ------
        KeyError
            No such model, or no default model.
        """
        if name == DEFAULT_MODEL and DEFAULT_MODEL not in self.models:
            if not self.default:
                raise KeyError(
                    "no default model is bundled with this radiofm yet; pass the path to an "
                    ".onnx file written by `radiofm export`, e.g. model='my_model.onnx'"
                )
            name = self.default
        if name not in self.models:
            raise KeyError(f"no model named {name!r} in {self.folder}; registered: "
                           f"{self.names() or 'none'}. Pass a path to an .onnx file instead")
        return {"name": name, **self.models[name]}

    def path(self, name):
        """The file of model ``name``, after checking its sha256.

        Raises
        ------
        KeyError
            No such model.
        FileNotFoundError
            Its file is missing.
        ValueError
            Its file does not match the registered sha256.
        """
        entry = self.entry(name)
        path = self.folder / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"model {entry['name']!r}: file {path} is missing; "
                                    "reinstall radiofm")
        check_sha256(file_sha256(path), entry["sha256"], path, entry["name"])
        return path

    def add(self, name, path, *, description="", default=False, figures=None):
        """Register a model file lying inside the folder under ``name`` (sha256 recorded).

        The registry file is read again and written under a lock (``.registry.lock`` in the
        folder), so registrations by other processes since this object was made, or at the
        same time, are kept.

        Parameters
        ----------
        name : str
            Model name (not ``"default"``).
        path : str or path-like
            The ONNX file, inside ``folder``.
        description : str
            One line for listings.
        default : bool
            Make it the default model.
        figures : dict, optional
            Evaluation figures of this file (``"task/dataset/probe/metric"`` -> value), as
            its model card reports them.
        """
        if name == DEFAULT_MODEL:
            raise ValueError(f"{DEFAULT_MODEL!r} is reserved; register a name and pass "
                             "default=True")
        path = Path(path).resolve()
        folder = self.folder.resolve()
        if folder not in path.parents:
            raise ValueError(f"{path} is not inside the registry folder {folder}")
        entry = {"file": path.relative_to(folder).as_posix(), "sha256": file_sha256(path),
                 "description": description, "figures": dict(figures or {})}
        with exclusive_lock(self.folder / LOCK_FILE):
            self._read()
            self.models[name] = entry
            if default:
                self.default = name
            with atomic_path(self.folder / REGISTRY_FILE, overwrite=True) as partial, \
                    open(partial, "w") as stream:
                json.dump({"default": self.default, "models": self.models}, stream, indent=2,
                          sort_keys=True)
                stream.write("\n")


def bundled_registry():
    """The registry of the models shipped inside radiofm (``radiofm/models/data``)."""
    return ModelRegistry(DATA_DIR)


def locate_model(model=DEFAULT_MODEL, *, registry=None):
    """The file of a model and the sha256 it must have, without reading it.

    Parameters
    ----------
    model : str or path-like
        ``"default"``, a registered name, or a path.
    registry : `ModelRegistry`, optional
        Default: the bundled registry.

    Returns
    -------
    path : `~pathlib.Path`
    name : str
        The registered name, or the file's stem for a path.
    sha256 : str or None
        The registered sha256 of the file; None for a path (its ``weights_sha256`` metadata
        is checked when it loads).
    """
    registry = bundled_registry() if registry is None else registry
    text = os.fspath(model)
    as_path = Path(text).expanduser()
    looks_like_path = isinstance(model, os.PathLike) or text.endswith(".onnx") or (
        os.sep in text)
    if looks_like_path or (text not in registry.models and text != DEFAULT_MODEL
                           and as_path.is_file()):
        if not as_path.is_file():
            raise FileNotFoundError(f"no such model file: {as_path}")
        return as_path.resolve(), as_path.name.removesuffix(".onnx"), None
    try:
        entry = registry.entry(text)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    path = registry.folder / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"model {entry['name']!r}: file {path} is missing; "
                                "reinstall radiofm")
    return path, entry["name"], entry["sha256"]


def check_sha256(digest, expected, path, name):
    """Raise ValueError when a registered model's file does not have its registered sha256."""
    if expected is not None and digest != expected:
        raise ValueError(
            f"model {name!r}: {path} has sha256 {digest}, but the registry expects {expected}; "
            "the file was changed or damaged. Refusing to load it: reinstall radiofm, or pass "
            "the path of a file you trust"
        )


def resolve_model(model=DEFAULT_MODEL, *, registry=None):
    """The file of a model: a registry name (sha256 checked) or a path to an .onnx file.

    Parameters
    ----------
    model : str or path-like
        ``"default"``, a registered name, or a path.
    registry : `ModelRegistry`, optional
        Default: the bundled registry.

    Returns
    -------
    path : `~pathlib.Path`
    name : str
        The registered name, or the file's stem for a path.
    """
    path, name, expected = locate_model(model, registry=registry)
    if expected is not None:
        check_sha256(file_sha256(path), expected, path, name)
    return path, name
