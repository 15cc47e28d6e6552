"""hubconf.py through torch.hub itself, as a user's script would load it.

`torch.hub.load(repo, "fast", MODEL, source="local")` is what torch.hub does with a GitHub
repository once downloaded, minus the download: it imports hubconf.py from the folder, checks its
`dependencies`, and calls the entry point. With painterly installed (this checkout, as `pip install
-e .` put it) the script is this test process; without it, a fresh interpreter that reads no .pth file,
so only hubconf.py can put the package on the path, and that pulls a catalogue name from a local mirror.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import file_server, tiny_model, write_picture
from zoo_helpers import zoo_mirror

ROOT = Path(__file__).resolve().parent.parent

# Loads both entry points and stylises photo.png (in the working folder), describing what the test checks.
_DESCRIBE = """
import importlib.util, json, sys
import numpy as np
import torch


def describe(repo, model):
    installed_before = importlib.util.find_spec("painterly") is not None
    stylizer = torch.hub.load(repo, "fast", model, source="local", device="cpu", strength=0.5)
    net = torch.hub.load(repo, "network", model, source="local")
    from PIL import Image

    photo = np.asarray(Image.open("photo.png").convert("RGB"))  # uint8, as a script would have it
    # What torch.hub.list and torch.hub.help show (they take no source="local"): hubconf.py imported as they
    # import it, its public callables, and an entry point's docstring.
    spec = importlib.util.spec_from_file_location("hubconf", repo + "/hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entrypoints = [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")]
    out = stylizer.stylize(photo)
    return {
        "installed_before": installed_before,
        "painterly": importlib.util.find_spec("painterly").origin,
        "entrypoints": entrypoints, "help": hubconf.fast.__doc__,
        "stylizer": type(stylizer).__name__, "strength": stylizer.config.strength,
        "model_path": str(stylizer.model_path), "network": type(net).__name__, "training": net.training,
        "shape": list(out.shape), "dtype": str(out.dtype), "changed": float(np.abs(out.astype(float) - photo).mean()),
    }
"""


def load_here(folder: Path, model: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """_DESCRIBE in this process, painterly installed as here, `folder` the working folder."""
    monkeypatch.chdir(folder)
    namespace: dict = {}
    exec(_DESCRIBE, namespace)  # the same code the fresh interpreter below runs
    return namespace["describe"](str(ROOT), model)


def load_without_painterly_installed(folder: Path, model: str, env: dict[str, str]) -> dict:
    """_DESCRIBE in `folder` in a fresh interpreter where painterly is not installed at all (`-S`: no
    site-packages .pth files read; the packages themselves put on the path by hand)."""
    paths = [path for path in site.getsitepackages() if Path(path).is_dir()]
    prelude = f"import sys; sys.path.extend({paths!r})\n"
    main = "\nprint(json.dumps(describe(sys.argv[1], sys.argv[2])))\n"
    command = [sys.executable, "-B", "-S", "-c", prelude + _DESCRIBE + main, str(ROOT), model]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_stylised(result: dict) -> None:
    assert result["entrypoints"] == ["fast", "network"]
    assert "FastStylizer" in result["help"] and "ApplyConfig" in result["help"]
    assert result["stylizer"] == "FastStylizer" and result["strength"] == 0.5  # settings by keyword
    assert result["network"] == "TransformerNet" and result["training"] is False
    assert result["shape"] == [20, 28, 3] and result["dtype"] == "uint8"
    assert result["changed"] > 2  # painted, not handed back


@pytest.fixture
def folder(tmp_path):
    write_picture(tmp_path / "photo.png", 20, 28)
    return tmp_path


def test_a_local_model_file_with_painterly_installed(folder, monkeypatch):
    model = tiny_model(folder / "tiny.safetensors")
    result = load_here(folder, str(model), monkeypatch)
    check_stylised(result)
    assert result["installed_before"] is True
    assert result["model_path"] == str(model)


def test_a_catalogue_name_without_painterly_installed(folder):
    """hubconf.py puts the checkout's src/ on the path, and `candy` is pulled from the mirror into
    $PAINTERLY_HOME/models on first use."""
    home = folder / "home"
    with file_server(zoo_mirror(folder / "mirror")) as mirror:
        result = load_without_painterly_installed(folder, "candy", env={"PAINTERLY_HOME": str(home),
                                                                        "PAINTERLY_MODELS_MIRROR": mirror})
    check_stylised(result)
    assert result["installed_before"] is False
    assert result["painterly"] == str(ROOT / "src" / "painterly" / "__init__.py")
    assert result["model_path"] == str(home / "models" / "candy.safetensors")
    assert (home / "models" / "candy.safetensors").is_file()

