"""Regenerate the tiny ONNX model committed as a test fixture (radiofm/tests/data/tiny.onnx).

The torch-free tests (``pip install radiofm`` plus the test extra: tox env
``py311-test-base``) run the inference path on this file, so they need no torch. Run this
script, with the train extra installed, whenever the export format or the model metadata
changes, and commit the file it writes::

    python scripts/make_test_model.py

The model is timm's ``test_resnet`` with narrow stages (96 features, 0.16 M parameters) and
random heads (`radiofm.tests.model_helpers`), exported with float16-stored weights; it is a
fixture for the plumbing, not a model of the sky.
"""

import shutil
import tempfile
from pathlib import Path

from radiofm.tests.model_helpers import TINY_MODEL, export_tiny_model


def main():
    with tempfile.TemporaryDirectory() as folder:
        _, _, report = export_tiny_model(Path(folder) / "tiny.onnx", half_weights=True)
        TINY_MODEL.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report["half_path"], TINY_MODEL)
    print(f"wrote {TINY_MODEL} ({TINY_MODEL.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
