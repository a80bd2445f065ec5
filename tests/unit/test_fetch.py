"""The fetch edge against real HTTP(S) servers on 127.0.0.1 (lab/httpserver.py).

Every hostile behaviour a feed server can show is played for real over a socket: trickling,
endless and compressed bodies, redirect tricks, certificates from an unknown CA. Timeouts are 1 s
so the slow cases stay fast; the servers' slow replies are bounded so that a broken deadline
fails a test instead of hanging the suite.
"""

from __future__ import annotations

import dataclasses
import email.utils
import os
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import FetchError, VerifyError
from agent.fetch import HttpFetcher, Response, join_url, signature_url
from lab.httpserver import CertificateAuthority, HttpServer, Pieces, Reply, Request, unused_port

KIB = 1024
FEED = b"192.0.2.1\n198.51.100.0/24\nevil.example\n"


# conftest.py's autouse `_no_proxy` keeps environment proxies out of these loopback tests


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "www"
    (directory / "feed").mkdir(parents=True)
    (directory / "feed" / "indicators.txt").write_bytes(FEED)
    return directory


@pytest.fixture
def server(root: Path) -> Iterator[HttpServer]:
    with HttpServer(root) as running:
        yield running


@pytest.fixture
def tls_server(root: Path, ca: CertificateAuthority) -> Iterator[HttpServer]:
    with HttpServer(root, ca=ca) as running:
        yield running


@pytest.fixture
def fetcher() -> HttpFetcher:
    return HttpFetcher()


def fetch_error(fetcher: HttpFetcher, url: str, **kwargs: object) -> FetchError:
    """The FetchError of a download that must fail (the test fails if it succeeds)."""
    options: dict[str, object] = {"max_size": 64 * KIB, "timeout": 5.0, **kwargs}
    with pytest.raises(FetchError) as info:
        fetcher.get(url, **options)  # type: ignore[arg-type]
    return info.value


# --- conditional GET ------------------------------------------------------------------------------


def test_etag_then_304_not_modified(server: HttpServer, root: Path, fetcher: HttpFetcher) -> None:
    url = server.url("/feed/indicators.txt")
    first = fetcher.get(url, max_size=KIB, timeout=5)
    assert (first.status, first.data, first.url) == (200, FEED, url)
    assert first.etag and first.etag.startswith('"')
    assert first.last_modified
    assert server.requests[-1].header("If-None-Match") is None

    second = fetcher.get(url, max_size=KIB, timeout=5, etag=first.etag)
    assert (second.status, second.data, second.etag) == (304, b"", first.etag)
    assert server.requests[-1].header("If-None-Match") == first.etag

    (root / "feed" / "indicators.txt").write_bytes(FEED + b"203.0.113.7\n")
    third = fetcher.get(url, max_size=KIB, timeout=5, etag=first.etag)
    assert third.status == 200
    assert third.data.endswith(b"203.0.113.7\n")
    assert third.etag != first.etag


def test_last_modified_then_if_modified_since(
    server: HttpServer, root: Path, fetcher: HttpFetcher
) -> None:
    path = root / "feed" / "indicators.txt"
    os.utime(path, (1_700_000_000, 1_700_000_000))
    url = server.url("/feed/indicators.txt")
    first = fetcher.get(url, max_size=KIB, timeout=5)
    assert first.last_modified == email.utils.formatdate(1_700_000_000, usegmt=True)

    second = fetcher.get(url, max_size=KIB, timeout=5, last_modified=first.last_modified)
    assert (second.status, second.data) == (304, b"")
    assert second.last_modified == first.last_modified
    assert server.requests[-1].header("If-Modified-Since") == first.last_modified
    assert server.requests[-1].header("If-None-Match") is None

    os.utime(path, (1_700_000_100, 1_700_000_100))
    third = fetcher.get(url, max_size=KIB, timeout=5, last_modified=first.last_modified)
    assert (third.status, third.data) == (200, FEED)


def test_304_to_an_unconditional_request_is_an_error(
    server: HttpServer, fetcher: HttpFetcher
) -> None:
    server.route("/broken-cache", Reply(status=304, length=False))
    error = fetch_error(fetcher, server.url("/broken-cache"))
    assert error.reason == "http-304"


def test_request_headers(server: HttpServer) -> None:
    HttpFetcher(user_agent="blocklist-agent/test").get(
        server.url("/feed/indicators.txt"), max_size=KIB, timeout=5
    )
    request = server.requests[-1]
    assert request.header("User-Agent") == "blocklist-agent/test"
    assert request.header("Accept-Encoding") == "gzip"


# --- size cap -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(body=b"x" * 1000), id="content-length"),
        pytest.param(Reply(body=[b"x" * 250] * 4, chunked=True), id="chunked"),
        pytest.param(Reply(body=[b"x" * 250] * 4, length=False), id="until-close"),
        pytest.param(Reply.gzip(b"x" * 1000), id="gzip"),
    ],
)
def test_exactly_max_size_is_accepted(
    server: HttpServer, fetcher: HttpFetcher, reply: Reply
) -> None:
    server.route("/list", reply)
    assert fetcher.get(server.url("/list"), max_size=1000, timeout=5).data == b"x" * 1000
    error = fetch_error(fetcher, server.url("/list"), max_size=999)
    assert error.reason == "too-large"
    assert "999" in error.what


def test_announced_length_over_the_cap_is_refused_before_reading(
    server: HttpServer, fetcher: HttpFetcher
) -> None:
    # The body would take 30 s to arrive, 3 s a piece: only an early refusal is fast.
    server.route("/huge", Reply(body=Pieces(b"x" * KIB, 10), length=10**9, interval=3.0))
    started = time.monotonic()
    error = fetch_error(fetcher, server.url("/huge"), max_size=64 * KIB, timeout=5)
    assert error.reason == "too-large"
    assert "1000000000" in error.what
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(body=Pieces(b"x" * 16 * KIB), chunked=True), id="chunked"),
        pytest.param(Reply(body=Pieces(b"x" * 16 * KIB), length=False), id="until-close"),
    ],
)
def test_endless_body_stops_at_the_cap(
    server: HttpServer, fetcher: HttpFetcher, reply: Reply
) -> None:
    server.route("/endless", reply)
    started = time.monotonic()
    error = fetch_error(fetcher, server.url("/endless"), max_size=256 * KIB, timeout=5)
    assert error.reason == "too-large"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_gzip_bomb_is_capped_on_decoded_bytes(
    server: HttpServer, fetcher: HttpFetcher, chunked: bool
) -> None:
    server.route("/bomb", Reply.gzip(b"\0" * (16 * 1024 * KIB), chunked=chunked))  # 16 KiB
    tracemalloc.start()
    try:
        error = fetch_error(fetcher, server.url("/bomb"), max_size=1024 * KIB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.reason == "too-large"
    # Decoding is bounded step by step: memory stays near max_size, far from the 16 MiB inside.
    assert peak < 4 * 1024 * KIB, peak


def test_gzip_is_decoded(server: HttpServer, fetcher: HttpFetcher) -> None:
    data = os.urandom(200 * KIB).hex().encode()  # 400 KiB, several decoder steps
    server.route("/list.gz", Reply.gzip(data, chunked=True))
    assert fetcher.get(server.url("/list.gz"), max_size=len(data), timeout=5).data == data


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(body=b"\x1f\x8bnot gzip at all", headers={"Content-Encoding": "gzip"})),
        pytest.param(Reply(body=b"abc", headers={"Content-Encoding": "br"})),
    ],
    ids=["corrupt-gzip", "unsupported"],
)
def test_bad_content_encoding(server: HttpServer, fetcher: HttpFetcher, reply: Reply) -> None:
    server.route("/enc", reply)
    assert fetch_error(fetcher, server.url("/enc")).reason == "encoding"


def test_truncated_gzip_is_incomplete(server: HttpServer, fetcher: HttpFetcher) -> None:
    body = Reply.gzip(FEED * 100).body
    assert isinstance(body, bytes)
    server.route(
        "/cut.gz", Reply(body=body[: len(body) // 2], headers={"Content-Encoding": "gzip"})
    )
    assert fetch_error(fetcher, server.url("/cut.gz")).reason == "incomplete"


def test_body_shorter_than_its_content_length_is_incomplete(
    server: HttpServer, fetcher: HttpFetcher
) -> None:
    server.route("/short", Reply(body=b"x" * 50, length=100))
    error = fetch_error(fetcher, server.url("/short"))
    assert error.reason == "incomplete"


# --- deadline -------------------------------------------------------------------------------------


def assert_timeout_after(fetcher: HttpFetcher, url: str, seconds: float, **kwargs: object) -> None:
    started = time.monotonic()
    error = fetch_error(fetcher, url, timeout=seconds, **kwargs)
    elapsed = time.monotonic() - started
    assert error.reason == "timeout", error
    assert seconds * 0.9 <= elapsed < seconds + 0.8, elapsed
    assert url in str(error)


def test_trickling_body_hits_the_total_deadline(server: HttpServer, fetcher: HttpFetcher) -> None:
    # One byte every 0.1 s never trips a per-read timeout; the whole body would take 10 s.
    server.route("/trickle", Reply.trickle(interval=0.1, count=100))
    assert_timeout_after(fetcher, server.url("/trickle"), 1.0)


def test_trickling_chunked_body_over_https_hits_the_total_deadline(
    tls_server: HttpServer, fetcher: HttpFetcher
) -> None:
    tls_server.route("/trickle", Reply.trickle(interval=0.1, count=100, chunked=True))
    assert_timeout_after(fetcher, tls_server.url("/trickle"), 1.0, ca_file=tls_server.ca_file)


def test_trickling_headers_hit_the_total_deadline(server: HttpServer, fetcher: HttpFetcher) -> None:
    server.route("/slow-headers", Reply(body=FEED, header_interval=0.1))
    assert_timeout_after(fetcher, server.url("/slow-headers"), 1.0)


def test_silent_server_times_out(server: HttpServer, fetcher: HttpFetcher) -> None:
    server.route("/silent", Reply(body=FEED, delay=10))
    assert_timeout_after(fetcher, server.url("/silent"), 1.0)


def test_deadline_spans_redirects(server: HttpServer, fetcher: HttpFetcher) -> None:
    # Each hop answers in 0.4 s, well within any per-request timeout; four hops need 1.6 s.
    for hop in range(4):
        server.route(f"/hop{hop}", dataclasses.replace(Reply.redirect(f"/hop{hop + 1}"), delay=0.4))
    server.route("/hop4", Reply(body=FEED))
    assert_timeout_after(fetcher, server.url("/hop0"), 1.0)


def test_no_descriptors_leak(server: HttpServer, fetcher: HttpFetcher) -> None:
    url = server.url("/feed/indicators.txt")
    fetcher.get(url, max_size=KIB, timeout=5)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        fetcher.get(url, max_size=KIB, timeout=5)
    assert len(os.listdir("/proc/self/fd")) <= before + 2


# --- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location", ["indicators.txt", "/feed/indicators.txt", "{base}/feed/indicators.txt"]
)
def test_redirect_is_followed_and_final_url_reported(
    server: HttpServer, fetcher: HttpFetcher, location: str
) -> None:
    server.route("/feed/old.txt", Reply.redirect(location.format(base=server.base_url), 301))
    response = fetcher.get(server.url("/feed/old.txt"), max_size=KIB, timeout=5)
    assert (response.status, response.data) == (200, FEED)
    assert response.url == server.url("/feed/indicators.txt")


def test_redirect_to_another_server_keeps_validators(
    server: HttpServer, root: Path, fetcher: HttpFetcher
) -> None:
    with HttpServer(root) as mirror:
        server.route("/list", Reply.redirect(mirror.url("/feed/indicators.txt"), 307))
        first = fetcher.get(server.url("/list"), max_size=KIB, timeout=5)
        assert first.url == mirror.url("/feed/indicators.txt")
        second = fetcher.get(server.url("/list"), max_size=KIB, timeout=5, etag=first.etag)
        assert second.status == 304
        assert mirror.requests[-1].header("If-None-Match") == first.etag


def test_five_redirects_are_followed_six_are_not(server: HttpServer, fetcher: HttpFetcher) -> None:
    for hop in range(6):
        server.route(f"/r{hop}", Reply.redirect(f"/r{hop + 1}"))
    server.route("/r6", Reply(body=FEED))
    assert fetcher.get(server.url("/r1"), max_size=KIB, timeout=5).data == FEED
    error = fetch_error(fetcher, server.url("/r0"))
    assert error.reason == "redirect-loop"
    assert len(server.requests_for("/r6")) == 1  # only from the five-hop download


def test_redirect_loop(server: HttpServer, fetcher: HttpFetcher) -> None:
    server.route("/a", Reply.redirect("/b"))
    server.route("/b", Reply.redirect("/a"))
    error = fetch_error(fetcher, server.url("/a"))
    assert error.reason == "redirect-loop"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "reply",
    [Reply.redirect("file:///etc/passwd"), Reply(status=302)],
    ids=["to-file-url", "no-location"],
)
def test_invalid_redirect(server: HttpServer, fetcher: HttpFetcher, reply: Reply) -> None:
    server.route("/bad", reply)
    assert fetch_error(fetcher, server.url("/bad")).reason == "redirect-invalid"


# --- TLS ------------------------------------------------------------------------------------------


def test_https_with_an_unknown_ca_fails_with_a_hint(
    tls_server: HttpServer, fetcher: HttpFetcher
) -> None:
    error = fetch_error(fetcher, tls_server.url("/feed/indicators.txt"))
    assert error.reason == "tls"
    assert "ca_file" in error.hint
    assert tls_server.url("/feed/indicators.txt") in str(error)
    assert tls_server.requests == []  # nothing was sent over the untrusted connection


def test_https_with_ca_file_succeeds(tls_server: HttpServer, fetcher: HttpFetcher) -> None:
    url = tls_server.url("/feed/indicators.txt")
    response = fetcher.get(url, max_size=KIB, timeout=5, ca_file=tls_server.ca_file)
    assert (response.status, response.data, response.url) == (200, FEED, url)


def test_https_with_the_wrong_ca_file_fails(
    tls_server: HttpServer, fetcher: HttpFetcher, tmp_path: Path
) -> None:
    other = CertificateAuthority(tmp_path / "other", name="another CA")
    error = fetch_error(fetcher, tls_server.url("/feed/indicators.txt"), ca_file=other.cert_file)
    assert error.reason == "tls"
    assert other.cert_file in error.hint


def test_missing_ca_file(tls_server: HttpServer, fetcher: HttpFetcher, tmp_path: Path) -> None:
    error = fetch_error(fetcher, tls_server.url("/x"), ca_file=str(tmp_path / "nope.pem"))
    assert error.reason == "tls"
    assert "nope.pem" in error.what


def test_certificate_names_are_checked(
    ca: CertificateAuthority, root: Path, fetcher: HttpFetcher
) -> None:
    with HttpServer(root, ca=ca, hosts=("localhost",)) as running:
        by_name = f"https://localhost:{running.port}/feed/indicators.txt"
        assert fetcher.get(by_name, max_size=KIB, timeout=5, ca_file=running.ca_file).data == FEED
        # Same server, same trusted CA, but the certificate does not name 127.0.0.1.
        error = fetch_error(fetcher, running.url("/feed/indicators.txt"), ca_file=running.ca_file)
        assert error.reason == "tls"


def test_plain_http_on_a_tls_port_fails_with_tls(server: HttpServer, fetcher: HttpFetcher) -> None:
    error = fetch_error(fetcher, server.url("/x").replace("http://", "https://"))
    assert error.reason == "tls"


def test_https_to_http_redirect_is_refused(
    tls_server: HttpServer, server: HttpServer, fetcher: HttpFetcher
) -> None:
    tls_server.route("/list", Reply.redirect(server.url("/feed/indicators.txt")))
    error = fetch_error(fetcher, tls_server.url("/list"), ca_file=tls_server.ca_file)
    assert error.reason == "redirect-downgrade"
    assert server.requests == []


def test_http_to_https_redirect_is_followed(
    tls_server: HttpServer, server: HttpServer, fetcher: HttpFetcher
) -> None:
    server.route("/list", Reply.redirect(tls_server.url("/feed/indicators.txt")))
    response = fetcher.get(server.url("/list"), max_size=KIB, timeout=5, ca_file=tls_server.ca_file)
    assert response.url == tls_server.url("/feed/indicators.txt")
    assert response.data == FEED


# --- HTTP errors and connection failures ----------------------------------------------------------


@pytest.mark.parametrize("status", [404, 500, 403, 206])
def test_http_errors(server: HttpServer, fetcher: HttpFetcher, status: int) -> None:
    server.route("/status", Reply(status=status, body=b"error page"))
    url = server.url("/status")
    error = fetch_error(fetcher, url)
    assert error.reason == f"http-{status}"
    assert error.where == url
    assert str(status) in error.what
    assert error.hint


def test_missing_file_on_server_is_404(server: HttpServer, fetcher: HttpFetcher) -> None:
    assert fetch_error(fetcher, server.url("/feed/nope.txt")).reason == "http-404"


def test_connection_refused(fetcher: HttpFetcher) -> None:
    url = f"http://127.0.0.1:{unused_port()}/feed/manifest.json"
    started = time.monotonic()
    error = fetch_error(fetcher, url)
    assert error.reason == "connect"
    assert "refused" in error.what
    assert error.where == url
    assert time.monotonic() - started < 1


def test_name_resolution_failure(fetcher: HttpFetcher, monkeypatch: pytest.MonkeyPatch) -> None:
    # No real DNS query leaves the machine: the resolver itself is replaced.
    def no_such_name(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    error = fetch_error(fetcher, "https://feeds.invalid/manifest.json")
    assert error.reason == "connect"
    assert "feeds.invalid" in error.what
    assert "DNS" in error.hint


def test_password_is_not_shown(fetcher: HttpFetcher) -> None:
    error = fetch_error(fetcher, f"http://user:s3cret@127.0.0.1:{unused_port()}/x")
    assert "s3cret" not in str(error)
    assert "user:***@" in error.where


@pytest.mark.parametrize("url", ["ftp://example.org/x", "gopher://x/", "no-scheme/x"])
def test_other_schemes_are_refused(fetcher: HttpFetcher, url: str) -> None:
    assert fetch_error(fetcher, url).reason == "unsupported-scheme"


# --- file:// --------------------------------------------------------------------------------------


def test_file_url(fetcher: HttpFetcher, root: Path) -> None:
    path = root / "feed" / "indicators.txt"
    os.utime(path, (1_700_000_000, 1_700_000_000))
    url = path.as_uri()
    response = fetcher.get(url, max_size=KIB, timeout=5)
    assert response == Response(
        url=url,
        status=200,
        data=FEED,
        etag=None,
        last_modified=email.utils.formatdate(1_700_000_000, usegmt=True),
    )
    assert "192.0.2.1" not in repr(response)  # data stays out of logs


def test_file_url_with_spaces_and_localhost(fetcher: HttpFetcher, tmp_path: Path) -> None:
    path = tmp_path / "a dir" / "list.txt"
    path.parent.mkdir()
    path.write_bytes(FEED)
    assert path.as_uri().startswith("file:///") and "%20" in path.as_uri()
    assert fetcher.get(path.as_uri(), max_size=KIB, timeout=5).data == FEED
    localhost = path.as_uri().replace("file://", "file://localhost")
    assert fetcher.get(localhost, max_size=KIB, timeout=5).data == FEED


def test_file_url_missing(fetcher: HttpFetcher, tmp_path: Path) -> None:
    error = fetch_error(fetcher, (tmp_path / "nope.txt").as_uri())
    assert error.reason == "not-found"
    assert "nope.txt" in str(error)


def test_file_url_over_the_cap(fetcher: HttpFetcher, root: Path) -> None:
    url = (root / "feed" / "indicators.txt").as_uri()
    assert fetcher.get(url, max_size=len(FEED), timeout=5).data == FEED
    assert fetch_error(fetcher, url, max_size=len(FEED) - 1).reason == "too-large"


def test_file_url_device_is_refused(fetcher: HttpFetcher) -> None:
    # /dev/zero reports size 0 and never ends: it is refused for not being a regular file.
    assert fetch_error(fetcher, "file:///dev/zero", max_size=KIB).reason == "io"


@pytest.mark.parametrize(
    "url,reason",
    [("file://otherhost/etc/hosts", "bad-url"), ("file:///{tmp}", "io")],
    ids=["remote-host", "directory"],
)
def test_file_url_refusals(fetcher: HttpFetcher, tmp_path: Path, url: str, reason: str) -> None:
    assert fetch_error(fetcher, url.format(tmp=str(tmp_path).lstrip("/"))).reason == reason


# --- join_url and signature_url -------------------------------------------------------------------


@pytest.mark.parametrize(
    "base,relative,expected",
    [
        ("https://h/cert/manifest.json", "indicators.txt", "https://h/cert/indicators.txt"),
        ("https://h/cert/manifest.json", "v2/ips.txt", "https://h/cert/v2/ips.txt"),
        ("https://h:8443/manifest.json?k=1#f", "a.txt", "https://h:8443/a.txt?k=1"),
        ("https://h", "a.txt", "https://h/a.txt"),
        ("https://h/cert/manifest.json", "a b%2e.txt", "https://h/cert/a%20b%252e.txt"),
        ("file:///srv/feed/manifest.json", "list.txt", "file:///srv/feed/list.txt"),
    ],
)
def test_join_url(base: str, relative: str, expected: str) -> None:
    assert join_url(base, relative) == expected


@pytest.mark.parametrize(
    "relative",
    [
        "../x",
        "a/../../x",
        "./x",
        "/etc/passwd",
        "http://other/x",
        "//other/x",
        "file:///etc/passwd",
        "a//b",
        "..\\x",
        "",
        "x\n",
    ],
)
def test_join_url_refuses_escapes(relative: str) -> None:
    with pytest.raises(VerifyError) as info:
        join_url("https://feeds.example/cert/manifest.json", relative)
    assert info.value.reason == "malformed-manifest"
    assert "feeds.example" in info.value.where


def test_join_url_result_is_fetched_from_the_manifest_directory(
    server: HttpServer, fetcher: HttpFetcher
) -> None:
    url = join_url(server.url("/feed/manifest.json"), "indicators.txt")
    assert fetcher.get(url, max_size=KIB, timeout=5).data == FEED


@pytest.mark.parametrize(
    "url,expected",
    [
        ("https://h/f/manifest.json", "https://h/f/manifest.json.minisig"),
        ("https://h/f/manifest.json?token=a.b#x", "https://h/f/manifest.json.minisig?token=a.b"),
        ("file:///srv/list.txt", "file:///srv/list.txt.minisig"),
    ],
)
def test_signature_url(url: str, expected: str) -> None:
    assert signature_url(url) == expected


@pytest.mark.parametrize("url", ["https://h/feed/", "https://h", "ftp://h/x"])
def test_signature_url_refusals(url: str) -> None:
    with pytest.raises(FetchError):
        signature_url(url)


def test_server_records_requests(server: HttpServer, fetcher: HttpFetcher) -> None:
    """The helper itself: a route function sees the request, including its query string."""
    seen: list[Request] = []

    def echo(request: Request) -> Reply:
        seen.append(request)
        return Reply(body=request.query.encode())

    server.route("/echo", echo)
    assert fetcher.get(server.url("/echo?a=1"), max_size=KIB, timeout=5).data == b"a=1"
    assert seen[0].path == "/echo"
    assert server.requests_for("/echo") == seen
