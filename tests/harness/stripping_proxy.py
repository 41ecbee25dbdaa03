"""An HTTP proxy on loopback in front of a real S3 server, standing for a server that behaves differently.

By default it stands for an S3-compatible server that accepts ``If-None-Match`` and ``If-Match`` and ignores them:
every request reaches the real server without them, re-signed with the same credentials (SigV4 signs those headers,
so dropping them alone would only get the request refused), and the real server's answer comes back unchanged.

``drop_on`` (a predicate on method and path) limits the dropping to some requests: a server that ignores the
headers on one operation only. With ``drop=()`` it passes every header on, and ``refuse`` (a predicate on method
and path, which the test can swap while the proxy runs) answers the requests it picks with S3's 403
``AccessDenied``, as a bucket policy denying a prefix would: a failure the caller cannot retry its way out of, until
the policy is fixed.

``rewrite`` (an object with ``request(method, path, headers, body)`` returning the headers and body to forward,
or an answer ``(status, headers, payload)`` to give instead, and ``response(method, path, status, headers,
payload)`` returning the answer to give) stands for a server that answers differently from the real one: see
:mod:`tests.harness.aws_like`.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

DROPPED = ("if-none-match", "if-match")
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host")
RESIGNED = ("authorization", "x-amz-date", "x-amz-security-token")


ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied (the test proxy's refusal)</Message></Error>"
)


class StrippingProxy:
    def __init__(
        self,
        upstream: str,
        access_key: str,
        secret_key: str,
        region: str,
        *,
        drop: tuple[str, ...] = DROPPED,
        refuse: Callable[[str, str], bool] | None = None,
        drop_on: Callable[[str, str], bool] | None = None,
        rewrite=None,
    ) -> None:
        self.upstream = urlsplit(upstream)
        self.credentials = Credentials(access_key, secret_key)
        self.region = region
        self.drop = tuple(name.lower() for name in drop)
        self.refuse = refuse
        self.drop_on = drop_on  # drop the headers only on the requests it picks (method, path): every one if None
        self.rewrite = rewrite
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                refuse = proxy.refuse
                if refuse is not None and refuse(self.command, self.path):
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(ACCESS_DENIED)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(ACCESS_DENIED)
                    return
                dropped = proxy.drop if proxy.drop_on is None or proxy.drop_on(self.command, self.path) else ()
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in (*dropped, *HOP_BY_HOP, *RESIGNED)
                }
                if proxy.rewrite is not None:
                    rewritten = proxy.rewrite.request(self.command, self.path, headers, body)
                    if len(rewritten) == 3:
                        self._answer(*rewritten)
                        return
                    headers, body = rewritten
                url = f"{proxy.upstream.scheme}://{proxy.upstream.netloc}{self.path}"
                request = AWSRequest(method=self.command, url=url, data=body, headers=headers)
                S3SigV4Auth(proxy.credentials, "s3", proxy.region).add_auth(request)
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    connection.request(self.command, self.path, body=body, headers=dict(request.headers.items()))
                    response = connection.getresponse()
                    payload = response.read()
                finally:
                    connection.close()
                status, answer_headers = response.status, response.getheaders()
                if proxy.rewrite is not None:
                    status, answer_headers, payload = proxy.rewrite.response(
                        self.command, self.path, status, answer_headers, payload
                    )
                self._answer(status, answer_headers, payload)

            def _answer(self, status: int, answer_headers, payload: bytes) -> None:
                self.send_response(status)
                length = None
                for k, v in answer_headers:
                    if k.lower() == "content-length":
                        length = v
                    elif k.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(k, v)
                # A HEAD answer has no body but the object's length, which callers check against what they sent.
                self.send_header("Content-Length", (length if self.command == "HEAD" else None) or str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StrippingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
