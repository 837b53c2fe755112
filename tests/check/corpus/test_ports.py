# Hard-coded ports: WU201, WU202, WU203.
import asyncio
import http.server
import socket

import psycopg
import redis

HOST = "127.0.0.1"


def test_socket_calls(sock):
    sock.bind(("127.0.0.1", 8080))  # expect: WU201
    sock.connect((HOST, 5432))  # expect: WU201
    sock.connect_ex(("localhost", 6379))  # expect: WU201
    socket.create_connection(("localhost", 8000), timeout=1)  # expect: WU201
    socket.create_server(("", 9000))  # expect: WU201


async def test_asyncio_calls():
    await asyncio.open_connection("127.0.0.1", 8888)  # expect: WU201
    await asyncio.start_server(None, port=8889)  # expect: WU201


def test_port_keyword_and_address_tuples():
    redis.Redis(host="localhost", port=6379)  # expect: WU201
    http.server.HTTPServer(("", 8000), http.server.BaseHTTPRequestHandler)  # expect: WU201
    sock = socket.socket()
    sock.bind(
        ("0.0.0.0", 7000)  # expect: WU201
    )


def test_urls():
    psycopg.connect("postgresql://u@localhost:5432/db")  # expect: WU202
    redis.from_url("redis://127.0.0.1:6379/0")  # expect: WU202, WU602
    assert fetch("http://localhost:8000/health")  # expect: WU202
    assert fetch("https://user:secret@example.com:8443/")  # expect: WU202
    assert fetch("http://[::1]:8080/")  # expect: WU202
    listen("localhost:9001")  # expect: WU202
    listen("127.0.0.1:9002")  # expect: WU202


def test_suppressed_by_noqa(sock):
    sock.bind(("127.0.0.1", 8080))  # noqa: WU201
    fetch("http://localhost:8000/")  # noqa


def test_near_misses(sock, worker_port, free_port):
    """Docs may show "http://localhost:8000" without being reported."""
    sock.bind(("127.0.0.1", 0))
    sock.bind(("127.0.0.1", free_port))
    sock.connect(("localhost", worker_port()))
    redis.Redis(host="localhost", port=free_port)
    asyncio.start_server(None, port=0)
    fetch("http://localhost/health")
    fetch(f"http://localhost:{free_port}/health")
    fetch("https://example.com/v1.2.3")
    check_version("1.2.3")
    at_time("12:30")
    at_time("12:30:45")
    parse("sha256:0123456789")
    pool = ThreadPool(8080)
    retry(times=3, delay=8080)
    pair = ("localhost", 8080)
    sock.settimeout(30)


def test_servers_started_on_a_fixed_port(worker_port):
    import subprocess

    subprocess.Popen(["redis-server", "--port", "6360"])  # expect: WU203
    subprocess.Popen(["memcached", "-vv", "-p", 11212])  # expect: WU203
    subprocess.Popen(["uvicorn", "app:app", "--port=8000"])  # expect: WU203
    subprocess.Popen(["redis-server", "--port 6361"])  # expect: WU203
    subprocess.Popen("redis-server --port 6362 --save ''", shell=True)  # expect: WU203
    port = worker_port()
    subprocess.Popen(["redis-server", "--port", str(port)])
    subprocess.Popen(["uvicorn", "app:app", f"--port={port}"])
    subprocess.run(["pytest", "-p", "no:randomly", "-n", "2"])
    subprocess.run(["tool", "-p", "4"])  # "-p" below 1024: a count, not a port
    subprocess.run(["server", "--port", "0"])  # the kernel chooses
