"""hf:// references (painterly.hub): a real HTTP server on 127.0.0.1 answers as the Hub's endpoints do
(`/api/models/{repo}/revision/{revision}` for the listing, HEAD and GET `/{repo}/resolve/{revision}/{path}`
with X-Repo-Commit, ETag and Content-Length), and HF_ENDPOINT points the real huggingface_hub client at
it. The client reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so resolving runs in a
fresh interpreter, one for each setting of those (about half a second: neither torch nor the model loader
is imported there), which resolves that scenario's references one after another."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import cli_processes
from helpers import dead_url, serving, tiny_model, write_picture
from painterly import hub
from painterly.errors import ModelFileError
from painterly.modelfile import load_model


class Hub:
    """What the fake Hub serves: repos of files, their revisions, and every request it was sent."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.requests: list[str] = []

    def add(self, repo_id: str, files: dict[str, bytes], *, tags: tuple[str, ...] = (), gated: bool = False,
            down: bool = False) -> str:
        """`gated`: files need accepted conditions; `down`: every request for the repo gets a 503."""
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        revisions = {"main": commit, commit: commit, **{tag: commit for tag in tags}}
        self.repos[repo_id] = {"files": files, "revisions": revisions, "gated": gated, "down": down}
        return commit


def _handler(state: Hub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            state.requests.append(f"{self.command} {self.path}")
            parts = urlsplit(self.path).path.strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "revision":
                self._listing("/".join(parts[2:4]), unquote(parts[5]), body)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._file("/".join(parts[:2]), unquote(parts[3]), unquote("/".join(parts[4:])), body)
            else:
                self._fail(404, "RepoNotFound", body)

        def _listing(self, repo_id: str, revision: str, body: bool) -> None:
            repo = state.repos.get(repo_id)
            if repo is None:
                return self._fail(404, "RepoNotFound", body)
            if repo["down"]:
                return self._send(503, b"unavailable", {}, body)
            if revision not in repo["revisions"]:
                return self._fail(404, "RevisionNotFound", body)
            data = json.dumps({"id": repo_id, "sha": repo["revisions"][revision], "private": False,
                               "siblings": [{"rfilename": name} for name in repo["files"]]}).encode()
            self._send(200, data, {"Content-Type": "application/json"}, body)

        def _file(self, repo_id: str, revision: str, path: str, body: bool) -> None:
            repo = state.repos.get(repo_id)
            if repo is None:
                return self._fail(404, "RepoNotFound", body)
            if repo["down"]:
                return self._send(503, b"unavailable", {}, body)
            if repo["gated"]:
                return self._fail(403, "GatedRepo", body)
            if revision not in repo["revisions"]:
                return self._fail(404, "RevisionNotFound", body)
            commit = repo["revisions"][revision]
            if path not in repo["files"]:
                return self._fail(404, "EntryNotFound", body, {"X-Repo-Commit": commit})
            data = repo["files"][path]
            self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                   "Content-Type": "application/octet-stream"}, body)

        def _fail(self, status: int, code: str, body: bool, headers: dict | None = None) -> None:
            self._send(status, code.encode(), {"X-Error-Code": code, **(headers or {})}, body)

        def _send(self, status: int, data: bytes, headers: dict, body: bool) -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


@contextmanager
def serve(state: Hub) -> Iterator[str]:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))) as url:
        yield url


class RunsCode:
    """A pickle that, if anything ever unpickled it, would leave a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


_RESOLVE = """
import json, sys
from painterly.errors import PainterlyError
from painterly.events import DownloadEvent
from painterly.hub import resolve
results = []
for reference in sys.argv[1:]:
    events = []
    def report(event):
        if isinstance(event, DownloadEvent):
            events.append([event.url, event.done, event.total])
    try:
        result = {"path": str(resolve(reference, callback=report)), "events": events}
    except PainterlyError as error:
        result = {"error": str(error)}
    # what this interpreter has imported by now: none of the references so far loaded these
    result["loaded"] = [name for name in ("torch", "safetensors", "painterly.modelfile") if name in sys.modules]
    results.append(result)
print(json.dumps(results))
"""


def resolve_in_fresh_python(references: list[str], endpoint: str, home: Path, *, offline: bool = False,
                            prelude: str = "") -> list[dict]:
    """hub.resolve of each reference, in turn, in one new interpreter whose client talks to `endpoint` and
    caches in `home`: what each returned ({"path", "events"}) or its one-line error ({"error"})."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, "-c", prelude + _RESOLVE, *references], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(references)
    return results


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    return tiny_model(tmp_path_factory.mktemp("model") / "starry.safetensors").read_bytes()


@pytest.fixture(scope="module")
def marker(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pickle") / "the-pickle-ran"


@pytest.fixture(scope="module")
def state(model_bytes: bytes, marker: Path) -> Hub:
    state = Hub()
    state.add("alice/starry", {"starry.safetensors": model_bytes, "README.md": b"# starry\n"}, tags=("v1",))
    state.add("alice/two", {"a.safetensors": model_bytes, "b.safetensors": model_bytes})
    state.add("alice/exported", {"starry.onnx": b"\x08\x08", "starry.pth": b"\x80\x02"})
    state.add("alice/pickles", {"model.pth": b"\x80\x02", "README.md": b"#"})
    state.add("alice/pickled", {"model.safetensors": pickle.dumps(RunsCode(marker))})
    state.add("alice/zipped", {"model.safetensors": b"PK\x03\x04" + bytes(60)})
    state.add("alice/gated", {"starry.safetensors": model_bytes}, gated=True)
    state.add("alice/down", {"starry.safetensors": model_bytes}, down=True)
    return state


@pytest.fixture(scope="module")
def endpoint(state: Hub) -> Iterator[str]:
    with serve(state) as url:
        yield url


ANSWERS = [  # (reference, the start of its one-line error's explanation), for the live Hub
    ("hf://alice/starry/nope.safetensors", "the repo has no file 'nope.safetensors' at 'main' "
                                           "(its models: starry.safetensors)"),
    ("hf://alice/nobody", "no such model repo on the Hub, or it is private"),
    ("hf://alice/starry@v9", "the repo has no revision 'v9'"),
    ("hf://alice/gated", "the repo is gated: accept its conditions at"),
    ("hf://alice/down", "the Hub answered HTTP 503, and it is not in the Hub cache"),
    ("hf://alice/two", "the repo holds 2 .safetensors files (a.safetensors, b.safetensors); name one: "
                       "hf://alice/two/a.safetensors"),
    ("hf://alice/pickles", "no .safetensors or .onnx model in the repo (it holds model.pth, README.md); "
                           "painterly loads no pickles from the Hub"),
]
PICKLED = {"pickled": "it is a Python pickle", "zipped": "it is a zip, as torch.save writes"}
DOWNLOADS = ["hf://alice/starry/starry.safetensors@v1", "hf://alice/exported"]


@pytest.fixture(scope="module")
def live(endpoint: str, tmp_path_factory) -> dict[str, dict]:
    """What the live fake Hub's references resolve to, by reference, from one fresh interpreter with an empty
    cache of its own: the refusals first (so each meets the empty cache), then the pickles served as
    safetensors, then the good downloads."""
    references = [reference for reference, _ in ANSWERS] + [f"hf://alice/{repo}" for repo in PICKLED] + DOWNLOADS
    results = resolve_in_fresh_python(references, endpoint, tmp_path_factory.mktemp("hf"))
    return dict(zip(references, results, strict=True))


def test_a_good_download_loads_and_is_then_served_from_the_cache_offline(model_bytes, tmp_path):
    """The repo's one .safetensors is found, downloaded with progress events, and loads; with the server
    gone, the same references resolve from the client's cache, offline mode set or not."""
    state = Hub()
    commit = state.add("alice/starry", {"starry.safetensors": model_bytes, "README.md": b"# starry\n"})
    home = tmp_path / "hf"
    with serve(state) as endpoint:
        [got] = resolve_in_fresh_python(["hf://alice/starry"], endpoint, home)
        assert "error" not in got, got["error"]
        path = Path(got["path"])
        assert path.name == "starry.safetensors" and path.is_relative_to(home)
        assert commit in path.parts  # the client's own cache layout: snapshots/COMMIT/FILE
        assert path.read_bytes() == model_bytes
        url, done, total = got["events"][-1]
        assert url == f"{endpoint}/alice/starry/resolve/main/starry.safetensors"
        assert done == total == len(model_bytes)
        assert got["loaded"] == []  # resolving read nothing with torch or the model loader
        assert any(request.startswith("GET /api/models/alice/starry/revision/main") for request in state.requests)
    model, metadata = load_model(path)
    assert metadata["format"] == "painterly-transformer"
    offline = ["hf://alice/starry", "hf://alice/starry/starry.safetensors", f"hf://alice/starry@{commit}"]
    answers = [(reference, True, again) for reference, again in
               zip(offline, resolve_in_fresh_python(offline, endpoint, home, offline=True), strict=True)]
    answers += [("hf://alice/starry", False, again) for again in
                resolve_in_fresh_python(["hf://alice/starry"], endpoint, home)]  # online, the server gone
    for reference, offline_set, again in answers:
        assert again.get("path") == str(path), (reference, offline_set, again)
        assert again["events"] == []


def test_a_named_file_at_a_tag(live, model_bytes):
    got = live["hf://alice/starry/starry.safetensors@v1"]
    assert Path(got["path"]).read_bytes() == model_bytes


def test_a_repo_with_only_an_onnx_model_gives_it(live):
    got = live["hf://alice/exported"]
    assert Path(got["path"]).name == "starry.onnx"


@pytest.mark.parametrize(("reference", "expected"), ANSWERS)
def test_what_the_hub_answers_is_one_line_naming_the_reference(live, reference, expected):
    got = live[reference]
    assert got["error"].startswith(f"{reference}: ")
    assert expected in got["error"]
    assert "\n" not in got["error"]


def test_a_dead_server_with_nothing_cached_is_one_line(tmp_path):
    url = dead_url()
    [got] = resolve_in_fresh_python(["hf://alice/starry"], url, tmp_path)
    assert got["error"].startswith(f"hf://alice/starry: cannot reach {url}")
    assert "it is not in the Hub cache" in got["error"] and "\n" not in got["error"]
    assert not any(tmp_path.rglob("*.safetensors"))


def test_offline_with_nothing_cached_says_so(endpoint, state, tmp_path):
    before = len(state.requests)
    [got] = resolve_in_fresh_python(["hf://alice/starry/starry.safetensors"], endpoint, tmp_path, offline=True)
    assert got["error"].startswith("hf://alice/starry/starry.safetensors: HF_HUB_OFFLINE is set, and it is not in "
                                   "the Hub cache")
    assert len(state.requests) == before


@pytest.mark.parametrize(("repo", "looks_like"), PICKLED.items())
def test_a_pickle_served_as_safetensors_is_refused_unread(live, marker, repo, looks_like):
    got = live[f"hf://alice/{repo}"]
    assert got["error"] == (f"hf://alice/{repo}: the Hub's model.safetensors is not a safetensors file "
                            f"({looks_like}); it was not loaded: ask the repo's owner to upload a real .safetensors")
    assert got["loaded"] == []  # neither torch nor safetensors nor the model loader saw it
    assert not marker.exists()


def test_a_pickle_reference_is_refused_before_any_request(endpoint, state, tmp_path):
    before = len(state.requests)
    references = ["hf://alice/pickles/model.pth", "hf://alice/pickles/sub/model.bin@main",
                  "hf://alice/pickles/model.ckpt"]
    for reference, got in zip(references, resolve_in_fresh_python(references, endpoint, tmp_path), strict=True):
        assert got["error"].startswith(f"{reference}: a .")
        assert "is a pickle, which can run code when loaded" in got["error"]
    assert len(state.requests) == before
    assert not (tmp_path / "hub").exists()


def test_without_the_client_installed_one_line_says_how_to_get_it(endpoint, tmp_path):
    [got] = resolve_in_fresh_python(["hf://alice/starry"], endpoint, tmp_path,
                                    prelude="import sys; sys.modules['huggingface_hub'] = None\n")
    assert got["error"] == ("hf://alice/starry: hf:// models need the Hugging Face Hub client: "
                            "pip install 'painterly[hub]'")


def test_apply_takes_an_hf_reference_end_to_end(endpoint, tmp_path):
    """`painterly apply hf://...` in a real process: the model comes through the client, the output is written."""
    photo = write_picture(tmp_path / "photo.png")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    done = cli_processes.run([sys.executable, "-m", "painterly", "apply", "hf://alice/starry@v1", str(photo),
                              "-o", str(tmp_path / "out.png"), "--quiet"], capture_output=True, text=True, env=env,
                             timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.png").is_file()


# --- references, parsed strictly (no client, no request) ------------------------------------------


@pytest.mark.parametrize(("reference", "expected"), [
    ("hf://alice/starry", hub.HubReference("alice/starry")),
    ("hf://alice/starry@v1.0", hub.HubReference("alice/starry", None, "v1.0")),
    ("hf://Alice_1/my.model-2/sub/starry.safetensors@refs/pr/3",
     hub.HubReference("Alice_1/my.model-2", "sub/starry.safetensors", "refs/pr/3")),
    ("hf://alice/starry/model.ONNX", hub.HubReference("alice/starry", "model.ONNX")),
])
def test_references_parse(reference, expected):
    assert hub.parse(reference) == expected
    assert str(expected) == reference


@pytest.mark.parametrize("reference", [
    "hf://", "hf://alice", "hf://alice/", "hf:///starry", "hf://alice//starry", "hf://alice/starry/",
    "hf://../starry", "hf://alice/..", "hf://alice/starry/../x.safetensors", "hf://alice/starry/./x.safetensors",
    "hf://alice/re po", "hf://-alice/starry", "hf://alice/starry-", "hf://al--ice/starry", "hf://alice/st..arry",
    "hf://alice/starry.git", "hf://alice/starry@", "hf://alice/starry@a..b", "hf://alice/starry@v1/",
    "hf://alice/starry@-x", "hf://alice/starry/a\\b.safetensors", "hf://alice/starry/x\n.safetensors",
    "hf://" + "a" * 97 + "/starry", "hf:/alice/starry", "alice/starry",
])
def test_malformed_references_are_one_line(reference):
    with pytest.raises(ModelFileError) as caught:
        hub.parse(reference)
    message = str(caught.value)
    assert message.startswith(repr(reference)[:60]) and "\n" not in message
    assert "hf://OWNER/REPO[/FILE][@REVISION]" in message


@pytest.mark.parametrize("reference", ["hf://alice/starry/README.md", "hf://alice/starry/model.h5",
                                       "hf://alice/starry/model"])
def test_a_file_that_is_not_a_model_is_refused(reference):
    with pytest.raises(ModelFileError, match="is not a model painterly takes from the Hub"):
        hub.parse(reference)


def test_repo_ids_for_cards():
    assert hub.parse_repo_id("alice/starry") == "alice/starry"
    for bad in ("alice", "alice/starry/x", "alice/-starry", ""):
        with pytest.raises(ModelFileError):
            hub.parse_repo_id(bad)
