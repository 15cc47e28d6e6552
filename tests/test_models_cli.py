"""`painterly models` and catalogue names wherever a model path goes, as a user meets them.

Each user-facing command runs once as the real command in a subprocess (`python -m painterly ...`: the
real exit code, stdout and stderr, no traceback): `models`, `models pull`, `models info`, `models
remove`, `apply` with a catalogue name and with an hf:// reference (whose client reads its settings
when imported). The rest, refusals included, run the Typer app in-process: the same command code,
and the same one error line on its stderr. Downloads come
from a real HTTP server on 127.0.0.1 serving a miniature saved_models.zip ($PAINTERLY_MODELS_MIRROR),
and every model lands in a $PAINTERLY_HOME under the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cli_processes
from helpers import dead_url, file_server, tiny_model, write_picture
from painterly import images, zoo
from painterly.cli import app
from painterly.config import ApplyConfig
from painterly.errors import ModelFileError
from painterly.fast import FastStylizer
from zoo_helpers import EXAMPLES_ZIP, zoo_mirror

NAMES = ("candy", "mosaic", "rain-princess", "udnie", "adain")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The base URL of a running server that serves the miniature zoo downloads."""
    with file_server(zoo_mirror(tmp_path_factory.mktemp("mirror"))) as url:
        yield url


@pytest.fixture
def home(tmp_path, monkeypatch, mirror):
    """$PAINTERLY_HOME in the tmp folder, the mirror set, the tmp folder the working directory."""
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(zoo.MIRROR_ENV, mirror)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def photo(tmp_path):
    return write_picture(tmp_path / "photo.png", 20, 28)


def painterly(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real command in a fresh interpreter, with this process's environment (and `env` on top)."""
    return cli_processes.run([sys.executable, "-B", "-m", "painterly", *map(str, args)], capture_output=True,
                             text=True, timeout=300, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})})


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def one_error_line(stderr: str) -> str:
    """The one line a user-caused failure prints (progress lines aside), checked to be just that."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("painterly: downloading")]
    assert len(lines) == 1 and lines[0].startswith("painterly: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def files_in(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what "left as it was" is compared by."""
    if not folder.exists():
        return {}
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


def listing_rows(stdout: str) -> dict[str, list[str]]:
    """The listing's table rows by model name (the header and the closing lines left out)."""
    return {line.split()[0]: line.split() for line in stdout.splitlines() if line.split() and line.split()[0] in NAMES}


# --- the user-facing paths, as real processes ---------------------------------------------------------


def test_list_pull_info_and_remove_as_a_user_runs_them(home):
    listed = painterly("models")
    assert listed.returncode == 0, listed.stderr
    rows = listing_rows(listed.stdout)
    assert sorted(rows) == sorted(NAMES)
    assert all(row[-1] == "-" for row in rows.values())  # nothing on disk yet
    assert str(home / "models") in listed.stdout  # where the cache is

    pulled = painterly("models", "pull", "candy")
    assert pulled.returncode == 0, pulled.stderr
    path = home / "models" / "candy.safetensors"
    assert pulled.stdout.strip() == str(path) and path.is_file()
    assert f"downloading {EXAMPLES_ZIP}" in pulled.stderr  # the progress line (stderr is no terminal here)

    rows = listing_rows(invoke("models").stdout)
    assert rows["candy"][-1] == "pulled" and rows["mosaic"][-1] == "-" and rows["adain"][-1] == "-"

    info = painterly("models", "info", "candy")
    assert info.returncode == 0, info.stderr
    assert "BSD-3-Clause" in info.stdout and "pytorch/examples" in info.stdout
    assert "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1" in info.stdout
    assert "recorded at first download on" in info.stdout
    assert str(path) in info.stdout

    removed = painterly("models", "remove", "candy")
    assert removed.returncode == 0 and str(path) in removed.stdout
    assert not path.exists()
    assert listing_rows(invoke("models").stdout)["candy"][-1] == "-"


def test_apply_with_a_catalogue_name_pulls_it_on_first_use(home, photo, tmp_path):
    done = painterly("apply", "candy", photo, "-o", "out.png")
    assert done.returncode == 0, done.stderr
    assert f"downloading {EXAMPLES_ZIP}" in done.stderr  # the progress `models pull` shows
    assert (home / "models" / "candy.safetensors").is_file()
    out = images.read_array(tmp_path / "out.png")[0]
    original = images.read_array(photo)[0]
    assert out.shape == original.shape and not np.allclose(out, original, atol=0.05)
    record = images.read_settings(tmp_path / "out.png")["model"]
    assert record["file"] == str(home / "models" / "candy.safetensors")
    assert record["provenance"]["catalogue"] == "candy"  # where the model came from, in every output


# --- the rest, in-process -------------------------------------------------------------------------------


def test_offline_pull_is_one_line_and_leaves_the_cache_as_it_was(home, monkeypatch):
    (home / "models").mkdir(parents=True)
    tiny_model(home / "models" / "mine.safetensors")  # a model of the user's own, in the folder the web UI lists
    before = files_in(home)
    url = dead_url()
    monkeypatch.setenv(zoo.MIRROR_ENV, url)
    done = invoke("models", "pull", "candy")
    assert done.exit_code == 1, done.output
    line = one_error_line(done.stderr)
    assert "candy" in line and url in line and zoo.MIRROR_ENV in line and "--file" in line
    assert files_in(home) == before


def test_apply_with_an_unknown_name_is_one_line_with_the_close_names(home, photo):
    done = invoke("apply", "candi", photo, "-o", "out.png")
    assert done.exit_code == 1, done.output
    line = one_error_line(done.stderr)
    assert "candi" in line and "candy" in line
    assert not Path("out.png").exists() and files_in(home) == {}


def test_the_listing_as_json(home):
    assert invoke("models", "pull", "udnie").exit_code == 0
    done = invoke("models", "--json")
    assert done.exit_code == 0, done.output
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert sorted(rows) == sorted(NAMES)
    assert rows["udnie"]["pulled"] is True and rows["candy"]["pulled"] is False
    assert rows["adain"]["kind"] == "adain" and rows["adain"]["licence"] == "MIT"


def test_info_before_a_pull_says_not_yet_downloaded(home):
    done = invoke("models", "info", "adain")
    assert done.exit_code == 0, done.output
    assert "MIT" in done.stdout and "naoto0804/pytorch-AdaIN" in done.stdout
    assert done.stdout.count("not yet downloaded") == 2  # decoder.pth and vgg_normalised.pth
    assert "decoder.pth" in done.stdout and "vgg_normalised.pth" in done.stdout


def test_info_as_json_is_what_zoo_info_says(home):
    assert invoke("models", "pull", "candy").exit_code == 0
    done = invoke("models", "info", "candy", "--json")
    assert done.exit_code == 0, done.output
    details = json.loads(done.stdout)
    assert details == json.loads(json.dumps(zoo.info("candy")))
    assert details["pulled"] is True and details["parts"][0]["sha256_source"] == zoo.RECORDED


def test_pull_from_a_file_fetched_by_hand_needs_no_network(home, tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.MIRROR_ENV, dead_url())
    download = zoo_mirror(tmp_path / "by-hand") / EXAMPLES_ZIP
    done = invoke("models", "pull", "rain-princess", "--file", download)
    assert done.exit_code == 0, done.output
    assert Path(done.stdout.strip()) == home / "models" / "rain-princess.safetensors"
    assert zoo.is_pulled("rain-princess")


def test_pull_twice_keeps_the_file_and_force_pulls_it_again(home, monkeypatch, mirror):
    first = invoke("models", "pull", "candy")
    assert first.exit_code == 0, first.output
    path = Path(first.stdout.strip())
    monkeypatch.setenv(zoo.MIRROR_ENV, dead_url())  # a second pull needs no network: the file is there
    assert invoke("models", "pull", "candy").stdout.strip() == str(path)
    path.write_bytes(b"")  # spoilt: an ordinary pull refuses to hand it back, naming the way out
    spoilt = invoke("models", "pull", "candy")
    assert spoilt.exit_code == 1 and "--force" in one_error_line(spoilt.stderr)
    monkeypatch.setenv(zoo.MIRROR_ENV, mirror)
    again = invoke("models", "pull", "candy", "--force")
    assert again.exit_code == 0, again.output
    assert Path(again.stdout.strip()) == path and path.stat().st_size > 0
    assert invoke("models", "pull", "candy").exit_code == 0


def test_remove_what_is_not_there_says_so(home):
    done = invoke("models", "remove", "mosaic")
    assert done.exit_code == 0, done.output
    assert "not on disk" in done.stdout and str(home / "models" / "mosaic.safetensors") in done.stdout


@pytest.mark.parametrize("args", [("info", "mosiac"), ("pull", "mosiac"), ("remove", "mosiac")])
def test_a_typo_in_a_models_command_is_one_line_naming_the_close_name(home, args):
    done = invoke("models", *args)
    assert done.exit_code == 1
    assert "mosaic" in one_error_line(done.stderr)
    assert files_in(home) == {}


def test_a_local_file_named_like_a_catalogue_model_wins(home, photo, tmp_path):
    """`candy` in the working folder is that file, not the catalogue's candy: nothing is pulled (and a
    file without a model's suffix is refused as such)."""
    shutil.copy(photo, tmp_path / "candy")
    done = invoke("apply", "candy", photo, "-o", "out.png")
    assert done.exit_code == 1
    assert "candy: unknown model file type" in one_error_line(done.stderr)
    assert files_in(home) == {}


def test_a_local_model_path_works_as_before(home, photo, tmp_path):
    pulled = Path(invoke("models", "pull", "mosaic").stdout.strip())
    local = shutil.copy(pulled, tmp_path / "mine.safetensors")
    done = invoke("apply", local, photo, "-o", "out.png")
    assert done.exit_code == 0, done.output
    assert images.read_settings(tmp_path / "out.png")["model"]["file"] == str(local)


def test_export_takes_a_catalogue_name(home, tmp_path):
    pytest.importorskip("onnxruntime")
    done = invoke("export", "udnie", "-o", "udnie.onnx")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "udnie.onnx").stat().st_size > 0 and zoo.is_pulled("udnie")


def test_the_python_api_takes_a_catalogue_name(home, tmp_path):
    """FastStylizer and export_onnx resolve names as the CLI does; a bad name is the CLI's one line."""
    stylizer = FastStylizer("mosaic", ApplyConfig(device="cpu"))
    assert stylizer.model_path == home / "models" / "mosaic.safetensors"
    assert stylizer.describe()["model"]["provenance"]["catalogue"] == "mosaic"
    with pytest.raises(ModelFileError, match="mosaic"):
        FastStylizer("mosiac")


def test_an_hf_reference_reaches_the_hub_unmangled(home, photo):
    """Typer's Path type would have made `hf://someone/starry` into `hf:/someone/starry`."""
    pytest.importorskip("huggingface_hub")
    # Offline and nothing cached: the one line says so, naming the reference.
    done = painterly("apply", "hf://someone/starry", photo, "-o", "out.png",
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(home / "hf"), "HF_ENDPOINT": dead_url()})
    assert done.returncode == 1
    assert "hf://someone/starry" in one_error_line(done.stderr)
