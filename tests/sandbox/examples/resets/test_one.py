from app import load_config


def test_a():
    load_config()


def test_b():
    load_config()


class TestGroup:
    def test_c(self):
        load_config()

    def test_d(self):
        load_config()
