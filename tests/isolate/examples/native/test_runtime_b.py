import os

import nativeonce


def test_the_runtime_starts_here_too():
    assert nativeonce.init() == os.getpid()
