"""Each worker's own interpreter starts the runtime as it collects this module."""

import my_native_lib
import pytest

my_native_lib.init()


def test_a_second_init_in_the_same_interpreter_is_refused():
    with pytest.raises(RuntimeError):
        my_native_lib.init()
