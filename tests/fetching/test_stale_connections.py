"""A server that closes an idle kept-alive connection as the next request arrives (a normal thing for servers
and CDNs to do) costs no failure: the GET is sent again on a new connection."""

import socket
import threading

import pytest

from catalog.fetching import FetchPolicy, SafeFetcher

BODY = b"\xff\xd8\xff\xe0" + b"0" * 200  # sniffs as a JPEG


@pytest.fixture
def hang_up_server():
    """Answers the first request of each connection (keep-alive), then closes on the second, unanswered."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections = []

    def serve(conn):
        with conn:
            for answered in (True, False):
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                if not answered:
                    return  # close without a response
                head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(BODY)}\r\n\r\n"
                conn.sendall(head.encode() + BODY)

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", connections
    listener.close()


def test_a_get_on_a_connection_the_server_closed_is_sent_again(hang_up_server):
    base, connections = hang_up_server
    with SafeFetcher(FetchPolicy(allow_networks=("127.0.0.0/8",), read_timeout=2)) as fetcher:
        results = [fetcher.fetch(f"{base}/{n}.jpg", expect_image=True) for n in range(4)]

    assert [r.content for r in results] == [BODY] * 4
    assert len(connections) >= 4  # every request after the first met a hung-up connection, then a new one
