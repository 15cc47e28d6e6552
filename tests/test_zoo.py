"""The model zoo (zoo.py, catalogue.py, downloads.py): the catalogue, pulls from a real HTTP server on
127.0.0.1 (served as $PAINTERLY_MODELS_MIRROR), the hashes, the zip boundary, that a failure leaves the
cache byte for byte as it was, and pulls in several real processes at once or killed mid-way.
Nothing here reaches the real URLs. (safezip.py and locks.py alone: test_safezip.py, test_locks.py.)"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli_processes
from adain_helpers import write_published
from helpers import dead_url, file_server, images, run, run_limited, serving, unwritable_folder
from painterly import catalogue as catalogue_module
from painterly import locks, zoo
from painterly.adain import AdaINNet, import_published
from painterly.errors import ModelFileError, OutputError
from painterly.events import DownloadEvent
from painterly.modelfile import load_model
from painterly.transformer import TransformerNet
from race_helpers import held_file_server, wait_until, waits_for_a_lock
from zoo_helpers import EXAMPLES_MEMBERS, EXAMPLES_ZIP, examples_model, examples_zip

CATALOGUE_NAMES = {"candy", "mosaic", "rain-princess", "udnie", "adain"}
needs_proc_locks = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")


# --- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """A mirror's folder: saved_models.zip of tiny pytorch/examples models and pytorch-AdaIN's two files."""
    folder = tmp_path_factory.mktemp("mirror")
    examples_zip(folder / EXAMPLES_ZIP)
    write_published(folder)
    return folder


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """$PAINTERLY_HOME in a fresh folder, with no mirror set yet; yields models_dir()."""
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(zoo.MIRROR_ENV, raising=False)
    return zoo.models_dir()


@pytest.fixture
def mirror(served, home, monkeypatch):
    """The served folder as $PAINTERLY_MODELS_MIRROR, for the length of the test."""
    with file_server(served) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        yield url


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `folder`: 'byte for byte as it was'."""
    if not folder.exists():
        return {}
    return {str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
            for path in sorted(folder.rglob("*"))}


def member_sha256(archive: Path, member: str) -> str:
    with zipfile.ZipFile(archive) as opened:
        return hashlib.sha256(opened.read(member)).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_line(error: pytest.ExceptionInfo, *parts: str) -> str:
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text
    for part in parts:
        assert part in text, (part, text)
    return text


def zip_with(path: Path, members: dict[str | zipfile.ZipInfo, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def candy_bytes(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    torch.save(examples_model(seed).state_dict(), buffer)
    return buffer.getvalue()


TINY_CATALOGUE = """
[downloads."saved_models.zip"]
urls = ["{url}/saved_models.zip?dl=1"]
max_size = {max_size}
{sha256}
cited = "tests"

[models.tiny]
kind = "johnson"
title = "A tiny test model"
parts = [{{ role = "model", download = "saved_models.zip", member = "candy.pth" }}]
licence = {{ spdx = "MIT", file = "tests: LICENSE", covers = "all" }}
source = {{ project = "tests", url = "https://example.org/tests" }}
style = {{ title = "Candy", artist = "nobody" }}
recipe = {{ known = "tests", epochs = 2 }}
"""


def use_catalogue(monkeypatch, tmp_path: Path, url: str, *, sha256: str | None = None,
                  max_size: int = 10_000_000) -> dict[str, zoo.Entry]:
    """A test catalogue (read by load_catalogue, as the package's is) in place of the package's."""
    path = tmp_path / "catalogue.toml"
    path.write_text(TINY_CATALOGUE.format(url=url, max_size=max_size,
                                          sha256=f'sha256 = "{sha256}"' if sha256 else ""), encoding="utf-8")
    entries = zoo.load_catalogue(path)
    monkeypatch.setattr(catalogue_module, "_package_catalogue", lambda: entries)
    return entries


# --- the catalogue -------------------------------------------------------------------------------------


def test_the_package_catalogue_has_the_five_models_with_their_licences_and_urls():
    entries = zoo.catalogue()
    assert set(entries) == CATALOGUE_NAMES
    for name in ("candy", "mosaic", "rain-princess", "udnie"):
        model = entries[name]
        assert model.kind == "johnson" and model.licence["spdx"] == "BSD-3-Clause"
        assert model.source["project"] == "pytorch/examples"
        assert [download.name for download in model.downloads] == ["saved_models.zip"]
        assert model.downloads[0].urls == ("https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1",)
        assert model.parts[0].member == EXAMPLES_MEMBERS[name] and model.style["title"]
    adain = entries["adain"]
    assert adain.is_arbitrary and adain.licence["spdx"] == "MIT"
    assert [part.role for part in adain.parts] == ["decoder", "encoder"]
    assert {url for download in adain.downloads for url in download.urls} == {
        "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/decoder.pth",
        "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth"}
    assert all(model.licence["file"] and model.source["url"].startswith("https://") for model in entries.values())


def test_the_catalogues_names_are_still_the_zoos():
    """zoo.py's names from before the catalogue had its own module, for the CLI, web UI and hubconf."""
    for name in ("CATALOGUE_FILE", "KINDS", "ROLES", "Download", "Part", "Entry", "load_catalogue", "catalogue",
                 "entry"):
        assert getattr(zoo, name) is getattr(catalogue_module, name), name


def test_the_listing_and_info_need_no_torch(home):
    code = "import sys; from painterly import zoo; zoo.listing(); zoo.info('candy'); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(("change", "where", "problem"), [
    (('kind = "johnson"', 'kind = "gatys"'), "[models.tiny]", "kind must be one of johnson, adain"),
    (('role = "model"', 'role = "decoder"'), "[models.tiny] parts[0]", "role must be one of model"),
    (('download = "saved_models.zip"', 'download = "other.zip"'), "[models.tiny] parts[0]", "'other.zip'"),
    (('member = "candy.pth"', 'member = "../candy.pth"'), "[models.tiny] parts[0]", "member must be a plain"),
    (('urls = ["http://127.0.0.1:1/saved_models.zip?dl=1"]', 'urls = ["ftp://x/saved_models.zip"]'),
     '[downloads."saved_models.zip"] urls', "must be an http(s) URL"),
    (("max_size = 1000", 'max_size = "big"'), '[downloads."saved_models.zip"] max_size', "whole number of bytes"),
    (('cited = "tests"', 'cited = "tests"\nsha256 = "abc"'), '[downloads."saved_models.zip"]', "64 lower-case hex"),
    (('licence = { spdx = "MIT", file = "tests: LICENSE", covers = "all" }\n', ""), "[models.tiny]",
     "missing licence"),
    (("[models.tiny]", "[models.Tiny]"), "[models.'Tiny']", "a model name is lower-case"),
    (('source = { project = "tests", url = "https://example.org/tests" }',
      'source = { project = "tests", url = "https://example.org/tests", stars = 3 }'),
     "[models.tiny] source", "unknown field 'stars'"),
    (('recipe = { known = "tests", epochs = 2 }', 'recipe = { known = ["a"] }'), "[models.tiny] recipe",
     "known must be text or a number"),
    (("[models.tiny]", "[models.tiny]\nsize = 3"), "[models.tiny]", "unknown field 'size'"),
    (('download = "saved_models.zip"', 'download = ["saved_models.zip"]'), "[models.tiny] parts[0]",
     "is not one of the [downloads] tables"),
])
def test_every_catalogue_field_is_checked_and_a_problem_names_the_file_and_entry(tmp_path, change, where,
                                                                                 problem):
    text = TINY_CATALOGUE.format(url="http://127.0.0.1:1", max_size=1000, sha256="")
    assert change[0] in text
    path = tmp_path / "catalogue.toml"
    path.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(ModelFileError) as error:
        zoo.load_catalogue(path)
    assert_one_line(error, str(path), where, problem)


def test_a_catalogue_that_is_not_toml_is_one_line(tmp_path):
    path = tmp_path / "catalogue.toml"
    path.write_text("[models.x\nkind = ", encoding="utf-8")
    with pytest.raises(ModelFileError) as error:
        zoo.load_catalogue(path)
    assert_one_line(error, str(path), "not a valid model catalogue")


def test_a_typo_is_answered_with_the_close_names():
    with pytest.raises(ModelFileError) as error:
        zoo.entry("cnady")
    assert_one_line(error, "'cnady' is not a catalogue model", "did you mean candy?")
    with pytest.raises(ModelFileError) as error:
        zoo.resolve_model("rain_princess")
    assert_one_line(error, "rain_princess: no such model file, and not a catalogue model", "did you mean rain-princess")


# --- good pulls --------------------------------------------------------------------------------------


def test_a_johnson_pull_converts_the_zip_member_and_records_where_it_came_from(served, home, mirror):
    events: list = []
    path = zoo.pull("candy", callback=events.append)
    assert path == home / "candy.safetensors" and zoo.is_pulled("candy")
    model, metadata = load_model(path)
    assert isinstance(model, TransformerNet)
    x = images(1, 3, 16, 16)
    assert torch.equal(run(model, x), run(examples_model(0), x))  # the member's weights, not another's
    expected = member_sha256(served / EXAMPLES_ZIP, "saved_models/candy.pth")
    provenance = metadata["provenance"]
    assert provenance["catalogue"] == "candy" and provenance["licence"]["spdx"] == "BSD-3-Clause"
    assert provenance["source"]["project"] == "pytorch/examples" and provenance["recipe"]["epochs"] == 2
    assert provenance["downloads"][0]["used"] == f"{mirror}/saved_models.zip"
    assert provenance["downloads"][0]["urls"] == list(zoo.entry("candy").downloads[0].urls)
    assert provenance["parts"][0] | {"recorded": None} == {
        "role": "model", "download": EXAMPLES_ZIP, "member": "candy.pth", "sha256": expected,
        "sha256_source": zoo.RECORDED, "recorded": None}
    assert provenance["painterly_version"] and provenance["pulled"]
    assert metadata["style"] == zoo.entry("candy").style
    assert metadata["converted_from"] == {"file": "candy.pth", "format": "pytorch-examples"}
    downloads = [event for event in events if isinstance(event, DownloadEvent)]
    size = (served / EXAMPLES_ZIP).stat().st_size
    assert downloads[0].done == 0 and downloads[-1].done == downloads[-1].total == size
    assert (home / "downloads" / EXAMPLES_ZIP).read_bytes() == (served / EXAMPLES_ZIP).read_bytes()
    assert sorted(path.name for path in home.iterdir()) == ["candy.safetensors", "downloads", zoo.HASHES_FILE]


def test_a_second_model_from_the_same_zip_reuses_the_download_with_the_server_gone(served, home, monkeypatch):
    with file_server(served) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        zoo.pull("candy")
    events: list = []
    path = zoo.pull("mosaic", callback=events.append)  # the server is stopped: from the cached zip
    assert not [event for event in events if isinstance(event, DownloadEvent)]
    model, metadata = load_model(path)
    x = images(1, 3, 16, 16)
    assert torch.equal(run(model, x), run(examples_model(1), x))
    assert metadata["provenance"]["downloads"][0]["used"] == f"{url}/saved_models.zip"  # where the cache came from


def test_an_adain_pull_makes_one_model_file_of_the_decoder_and_the_encoder(served, home, mirror):
    path = zoo.pull("adain")
    model, metadata = load_model(path)
    assert isinstance(model, AdaINNet)
    reference = import_published(served / "decoder.pth", served / "vgg_normalised.pth")
    assert all(torch.equal(value, reference.state_dict()[key]) for key, value in model.state_dict().items())
    parts = {part["role"]: part for part in metadata["provenance"]["parts"]}
    assert parts["decoder"]["sha256"] == sha256(served / "decoder.pth")
    assert parts["encoder"]["sha256"] == sha256(served / "vgg_normalised.pth")
    assert {part["sha256_source"] for part in parts.values()} == {zoo.RECORDED}
    assert [file["file"] for file in metadata["converted_from"]["files"]] == ["decoder.pth", "vgg_normalised.pth"]
    assert metadata["provenance"]["kind"] == "adain" and metadata["style"] == {}


def test_a_published_sha256_is_checked_and_said_so(served, home, tmp_path, monkeypatch):
    with file_server(served) as url:
        use_catalogue(monkeypatch, tmp_path, url, sha256=sha256(served / EXAMPLES_ZIP))
        _, metadata = load_model(zoo.pull("tiny"))
    assert metadata["provenance"]["parts"][0]["sha256_source"] == zoo.PUBLISHED
    assert zoo.info("tiny")["parts"][0]["sha256_source"] == zoo.PUBLISHED


def test_file_takes_a_download_fetched_by_hand_and_keeps_it(served, home, tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.MIRROR_ENV, dead_url())  # nothing may be fetched
    by_hand = tmp_path / "by hand" / EXAMPLES_ZIP
    by_hand.parent.mkdir()
    shutil.copyfile(served / EXAMPLES_ZIP, by_hand)
    _, metadata = load_model(zoo.pull("candy", file=by_hand))
    assert metadata["provenance"]["downloads"][0]["used"] == f"local file {EXAMPLES_ZIP}"
    assert (home / "downloads" / EXAMPLES_ZIP).read_bytes() == by_hand.read_bytes()
    member = tmp_path / "udnie.pth"  # the part itself, as the zip holds it
    member.write_bytes(zipfile.ZipFile(served / EXAMPLES_ZIP).read("saved_models/udnie.pth"))
    model, metadata = load_model(zoo.pull("udnie", file=member))
    x = images(1, 3, 16, 16)
    assert torch.equal(run(model, x), run(examples_model(3), x))
    assert zoo.info("udnie")["parts"][0]["url"] == "local file udnie.pth"


def test_two_pulls_of_one_model_at_once_download_it_once(served, home, mirror):
    events: list = []
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(zoo.pull("candy", callback=events.append)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [home / "candy.safetensors"] * 2
    assert len([event for event in events if isinstance(event, DownloadEvent) and event.done == 0]) == 1


def test_pulls_of_two_models_at_once_both_keep_their_records(served, home, mirror):
    threads = [threading.Thread(target=zoo.pull, args=(name,)) for name in ("mosaic", "udnie")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in ("mosaic", "udnie"):
        assert zoo.info(name)["parts"][0]["sha256_source"] == zoo.RECORDED
        assert zoo.resolve_model(name) == home / f"{name}.safetensors"  # its model file's sha256 is recorded too


# --- hashes ----------------------------------------------------------------------------------------------


def test_a_part_that_differs_from_its_first_download_is_refused_and_the_cache_kept(served, home, tmp_path,
                                                                                 monkeypatch):
    with file_server(served) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        zoo.pull("candy")
    recorded = member_sha256(served / EXAMPLES_ZIP, "saved_models/candy.pth")
    other = tmp_path / "other"
    other.mkdir()
    examples_zip(other / EXAMPLES_ZIP, {"mosaic": "mosaic.pth", "candy": "candy.pth"})  # candy of another seed
    before = snapshot(home.parent)
    with file_server(other) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        with pytest.raises(ModelFileError) as error:
            zoo.pull("candy", force=True)
    got = member_sha256(other / EXAMPLES_ZIP, "saved_models/candy.pth")
    assert_one_line(error, "candy: candy.pth in saved_models.zip", f"has sha256 {got}",
                    f"but {recorded} was recorded at its first download", "nothing was kept")
    assert snapshot(home.parent) == before
    zoo.remove("candy")  # the record outlives the model file
    with file_server(other) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        with pytest.raises(ModelFileError, match="recorded at its first download"):
            zoo.pull("candy", force=True)


def test_a_published_sha256_that_differs_is_refused_and_nothing_kept(served, home, tmp_path, monkeypatch):
    with file_server(served) as url:
        use_catalogue(monkeypatch, tmp_path, url, sha256="0" * 64)
        with pytest.raises(ModelFileError) as error:
            zoo.pull("tiny")
    assert_one_line(error, f"tiny: saved_models.zip from {url}/saved_models.zip?dl=1 has sha256 "
                           f"{sha256(served / EXAMPLES_ZIP)}, but {'0' * 64} is published", "nothing was kept")
    assert snapshot(home.parent) == {}


def test_a_pulled_model_file_that_changed_is_refused_on_use(served, home, mirror):
    path = zoo.pull("candy")
    assert zoo.resolve_model("candy") == path
    model, _ = load_model(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # a flipped bit in the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as error:
        zoo.resolve_model("candy")
    assert_one_line(error, f"{path}: sha256 {sha256(path)}", "was recorded when it was pulled",
                    "painterly models pull candy --force")
    zoo.pull("candy", force=True)  # the way out it names
    assert zoo.resolve_model("candy") == path


# --- offline and the other ways a pull fails ----------------------------------------------------------------


@pytest.mark.parametrize("server", ["dead", "404"])
def test_offline_or_a_missing_file_is_one_line_with_the_ways_out_and_nothing_changes(served, home, tmp_path,
                                                                                    monkeypatch, server):
    with file_server(served) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        zoo.pull("candy")
    empty = tmp_path / "empty"
    empty.mkdir()
    before = snapshot(home.parent)
    with file_server(empty) as live:
        base = dead_url() if server == "dead" else live
        monkeypatch.setenv(zoo.MIRROR_ENV, base)
        for name, force, file in (("candy", True, EXAMPLES_ZIP), ("adain", False, "decoder.pth")):
            with pytest.raises(ModelFileError) as error:
                zoo.pull(name, force=force)
            text = assert_one_line(error, f"{name}: could not download {file} from {base}/{file} (",
                                   zoo.MIRROR_ENV, f"`painterly models pull {name} --file PATH`")
            assert ("HTTP 404" in text) if server == "404" else ("refused" in text.lower())
            assert snapshot(home.parent) == before


def test_a_first_pull_that_fails_leaves_no_folder_behind(home, monkeypatch):
    monkeypatch.setenv(zoo.MIRROR_ENV, dead_url())
    with pytest.raises(ModelFileError, match="could not download"):
        zoo.pull("candy")
    assert not home.parent.exists()


def test_a_download_larger_than_allowed_is_refused_before_it_is_read(served, home, tmp_path, monkeypatch):
    with file_server(served) as url:
        use_catalogue(monkeypatch, tmp_path, url, max_size=1000)
        with pytest.raises(ModelFileError) as error:
            zoo.pull("tiny")
    size = (served / EXAMPLES_ZIP).stat().st_size
    assert_one_line(error, f"declares {size} bytes, more than the 1000 bytes allowed")
    assert snapshot(home.parent) == {}


def hostile_zips(outside: Path) -> dict[str, tuple[dict, str]]:
    link = zipfile.ZipInfo("saved_models/candy.pth")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    bomb = zipfile.ZipInfo("saved_models/candy.pth")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    return {
        "traversal": ({"saved_models/mosaic.pth": candy_bytes(), "../candy.pth": candy_bytes()},
                      "holds '../candy.pth', a path outside the folder"),
        "absolute": ({f"{outside}/candy.pth": candy_bytes()}, "a path outside the folder"),
        "symlink": ({link: str(outside / "secret").encode()}, "a symbolic link"),
        "too large": ({bomb: bytes(2_000_000)}, "declares 2000000 bytes, more than the 1000000 allowed"),
        "no member": ({"saved_models/mosaic.pth": candy_bytes()}, "has no member named candy.pth"),
        "two members": ({"a/candy.pth": candy_bytes(), "b/candy.pth": candy_bytes()}, "has 2 members named candy.pth"),
        "not a zip": ({}, "is not a readable zip"),
    }


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink", "too large", "no member", "two members",
                                  "not a zip"])
def test_a_hostile_zip_is_refused_whole_and_nothing_is_written_anywhere(home, tmp_path, monkeypatch, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not yours")
    members, message = hostile_zips(outside)[kind]
    folder = tmp_path / "served"
    folder.mkdir()
    if kind == "not a zip":
        (folder / EXAMPLES_ZIP).write_bytes(b"PK\x03\x04 but nothing after")
    else:
        zip_with(folder / EXAMPLES_ZIP, members)
    with file_server(folder) as url:
        use_catalogue(monkeypatch, tmp_path, url, max_size=1_000_000)
        before = snapshot(tmp_path)
        with pytest.raises(ModelFileError) as error:
            zoo.pull("tiny")
    assert_one_line(error, "tiny: saved_models.zip (from ", message, "nothing was kept")
    assert snapshot(tmp_path) == before  # the cache, the folder above it and the one a member points at


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(home, tmp_path, monkeypatch):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    hostile = pickle.dumps({"conv1.conv2d.weight": Payload()}, protocol=2)
    folder = tmp_path / "served"
    folder.mkdir()
    zip_with(folder / EXAMPLES_ZIP, {"saved_models/candy.pth": hostile})
    with file_server(folder) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        with pytest.raises(ModelFileError) as error:
            zoo.pull("candy")
    assert_one_line(error, "candy: candy.pth in saved_models.zip (from ", "refusing to load", "weights_only")
    given = tmp_path / "candy.pth"
    given.write_bytes(hostile)
    with pytest.raises(ModelFileError) as error:
        zoo.pull("candy", file=given)
    assert_one_line(error, "candy: candy.pth (from local file candy.pth): refusing to load")
    assert not marker.exists() and not home.parent.exists()


def test_a_disk_error_is_the_output_line_and_leaves_nothing(served, home, monkeypatch):
    with file_server(served) as url:
        code = f"""
            import os
            os.environ[{zoo.HOME_ENV!r}] = {str(home.parent)!r}
            os.environ[{zoo.MIRROR_ENV!r}] = {url!r}
            from painterly import zoo
            from painterly.errors import OutputError
            try:
                zoo.pull("candy")
            except OutputError as error:
                print(error)
        """
        result = run_limited(code, limit=4096)  # the zip is larger than any file may grow
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{home / 'downloads' / EXAMPLES_ZIP}: cannot write (File too large)"
    assert not home.parent.exists()


def test_a_home_nothing_can_be_created_in_is_the_output_line(served, tmp_path, monkeypatch):
    with unwritable_folder(tmp_path / "locked") as locked, file_server(served) as url:
        monkeypatch.setenv(zoo.HOME_ENV, str(locked / "home"))
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        with pytest.raises(OutputError) as error:
            zoo.pull("candy")
        assert_one_line(error, f"{locked / 'home' / 'models'}: cannot write (")
        assert list(locked.iterdir()) == []


def test_a_failure_while_moving_the_files_into_place_puts_back_what_was_moved(served, home, mirror):
    (home / "candy.safetensors").mkdir(parents=True)  # in the way, found only once the download is in place
    before = snapshot(home.parent)
    with pytest.raises(OutputError) as error:
        zoo.pull("candy", force=True)
    assert_one_line(error, f"{home / 'candy.safetensors'}: cannot write (")
    assert snapshot(home.parent) == before  # the zip it had moved into downloads/ is gone again


# --- remove, info, listing, resolve_model ----------------------------------------------------------------


def test_remove_deletes_the_model_and_keeps_the_recorded_hashes(served, home, mirror):
    path = zoo.pull("candy")
    assert zoo.remove("candy") == path and not path.exists() and not zoo.is_pulled("candy")
    assert zoo.remove("candy") is None
    info = zoo.info("candy")
    assert info["pulled"] is False and info["sha256"] is None
    assert info["parts"][0]["sha256_source"] == zoo.RECORDED  # still checked against the first download


def test_info_says_how_each_hash_is_known_and_the_listing_what_is_on_disk(served, home, mirror):
    assert zoo.info("candy")["parts"][0]["sha256_source"] == zoo.NOT_DOWNLOADED
    path = zoo.pull("candy")
    info = zoo.info("candy")
    part = info["parts"][0]
    assert part["sha256_source"] == "recorded at first download" and part["recorded"]
    assert part["sha256"] == member_sha256(served / EXAMPLES_ZIP, "saved_models/candy.pth")
    assert part["url"] == f"{mirror}/saved_models.zip"
    assert info["licence"]["spdx"] == "BSD-3-Clause" and info["style"]["title"] == "Candy"
    assert info["downloads"][0]["urls"] == [f"{mirror}/saved_models.zip"]
    assert info["downloads"][0]["cached"] == str(home / "downloads" / EXAMPLES_ZIP)
    assert (info["pulled"], info["path"], info["size"]) == (True, str(path), path.stat().st_size)
    assert info["sha256"] == sha256(path)
    rows = {row["name"]: row for row in zoo.listing()}
    assert set(rows) == CATALOGUE_NAMES
    assert rows["candy"]["pulled"] and rows["candy"]["size"] == path.stat().st_size
    assert not rows["adain"]["pulled"] and rows["adain"]["size"] is None and rows["adain"]["licence"] == "MIT"


def test_resolve_model_takes_paths_pulled_names_and_names_not_yet_pulled(served, home, tmp_path, monkeypatch):
    own = tmp_path / "own.pth"
    own.write_bytes(candy_bytes())
    assert zoo.resolve_model(own) == own and zoo.resolve_model(str(own)) == own
    events: list = []
    with file_server(served) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        path = zoo.resolve_model("candy", callback=events.append)  # not pulled: pulled now
    assert path == home / "candy.safetensors" and any(isinstance(event, DownloadEvent) for event in events)
    assert zoo.resolve_model("candy") == path  # pulled: no server needed
    monkeypatch.chdir(tmp_path)
    (tmp_path / "candy").write_bytes(b"a local file of that name wins")
    assert zoo.resolve_model("candy") == Path("candy") and not zoo.is_reference("candy")
    with pytest.raises(ModelFileError) as error:
        zoo.resolve_model("cnady")
    assert_one_line(error, "cnady: no such model file, and not a catalogue model (did you mean candy?)")


def test_an_hf_reference_goes_to_the_hub_module_not_the_catalogue(home):
    with pytest.raises(ModelFileError) as error:
        zoo.resolve_model("hf://someone/starry/model.pth")  # refused by hub.py before any request
    text = assert_one_line(error, "hf://someone/starry/model.pth")
    assert "not a catalogue model" not in text and zoo.is_reference("hf://someone/starry")


# --- pulls at once in several processes, and pulls killed mid-way ---------------------------------------------


def pull_process(home: Path, url: str, name: str = "candy") -> subprocess.Popen:
    """A real process pulling `name` into `home` (its models_dir()) from the mirror `url`; it prints the path.
    (Forked from the test zygote: torch, which the conversion imports, is imported already.)"""
    env = {**os.environ, zoo.HOME_ENV: str(home.parent), zoo.MIRROR_ENV: url}
    return cli_processes.Popen([sys.executable, "-c", f"from painterly import zoo; print(zoo.pull({name!r}))"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out.strip()


def staging_folders(home: Path, name: str) -> list[Path]:
    return sorted(home.glob(f".pull-{name}.*"))


@needs_proc_locks
def test_two_processes_pulling_one_model_at_once_download_it_once_and_agree(served, home):
    with held_file_server(served) as server:
        first = pull_process(home, server.url)
        wait_until(lambda: server.requests == 1, first, "the first pull's download starts")
        second = pull_process(home, server.url)  # while the first is half way through its download
        wait_until(lambda: waits_for_a_lock(second.pid) or server.requests > 1, second,
                   "the second pull waits for the first (or downloads too)")
        server.go.set()
        printed = {finished(first), finished(second)}
    path = home / "candy.safetensors"
    assert server.requests == 1 and printed == {str(path)}
    records = json.loads((home / zoo.HASHES_FILE).read_text())
    assert records["models"]["candy"]["sha256"] == sha256(path)
    assert records["parts"]["candy/model"]["sha256"] == member_sha256(served / EXAMPLES_ZIP, "saved_models/candy.pth")
    assert records["downloads"][EXAMPLES_ZIP]["sha256"] == sha256(served / EXAMPLES_ZIP)
    assert sorted(item.name for item in home.iterdir()) == ["candy.safetensors", "downloads", zoo.HASHES_FILE]


@needs_proc_locks
def test_a_pull_moves_its_files_into_place_only_under_the_records_lock(served, home, mirror):
    zoo.pull("mosaic")
    with locks.exclusive(home / f".{zoo.HASHES_FILE}.lock"):  # as another process's pull would hold it
        other = pull_process(home, mirror)
        wait_until(lambda: waits_for_a_lock(other.pid), other, "the pull waits for the record of hashes")
        assert not (home / "candy.safetensors").exists()
        assert set(json.loads((home / zoo.HASHES_FILE).read_text())["models"]) == {"mosaic"}
    assert finished(other) == str(home / "candy.safetensors")
    records = json.loads((home / zoo.HASHES_FILE).read_text())
    assert {name: record["sha256"] for name, record in records["models"].items()} == {
        "mosaic": sha256(home / "mosaic.safetensors"), "candy": sha256(home / "candy.safetensors")}


@pytest.mark.parametrize("then", ["pull", "listing"])
def test_a_pull_killed_mid_download_leaves_a_staging_folder_the_next_pull_or_listing_removes(served, home,
                                                                                            monkeypatch, then):
    with held_file_server(served) as server:
        victim = pull_process(home, server.url)
        wait_until(lambda: any(folder.glob(f"downloads/{EXAMPLES_ZIP}") for folder in staging_folders(home, "candy")),
                   victim, "the download is half way")
        zoo.listing()  # the folder of a pull that is alive is left alone
        assert len(staging_folders(home, "candy")) == 1
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
    assert len(staging_folders(home, "candy")) == 1 and (home / ".candy.lock").exists()  # what kill -9 leaves
    if then == "pull":
        with file_server(served) as url:
            monkeypatch.setenv(zoo.MIRROR_ENV, url)
            model, _ = load_model(zoo.pull("candy"))
        assert isinstance(model, TransformerNet)
    else:
        assert not {row["name"]: row for row in zoo.listing()}["candy"]["pulled"]
    assert not list(home.glob(".*"))  # no staging folder, lock file or temporary left


def test_the_listing_ignores_hidden_files_and_leaves_folders_no_pull_made(home):
    home.mkdir(parents=True)
    (home / ".candy.safetensors.1a2b3c4d.tmp.safetensors").write_bytes(b"half a model")  # atomic_path's
    (home / ".mosaic.lock").write_text("1\n")
    (home / ".pull-notes").mkdir()  # no .NAME.RANDOM: not a pull's
    assert not any(row["pulled"] for row in zoo.listing())
    assert not zoo.is_pulled("candy") and not zoo.info("candy")["pulled"]
    assert (home / ".pull-notes").is_dir()


# --- any bytes served as the zip ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_zip(served) -> bytes:
    return (served / EXAMPLES_ZIP).read_bytes()


@pytest.fixture(scope="module")
def mosaic_home(served, tmp_path_factory) -> Path:
    """A $PAINTERLY_HOME with mosaic pulled (and the zip it came in kept), to copy for each example."""
    home = tmp_path_factory.mktemp("mosaic-home")
    with pytest.MonkeyPatch.context() as patch, file_server(served) as url:
        patch.setenv(zoo.HOME_ENV, str(home))
        patch.setenv(zoo.MIRROR_ENV, url)
        zoo.pull("mosaic")
    return home


def _corrupted(data: bytes):
    return st.one_of(
        st.binary(max_size=600),
        st.integers(0, len(data)).map(lambda end: data[:end]),
        st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)).map(
            lambda change: data[:change[0]] + bytes([data[change[0]] ^ change[1]]) + data[change[0] + 1:]),
    )


@settings(max_examples=40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_bytes_served_as_the_zip_pull_correctly_or_leave_the_cache_as_it_was(mosaic_home, good_zip,
                                                                                 tmp_path_factory, monkeypatch, data):
    folder = tmp_path_factory.mktemp("fuzz")
    served_zip = folder / "served" / EXAMPLES_ZIP
    served_zip.parent.mkdir()
    served_zip.write_bytes(data.draw(_corrupted(good_zip)))
    home = folder / "home"
    shutil.copytree(mosaic_home, home)  # a cache with mosaic pulled and its zip kept
    monkeypatch.setenv(zoo.HOME_ENV, str(home))
    before = snapshot(home)
    with file_server(served_zip.parent) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, url)
        try:
            path = zoo.pull("candy", force=True)
        except ModelFileError as error:
            assert "\n" not in str(error)
            assert snapshot(home) == before
        else:
            model, metadata = load_model(path)
            assert isinstance(model, TransformerNet) and metadata["provenance"]["catalogue"] == "candy"
    assert not [path for path in home.rglob(".*")]  # no staging folder or temporary left either way


def test_downloads_fetch_stops_reading_past_max_size(tmp_path):
    from painterly.downloads import DownloadTooLarge, fetch

    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "big").write_bytes(os.urandom(5000))
    with file_server(folder) as url:
        assert fetch(f"{url}/big", tmp_path / "ok", timeout=10, callback=lambda event: None, max_size=5000) == \
            sha256(folder / "big")
        with pytest.raises(DownloadTooLarge, match="declares 5000 bytes"):
            fetch(f"{url}/big", tmp_path / "no", timeout=10, callback=lambda event: None, max_size=4999)
    assert not (tmp_path / "no").exists()  # refused before a byte was read


def test_a_server_that_sends_more_than_it_declares_is_cut_off(tmp_path):
    """No Content-Length (or a lying one): reading stops at the first byte past max_size."""
    import http.server

    from painterly.downloads import DownloadTooLarge, fetch

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)) as url:
        with pytest.raises(DownloadTooLarge, match="sends more"):
            fetch(f"{url}/", tmp_path / "out", timeout=10, callback=lambda event: None, max_size=100_000)
    assert (tmp_path / "out").stat().st_size <= 100_000
