"""`masquerade weights`: the pinned catalogue, downloads from a real HTTP server on 127.0.0.1 (fresh,
broken off and resumed with Range, a server that ignores Range, a corrupt file), and `weights:NAME` in shows."""

import hashlib
import http.server
import os
import re
import socket
import threading
import tomllib
from pathlib import Path

import pytest

from engine import show as shows
from engine import weights
from engine.weights import catalogue, download

from .conftest import DEFAULT_MODEL, FIXTURES, ROOT, masquerade

SR_MODEL = ROOT / "assets" / "models" / "sr-emoji-x4.safetensors"
ANIME = FIXTURES / "weights" / "realesr-animevideov3.pth"


class Server:
    """http.server in a thread, serving bytes by path, with Range; it records every request's path and
    Range header. `drop[path] = n`: the next n answers to that path stop half way and close the connection;
    `ignore_range`: always answer 200 with the whole file."""

    def __init__(self):
        self.files, self.drop, self.requests, self.ignore_range = {}, {}, [], False
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if ranged and not owner.ignore_range:
                    start = int(ranged[1])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                rest = body[start:]
                self.send_header("Content-Length", str(len(rest)))
                self.end_headers()
                if owner.drop.get(self.path, 0) > 0:
                    owner.drop[self.path] -= 1
                    self.wfile.write(rest[: len(rest) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(rest)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def entry_toml(name, path, body, sha=None, size=True, filter="superres", extra=""):
    sha = sha or hashlib.sha256(body).hexdigest()
    lines = [f"[{name}]", f'url = "https://weights.example{path}"', f'sha256 = "{sha}"',
             'licence = "MIT"', 'purpose = "a test file"', f'filter = "{filter}"',
             'reader = "engine/filters/superres.py"', 'source = "made by the test"']
    if size:
        lines.append(f"size = {len(body)}")
    return "\n".join(lines) + "\n" + extra + "\n"


@pytest.fixture
def setup(tmp_path, server, monkeypatch):
    """A test catalogue with one 300 kB file of random bytes, a cache folder in tmp_path, the server as
    mirror: the environment for the real command and for this process alike."""
    body = os.urandom(300_000)
    server.files["/files/blob.bin"] = body
    cat = tmp_path / "catalogue.toml"
    cat.write_text(entry_toml("blob", "/files/blob.bin", body))
    cache = tmp_path / "cache"
    env = dict(os.environ, MASQUERADE_WEIGHTS_CATALOGUE=str(cat), MASQUERADE_WEIGHTS_DIR=str(cache),
               MASQUERADE_WEIGHTS_MIRROR=server.url)
    for key in ("MASQUERADE_WEIGHTS_CATALOGUE", "MASQUERADE_WEIGHTS_DIR", "MASQUERADE_WEIGHTS_MIRROR"):
        monkeypatch.setenv(key, env[key])
    return dict(body=body, cat=cat, cache=cache, env=env)


def one_line(text):
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# --- the shipped catalogue ------------------------------------------------------------------------------


def test_shipped_catalogue_is_pinned_and_names_real_loaders():
    entries = catalogue.load(catalogue.CATALOGUE)
    assert {"googlenet", "inception-v3", "realesrgan-x4plus", "realesr-animevideov3",
            "realesr-general-x4v3"} <= set(entries)
    from engine import filters

    for e in entries.values():
        assert e.url.startswith("https://") and re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert e.licence and e.purpose and e.source, e.name
        assert e.filter in filters.names(), e.name
        assert (ROOT / e.reader.split()[0]).is_file(), e.reader  # the loader it names exists
        tv = re.search(r"-([0-9a-f]{8})\.pth$", e.url)
        if "download.pytorch.org" in e.url:  # torchvision's names carry the digest's first 8 hex digits
            assert tv and e.sha256.startswith(tv[1]), e.name


def test_the_pinned_animevideov3_digest_is_the_real_files(server, tmp_path, monkeypatch):
    """The shipped entry, fetched through a mirror from the published file kept in the shared fixtures."""
    if not ANIME.is_file():
        pytest.skip(f"{ANIME} is absent (the shared fixtures sit beside the checkout)")
    entry = catalogue.load(catalogue.CATALOGUE)["realesr-animevideov3"]
    server.files["/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-animevideov3.pth"] = ANIME.read_bytes()
    env = dict(os.environ, MASQUERADE_WEIGHTS_DIR=str(tmp_path / "cache"))
    env.pop("MASQUERADE_WEIGHTS_CATALOGUE", None)
    r = masquerade("weights", "get", "realesr-animevideov3", "--mirror", server.url, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cache" / "realesr-animevideov3.pth").read_bytes() == ANIME.read_bytes()
    monkeypatch.setenv("MASQUERADE_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MASQUERADE_WEIGHTS_CATALOGUE", raising=False)
    folder = tmp_path / "show"
    folder.mkdir()
    (folder / "show.toml").write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[[filters]]\nkind = "superres"\n'
                                      f'path = "weights:{entry.name}"\n')
    from engine.pipeline import Pipeline

    pipeline = Pipeline(shows.load(folder / "show.toml"), "cpu")
    assert pipeline.filters[0].info.architecture == "superres-compact"
    assert pipeline.filters[0].info.path == tmp_path / "cache" / "realesr-animevideov3.pth"


@pytest.mark.parametrize("change, complaint", [
    (('url = "https://weights.example', 'url = "http://weights.example'), "url must be https"),
    (("sha256 = \"", "sha256 = \"abc"), "sha256 must be 64"),
    (("size = ", "size = -"), "size must be a positive"),
    (('licence = "MIT"', 'licence = ""'), "licence must be a non-empty"),
    (('filter = "superres"', 'filter = "nope"'), "filter must be a [[filters]] kind"),
    (('purpose = "a test file"', 'purpose = "x"\ncolour = "red"'), "unknown key 'colour'"),
])
def test_catalogue_entries_are_checked_at_load(tmp_path, change, complaint):
    text = entry_toml("blob", "/files/blob.bin", b"123").replace(*change)
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(weights.WeightsError, match=re.escape(complaint)):
        catalogue.load(tmp_path / "c.toml")


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MASQUERADE_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "masquerade" / "weights"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert weights.cache_dir() == Path.home() / ".cache" / "masquerade" / "weights"
    monkeypatch.setenv("MASQUERADE_WEIGHTS_DIR", str(tmp_path / "mine"))
    assert weights.cache_dir() == tmp_path / "mine"


def test_mirror_replaces_the_host():
    url = "https://download.pytorch.org/models/googlenet-1378be20.pth"
    assert download.mirrored(url, "http://127.0.0.1:8000") == "http://127.0.0.1:8000/models/googlenet-1378be20.pth"
    assert download.mirrored(url, "http://m.local/pub/") == "http://m.local/pub/models/googlenet-1378be20.pth"
    with pytest.raises(weights.WeightsError, match="--mirror must be"):
        download.mirrored(url, "ftp://m.local")


# --- downloads, through the real command ----------------------------------------------------------------


def test_fresh_get_then_get_again_downloads_nothing(setup, server):
    r = masquerade("weights", "get", "blob", env=setup["env"])
    assert r.returncode == 0, r.stderr
    assert "saved" in r.stdout and 'path = "weights:blob"' in r.stdout
    assert (setup["cache"] / "blob.bin").read_bytes() == setup["body"]
    assert not list(setup["cache"].glob("*.part"))
    assert server.requests == [("/files/blob.bin", None)]
    again = masquerade("weights", "get", "blob", env=setup["env"])
    assert again.returncode == 0, again.stderr
    assert "already here and verified, nothing downloaded" in again.stdout
    assert len(server.requests) == 1


def test_a_transfer_cut_off_resumes_with_range(setup, server):
    server.drop["/files/blob.bin"] = 1  # the first answer stops half way and closes the connection
    r = masquerade("weights", "get", "blob", env=setup["env"])
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout
    (_, first), (_, second) = server.requests
    assert first is None and second == f"bytes={len(setup['body']) // 2}-"
    assert (setup["cache"] / "blob.bin").read_bytes() == setup["body"]


def test_a_download_left_broken_is_resumed_by_the_next_get(setup, server):
    server.drop["/files/blob.bin"] = 3  # every try of the first command breaks off
    r = masquerade("weights", "get", "blob", env=setup["env"])
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert "broke off" in line and "masquerade weights get blob` again to resume" in line
    part = setup["cache"] / "blob.bin.part"
    kept = part.stat().st_size
    assert 0 < kept < len(setup["body"]) and not (setup["cache"] / "blob.bin").exists()
    listed = masquerade("weights", "list", env=setup["env"])
    assert re.search(r"blob .*\d+% \(get resumes\)", listed.stdout), listed.stdout
    server.requests.clear()
    r = masquerade("weights", "get", "blob", env=setup["env"])
    assert r.returncode == 0, r.stderr
    assert server.requests == [("/files/blob.bin", f"bytes={kept}-")]
    assert (setup["cache"] / "blob.bin").read_bytes() == setup["body"] and not part.exists()


def test_a_server_that_ignores_range_is_read_from_the_start(setup, server):
    server.drop["/files/blob.bin"] = 1
    server.ignore_range = True
    r = masquerade("weights", "get", "blob", env=setup["env"])
    assert r.returncode == 0, r.stderr
    assert "the server ignored the Range request (it cannot resume); starting over" in r.stdout
    assert server.requests[1][1] is not None  # it was asked to resume, and answered with the whole file
    assert (setup["cache"] / "blob.bin").read_bytes() == setup["body"]


def test_a_corrupt_file_is_refused_and_nothing_is_kept(setup, server):
    corrupt = bytearray(setup["body"])
    corrupt[1000] ^= 0xFF  # one bit pattern off, same size
    server.files["/files/blob.bin"] = bytes(corrupt)
    r = masquerade("weights", "get", "blob", env=setup["env"])
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert "sha256" in line and "refused, nothing kept" in line
    assert not setup["cache"].exists() or not list(setup["cache"].glob("blob.bin*"))


def test_a_file_of_another_size_is_refused_before_it_is_read(setup, server):
    server.files["/files/blob.bin"] = setup["body"] + b"extra"
    r = masquerade("weights", "get", "blob", env=setup["env"])
    assert r.returncode == 2
    assert "not the catalogue's 300,000: refused, nothing kept" in one_line(r.stderr)
    assert not list(setup["cache"].glob("blob.bin*"))


def test_a_bad_file_in_the_cache_is_fetched_again(setup, server):
    setup["cache"].mkdir()
    (setup["cache"] / "blob.bin").write_bytes(b"x" * len(setup["body"]))
    r = masquerade("weights", "get", "blob", env=setup["env"])
    assert r.returncode == 0, r.stderr
    assert "does not match its sha256 any more" in r.stdout
    assert (setup["cache"] / "blob.bin").read_bytes() == setup["body"]


def test_unknown_name_lists_the_names(setup, server):
    r = masquerade("weights", "get", "nope", env=setup["env"])
    assert r.returncode == 2
    assert one_line(r.stderr) == "masquerade: error: no weights called 'nope' in the catalogue; known: blob"
    assert server.requests == []
    shipped = masquerade("weights", "get", "googlenet-v9", env={k: v for k, v in setup["env"].items()
                                                                 if k != "MASQUERADE_WEIGHTS_CATALOGUE"})
    assert shipped.returncode == 2 and "known: googlenet, inception-v3" in one_line(shipped.stderr)


def test_list_shows_name_size_licence_purpose_and_whether_it_is_here(setup, server):
    r = masquerade("weights", "list", env=setup["env"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["NAME", "SIZE", "LICENCE", "HERE", "FILTER", "FOR"]
    assert re.search(r"^blob\s+0\.3 MB\s+MIT\s+no\s+superres\s+a test file$", r.stdout, re.M), r.stdout
    assert f"cache folder: {setup['cache']}" in r.stdout
    assert masquerade("weights", "get", "blob", env=setup["env"]).returncode == 0
    r = masquerade("weights", "list", env=setup["env"])
    assert re.search(r"^blob\s+0\.3 MB\s+MIT\s+yes\s", r.stdout, re.M), r.stdout
    shipped = tomllib.loads(catalogue.CATALOGUE.read_text())
    r = masquerade("weights", "list", env={k: v for k, v in setup["env"].items()
                                           if k != "MASQUERADE_WEIGHTS_CATALOGUE"})
    assert all(re.search(rf"^{re.escape(name)}\s", r.stdout, re.M) for name in shipped), r.stdout


# --- weights:NAME in shows ------------------------------------------------------------------------------


@pytest.fixture
def shown(setup, server, tmp_path):
    """The test catalogue plus the project's own x4 model and emoji generator, as fetchable entries."""
    for name, model in (("sr-test", SR_MODEL), ("emoji-test", DEFAULT_MODEL)):
        body = model.read_bytes()
        server.files[f"/models/{model.name}"] = body
        with open(setup["cat"], "a") as f:
            f.write(entry_toml(name, f"/models/{model.name}", body))
    folder = tmp_path / "show"
    folder.mkdir()
    show = folder / "show.toml"
    show.write_text('[model]\npath = "weights:emoji-test"\n[output]\nsize = [256, 256]\n'
                    '[[filters]]\nkind = "superres"\npath = "weights:sr-test"\n')
    return show


def test_a_show_naming_weights_not_fetched_says_the_command_and_downloads_nothing(shown, setup, server):
    with pytest.raises(shows.ShowError, match=re.escape("model.path: weights:emoji-test is not downloaded yet; "
                                                        "run: masquerade weights get emoji-test")):
        shows.load(shown)
    r = masquerade("render", shown, "-o", setup["cache"].parent / "out", "--seconds", 0.1, env=setup["env"])
    assert r.returncode == 2
    assert one_line(r.stderr).endswith("run: masquerade weights get emoji-test")
    assert masquerade("weights", "get", "emoji-test", env=setup["env"]).returncode == 0
    with pytest.raises(shows.ShowError, match=re.escape("[[filters]] #1 (superres): path: weights:sr-test is not "
                                                        "downloaded yet; run: masquerade weights get sr-test")):
        shows.load(shown)
    assert [path for path, _ in server.requests] == ["/models/emoji64.safetensors"]  # the load fetched nothing


def test_a_show_naming_fetched_weights_reads_the_cached_files(shown, setup, server):
    r = masquerade("weights", "get", "emoji-test", "sr-test", env=setup["env"])
    assert r.returncode == 0, r.stderr
    show = shows.load(shown)
    assert show.model_path == setup["cache"] / "emoji64.safetensors"
    from engine.pipeline import Pipeline

    pipeline = Pipeline(show, "cpu")
    assert pipeline.filters[0].info.path == setup["cache"] / "sr-emoji-x4.safetensors"
    assert pipeline.filters[0].info.scale == 4
