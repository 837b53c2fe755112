# Not a test file: never checked.
import os

os.environ["APP_MODE"] = "test"
PORT = ("127.0.0.1", 8080)
