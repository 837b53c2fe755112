# The *_test.py pattern is a test file too.
import os

os.environ["APP_MODE"] = "test"  # expect: WU101
