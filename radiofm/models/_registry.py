"""The registry of bundled models: name -> ONNX file, sha256 and description."""

import hashlib
import json
import os
import threading
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "ModelRegistry", "bundled_registry", "file_sha256",
           "resolve_model"]

#: The name that stands for the shipped default model.
DEFAULT_MODEL = "default"
REGISTRY_FILE = "registry.json"
DATA_DIR = Path(__file__).parent / "data"

_HASHES = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path):
    """sha256 of a file as hex, cached per (path, size, modification time).

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    digest : str
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    with _HASH_LOCK:
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


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
    ['radiofm-resnet18-dino']
    >>> registry.entry("default")["name"]
    'radiofm-resnet18-dino'
    """

    def __init__(self, folder):
        self.folder = Path(folder)
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
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            raise ValueError(
                f"model {entry['name']!r}: {path} has sha256 {digest}, but the registry "
                f"expects {entry['sha256']}; the file was changed or damaged. Refusing to "
                "load it: reinstall radiofm, or pass the path of a file you trust"
            )
        return path

    def add(self, name, path, *, description="", default=False, figures=None):
        """Register a model file lying inside the folder under ``name`` (sha256 recorded).

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
        self.models[name] = {"file": path.relative_to(folder).as_posix(),
                             "sha256": file_sha256(path), "description": description,
                             "figures": dict(figures or {})}
        if default:
            self.default = name
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / (REGISTRY_FILE + ".partial")
        with open(partial, "w") as stream:
            json.dump({"default": self.default, "models": self.models}, stream, indent=2,
                      sort_keys=True)
            stream.write("\n")
        os.replace(partial, self.folder / REGISTRY_FILE)


def bundled_registry():
    """The registry of the models shipped inside radiofm (``radiofm/models/data``)."""
    return ModelRegistry(DATA_DIR)


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
    registry = bundled_registry() if registry is None else registry
    text = os.fspath(model)
    as_path = Path(text).expanduser()
    looks_like_path = isinstance(model, os.PathLike) or text.endswith(".onnx") or (
        os.sep in text)
    if looks_like_path or (text not in registry.models and text != DEFAULT_MODEL
                           and as_path.is_file()):
        if not as_path.is_file():
            raise FileNotFoundError(f"no such model file: {as_path}")
        return as_path.resolve(), as_path.name.removesuffix(".onnx")
    try:
        entry = registry.entry(text)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    return registry.path(text), entry["name"]
