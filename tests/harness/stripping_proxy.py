"""An HTTP proxy on loopback that drops conditional headers on their way to a real S3 server.

It stands for an S3-compatible server that accepts ``If-None-Match`` and ``If-Match`` and ignores them: every
request reaches the real server without them, re-signed with the same credentials (SigV4 signs those headers, so
dropping them alone would only get the request refused), and the real server's answer comes back unchanged.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

DROPPED = ("if-none-match", "if-match")
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host")
RESIGNED = ("authorization", "x-amz-date", "x-amz-security-token")


class StrippingProxy:
    def __init__(self, upstream: str, access_key: str, secret_key: str, region: str) -> None:
        self.upstream = urlsplit(upstream)
        self.credentials = Credentials(access_key, secret_key)
        self.region = region
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in (*DROPPED, *HOP_BY_HOP, *RESIGNED)
                }
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
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
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
