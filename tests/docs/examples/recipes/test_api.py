"""The server the recipe starts answers on the port leased for it."""

import time
import urllib.request


def test_the_server_answers_on_its_leased_port(api_server):
    deadline = time.monotonic() + 60  # it starts in the background: a loaded machine is slow
    while True:
        try:
            with urllib.request.urlopen(api_server, timeout=10) as response:
                assert response.read() == b"ok"
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
