import os

import nativeonce


def test_the_runtime_starts_here():
    assert nativeonce.init() == os.getpid()
